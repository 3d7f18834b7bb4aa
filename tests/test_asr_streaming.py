"""Streaming ASR: the LocalAgreement-2 policy alone, then the streamer on real audio and tiny.en."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

from asr.agreement import LocalAgreement, join_words
from asr.audio import SPEECH_RATE, load_audio, to_int16
from asr.streaming import (
    Confirmed,
    Final,
    Partial,
    StreamEvent,
    StreamingOptions,
    StreamingTranscriber,
    as_samples,
)
from asr.transcriber import Transcriber, create_transcriber
from asr.transcript import Transcript, Word
from tests.conftest import EXAMPLES, JFK, SHARED_DATA, wer
from voice.vad import WebRtcVad, split_turns
from voicedesk.config import AsrConfig, VadConfig
from voicedesk.errors import AudioError, ConfigError
from voicedesk.models.prepare import ModelStore

FRAME = 320  # 20 ms at 16 kHz


def hyp(*words: tuple[float, float, str]) -> list[Word]:
    """A hypothesis from (start, end, text) triples, as a Whisper pass gives them."""
    return [Word(start, end, f" {text}", 0.9) for start, end, text in words]


def texts(words: tuple[Word, ...] | list[Word]) -> list[str]:
    return [w.text.strip() for w in words]


# ---- the policy alone ------------------------------------------------------------------


def test_a_single_hypothesis_confirms_nothing() -> None:
    policy = LocalAgreement()
    assert policy.insert(hyp((0.0, 0.4, "hello"), (0.5, 0.8, "there"))) == []
    assert texts(policy.tentative) == ["hello", "there"]


def test_the_common_prefix_of_two_hypotheses_is_confirmed() -> None:
    policy = LocalAgreement()
    policy.insert(hyp((0.0, 0.4, "my"), (0.5, 0.9, "internet"), (1.0, 1.2, "stop")))
    new = policy.insert(hyp((0.0, 0.4, "my"), (0.5, 0.9, "internet"), (1.0, 1.4, "stopped"),
                            (1.5, 1.8, "working")))
    assert texts(new) == ["my", "internet"]
    assert texts(policy.tentative) == ["stopped", "working"]


def test_the_newer_pass_supplies_the_confirmed_words_times() -> None:
    policy = LocalAgreement()
    policy.insert(hyp((0.0, 0.3, "hello")))
    assert policy.insert(hyp((0.05, 0.45, "hello"))) == hyp((0.05, 0.45, "hello"))


def test_case_and_punctuation_do_not_block_agreement() -> None:
    policy = LocalAgreement()
    policy.insert(hyp((0.0, 0.4, "phone"), (0.5, 0.9, "bill,")))
    new = policy.insert(hyp((0.0, 0.4, "Phone"), (0.5, 0.9, "bill."), (1.2, 1.4, "it")))
    assert texts(new) == ["Phone", "bill."]


def test_confirmed_words_are_never_taken_back() -> None:
    policy = LocalAgreement()
    policy.insert(hyp((0.0, 0.4, "ten"), (0.5, 0.9, "of"), (1.0, 1.4, "clubs")))
    policy.insert(hyp((0.0, 0.4, "ten"), (0.5, 0.9, "of"), (1.0, 1.4, "clubs")))
    assert policy.insert(hyp((0.0, 0.4, "then"), (0.5, 0.9, "off"), (1.0, 1.4, "gloves"))) == []
    assert texts(policy.confirmed) == ["ten", "of", "clubs"]


def test_words_already_confirmed_are_not_confirmed_again() -> None:
    policy = LocalAgreement()
    policy.insert(hyp((0.0, 0.4, "go"), (0.5, 0.9, "forward")))
    policy.insert(hyp((0.0, 0.4, "go"), (0.5, 0.9, "forward")))
    # The next pass re-hears the confirmed words, one with a later start (time jitter).
    policy.insert(hyp((0.0, 0.4, "go"), (0.85, 1.0, "forward"), (1.1, 1.4, "ten")))
    new = policy.insert(hyp((0.0, 0.4, "go"), (0.88, 1.0, "forward"), (1.1, 1.4, "ten"),
                            (1.5, 1.9, "meters")))
    assert texts(new) == ["ten"]
    assert texts(policy.confirmed) == ["go", "forward", "ten"]


def test_a_word_confirmed_at_the_buffer_end_does_not_swallow_the_next_one() -> None:
    policy = LocalAgreement()
    # Heard at the very end of the buffer, "the" is stretched to that end (16.0 s).
    cut = hyp((15.0, 15.3, "nor"), (15.35, 15.6, "of"), (15.7, 16.0, "the"))
    policy.insert(cut)
    policy.insert(cut)
    later = hyp((15.0, 15.3, "nor"), (15.35, 15.6, "of"), (15.72, 15.85, "the"),
                (15.88, 16.6, "circumstances"), (16.7, 16.9, "which"))
    policy.insert(later)
    assert texts(policy.insert(later)) == ["circumstances", "which"]


def test_closing_confirms_the_final_pass_past_the_confirmed_words() -> None:
    policy = LocalAgreement()
    policy.insert(hyp((0.0, 0.4, "bye"), (0.5, 0.7, "for")))
    policy.insert(hyp((0.0, 0.4, "bye"), (0.5, 0.7, "for")))
    tail = policy.close(hyp((0.0, 0.4, "bye"), (0.5, 0.7, "for"), (0.8, 1.1, "now.")))
    assert texts(tail) == ["now."]
    assert texts(policy.confirmed) == ["bye", "for", "now."]
    assert policy.tentative == ()


def test_trimmed_confirmed_words_become_the_prompt_and_are_cut_to_its_size() -> None:
    policy = LocalAgreement()
    words = [(i * 0.5, i * 0.5 + 0.4, f"word{i}") for i in range(10)]
    policy.insert(hyp(*words))
    policy.insert(hyp(*words))
    assert policy.prompt() == ""  # nothing has left the buffer yet
    policy.trim(2.45)
    assert policy.prompt() == "word0 word1 word2 word3 word4"
    assert policy.prompt(max_chars=12) == "word3 word4"


def test_a_pass_over_a_trimmed_buffer_continues_after_the_confirmed_words() -> None:
    policy = LocalAgreement()
    first = hyp((0.0, 0.5, "hello"), (0.6, 1.0, "there"), (1.1, 1.5, "my"))
    policy.insert(first)
    policy.insert(first)
    policy.trim(1.05)
    policy.insert(hyp((1.1, 1.5, "my"), (1.6, 2.0, "name")))
    assert texts(policy.insert(hyp((1.1, 1.5, "my"), (1.6, 2.0, "name"), (2.1, 2.2, "is")))) \
        == ["name"]


def test_reset_forgets_the_turn() -> None:
    policy = LocalAgreement()
    policy.insert(hyp((0.0, 0.4, "yes")))
    policy.insert(hyp((0.0, 0.4, "yes")))
    policy.reset()
    assert policy.confirmed == () and policy.tentative == () and policy.last_confirmed_end == 0


# ---- frames and options ----------------------------------------------------------------


def test_int16_frames_and_pcm_bytes_are_read_as_float_samples() -> None:
    samples = np.array([0.0, 0.5, -0.5, 0.25], dtype=np.float32)
    pcm = to_int16(samples)
    assert np.allclose(as_samples(pcm), samples, atol=1e-4)
    assert np.allclose(as_samples(pcm.astype("<i2").tobytes()), samples, atol=1e-4)
    assert as_samples(samples.astype(np.float64)).dtype == np.float32


def test_a_stereo_frame_is_refused_with_the_fix() -> None:
    with pytest.raises(AudioError, match="pick the caller's channel"):
        as_samples(np.zeros((320, 2), dtype=np.float32))


def test_a_buffer_past_whispers_window_is_refused() -> None:
    with pytest.raises(ConfigError, match="30 s window"):
        StreamingOptions(trim_s=15, max_buffer_s=40)


def test_a_pause_pass_starts_sooner_only_when_the_machine_is_idle() -> None:
    streamer = StreamingTranscriber(CountingTranscriber(_Silent()))
    options = streamer.options
    speech = np.full(FRAME, 0.1, dtype=np.float32)
    for _ in range(10):
        streamer.push(speech, True)
    pauses = []
    for k in range(1, round(options.pause_s * SPEECH_RATE / FRAME) + 1):
        streamer.push(np.zeros(FRAME, dtype=np.float32), False)
        pauses.append((k * FRAME / SPEECH_RATE, streamer.due(), streamer.due(idle=True)))
    busy = min(t for t, due, _ in pauses if due)
    idle = min(t for t, _, due in pauses if due)
    assert idle == pytest.approx(options.idle_pause_s, abs=FRAME / SPEECH_RATE)
    assert busy == pytest.approx(options.pause_s, abs=FRAME / SPEECH_RATE) and idle < busy
    with pytest.raises(ConfigError, match="idle_pause_s"):
        StreamingOptions(pause_s=0.2, idle_pause_s=0.3)


class _Silent:
    name = "silent"

    def transcribe(self, samples: np.ndarray, prompt: str | None = None,
                   fallback: bool = True) -> Transcript:
        return Transcript(duration=len(samples) / SPEECH_RATE)


class _Hinted:
    """Hears "It's for Mirror" plainly and the digits only with the answer's prompt (tiny.en
    on espeak-ng "zero" at 8 kHz); records every pass's audio length and prompt."""

    name = "hinted"

    def __init__(self, hinted: str) -> None:
        self.hinted = hinted
        self.calls: list[tuple[float, str | None]] = []

    def transcribe(self, samples: np.ndarray, prompt: str | None = None,
                   fallback: bool = True) -> Transcript:
        from asr.transcript import Segment

        duration = len(samples) / SPEECH_RATE
        self.calls.append((duration, prompt))
        said = self.hinted if prompt == HINT else "It's for Mirror, Mirror, one, nine."
        words = said.split()
        step = duration / len(words)
        timed = tuple(Word(k * step, (k + 1) * step, f" {w}", 0.9) for k, w in enumerate(words))
        return Transcript((Segment(0.0, duration, said, timed),), duration=duration)


