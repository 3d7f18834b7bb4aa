"""Streaming speech recognition for a live call: Whisper re-run on a growing buffer.

The call loop pushes the caller's audio frame by frame and, whenever it has
a moment, asks for events. Every ``min_chunk_s`` of new audio the whole
buffer is transcribed again (with word times) and LocalAgreement-2
(``asr.agreement``) decides which words two passes agree on
(SPEECH.md, "Streaming Whisper"). Three small events come out:

* ``Partial``: what the caller seems to be saying now, confirmed words plus
  a tentative tail that the next pass may rewrite. For display and early
  barge-in decisions only.
* ``Confirmed``: words that will not change, with times on the stream's
  clock; concatenated they are the stream's transcript.
* ``Final``: on ``end_turn()``, the turn's transcript of record from one more
  pass over the turn, which may differ a little from the confirmed words
  because that pass hears the whole turn at once. Past a trim the pass
  covers the buffer and the words cut off before it are taken as confirmed:
  that keeps the final pass as cheap as any other, whatever the turn's length.

Audio: 16 kHz mono, as float32 in [-1, 1] (the project's format, see
``asr.audio``) or as int16 PCM (what telephone gateways deliver, as an array
or as little-endian bytes). Resample before streaming.

Time: the stream's clock counts the samples pushed since the transcriber was
made; ``end_turn`` and ``reset`` do not stop it. A loop that pushes only the
caller's turns (not the gaps between them) passes the turn's start time to
``reset(at=...)`` so word times stay on the call's clock.

Buffer: once it holds more than ``trim_s`` of audio, it is cut at the end of
the last Whisper segment whose words are all confirmed, and the cut-off
confirmed text becomes the prompt (whisper_streaming's segment trimming).
If no segment ends there by ``max_buffer_s``, it is cut at the last
confirmed word, but to no more than its last ``trim_s``, so the buffer stays
inside Whisper's 30 s window whatever the caller says (or plays).

The end of a turn: the endpointer fires only after ``vad.end_silence_ms`` of
silence, and one pass of even the tiny model takes longer on a small CPU than
a caller will wait for an answer. So the final pass is taken early when the
loop passes its voice-activity decision with each frame: ``pause_s`` of
unvoiced audio after speech starts a pass at once, and if no voiced frame
follows before ``end_turn()``, that pass *is* the final one and the Final
costs nothing more. Without the hints, ``end_turn()`` runs the pass itself.

Expected answers: after a question ("your eight-digit account number?") the
loop may say what the answer looks like (``expect``). A pass over a pause, and
the final pass, then hear the turn first with the expectation's prompt ("My
account number is 4, 0, 0, 7, ..."), over its audio up to just after the
last voiced frame; that reading stands if it looks like the answer ("It's 4,
0, 0, 1, 9, 0, 1, 2." where the plain pass heard "It's for Mirror, Mirror,
One, Nine, ..."). With ``quick_answers`` it is heard with the quick pass
first and again with the full window if that reading does not fit or ends
short of the speech. If it still does not fit, and the backend can search one window's
readings (``reading_that_fits``), the likeliest of a beam search's readings
over the same encoder pass that looks like the answer stands, with its word
times ("My bid is 7, 9, 2, 6." where greedy heard "... high in 26."); only
when none does is the pass run as any other. Other
passes never use the prompt: over the pause between two groups of digits it
tips Whisper into loops ("4, 0, 0, 0, 0, ..."), and cutting the audio at the
speech leaves it less silence to loop over.

Threads: the class is synchronous and not thread-safe. ``push`` is cheap
(copies a frame); ``poll`` and ``end_turn`` may run a Whisper pass (hundreds
of milliseconds on a CPU), so a real-time loop runs them in an executor and
pushes the frames that queued up meanwhile afterwards, never concurrently::

    for frame, voiced in queued_frames():
        stream.push(frame, voiced)
    events = await loop.run_in_executor(pool, stream.poll)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from asr.agreement import LocalAgreement, join_words
from asr.audio import SPEECH_RATE
from asr.transcriber import QuickTranscriber, SearchingTranscriber, Transcriber
from asr.transcript import Transcript, Word
from voicedesk.errors import AudioError, ConfigError


@dataclass(frozen=True)
class StreamingOptions:
    """When to re-run Whisper and how much audio to keep; defaults suit tiny.en on 2 cores."""

    # New audio between passes. A pass encodes at least 15 s (``asr.context_s``), so up
    # to about 13 s of buffer each pass costs about the same, and this sets the CPU cost
    # per call: a pass of tiny.en takes ~0.2 s on 2 cores (~0.35-0.45 s with the full
    # 30-s window), so 1 s keeps one call under a quarter of the machine.
    min_chunk_s: float = 1.0
    # Until a pass hears a word, passes come this often, so the caller's first words
    # show within a second of their onset even when the first pass hears too little
    # (0.6 s with the full 30-s window's 0.5-s passes; with 0.2-s passes 0.4 s puts the
    # first partial at 0.43 s median, 0.84 s p90, for 3 % more passes).
    first_chunk_s: float = 0.4
    # Unvoiced audio after speech that starts a pass at once (needs the loop's VAD
    # hints): it lands inside the endpointer's silence and becomes the final pass.
    pause_s: float = 0.2
    # The same, when the loop says the machine is idle (``poll(idle=True)``): a pass
    # that nothing else waits for may start sooner, and if the caller goes on, only
    # idle time was spent on it.
    idle_pause_s: float = 0.1
    # Trim at a finished segment once the buffer is longer than this.
    trim_s: float = 15.0
    # Trim at the last confirmed word, whatever the segments, past this.
    max_buffer_s: float = 25.0
    # Confirmed text that left the buffer, fed back as Whisper's prompt.
    prompt_chars: int = 200
    # Hear an expected answer (digits) with the quick pass first, and with the full
    # window only when that reading does not fit or stops short of the speech. Off: on
    # 24 live answers it settled in 0.34 s median against 0.55 s, but the short window
    # misread more ("For 0, 0, 1, 9, ..." for "4, 0, 0, 1, 9, ..."), and the fallbacks
    # and the endpointer's longer waits made 8 scripted calls slower (voice-to-voice
    # p50 / p95 940 / 3670 ms against 850 / 2300 ms; benchmarks/README.md).
    quick_answers: bool = False

    def __post_init__(self) -> None:
        for name in ("min_chunk_s", "first_chunk_s", "pause_s", "idle_pause_s", "trim_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"streaming {name} = {getattr(self, name)}; expected > 0 s")
        if not self.trim_s < self.max_buffer_s <= 28.0:
            raise ConfigError(
                f"streaming trim_s = {self.trim_s}, max_buffer_s = {self.max_buffer_s}; expected "
                f"trim_s < max_buffer_s <= 28 s, so a pass stays inside Whisper's 30 s window")
        if self.idle_pause_s > self.pause_s:
            raise ConfigError(f"streaming idle_pause_s = {self.idle_pause_s}; expected <= "
                              f"pause_s ({self.pause_s})")
        if self.prompt_chars < 0:
            raise ConfigError(f"streaming prompt_chars = {self.prompt_chars}; expected >= 0")


log = logging.getLogger(__name__)
# A pass for an expected answer hears this much of the turn after its last voiced frame.
EXPECTED_TAIL_S = 0.2
# Voiced audio after an answer's last word beyond which the reading missed words.
UNHEARD_TAIL_S = 0.8


@dataclass(frozen=True)
class Expectation:
    """What the answer to the question just asked looks like, and how Whisper should write it."""

    prompt: str  # an answer written as it should come out ("My PIN is 5, 8, 6, 0.")
    fits: Callable[[str], bool]  # does a reading look like the answer?
    # Is a reading that does not fit close enough to the answer for a beam search's
    # readings (which differ from greedy's by a word or two) to hold it? None: always search
    near: Callable[[str], bool] | None = None


@dataclass(frozen=True)
class Partial:
    """The current best guess: ``confirmed`` is a prefix of ``text`` that will not change."""

    text: str
    confirmed: str
    time: float  # stream time of the end of the audio this guess heard

    @property
    def tentative(self) -> str:
        """The end of ``text`` that the next pass may still rewrite."""
        return self.text[len(self.confirmed):].strip()


@dataclass(frozen=True)
class Confirmed:
    """Words the stream will not take back, in order, times on the stream's clock."""

    words: tuple[Word, ...]
    time: float  # stream time of the end of the audio that confirmed them

    @property
    def text(self) -> str:
        return join_words(self.words)


