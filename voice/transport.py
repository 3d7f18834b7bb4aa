"""A caller's line, whatever carries it: SIP/RTP, AudioSocket, a WebSocket, a file, memory.

The call loop sees only this narrow interface: events from the caller (audio,
keypad digits, the line closing) and a play-out queue that the transport drains
at real-time pace, so the loop always knows how much of a reply the caller has
actually heard (what barge-in needs to trim the conversation history).
Audio crosses the interface as float32 mono in [-1, 1] at the line's rate;
codecs, packet framing and pacing belong to the transport.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class CallInfo:
    call_id: str  # the gateway's id: SIP Call-ID, AudioSocket UUID, Twilio streamSid, ...
    channel: str  # sip, audiosocket, websocket, file, memory, mic
    caller_id: str = ""  # the caller's number where the line says it, for the CRM lookup
    sample_rate: int = 8000  # the line's rate, both directions
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CallerAudio:
    samples: np.ndarray  # float32 mono at CallInfo.sample_rate, any length (20 ms typical)


@dataclass(frozen=True)
class KeyPress:
    digit: str  # one of 0-9 * # A-D (DTMF)


@dataclass(frozen=True)
class LineClosed:
    reason: str = "hangup"  # hangup, error, timeout, transferred


LineEvent = CallerAudio | KeyPress | LineClosed

DTMF_DIGITS = frozenset("0123456789*#ABCD")


class Transport(Protocol):
    info: CallInfo

    async def receive(self) -> LineEvent:
        """The caller's next event; ``LineClosed`` once the line is gone (and every call after)."""
        ...

    def play(self, samples: np.ndarray) -> None:
        """Queue assistant audio (float32, line rate) behind what is queued; returns at once."""
        ...

    def clear(self) -> None:
        """Drop every queued sample not yet played: the caller is talking over us."""
        ...

    @property
    def played_s(self) -> float:
        """Seconds of assistant audio the caller has heard since the call began."""
        ...

    @property
    def pending_s(self) -> float:
        """Seconds of assistant audio queued and not yet played."""
        ...

    async def transfer(self, target: str, summary: dict[str, Any]) -> bool:
        """Hand the call to a person at ``target``, with the summary for the agent."""
        ...

    async def close(self) -> None:
        """Hang up from our side (idempotent)."""
        ...


class Playout:
    """The queue behind ``Transport.play``: transports take fixed frames from it on a clock.

    A transport ticks every frame (20 ms for RTP) and sends ``take(n)``: queued
    audio, padded with silence when the queue runs dry, so the line never
    starves. ``played`` counts only real assistant samples, which is what the
    caller heard; ``clear`` drops the rest at once.
    """

    def __init__(self) -> None:
        self._chunks: deque[np.ndarray] = deque()
        self._offset = 0  # samples of _chunks[0] already taken
        self.queued = 0  # samples waiting
        self.played = 0  # assistant samples taken since the start

    def put(self, samples: np.ndarray) -> None:
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        if len(samples):
            self._chunks.append(samples)
            self.queued += len(samples)

    def clear(self) -> int:
        """Drop what is queued; return how many samples were dropped."""
        dropped = self.queued
        self._chunks.clear()
        self._offset = 0
        self.queued = 0
        return dropped

    def take(self, count: int, pad: bool = True) -> np.ndarray:
        """The next ``count`` samples to send: queued audio, then silence if ``pad``."""
        out: list[np.ndarray] = []
        need = count
        while need and self._chunks:
            head = self._chunks[0]
            part = head[self._offset:self._offset + need]
            out.append(part)
            need -= len(part)
            self._offset += len(part)
            if self._offset >= len(head):
                self._chunks.popleft()
                self._offset = 0
        got = count - need
        self.queued -= got
        self.played += got
        if need and pad:
            out.append(np.zeros(need, dtype=np.float32))
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)
