"""Everything that moves through a live call, as small immutable frames.

Times are seconds on the call's line clock: 0 is the first sample the caller
sent, and the assistant's play-out runs on the same clock, so one subtraction
gives any latency. Keep this vocabulary small: a new stage should reuse these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Frame:
    pass


# ---- the caller ----------------------------------------------------------------------

@dataclass(frozen=True)
class CallerAudio16k(Frame):
    """20-30 ms of the caller at 16 kHz; ``voiced`` is the VAD's verdict (echo removed)."""

    samples: np.ndarray
    t: float  # line time of the first sample
    voiced: bool


@dataclass(frozen=True)
class SpeechStarted(Frame):
    t: float  # where the speech began (VAD onset, padded back)
    during_reply: bool  # the assistant was speaking: a possible barge-in


@dataclass(frozen=True)
class SpeechPaused(Frame):
    """The caller stopped talking; the turn may or may not be over (the endpointer decides)."""

    t: float  # end of the last voiced frame


@dataclass(frozen=True)
class TurnEnded(Frame):
    """The endpointer fired: the caller's turn is over."""

    start: float
    speech_end: float  # end of the last voiced frame
    t: float  # when the endpoint fired


@dataclass(frozen=True)
class KeypadDigits(Frame):
    digits: str
    t: float


@dataclass(frozen=True)
class Transcript(Frame):
    """What the caller said. ``final`` once the turn ended; otherwise a partial that may change."""

    text: str
    final: bool
    t: float  # line time when this text was known
    stable: bool = False  # a partial taken in a pause: likely the final text (early start)
    words: tuple[Any, ...] = ()
    confidence: float = 0.0
    start: float = 0.0
    speech_end: float = 0.0
    endpoint: float = 0.0
    audio: np.ndarray | None = None  # the turn's audio (16 kHz), on the final only
    redactions: dict[str, int] = field(default_factory=dict)  # card numbers removed: counts


# ---- the assistant ----------------------------------------------------------------------

@dataclass(frozen=True)
class ReplyText(Frame):
    """One sentence (or a first clause) of a reply, ready to speak."""

    turn: int
    index: int  # position in the reply
    text: str
    last: bool  # the reply's final piece


@dataclass(frozen=True)
class ReplyAudio(Frame):
    turn: int
    index: int
    text: str
    samples: np.ndarray  # float32 at the line rate
    last: bool


# ---- control -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Interruption(Frame):
    """The caller talks over the reply: stop playing now (within one frame of the decision)."""

    t: float


@dataclass(frozen=True)
class InterruptionCancelled(Frame):
    """It was a backchannel or a noise: play the rest of the reply after all."""

    t: float


@dataclass(frozen=True)
class Hangup(Frame):
    t: float
    reason: str = "caller hung up"


@dataclass(frozen=True)
class EndCall(Frame):
    """The assistant ends the call once its last words are heard (goodbye, transfer)."""

    reason: str
    transfer: bool = False
    summary: dict[str, Any] = field(default_factory=dict)