HINT = "My account number is 4, 0, 0, 7, 1, 3, 9, 2."


def _eight_digits(text: str) -> bool:
    return sum(c.isdigit() for c in text) == 8


@pytest.mark.parametrize(("hinted", "taken"), [
    ("It's 4, 0, 0, 1, 9, 0, 1, 2.", True),
    ("It's 4, 0, 0, 1.", False),  # not the answer either: the plain pass decides
])
def test_an_expected_answer_is_heard_with_its_prompt_over_the_speech_only(
        hinted: str, taken: bool) -> None:
    from asr.streaming import EXPECTED_TAIL_S, Expectation

    whisper = _Hinted(hinted)
    streamer = StreamingTranscriber(whisper)
    streamer.expect(Expectation(HINT, _eight_digits))
    speech = np.full(FRAME, 0.1, dtype=np.float32)
    events = []
    for _ in range(100):  # 2 s of speech: partial passes, never with the prompt
        streamer.push(speech, True)
        events += streamer.poll()
    assert whisper.calls and all(prompt != HINT for _, prompt in whisper.calls)
    assert streamer.answer == ""
    for _ in range(25):  # half a second of pause (a busy loop), then one settled pass
        streamer.push(np.zeros(FRAME, dtype=np.float32), False)
    events += streamer.poll()
    settled = [(s, p) for s, p in whisper.calls if p == HINT]
    assert len(settled) == 1
    assert settled[0][0] == pytest.approx(2.0 + EXPECTED_TAIL_S, abs=0.001)  # not all 0.5 s
    assert streamer.answer == (hinted if taken else "")
    final = streamer.end_turn()[-1]
    assert isinstance(final, Final)
    assert final.text == (hinted if taken else "It's for Mirror, Mirror, one, nine.")
    assert streamer.expected_heard == int(taken)


