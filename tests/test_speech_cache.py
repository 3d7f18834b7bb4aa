"""Sentences the assistant has said before are played again, not synthesised again."""

from collections.abc import Iterator

import numpy as np
import pytest

from voice.speech_cache import SpeechCache
from voicedesk.config import load_config
from voicedesk.errors import ConfigError

PROMPT = "Could you tell me your eight-digit account number?"


class CountingVoice:
    """The real synthesiser, counting the sentences it is asked for."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.name = inner.name
        self.sample_rate = inner.sample_rate
        self.said: list[str] = []

    def synthesize(self, text: str) -> Iterator[np.ndarray]:
        self.said.append(text)
        yield from self.inner.synthesize(text)


@pytest.fixture
def voice(assistant, monkeypatch: pytest.MonkeyPatch) -> CountingVoice:
    counting = CountingVoice(assistant.synthesizer)
    monkeypatch.setattr(assistant, "synthesizer", counting)
    monkeypatch.setattr(assistant, "speech_cache", SpeechCache(8 * 1024 * 1024))
    return counting


def test_a_sentence_said_before_comes_from_the_cache(assistant, voice: CountingVoice) -> None:
    first = assistant.speech(PROMPT)
    again = assistant.speech(PROMPT)
    assert voice.said == [PROMPT]  # synthesised once
    assert len(first) / voice.sample_rate > 1.0 and np.array_equal(first, again)
    again[:] = 0.0  # a caller changing its copy does not change what the next call plays
    assert np.array_equal(assistant.speech(PROMPT), first)
    assert assistant.speech_cache.hits == 2 and assistant.speech_cache.misses == 1


def test_the_cache_keeps_the_most_recently_said_within_its_bound(
        assistant, voice: CountingVoice, monkeypatch: pytest.MonkeyPatch) -> None:
    sentences = ["Thank you.", "That doesn't match our records.", "What is the ticket number?"]
    sizes = [assistant.speech(s).nbytes for s in sentences]  # measured through a large cache
    bound = sizes[1] + sizes[2] + sizes[0] // 2  # room for the last two, not all three
    monkeypatch.setattr(assistant, "speech_cache", SpeechCache(bound))
    voice.said.clear()
    for sentence in sentences:
        assistant.speech(sentence)
    assistant.speech(sentences[1])  # kept
    assistant.speech(sentences[0])  # dropped as the least recently used: made again
    assert voice.said == [*sentences, sentences[0]]


def test_a_cache_of_zero_bytes_synthesises_every_time(
        assistant, voice: CountingVoice, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(assistant, "speech_cache", SpeechCache(0))
    assistant.speech(PROMPT)
    assistant.speech(PROMPT)
    assert voice.said == [PROMPT, PROMPT]


def test_the_cache_size_is_configured_in_megabytes() -> None:
    assert load_config(environ={}).tts.cache_mb == 64
    assert load_config(environ={"VOICEDESK_TTS_CACHE_MB": "0"}).tts.cache_mb == 0
    assert SpeechCache.configured(2).max_bytes == 2 * 1024 * 1024


def test_a_negative_cache_size_is_an_error_naming_the_setting() -> None:
    with pytest.raises(ConfigError, match=r"tts.cache_mb = -1"):
        SpeechCache.configured(-1)
