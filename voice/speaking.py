"""Stages 4 and 5: speech synthesis, then play-out on the line.

Synthesis runs sentence by sentence in the shared pool, so the first
sentence plays while the next is made. The player queues audio on the
transport, writes it into the echo reference at the time it will be heard,
and knows, from what the transport has played, how much of each sentence the
caller heard: a barge-in pauses it (keeping the rest, in case it was only a
backchannel), and the turn manager cuts the history to what was heard.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import numpy as np

from asr.audio import resample
from voice.context import CallContext
from voice.echo import RATE as ECHO_RATE
from voice.frames import (
    EndCall,
    Frame,
    Hangup,
    Interruption,
    InterruptionCancelled,
    ReplyAudio,
    ReplyText,
)
from voice.pipeline import Stage
from voice.pool import URGENT

log = logging.getLogger(__name__)


def synthesize_for_line(ctx: CallContext, text: str) -> np.ndarray:
    """Speech for ``text`` at the line's rate (8 kHz telephony, 16/24/48 kHz clients);
    a sentence said before in this process comes from the assistant's cache."""
    audio = ctx.assistant.speech(text)
    return resample(audio, ctx.assistant.synthesizer.sample_rate, ctx.line_rate)


class Speech(Stage):
    name = "speech"

    def __init__(self, ctx: CallContext) -> None:
        super().__init__()
        self.ctx = ctx

    def _synthesize(self, text: str) -> np.ndarray:
        return synthesize_for_line(self.ctx, text)

    async def process(self, frame: Frame) -> None:
        if isinstance(frame, ReplyText):
            if frame.turn != self.ctx.current_turn or self.ctx.ended:
                return  # a reply the caller has already talked over, or hung up on
            audio = self.ctx.speech_ready.pop(frame.text, None)  # made by an early start
            if audio is None:
                audio = await self.ctx.pool.run(URGENT, self._synthesize, frame.text)
            if frame.turn != self.ctx.current_turn:
                return
            await self.push(ReplyAudio(frame.turn, frame.index, frame.text, audio, frame.last))
        else:
            await self.push(frame)


@dataclass
class _Piece:
    turn: int
    text: str
    start: int  # position of its first sample in everything queued on the line
    samples: np.ndarray
    heard: int = 0  # samples of it the caller has heard
    closed: bool = False  # cut by a barge-in: ``text`` and ``samples`` are what was heard


class Playback(Stage):
    name = "playback"

    def __init__(self, ctx: CallContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.queued = 0  # samples handed to the transport since the call began
        self.dropped = 0  # samples removed from the transport's queue by barge-ins
        self._pieces: list[_Piece] = []
        self._paused: list[_Piece] = []  # the rest of a reply paused by a possible barge-in
        self._ending: asyncio.Task[None] | None = None
        self.gaps = 0  # the line ran dry between two sentences of one reply

    @property
    def heard_samples(self) -> int:
        """Samples the caller has heard: the transport's count, on our queue's positions."""
        return round(self.ctx.transport.played_s * self.ctx.line_rate) + self.dropped

    async def process(self, frame: Frame) -> None:
        ctx = self.ctx
        if isinstance(frame, ReplyAudio):
            if frame.turn != ctx.current_turn:
                return
            if frame.index > 0 and ctx.transport.pending_s == 0 and not ctx.interrupted:
                self.gaps += 1  # the previous sentence ran out before this one was ready
            if ctx.interrupted:
                self._paused.append(self._piece(frame))
            else:
                self._play(self._piece(frame))
            if frame.last:
                asyncio.ensure_future(self._reply_done(frame.turn))
        elif isinstance(frame, Interruption):
            self._pause()
        elif isinstance(frame, InterruptionCancelled):
            paused, self._paused = self._paused, []
            for piece in paused:
                self._play(piece)
        elif isinstance(frame, EndCall):
            self._ending = asyncio.ensure_future(self._end(frame))
        elif isinstance(frame, Hangup):
            self._pause()
            self._account(final=True)

    def _piece(self, frame: ReplyAudio) -> _Piece:
        return _Piece(frame.turn, frame.text, -1, frame.samples)

    def _play(self, piece: _Piece) -> None:
        ctx = self.ctx
        if not len(piece.samples):
            return
        piece.start = self.queued
        self.queued += len(piece.samples)
        self._pieces.append(piece)
        ctx.reference.write(ctx.clock.now() + ctx.transport.pending_s,
                            resample(piece.samples, ctx.line_rate, ECHO_RATE))
        ctx.transport.play(piece.samples)

    def _pause(self) -> None:
        """Stop the line now; keep what was not heard, in case the reply resumes."""
        ctx = self.ctx
        pending = ctx.transport.pending_s
        ctx.transport.clear()
        ctx.reference.erase_from(ctx.clock.now())
        self._account()
        rest: list[_Piece] = []
        for piece in self._pieces:
            if piece.closed or piece.heard >= len(piece.samples):
                continue
            words = piece.text.split()
            k = int(len(words) * piece.heard / len(piece.samples))
            rest.append(_Piece(piece.turn, " ".join(words[k:]), -1, piece.samples[piece.heard:]))
            piece.text, piece.samples = " ".join(words[:k]), piece.samples[:piece.heard]
            piece.closed = True
        self.dropped += round(pending * ctx.line_rate)
        self._paused = rest + self._paused

    def _account(self, final: bool = False) -> None:
        """Write down, per turn, what the caller heard (text and audio)."""
        heard = self.heard_samples
        by_turn: dict[int, tuple[list[str], list[np.ndarray]]] = {}
        for piece in self._pieces:
            if not piece.closed:
                piece.heard = min(len(piece.samples), max(0, heard - piece.start))
            if piece.heard <= 0:
                continue
            texts, audio = by_turn.setdefault(piece.turn, ([], []))
            audio.append(piece.samples[:piece.heard])
            if piece.closed or piece.heard >= len(piece.samples):
                texts.append(piece.text)
            else:
                words = piece.text.split()
                texts.append(" ".join(words[:int(len(words) * piece.heard / len(piece.samples))]))
        for turn, (texts, audio) in by_turn.items():
            entry = self.ctx.turn(turn)
            if entry is not None:
                entry.heard = " ".join(t for t in texts if t)
                entry.reply_audio = audio

    async def _reply_done(self, turn: int) -> None:
        while self.ctx.transport.pending_s > 0 or self.ctx.interrupted:
            await asyncio.sleep(0.02)
            if turn != self.ctx.current_turn or self.ctx.ended:
                return
        self._account()
        if turn == self.ctx.current_turn:
            self.ctx.reply_active = False

    async def _end(self, frame: EndCall) -> None:
        ctx = self.ctx
        await asyncio.sleep(0.05)
        while (ctx.reply_active or ctx.transport.pending_s > 0) and not ctx.ended:
            await asyncio.sleep(0.02)
        self._account(final=True)
        if frame.transfer:
            target = ctx.config.telephony.transfer_target
            try:
                await ctx.transport.transfer(target, frame.summary)
            except Exception:
                log.exception("call %s: transfer to %r failed", ctx.call_id, target)
        ctx.ended = ctx.ended or frame.reason
        await ctx.transport.close()
        await self.broadcast(Hangup(ctx.clock.now(), frame.reason))

    def finish(self) -> None:
        self._account(final=True)