class _Quick(_Hinted):
    """``_Hinted`` with a cheaper pass for partials; records which passes took it.

    ``answer``: what the quick pass hears with the answer's prompt, its words spread
    over the first ``span`` of the audio (a reading that dropped the rest)."""

    def __init__(self, hinted: str, answer: str | None = None, span: float = 1.0) -> None:
        super().__init__(hinted)
        self.answer, self.span = answer, span
        self.quick: list[str | None] = []

    def quick_pass(self, samples: np.ndarray, prompt: str | None = None) -> Transcript:
        from asr.transcript import Segment

        self.quick.append(prompt)
        if prompt != HINT or self.answer is None:
            return self.transcribe(samples, prompt, fallback=False)
        duration = len(samples) / SPEECH_RATE
        words = self.answer.split()
        step = duration * self.span / len(words)
        timed = tuple(Word(k * step, (k + 1) * step, f" {w}", 0.9) for k, w in enumerate(words))
        return Transcript((Segment(0.0, duration, self.answer, timed),), duration=duration)


def test_partials_take_the_quick_pass_and_an_expected_answer_the_full_one() -> None:
    """By default (``quick_answers`` off) the expected answer keeps the full window."""
    from asr.streaming import Expectation

    whisper = _Quick("It's 4, 0, 0, 1, 9, 0, 1, 2.")
    streamer = StreamingTranscriber(whisper)
    streamer.expect(Expectation(HINT, _eight_digits))
    for _ in range(100):  # 2 s of speech
        streamer.push(np.full(FRAME, 0.1, dtype=np.float32), True)
        streamer.poll()
    partials = len(whisper.calls)
    assert partials >= 2 and whisper.quick == [None] * partials  # every partial: quick
    for _ in range(25):
        streamer.push(np.zeros(FRAME, dtype=np.float32), False)
    streamer.poll()
    assert [p for _, p in whisper.calls[partials:]] == [HINT] and HINT not in whisper.quick
    assert streamer.answer == "It's 4, 0, 0, 1, 9, 0, 1, 2."


