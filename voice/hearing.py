"""Stage 2: streaming Whisper over each caller turn: partials while they speak, a final at the end.

Passes run in the shared inference pool: partials at background priority (a
refinement nobody waits on), the final at urgent priority (the caller is
waiting for the reply). The partial taken in a pause is marked stable: it is
what the endpointer judges the words by, and what an early start works from.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from asr.streaming import Final, Partial, StreamingOptions, StreamingTranscriber
from asr.transcript import Word
from voice.context import CallContext
from voice.frames import (
    CallerAudio16k,
    Frame,
    Hangup,
    SpeechStarted,
    Transcript,
    TurnEnded,
)
from voice.listening import sounds_finished
from voice.pipeline import Stage
from voice.pool import BACKGROUND, URGENT

log = logging.getLogger(__name__)
SPEECH_RATE = 16_000
PREROLL_S = 1.0
MAX_LAG_S = 0.15  # skip partial passes while the stage is this far behind the line


def scrub_cards(text: str, words: tuple[Word, ...], audio: np.ndarray, audio_t: float,
                digits_asked: bool = False
                ) -> tuple[str, tuple[Word, ...], np.ndarray, dict[str, Any]]:
    """Card numbers out of the turn before anything downstream sees or stores it (PCI DSS)."""
    from training.data.pci import scrub_turn

    rows = [{"word": w.text, "start": w.start - audio_t, "end": w.end - audio_t,
             "probability": w.probability} for w in words]
    scrubbed = scrub_turn(text, rows, "", audio, SPEECH_RATE, digits_asked=digits_asked)
    if not scrubbed.changed:
        return text, words, audio, {}
    kept = tuple(Word(float(r["start"]) + audio_t, float(r["end"]) + audio_t, str(r["word"]),
                      float(r.get("probability", 0.0))) for r in scrubbed.words)
    return scrubbed.transcript, kept, scrubbed.samples, {"counts": scrubbed.counts,
                                                          "ranges": scrubbed.ranges}


@dataclass
class _Held:
    """A turn ended by the endpointer whose final words say the caller is not done."""

    ended: TurnEnded
    final: Final
    until: float  # line time: released then unless the caller goes on
    gap: list[CallerAudio16k] = field(default_factory=list)  # the line's audio since


class Hearing(Stage):
    name = "hearing"

    def __init__(self, ctx: CallContext, options: StreamingOptions | None = None) -> None:
        super().__init__()
        self.ctx = ctx
        self.stream = StreamingTranscriber(ctx.assistant.transcriber, options)
        self._preroll: deque[CallerAudio16k] = deque()
        self._in_turn = False
        self._turn_frames: list[CallerAudio16k] = []
        self._held: _Held | None = None  # a turn whose words say the caller is not done
        self._start: float | None = None  # where a turn held open and gone on with began
        self._text = ""  # the turn's latest partial
        self._audio_t = 0.0  # line time of the turn audio's first sample

    async def process(self, frame: Frame) -> None:
        if isinstance(frame, CallerAudio16k):
            if self._held is not None and frame.t >= self._held.until:
                await self._release()
            if self._held is not None:
                self._held.gap.append(frame)
                return
            if not self._in_turn:
                self._preroll.append(frame)
                while self._preroll and frame.t - self._preroll[0].t > PREROLL_S:
                    self._preroll.popleft()
                return
            await self._hear(frame)
        elif isinstance(frame, SpeechStarted):
            self._in_turn = True
            if self.stream.transcriber is not self.ctx.assistant.transcriber:
                # a promoted ASR model took over between turns
                self.stream = StreamingTranscriber(self.ctx.assistant.transcriber,
                                                   self.stream.options)
            if self._held is not None:  # the caller goes on with the turn held open
                await self._resume()
                return
            self._turn_frames = []
            self._text = ""
            self._start = None
            self.stream.expect(self.ctx.expectation)
            kept = [f for f in self._preroll if f.t + len(f.samples) / 16_000 > frame.t]
            self._audio_t = kept[0].t if kept else frame.t
            self.stream.reset(self._audio_t)
            for old in kept:
                self._feed(old)
            self._preroll.clear()
            await self.push(frame)
        elif isinstance(frame, TurnEnded) and self._in_turn:
            self._in_turn = False
            await self._end_turn(frame)
        elif isinstance(frame, Hangup):
            if self._held is not None:  # what the caller said before hanging up still counts
                await self._release()
            await self.push(frame)
        else:
            await self.push(frame)

    async def _end_turn(self, ended: TurnEnded) -> None:
        if self._start is not None:  # a turn held open and gone on with
            ended = replace(ended, start=self._start)
        started = time.monotonic()
        events = await self.ctx.pool.run(URGENT, self.stream.end_turn)
        log.debug("final pass: %.0f ms", (time.monotonic() - started) * 1000)
        final = next(e for e in events if isinstance(e, Final))
        self.ctx.latest_partial, self.ctx.latest_partial_t = "", 0.0
        # The endpointer judged the turn by words a busy machine may not have had yet; the
        # final pass has them all. Words that say the caller is not done ("my account number
        # is 4 0 0 1", eight digits asked for) hold the turn open as long as the endpointer
        # would have waited, had it known: the caller may go on after the pause.
        until = ended.speech_end + self.ctx.config.vad.end_silence_incomplete_ms / 1000
        if ended.t < until and sounds_finished(final.text, self.ctx.expected_digits,
                                               self.ctx.digit_lengths) is False:
            log.debug("final %r sounds unfinished: held until %.2f", final.text, until)
            self._held = _Held(ended, final, until)
            return
        await self._send(ended, final)

    async def _release(self) -> None:
        """Nobody went on with the held turn: it ends where the endpointer would have ended it."""
        held, self._held = self._held, None
        assert held is not None
        self._preroll.extend(f for f in held.gap if held.gap[-1].t - f.t <= PREROLL_S)
        await self._send(replace(held.ended, t=max(held.ended.t, held.until)), held.final)

    async def _resume(self) -> None:
        """The caller speaks again within the held turn: one turn, heard from its start."""
        held, self._held = self._held, None
        assert held is not None
        self._start = held.ended.start
        self.stream.reset(self._audio_t)
        frames, self._turn_frames = self._turn_frames + held.gap, []
        for old in frames:
            self._feed(old)

    async def _send(self, ended: TurnEnded, final: Final) -> None:
        audio = (np.concatenate([f.samples for f in self._turn_frames]) if self._turn_frames
                 else np.zeros(0, dtype=np.float32))
        text, words, audio, redactions = scrub_cards(final.text, final.words, audio,
                                                     self._audio_t,
                                                     self.ctx.expected_digits > 0)
        if redactions:
            self.ctx.redacted.extend((self._audio_t + a, self._audio_t + b)
                                     for a, b in redactions["ranges"])
        confidence = float(np.mean([w.probability for w in words])) if words else 0.0
        await self.push(ended)
        await self.push(Transcript(text, True, self.ctx.clock.now(), words=words,
                                   confidence=confidence, start=ended.start,
                                   speech_end=ended.speech_end, endpoint=ended.t,
                                   audio=audio, redactions=redactions.get("counts", {})))

    def _feed(self, frame: CallerAudio16k) -> None:
        self.stream.push(frame.samples, frame.voiced)
        self._turn_frames.append(frame)

    async def _hear(self, frame: CallerAudio16k) -> None:
        self._feed(frame)
        behind = self.ctx.clock.now() - (frame.t + len(frame.samples) / 16_000)
        idle = self.ctx.pool.idle  # nothing else to run: a pause pass may start sooner
        if not self.stream.due(idle):
            self.stream.poll()  # no pass: at most a trim, cheap enough for this thread
            return
        if behind > MAX_LAG_S:
            return  # busy machine, audio queued up: catch up first (the final is never skipped)
        pause = self.stream.paused(idle)
        started = time.monotonic()
        self.ctx.pause_pass_pending = pause
        try:
            events = await self.ctx.pool.run(URGENT if pause else BACKGROUND, self.stream.poll,
                                             idle)
        finally:
            self.ctx.pause_pass_pending = False
        log.debug("pass (%s) over %.1f s of audio: %.0f ms, %.0f ms behind the line",
                  "pause" if pause else "partial", self.stream.buffer_s,
                  (time.monotonic() - started) * 1000, behind * 1000)
        if not self._in_turn:
            return
        changed = False
        for event in events:
            if isinstance(event, Partial):
                self._text, changed = event.text, True
        # Even an unchanged text is news: it now covers the audio up to the pause.
        self.ctx.latest_partial = self.stream.answer or self._text
        self.ctx.latest_partial_t = self.stream.time
        self.ctx.partial_stable = pause
        if changed or pause:
            await self.push(Transcript(self._text, False, self.ctx.clock.now(), stable=pause))
