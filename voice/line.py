"""An in-memory phone line with a scripted caller, played at real-time pace.

This is the transport tests and benchmarks use: a caller that speaks recorded
turns on a 20 ms clock, waits for the assistant's reply (or talks over it, or
hangs up in the middle of it), with optional background noise and the
assistant's own voice echoed back into the caller's microphone. Both sides
are recorded sample-exactly on the line clock, so latencies are measured
from the audio itself: from the real end of the caller's speech to the first
sample of the reply.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from voice.transport import CallerAudio, CallInfo, KeyPress, LineClosed, LineEvent, Playout

FRAME_S = 0.02


@dataclass
class CallerTurn:
    """One thing the caller says (``audio`` at the line rate) or keys in (``dtmf``)."""

    audio: np.ndarray | None = None
    dtmf: str = ""
    text: str = ""  # what the audio says, for checks and reports
    # When to start: after the assistant's reply has been silent for ``gap_s``, or
    # ``barge_in_s`` seconds after the assistant started its reply (talking over it).
    gap_s: float = 0.6
    barge_in_s: float | None = None
    speech_end_s: float | None = None  # real end of speech inside ``audio`` (default: measured)


@dataclass
class CallerScript:
    turns: list[CallerTurn]
    hangup_after_reply: bool = True  # after the last turn, hang up once the reply is heard
    hangup_mid_reply_s: float | None = None  # or this many seconds into the last reply
    max_duration_s: float = 120.0
    reply_timeout_s: float = 12.0  # go on with the next turn if no reply comes
    noise: np.ndarray | None = None  # looped under everything the caller sends
    noise_level: float = 0.0  # linear gain on the noise
    echo_delay_s: float = 0.0  # the assistant's voice back into the caller's line
    echo_gain: float = 0.0


@dataclass
class TurnTiming:
    start: float  # line time the caller began this turn
    speech_end: float  # line time the caller's speech really ended
    reply_start: float | None = None  # first assistant sample after speech_end


@dataclass
class LineRecording:
    rate: int
    caller: np.ndarray  # what the caller said (clean)
    line_in: np.ndarray  # what the assistant received (noise and echo included)
    assistant: np.ndarray  # what the assistant played
    turns: list[TurnTiming] = field(default_factory=list)
    late_frames: int = 0  # clock ticks that ran late by more than a frame (machine overload)

    def stereo(self) -> np.ndarray:
        n = max(len(self.caller), len(self.assistant))
        out = np.zeros((n, 2), dtype=np.float32)
        out[: len(self.caller), 0] = self.caller
        out[: len(self.assistant), 1] = self.assistant
        return out


def speech_end(samples: np.ndarray, rate: int, threshold: float = 0.02) -> float:
    """Where speech really ends in a clean clip: the last 10 ms window above the threshold."""
    hop = max(1, rate // 100)
    n = len(samples) // hop
    if n == 0:
        return 0.0
    rms = np.sqrt(np.mean(samples[: n * hop].reshape(n, hop) ** 2, axis=1))
    loud = np.nonzero(rms > threshold * max(1e-9, float(rms.max())) * 5)[0]
    return float((loud[-1] + 1) * hop / rate) if len(loud) else 0.0


class MemoryLine:
    """A ``Transport`` whose far end is a ``CallerScript``."""

    def __init__(self, script: CallerScript, rate: int = 16_000, call_id: str = "memory",
                 caller_id: str = "", channel: str = "memory") -> None:
        self.info = CallInfo(call_id, channel, caller_id, rate)
        self.script = script
        self.rate = rate
        self.frame = round(rate * FRAME_S)
        self._playout = Playout()
        self._events: asyncio.Queue[LineEvent] = asyncio.Queue()
        self._caller: list[np.ndarray] = []
        self._line_in: list[np.ndarray] = []
        self._assistant: list[np.ndarray] = []
        self._closed = False
        self._task: asyncio.Task[None] | None = None
        self.transfers: list[tuple[str, dict[str, Any]]] = []
        self.timings: list[TurnTiming] = []
        self.late_frames = 0
        self.hung_up_by = ""  # "caller" or "assistant"

    # ---- Transport ------------------------------------------------------------------
    async def receive(self) -> LineEvent:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"line-{self.info.call_id}")
        return await self._events.get()

    def play(self, samples: np.ndarray) -> None:
        if not self._closed:
            self._playout.put(samples)

    def clear(self) -> None:
        self._playout.clear()

    @property
    def played_s(self) -> float:
        return self._playout.played / self.rate

    @property
    def pending_s(self) -> float:
        return self._playout.queued / self.rate

    async def transfer(self, target: str, summary: dict[str, Any]) -> bool:
        self.transfers.append((target, summary))
        return True

    async def close(self) -> None:
        if not self.hung_up_by:
            self.hung_up_by = "assistant"
        self._closed = True

    # ---- the caller's side ----------------------------------------------------------
    def _assistant_since(self, start: int, count: int) -> np.ndarray:
        """``count`` samples of the assistant's track from sample ``start`` (zeros outside)."""
        out = np.zeros(count, dtype=np.float32)
        lo, hi = max(0, start), min(start + count, len(self._assistant) * self.frame)
        if hi <= lo:
            return out
        first, last = lo // self.frame, (hi - 1) // self.frame
        track = np.concatenate(self._assistant[first:last + 1])
        base = first * self.frame
        out[lo - start:hi - start] = track[lo - base:hi - base]
        return out

    def recording(self) -> LineRecording:
        def cat(parts: list[np.ndarray]) -> np.ndarray:
            return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
        return LineRecording(self.rate, cat(self._caller), cat(self._line_in),
                             cat(self._assistant), self.timings, self.late_frames)

    async def wait_closed(self) -> None:
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        script, frame, rate = self.script, self.frame, self.rate
        echo_delay = round(script.echo_delay_s * rate)
        start = time.monotonic()
        tick = 0
        turn_i = 0
        speaking: np.ndarray | None = None  # rest of the clip being spoken
        heard_reply = False  # the assistant spoke since the caller's last turn
        silent_for = 0.0  # the assistant has been quiet this long
        reply_began: float | None = None
        waiting_since = 0.0
        done_speaking = False
        while not self._closed:
            now_line = tick * FRAME_S
            # 1. the assistant's frame, as played
            out = self._playout.take(frame)
            had_audio = self._playout.played > 0 and bool(np.any(out))
            self._assistant.append(out)
            if had_audio:
                if reply_began is None and heard_reply is False:
                    reply_began = now_line
                heard_reply = True
                silent_for = 0.0
                for timing in self.timings:
                    if timing.reply_start is None and now_line + FRAME_S > timing.speech_end:
                        first = np.nonzero(out)[0]
                        timing.reply_start = now_line + float(first[0]) / rate
            else:
                silent_for += FRAME_S
            # 2. the caller decides what to do
            if speaking is None and not done_speaking:
                if turn_i < len(script.turns):
                    turn = script.turns[turn_i]
                    go = False
                    if turn.barge_in_s is not None:
                        go = reply_began is not None and now_line - reply_began >= turn.barge_in_s
                    elif heard_reply and silent_for >= turn.gap_s and self.pending_s == 0:
                        go = True
                    elif turn_i == 0 and now_line >= script.reply_timeout_s:
                        go = True  # no greeting came
                    elif turn_i > 0 and now_line - waiting_since >= script.reply_timeout_s:
                        go = True  # no reply came
                    if go:
                        turn_i += 1
                        if turn.dtmf:
                            heard_reply, reply_began = False, None
                            for digit in turn.dtmf:
                                await self._events.put(KeyPress(digit))
                            waiting_since = now_line
                        if turn.audio is not None and len(turn.audio):
                            speaking = np.asarray(turn.audio, dtype=np.float32)
                            end = (turn.speech_end_s if turn.speech_end_s is not None
                                   else speech_end(speaking, rate))
                            self.timings.append(TurnTiming(now_line, now_line + end))
                else:
                    done_speaking = True
                    waiting_since = now_line
            if done_speaking:
                over = False
                if script.hangup_mid_reply_s is not None:
                    over = reply_began is not None and \
                        now_line - reply_began >= script.hangup_mid_reply_s
                elif script.hangup_after_reply:
                    over = heard_reply and silent_for >= 1.0 and self.pending_s == 0
                over = over or now_line - waiting_since >= script.reply_timeout_s
                if over:
                    self.hung_up_by = self.hung_up_by or "caller"
                    break
            if now_line >= script.max_duration_s:
                self.hung_up_by = self.hung_up_by or "caller"
                break
            # 3. the caller's frame, with noise and echo, onto the line
            said = np.zeros(frame, dtype=np.float32)
            if speaking is not None:
                part = speaking[:frame]
                said[: len(part)] = part
                speaking = speaking[frame:] if len(speaking) > frame else None
                if speaking is None:  # done: what the assistant says from now is the reply
                    waiting_since = now_line
                    heard_reply, reply_began = False, None
            self._caller.append(said)
            sent = said.copy()
            if script.noise is not None and script.noise_level > 0:
                n0 = (tick * frame) % len(script.noise)
                idx = (np.arange(frame) + n0) % len(script.noise)
                sent += script.noise[idx] * script.noise_level
            if script.echo_gain > 0 and echo_delay >= 0:
                # what the assistant played `echo_delay` samples before this frame
                played = self._assistant_since(tick * frame - echo_delay, frame)
                sent += played * script.echo_gain
            self._line_in.append(sent)
            await self._events.put(CallerAudio(sent))
            tick += 1
            # 4. real time: sleep until the next tick, never drifting
            delay = start + tick * FRAME_S - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -FRAME_S:
                self.late_frames += 1
        self._closed = True
        await self._events.put(LineClosed("hangup" if self.hung_up_by == "caller"
                                          else "closed"))