@pytest.mark.parametrize(("quick", "span", "full_pass"), [
    ("It's 4, 0, 0, 1, 9, 0, 1, 2.", 1.0, False),  # fits and covers the speech: it stands
    ("It's 4, 0, 0, 1, 9, 0, 1.", 1.0, True),  # one digit short: the full window
    ("It's 4, 0, 0, 1, 9, 0, 1, 2.", 0.3, True),  # ends 1.6 s before the speech does
])
def test_an_expected_answer_takes_the_full_window_when_the_quick_pass_falls_short(
        quick: str, span: float, full_pass: bool) -> None:
    """With ``quick_answers`` the answer is heard with the quick pass first; a reading that does not
    fit, or whose words stop well before the caller did (words dropped), is heard again
    with the full window, which the short window's loops and drops never reach."""
    from asr.streaming import Expectation

    whisper = _Quick("It's 4, 0, 0, 1, 9, 0, 1, 2.", quick, span)
    streamer = StreamingTranscriber(whisper, StreamingOptions(quick_answers=True))
    streamer.expect(Expectation(HINT, _eight_digits))
    for _ in range(100):  # 2 s of speech
        streamer.push(np.full(FRAME, 0.1, dtype=np.float32), True)
        streamer.poll()
    partials = len(whisper.calls)
    for _ in range(25):
        streamer.push(np.zeros(FRAME, dtype=np.float32), False)
    streamer.poll()
    assert HINT in whisper.quick  # the quick pass always heard it first
    full = [p for _, p in whisper.calls[partials:] if p == HINT]
    assert len(full) == (1 if full_pass else 0)
    assert streamer.answer == "It's 4, 0, 0, 1, 9, 0, 1, 2."