@dataclass(frozen=True)
class Final:
    """The turn's transcript of record, from one pass over the whole turn."""

    words: tuple[Word, ...]
    start: float  # the turn on the stream's clock
    end: float

    @property
    def text(self) -> str:
        return join_words(self.words)


StreamEvent = Partial | Confirmed | Final


def as_samples(frame: np.ndarray | bytes | bytearray | memoryview) -> np.ndarray:
    """A private float32 copy of a 16 kHz mono frame given as float, int16 or PCM bytes."""
    if isinstance(frame, bytes | bytearray | memoryview):
        if len(frame) % 2:
            raise AudioError(f"PCM frame of {len(frame)} bytes is not whole 16-bit samples; "
                             f"expected little-endian int16 at 16 kHz")
        frame = np.frombuffer(frame, dtype="<i2")
    samples = np.asarray(frame)
    if samples.ndim == 2 and 1 in samples.shape:
        samples = samples.reshape(-1)
    if samples.ndim != 1:
        raise AudioError(f"audio frame has shape {samples.shape}; expected mono samples "
                         f"(one dimension): pick the caller's channel before streaming")
    if samples.dtype == np.int16:
        return samples.astype(np.float32) / 32768.0
    if samples.dtype.kind == "f":
        return np.array(samples, dtype=np.float32)
    raise AudioError(f"audio frame has dtype {samples.dtype}; expected float32 in [-1, 1] or "
                     f"int16 PCM, 16 kHz mono")


