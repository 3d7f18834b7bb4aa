"""What the stages of one call share: the clock, the line, the models, and the call's log."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from voice.echo import ReferenceTrack
from voice.pipeline import LineClock
from voice.transport import Transport
from voicedesk.config import Config

if TYPE_CHECKING:
    from asr.streaming import Expectation
    from voice.assistant import Assistant
    from voice.pool import InferencePool


@dataclass
class TurnLog:
    """One caller turn and the reply it got, as stored with the call."""

    index: int
    start: float  # caller speech, line time
    speech_end: float
    endpoint: float
    transcript: str = ""
    words: tuple[Any, ...] = ()
    confidence: float = 0.0
    caller_audio: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # 16 kHz
    dtmf: str = ""
    intent: str = ""
    intent_confidence: float = 0.0
    slots: dict[str, str] = field(default_factory=dict)
    verified: bool = False
    handoff: bool = False
    tickets: list[dict[str, Any]] = field(default_factory=list)
    reply: str = ""  # everything the assistant meant to say
    heard: str = ""  # what the caller actually heard of it
    interrupted: bool = False
    reply_audio: list[np.ndarray] = field(default_factory=list)  # line rate, as played
    early_start: bool = False  # the reply was prepared before the endpoint fired
    redactions: dict[str, int] = field(default_factory=dict)  # removed before storage
    latency_ms: dict[str, float] = field(default_factory=dict)


@dataclass(eq=False)  # hashable by identity: the service keeps a set of live calls
class CallContext:
    call_id: str
    transport: Transport
    assistant: Assistant
    pool: InferencePool
    config: Config
    clock: LineClock = field(default_factory=LineClock)
    reference: ReferenceTrack = field(default_factory=ReferenceTrack)
    turns: list[TurnLog] = field(default_factory=list)
    current_turn: int = -1  # the reply being spoken; older replies are dropped on sight
    reply_active: bool = False  # a reply is being prepared or played
    interrupted: bool = False  # playback paused by a possible barge-in
    latest_partial: str = ""
    latest_partial_t: float = 0.0
    partial_stable: bool = False
    pause_pass_pending: bool = False  # a pass over the caller's pause is queued or running
    expected_digits: int = 0  # how many digits the assistant just asked for (0: none)
    digit_lengths: frozenset[int] = frozenset()  # the digits slots' lengths, while asked for
    expectation: Expectation | None = None  # what the answer looks like, for the ASR
    redacted: list[tuple[float, float]] = field(default_factory=list)  # silenced, line time
    speech_ready: dict[str, np.ndarray] = field(default_factory=dict)  # text -> line audio
    greeting: str = ""
    ended: str = ""  # why the call ended, once it has
    barge_ins: int = 0
    false_barge_ins: int = 0

    @property
    def line_rate(self) -> int:
        return self.transport.info.sample_rate

    def speaking(self) -> bool:
        """The assistant is talking (or about to): speech from the caller now is a barge-in."""
        return self.reply_active or self.transport.pending_s > 0

    def turn(self, index: int) -> TurnLog | None:
        return self.turns[index] if 0 <= index < len(self.turns) else None
