"""What every streamed line shares: the caller's event inbox, a real-time frame clock, PCM.

AudioSocket, Twilio Media Streams and raw-PCM audio forks differ in framing,
but each has a reader that turns the peer's messages into ``LineEvent``s and a
sender that drains the ``Playout`` on a 20 ms clock. The inbox makes "the line
is gone" sticky (every ``receive`` after the close says so again, as the
``Transport`` contract requires); the clock schedules ticks against absolute
times so that scheduling jitter never accumulates into drift.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np

from voice.transport import CallerAudio, KeyPress, LineClosed, LineEvent

FRAME_S = 0.020  # one telephony frame, the pace of every sender here
MAX_BURST_FRAMES = 5  # a sender more than this far behind skips ahead instead of bursting


class EventInbox:
    """The caller's events in arrival order; after the first ``LineClosed`` only that one."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[LineEvent] = asyncio.Queue()
        self.closed: LineClosed | None = None

    def audio(self, samples: np.ndarray) -> None:
        if self.closed is None and len(samples):
            self._queue.put_nowait(CallerAudio(samples))

    def key(self, digit: str) -> None:
        if self.closed is None:
            self._queue.put_nowait(KeyPress(digit))

    def close(self, reason: str) -> None:
        """Mark the line gone; the first reason wins (a hang-up is not later an error)."""
        if self.closed is None:
            self.closed = LineClosed(reason)
            self._queue.put_nowait(self.closed)

    async def receive(self) -> LineEvent:
        if self.closed is not None and self._queue.empty():
            return self.closed
        return await self._queue.get()


class FrameClock:
    """Ticks every ``period`` seconds on an absolute schedule (tick n is due at start + n*period).

    ``asyncio.sleep(0.02)`` in a loop drifts late by the loop's latency every
    time; the caller would hear replies slowly stretch and the peer's jitter
    buffer underrun. A stall longer than ``MAX_BURST_FRAMES`` ticks (a busy
    event loop) restarts the schedule rather than flooding the peer.
    """

    def __init__(self, period: float = FRAME_S) -> None:
        self.period = period
        self._start = time.monotonic()
        self._tick = 0

    async def wait(self) -> None:
        self._tick += 1
        due = self._start + self._tick * self.period
        now = time.monotonic()
        if now - due > MAX_BURST_FRAMES * self.period:
            self._start, self._tick = now, 0
            return
        if due > now:
            await asyncio.sleep(due - now)


def pcm16_to_float(data: bytes | bytearray | memoryview) -> np.ndarray:
    """Signed 16-bit little-endian PCM to float32 in [-1, 1)."""
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


def float_to_pcm16(samples: np.ndarray) -> bytes:
    """Float samples in [-1, 1] to signed 16-bit little-endian PCM bytes."""
    return (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()