@dataclass
class _Turn:
    """The audio of the turn in progress and what the last pass made of it."""

    start: int  # stream sample of the turn's first sample
    buffer_start: int  # stream sample of the buffer's first sample
    chunks: list[np.ndarray] = field(default_factory=list)
    size: int = 0  # samples in the buffer
    heard: int = 0  # buffer size at the last pass
    passes: int = 0
    speech_since_pass: bool = False  # voiced (or unknown) audio the last pass did not hear
    silence: int = 0  # trailing unvoiced samples, by the loop's hints
    heard_speech: bool = False  # any voiced (or unknown) audio in the turn at all
    heard_words: bool = False  # any pass of the turn produced words
    hypothesis: tuple[Word, ...] | None = None  # the last pass over the current buffer
    segment_ends: list[float] = field(default_factory=list)  # of that pass, stream time
    last_partial: str = ""
    answer: str = ""  # the whole turn as the last pass heard it, if that was the expected answer

    @property
    def end(self) -> int:
        return self.buffer_start + self.size

    def samples(self) -> np.ndarray:
        if len(self.chunks) > 1:
            self.chunks = [np.concatenate(self.chunks)]
        return self.chunks[0] if self.chunks else np.zeros(0, dtype=np.float32)

    def drop(self, count: int) -> None:
        """Forget the buffer's first ``count`` samples."""
        self.chunks = [self.samples()[count:]]
        self.size -= count
        self.heard = max(0, self.heard - count)
        self.buffer_start += count


