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
from typing import Any

import numpy as np

from asr.streaming import Final, Partial, StreamingOptions, StreamingTranscriber
from asr.transcript import Word
from voice.context import CallContext
from voice.frames import CallerAudio16k, Frame, SpeechStarted, Transcript, TurnEnded
from voice.pipeline import Stage
from voice.pool import BACKGROUND, URGENT

log = logging.getLogger(__name__)
SPEECH_RATE = 16_000
PREROLL_S = 1.0
MAX_LAG_S = 0.15  # skip partial passes while the stage is this far behind the line


def scrub_cards(text: str, words: tuple[Word, ...], audio: np.ndarray, audio_t: float
                ) -> tuple[str, tuple[Word, ...], np.ndarray, dict[str, Any]]:
    """Card numbers out of the turn before anything downstream sees or stores it (PCI DSS)."""
    from training.data.pci import scrub_turn

    rows = [{"word": w.text, "start": w.start - audio_t, "end": w.end - audio_t,
             "probability": w.probability} for w in words]
    scrubbed = scrub_turn(text, rows, "", audio, SPEECH_RATE)
    if not scrubbed.changed:
        return text, words, audio, {}
    kept = tuple(Word(float(r["start"]) + audio_t, float(r["end"]) + audio_t, str(r["word"]),
                      float(r.get("probability", 0.0))) for r in scrubbed.words)
    return scrubbed.transcript, kept, scrubbed.samples, {"counts": scrubbed.counts,
                                                          "ranges": scrubbed.ranges}


class Hearing(Stage):
    name = "hearing"

    def __init__(self, ctx: CallContext, options: StreamingOptions | None = None) -> None:
        super().__init__()
        self.ctx = ctx
        self.stream = StreamingTranscriber(ctx.assistant.transcriber, options)
        self._preroll: deque[CallerAudio16k] = deque()
        self._in_turn = False
        self._turn_audio: list[np.ndarray] = []
        self._text = ""  # the turn's latest partial
        self._audio_t = 0.0  # line time of the turn audio's first sample

    async def process(self, frame: Frame) -> None:
        if isinstance(frame, CallerAudio16k):
            if not self._in_turn:
                self._preroll.append(frame)
                while self._preroll and frame.t - self._preroll[0].t > PREROLL_S:
                    self._preroll.popleft()
                return
            await self._hear(frame)
        elif isinstance(frame, SpeechStarted):
            self._in_turn = True
            self._turn_audio = []
            self._text = ""
            if self.stream.transcriber is not self.ctx.assistant.transcriber:
                # a promoted ASR model took over between turns
                self.stream = StreamingTranscriber(self.ctx.assistant.transcriber,
                                                   self.stream.options)
            kept = [f for f in self._preroll if f.t + len(f.samples) / 16_000 > frame.t]
            self._audio_t = kept[0].t if kept else frame.t
            self.stream.reset(self._audio_t)
            for old in kept:
                self._feed(old)
            self._preroll.clear()
            await self.push(frame)
        elif isinstance(frame, TurnEnded) and self._in_turn:
            self._in_turn = False
            started = time.monotonic()
            events = await self.ctx.pool.run(URGENT, self.stream.end_turn)
            log.debug("final pass: %.0f ms", (time.monotonic() - started) * 1000)
            final = next(e for e in events if isinstance(e, Final))
            audio = (np.concatenate(self._turn_audio) if self._turn_audio
                     else np.zeros(0, dtype=np.float32))
            text, words, audio, redactions = scrub_cards(final.text, final.words, audio,
                                                         self._audio_t)
            if redactions:
                self.ctx.redacted.extend((self._audio_t + a, self._audio_t + b)
                                         for a, b in redactions["ranges"])
            confidence = float(np.mean([w.probability for w in words])) if words else 0.0
            self.ctx.latest_partial, self.ctx.latest_partial_t = "", 0.0
            await self.push(frame)
            await self.push(Transcript(text, True, self.ctx.clock.now(), words=words,
                                       confidence=confidence, start=frame.start,
                                       speech_end=frame.speech_end, endpoint=frame.t,
                                       audio=audio, redactions=redactions.get("counts", {})))
        else:
            await self.push(frame)

    def _feed(self, frame: CallerAudio16k) -> None:
        self.stream.push(frame.samples, frame.voiced)
        self._turn_audio.append(frame.samples)

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
        self.ctx.latest_partial, self.ctx.latest_partial_t = self._text, self.stream.time
        self.ctx.partial_stable = pause
        if changed or pause:
            await self.push(Transcript(self._text, False, self.ctx.clock.now(), stable=pause))