class _Searching(_Hinted):
    """``_Hinted`` whose greedy reading never fits, with a beam that may hold one that does."""

    def __init__(self, beam: list[str]) -> None:
        super().__init__("It's 4, 0, 0, 1.")
        self.beam = beam
        self.searched: list[tuple[float, str | None]] = []

    def reading_that_fits(self, samples: np.ndarray, prompt: str | None,
                          fits: Callable[[str], bool], count: int = 8) -> Transcript | None:
        from asr.transcript import Segment

        duration = len(samples) / SPEECH_RATE
        self.searched.append((duration, prompt))
        said = next((text for text in self.beam if fits(text)), None)
        if said is None:
            return None
        words = said.split()
        step = duration / len(words)
        timed = tuple(Word(k * step, (k + 1) * step, f" {w}", 0.5) for k, w in enumerate(words))
        return Transcript((Segment(0.0, duration, said, timed),), duration=duration)


@pytest.mark.parametrize(("beam", "answer"), [
    (["It's 4, 0, 1.", "It's 4, 0, 0, 1, 9, 0, 1, 2."], "It's 4, 0, 0, 1, 9, 0, 1, 2."),
    (["It's 4, 0, 1.", "It's 4, 0, 0, 1, 1."], ""),  # nothing fits: the plain pass decides
])
def test_an_expected_answer_is_searched_for_in_the_beam_when_greedy_misses_it(
        beam: list[str], answer: str) -> None:
    from asr.streaming import EXPECTED_TAIL_S, Expectation

    whisper = _Searching(beam)
    streamer = StreamingTranscriber(whisper)
    streamer.expect(Expectation(HINT, _eight_digits))
    for _ in range(100):
        streamer.push(np.full(FRAME, 0.1, dtype=np.float32), True)
        streamer.poll()
    assert whisper.searched == []  # partial passes never search
    for _ in range(25):
        streamer.push(np.zeros(FRAME, dtype=np.float32), False)
    streamer.poll()
    # the same audio as the hinted pass, with its prompt
    assert whisper.searched == [(pytest.approx(2.0 + EXPECTED_TAIL_S, abs=0.001), HINT)]
    assert streamer.answer == answer
    final = streamer.end_turn()[-1]
    assert isinstance(final, Final)
    assert final.text == (answer or "It's for Mirror, Mirror, one, nine.")
    assert streamer.expected_heard == int(bool(answer))
    if answer:  # the beam's words, on the stream's clock, inside the audio searched
        assert all(w.end <= 2.0 + EXPECTED_TAIL_S + 1e-6 for w in final.words)


def test_a_reading_too_far_from_the_answer_is_not_searched() -> None:
    """A first group of digits at a pause ("It's 4, 0, 0, 1." of eight): no beam reading
    is that far from greedy's, so the search is not paid for."""
    from asr.streaming import Expectation

    whisper = _Searching(["It's 4, 0, 0, 1, 9, 0, 1, 2."])
    streamer = StreamingTranscriber(whisper)
    streamer.expect(Expectation(HINT, _eight_digits, near=lambda text: False))
    for _ in range(100):
        streamer.push(np.full(FRAME, 0.1, dtype=np.float32), True)
        streamer.poll()
    for _ in range(25):
        streamer.push(np.zeros(FRAME, dtype=np.float32), False)
    streamer.poll()
    assert whisper.searched == [] and streamer.answer == ""


# ---- the streamer on real audio and the real model ---------------------------------------


class CountingTranscriber:
    """The real transcriber, counting passes and the longest audio it was given."""

    def __init__(self, inner: Transcriber) -> None:
        self.inner = inner
        self.name = inner.name
        self.passes = 0
        self.longest_s = 0.0
        self.fallbacks = 0  # passes that allowed temperature fallback

    def transcribe(self, samples: np.ndarray, prompt: str | None = None,
                   fallback: bool = True) -> Transcript:
        self.passes += 1
        self.longest_s = max(self.longest_s, len(samples) / SPEECH_RATE)
        self.fallbacks += fallback
        return self.inner.transcribe(samples, prompt, fallback)