class StreamingTranscriber:
    """One caller's turns, transcribed as they are spoken (see the module docstring)."""

    def __init__(self, transcriber: Transcriber,
                 options: StreamingOptions | None = None) -> None:
        self.transcriber = transcriber
        self.options = options or StreamingOptions()
        self.sample_rate = SPEECH_RATE
        self.agreement = LocalAgreement()
        self.trims = 0  # buffer trims since the transcriber was made, for monitoring
        self._clock = 0  # stream sample of the next pushed sample
        self._turn: _Turn | None = None
        self.expectation: Expectation | None = None
        self.expected_heard = 0  # settled passes that heard the expected answer, to monitor

    def expect(self, expectation: Expectation | None) -> None:
        """What the answer to the question just asked looks like (None: anything goes).
        Holds until changed; a loop sets it when it asks a question."""
        self.expectation = expectation

    # ---- the clock and the buffer, for callers and monitoring --------------------------

    @property
    def time(self) -> float:
        """Stream time at the end of the audio pushed so far."""
        return self._clock / self.sample_rate

    @property
    def buffer_s(self) -> float:
        """Seconds of audio a pass would transcribe now: bounded by the trimming."""
        return self._turn.size / self.sample_rate if self._turn else 0.0

    @property
    def answer(self) -> str:
        """The turn so far, if the last pass heard it as the expected answer (``expect``); else
        "". The agreement's partial keeps words earlier passes confirmed ("It's for
        Mirror, ..."); this is what the endpointer should judge the turn by."""
        return self._turn.answer if self._turn else ""

    @property
    def passes(self) -> int:
        """Whisper passes over the current turn so far."""
        return self._turn.passes if self._turn else 0

    # ---- the three calls of the loop ----------------------------------------------------

    def push(self, frame: np.ndarray | bytes | bytearray | memoryview,
             voiced: bool | None = None) -> None:
        """Add audio to the turn; cheap. ``voiced`` is the loop's VAD decision, if it has one."""
        samples = as_samples(frame)
        if len(samples) == 0:
            return
        turn = self._turn
        if turn is None:
            turn = self._turn = _Turn(start=self._clock, buffer_start=self._clock)
        turn.chunks.append(samples)
        turn.size += len(samples)
        self._clock += len(samples)
        if voiced is False:
            turn.silence += len(samples)
        else:  # voiced, or unknown and so possibly speech
            turn.silence = 0
            turn.speech_since_pass = turn.heard_speech = True

    def due(self, idle: bool = False) -> bool:
        """Would ``poll`` run a Whisper pass now? Cheap: lets a loop keep passes off its thread."""
        return self._turn is not None and self._due(self._turn, idle)

    def poll(self, idle: bool = False) -> list[StreamEvent]:
        """Run a Whisper pass if one is due; return what it changed (often nothing).

        ``idle``: the machine has nothing else to do, so a pause pass may start
        after ``idle_pause_s`` instead of ``pause_s``.
        """
        turn = self._turn
        if turn is None:
            return []
        if not self._due(turn, idle):
            if turn.size > self.options.max_buffer_s * self.sample_rate:
                self._trim(turn)  # a long stretch the loop's VAD called silence
            return []
        words = self._transcribe(turn, settled=self.paused(idle))
        events: list[StreamEvent] = []
        confirmed = self.agreement.insert(words)
        now = turn.end / self.sample_rate
        if confirmed:
            events.append(Confirmed(tuple(confirmed), now))
        confirmed_words = self.agreement.confirmed
        partial = Partial(join_words(confirmed_words + self.agreement.tentative),
                          join_words(confirmed_words), now)
        if partial.text != turn.last_partial:
            turn.last_partial = partial.text
            events.append(partial)
        self._trim(turn)
        return events

    def end_turn(self) -> list[StreamEvent]:
        """The endpointer fired: close the turn with its Final and get ready for the next.

        Returns a last ``Confirmed`` for the words no second pass could agree on
        (whisper_streaming's ``finish``), if any, then the ``Final``.
        """
        turn = self._turn
        now = self.time
        if turn is None:
            return [Final((), now, now)]
        if not turn.heard_speech:
            words: tuple[Word, ...] = ()  # the loop's VAD heard no speech in the whole turn
        elif turn.hypothesis is not None and not turn.speech_since_pass:
            words = turn.hypothesis  # the pause pass heard everything: it is the final pass
        else:
            words = self._transcribe(turn, settled=True)
        before = self.agreement.confirmed_before(turn.buffer_start / self.sample_rate)
        tail = self.agreement.close(words)
        events: list[StreamEvent] = []
        if tail:
            events.append(Confirmed(tuple(tail), now))
        events.append(Final(before + words, turn.start / self.sample_rate, now))
        self.reset()
        return events

    def reset(self, at: float | None = None) -> None:
        """Drop the turn in progress without a Final (a false start, a hang-up).

        ``at``: the stream time of the next pushed sample, for a loop that does
        not push the audio between turns; by default the clock just goes on.
        """
        if at is not None:
            if at < 0:
                raise ValueError(f"reset(at={at}): stream time cannot be negative")
            self._clock = round(at * self.sample_rate)
        self._turn = None
        self.agreement.reset()

    # ---- inside a pass -------------------------------------------------------------------

    def paused(self, idle: bool = False) -> bool:
        """Has the caller been quiet long enough for a pause pass?"""
        pause = self.options.idle_pause_s if idle else self.options.pause_s
        return self._turn is not None and self._turn.silence / self.sample_rate >= pause

    def _due(self, turn: _Turn, idle: bool = False) -> bool:
        if not turn.speech_since_pass:
            return False  # nothing the last pass did not hear, or only silence
        new_s = (turn.size - turn.heard) / self.sample_rate
        if self.paused(idle):
            return True  # a pause: this pass may well be the turn's final one
        chunk = self.options.min_chunk_s if turn.heard_words else self.options.first_chunk_s
        return new_s >= chunk

    def _transcribe(self, turn: _Turn, settled: bool = False) -> tuple[Word, ...]:
        """One pass over the whole buffer; word times moved onto the stream's clock.

        ``settled``: a pass over a pause or the final pass. With an expected answer
        it is heard with the expectation's prompt first (see the module docstring),
        and as any other pass only if that reading does not fit."""
        heard: tuple[tuple[Word, ...], list[float]] | None = None
        expected = self.expectation if settled else None
        if expected is not None:
            # up to just after the last voiced frame: no pause for the prompt to loop over
            speech = turn.size - turn.silence + round(EXPECTED_TAIL_S * self.sample_rate)
            size = min(turn.size, speech)
            heard, fits = None, False
            if self.options.quick_answers and isinstance(self.transcriber, QuickTranscriber):
                heard = self._pass(turn, size, expected.prompt, quick=True)
                fits = self._answers(turn, heard[0], expected)
                log.debug("quick pass, %s: %r", "the expected answer" if fits else
                          "not the expected answer", join_words(heard[0]))
            if not fits:
                heard = self._pass(turn, size, expected.prompt)
                fits = self._answers(turn, heard[0], expected)
                log.debug("%s: %r", "the expected answer" if fits else "not the expected answer",
                          join_words(heard[0]))
            if not fits and (expected.near is None or expected.near(join_words(heard[0]))):
                searched = self._search(turn, size, expected)
                if searched is not None:
                    heard, fits = searched, True
                    log.debug("a fitting reading of the beam: %r", join_words(heard[0]))
            if fits:
                self.expected_heard += 1
                before = self.agreement.confirmed_before(turn.buffer_start / self.sample_rate)
                turn.answer = join_words(before + heard[0])
            else:
                heard = None
        if heard is None:
            turn.answer = ""
            # No temperature fallback: a fallback pass costs 3-4 normal ones and made the
            # first partial's p90 1.9 s; without it 0.86 s, with the same WER.
            heard = self._pass(turn, turn.size,
                               self.agreement.prompt(self.options.prompt_chars) or None,
                               quick=True)
        words, turn.segment_ends = heard
        turn.passes += 1
        turn.heard = turn.size
        turn.speech_since_pass = False
        turn.hypothesis = words
        turn.heard_words = turn.heard_words or bool(words)
        return words

    def _answers(self, turn: _Turn, words: tuple[Word, ...], expected: Expectation) -> bool:
        """Does a reading look like the expected answer, and reach the end of the speech?

        A reading whose last word ends well before the last voiced frame left words
        out (a PIN dropped after the account number, heard once in three short-window
        passes), however well the words it kept fit."""
        if not words or not expected.fits(join_words(words)):
            return False
        speech_end = (turn.end - turn.silence) / self.sample_rate
        return words[-1].end >= speech_end - UNHEARD_TAIL_S

    def _pass(self, turn: _Turn, size: int, prompt: str | None, quick: bool = False
              ) -> tuple[tuple[Word, ...], list[float]]:
        """Whisper over the buffer's first ``size`` samples: the words and the segments'
        ends, on the stream's clock. ``quick``: the backend's cheaper pass where it has
        one (faster-whisper's shorter encoder window). An expected answer (digits, where
        a short window loops and drops more) falls back to the full one (``_answers``)."""
        samples = turn.samples()[:size]
        if quick and isinstance(self.transcriber, QuickTranscriber):
            transcript = self.transcriber.quick_pass(samples, prompt)
        else:
            transcript = self.transcriber.transcribe(samples, prompt, fallback=False)
        return self._on_clock(turn, size, transcript)

    def _search(self, turn: _Turn, size: int, expected: Expectation
                ) -> tuple[tuple[Word, ...], list[float]] | None:
        """The likeliest beam reading of the first ``size`` samples that fits the expected
        answer, as ``_pass`` gives it; None if none does or the backend cannot search."""
        if not isinstance(self.transcriber, SearchingTranscriber):
            return None
        transcript = self.transcriber.reading_that_fits(turn.samples()[:size], expected.prompt,
                                                        expected.fits)
        if transcript is None or not transcript.words:
            return None
        return self._on_clock(turn, size, transcript)

    def _on_clock(self, turn: _Turn, size: int, transcript: Transcript
                  ) -> tuple[tuple[Word, ...], list[float]]:
        rate = self.sample_rate
        offset = turn.buffer_start / rate
        words = tuple(_shift(w, offset, offset + size / rate) for w in transcript.words)
        return words, [offset + float(s.end) for s in transcript.segments]

    def _trim(self, turn: _Turn) -> None:
        """Keep the buffer short: cut at a finished, confirmed segment (see module docstring)."""
        size_s = turn.size / self.sample_rate
        if size_s <= self.options.trim_s:
            return
        start_s = turn.buffer_start / self.sample_rate
        confirmed_end = self.agreement.last_confirmed_end
        # The last segment may still grow, so only the ends of earlier ones qualify.
        ends = [e for e in turn.segment_ends[:-1] if start_s < e <= confirmed_end]
        if ends:
            cut = max(ends)
        elif size_s > self.options.max_buffer_s:
            # Nothing to cut at cleanly: keep what is unconfirmed, but never more than
            # trim_s of it; audio no two passes agreed on for that long is lost.
            cut = max(confirmed_end, turn.end / self.sample_rate - self.options.trim_s)
        else:
            return
        count = round(cut * self.sample_rate) - turn.buffer_start
        if count <= 0:
            return
        turn.drop(count)
        turn.hypothesis = None  # it covered audio that is gone; the final needs a new pass
        self.agreement.trim(turn.buffer_start / self.sample_rate)
        self.trims += 1


def _shift(word: Word, offset: float, end: float) -> Word:
    """A word on the stream's clock, kept inside the audio heard.

    Whisper sees the buffer padded to 30 s and may place a last word's end a
    little past the audio; a time that was never heard would mislead the loop.
    """
    stop = min(offset + float(word.end), end)
    return Word(min(offset + float(word.start), stop), stop, word.text, float(word.probability))