@dataclass
class Streamed:
    """A turn pushed frame by frame: every event, the Final, and the audio's span."""

    events: list[StreamEvent]
    final: Final
    start: float
    end: float

    @property
    def confirmed(self) -> list[Confirmed]:
        return [e for e in self.events if isinstance(e, Confirmed)]

    @property
    def partials(self) -> list[Partial]:
        return [e for e in self.events if isinstance(e, Partial)]

    @property
    def confirmed_text(self) -> str:
        return join_words([w for e in self.confirmed for w in e.words])


def stream(streamer: StreamingTranscriber, samples: np.ndarray,
           voiced: list[bool] | None = None) -> Streamed:
    """Push 20 ms frames and poll after each, as a loop that keeps up with the audio."""
    start = streamer.time
    events: list[StreamEvent] = []
    for k, i in enumerate(range(0, len(samples), FRAME)):
        streamer.push(samples[i:i + FRAME], None if voiced is None else voiced[k])
        events += streamer.poll()
    end = streamer.time
    closing = streamer.end_turn()
    assert isinstance(closing[-1], Final)
    return Streamed(events + closing[:-1], closing[-1], start, end)


@pytest.fixture(scope="module")
def transcriber(models_dir) -> CountingTranscriber:
    return CountingTranscriber(create_transcriber(AsrConfig(), ModelStore(models_dir)))


@pytest.fixture(scope="module")
def first_turn() -> tuple[np.ndarray, str]:
    """The first caller turn of an example call, cut where the endpointer fires."""
    audio = load_audio(EXAMPLES / "billing_question.flac")
    span = split_turns(audio, VadConfig())[0]
    reference = (EXAMPLES / "billing_question.txt").read_text().splitlines()[0]
    return audio.slice(span.start, span.endpoint), reference


@pytest.fixture(scope="module")
def streamed(transcriber: CountingTranscriber, first_turn) -> Streamed:
    streamer = StreamingTranscriber(transcriber)
    streamer.push(np.zeros(SPEECH_RATE // 2, dtype=np.float32))
    streamer.reset()  # an unfinished turn is dropped; the clock goes on
    return stream(streamer, first_turn[0])


def test_partials_arrive_while_the_caller_speaks(streamed: Streamed) -> None:
    assert len([p for p in streamed.partials if p.text]) >= 4
    assert streamed.partials[0].time < streamed.start + 1.0


def test_confirmed_words_only_grow_and_never_change(streamed: Streamed) -> None:
    confirmed: list[Word] = []
    for event in streamed.events:
        if isinstance(event, Confirmed):
            confirmed += event.words
        elif isinstance(event, Partial):
            assert event.confirmed == join_words(confirmed)
            assert event.text.startswith(event.confirmed)
    assert len(streamed.confirmed) >= 3


def test_confirmed_word_times_lie_inside_the_audio_in_order(streamed: Streamed) -> None:
    words = [w for e in streamed.confirmed for w in e.words]
    assert streamed.start == pytest.approx(0.5)  # after the reset turn, on the same clock
    assert all(streamed.start <= w.start <= w.end <= streamed.end for w in words)
    assert all(a.start <= b.start for a, b in zip(words, words[1:], strict=False))
    assert all(e.time >= e.words[-1].end for e in streamed.confirmed)


def test_the_final_transcript_matches_the_reference(streamed: Streamed, first_turn) -> None:
    reference = first_turn[1]
    assert wer(reference, streamed.final.text) < 0.15, streamed.final.text
    assert wer(reference, streamed.confirmed_text) < 0.15, streamed.confirmed_text
    assert streamed.final.start == pytest.approx(streamed.start)


def test_with_vad_hints_the_final_pass_runs_in_the_pause(transcriber: CountingTranscriber,
                                                          first_turn) -> None:
    samples, reference = first_turn
    vad = WebRtcVad(frame_ms=20)
    voiced = [len(samples[i:i + FRAME]) == FRAME and vad.is_speech(samples[i:i + FRAME],
                                                                   SPEECH_RATE)
              for i in range(0, len(samples), FRAME)]
    streamer = StreamingTranscriber(transcriber)
    for k, i in enumerate(range(0, len(samples), FRAME)):
        streamer.push(samples[i:i + FRAME], voiced[k])
        streamer.poll()
    before = transcriber.passes
    final = streamer.end_turn()[-1]
    assert transcriber.passes == before  # the Final costs no pass after the endpoint
    assert isinstance(final, Final) and wer(reference, final.text) < 0.15, final.text


def test_silence_produces_no_words(transcriber: CountingTranscriber) -> None:
    streamer = StreamingTranscriber(transcriber)
    before = transcriber.passes
    streamed = stream(streamer, np.zeros(3 * SPEECH_RATE, dtype=np.float32))
    assert transcriber.passes > before  # Whisper did listen, without hints
    assert all(not p.text for p in streamed.partials) and not streamed.confirmed
    assert streamed.final.words == ()


def test_a_long_turn_keeps_the_buffer_bounded_and_the_text_right(
        transcriber: CountingTranscriber) -> None:
    names = [JFK, SHARED_DATA / "asr/dev/lhotse/2412-153948-0000.flac"]
    references = {JFK: "And so my fellow Americans, ask not what your country can do for you, "
                       "ask what you can do for your country."}
    tsv = SHARED_DATA / "asr/dev/lhotse/transcripts.tsv"
    references[names[1]] = tsv.read_text().split("\t", 1)[1].strip()
    gap = np.zeros(SPEECH_RATE // 2, dtype=np.float32)
    samples = np.concatenate([part for name in names for part in (load_audio(name).samples, gap)])
    assert len(samples) / SPEECH_RATE > 20
    options = StreamingOptions()
    streamer = StreamingTranscriber(transcriber, options)
    transcriber.longest_s = 0.0
    streamed = stream(streamer, samples)
    assert streamer.trims >= 1
    assert transcriber.longest_s <= options.max_buffer_s + options.min_chunk_s + 0.1
    reference = " ".join(references[name] for name in names)
    assert wer(reference, streamed.confirmed_text) < 0.15, streamed.confirmed_text
    assert wer(reference, streamed.final.text) < 0.15, streamed.final.text


def test_silence_the_vad_vouches_for_costs_no_pass_and_stays_bounded(
        transcriber: CountingTranscriber) -> None:
    options = StreamingOptions()
    streamer = StreamingTranscriber(transcriber, options)
    before = transcriber.passes
    silence = np.zeros(FRAME, dtype=np.float32)
    for _ in range(int(40 / 0.02)):
        streamer.push(silence, voiced=False)
        assert streamer.poll() == []
    assert streamer.buffer_s <= options.max_buffer_s
    assert streamer.end_turn()[-1].words == ()
    assert transcriber.passes == before


def test_reset_at_puts_the_next_turn_on_the_calls_clock(
        transcriber: CountingTranscriber) -> None:
    streamer = StreamingTranscriber(transcriber)
    streamer.push(np.zeros(4 * FRAME, dtype=np.int16))
    streamer.reset(at=12.5)
    streamer.push(np.zeros(FRAME, dtype=np.int16), voiced=False)
    final = streamer.end_turn()[-1]
    assert isinstance(final, Final) and (final.start, final.end) == (12.5, 12.52)


def test_streaming_passes_never_wait_for_a_temperature_fallback(
        transcriber: CountingTranscriber, first_turn) -> None:
    counting = CountingTranscriber(transcriber.inner)
    stream(StreamingTranscriber(counting), first_turn[0])
    assert counting.passes > 0
    assert counting.fallbacks == 0
