"""A call as a list of stages that pass frames along, each in its own task.

Data frames go to the next stage, in order. Control frames (an interruption,
a hang-up) are broadcast to every stage at once through a priority inbox, so
a stage busy in a long Whisper pass cannot delay the player's stop. Observers
see every frame from the side: latency metrics and traces live there, not in
the stages.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from voice.frames import (
    EndCall,
    Frame,
    Hangup,
    Interruption,
    InterruptionCancelled,
)

log = logging.getLogger(__name__)

CONTROL = (Interruption, InterruptionCancelled, Hangup, EndCall)
BROADCAST_ONLY = (Interruption, InterruptionCancelled)

Push = Callable[[Frame], Awaitable[None]]


class LineClock:
    """Line time: seconds of caller audio received, advanced smoothly between packets."""

    def __init__(self) -> None:
        self._line = 0.0
        self._at = time.monotonic()

    def advance(self, line_t: float) -> None:
        self._line = line_t
        self._at = time.monotonic()

    def now(self) -> float:
        return self._line + (time.monotonic() - self._at)


class Stage:
    """One processor. Subclasses override ``process`` (and ``close`` to release things)."""

    name = "stage"

    def __init__(self) -> None:
        self.push: Push = _nowhere
        self.broadcast: Push = _nowhere

    async def process(self, frame: Frame) -> None:
        await self.push(frame)

    async def close(self) -> None:
        return None


class Observer(Protocol):
    def on_frame(self, stage: str, frame: Frame, t: float) -> None: ...


async def _nowhere(frame: Frame) -> None:
    return None


class Pipeline:
    def __init__(self, stages: list[Stage], clock: LineClock,
                 observers: list[Observer] | None = None) -> None:
        self.stages = stages
        self.clock = clock
        self.observers = observers or []
        self._data: list[asyncio.Queue[Frame | None]] = [asyncio.Queue() for _ in stages]
        self._control: list[asyncio.Queue[Frame]] = [asyncio.Queue() for _ in stages]
        self._wake: list[asyncio.Event] = [asyncio.Event() for _ in stages]
        self._tasks: list[asyncio.Task[None]] = []
        self.failure: BaseException | None = None
        for i, stage in enumerate(stages):
            stage.push = self._pusher(i)
            stage.broadcast = self.broadcast

    def _pusher(self, index: int) -> Push:
        async def push(frame: Frame) -> None:
            if isinstance(frame, BROADCAST_ONLY):
                return  # every stage has had it from the broadcast; passing it on repeats it
            self._observe(self.stages[index].name, frame)
            if index + 1 < len(self.stages):
                self._data[index + 1].put_nowait(frame)
                self._wake[index + 1].set()
        return push

    async def broadcast(self, frame: Frame) -> None:
        self._observe("control", frame)
        for queue, wake in zip(self._control, self._wake, strict=True):
            queue.put_nowait(frame)
            wake.set()

    async def feed(self, frame: Frame, ordered: bool = False) -> None:
        """Put a frame into the first stage (the line's audio, keypad digits).

        Control frames are broadcast at once, unless ``ordered``: then they queue behind
        the audio already fed (a hang-up after the caller's last words: those still count).
        """
        if isinstance(frame, CONTROL) and not ordered:
            await self.broadcast(frame)
            return
        self._observe("line", frame)
        self._data[0].put_nowait(frame)
        self._wake[0].set()

    def _observe(self, stage: str, frame: Frame) -> None:
        t = self.clock.now()
        for observer in self.observers:
            try:
                observer.on_frame(stage, frame, t)
            except Exception:  # an observer must never take a call down
                log.exception("observer %r failed on %s", observer, type(frame).__name__)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run(i), name=f"stage-{s.name}")
                       for i, s in enumerate(self.stages)]

    async def stop(self) -> None:
        for queue, wake in zip(self._data, self._wake, strict=True):
            queue.put_nowait(None)
            wake.set()
        done, pending = await asyncio.wait(self._tasks, timeout=20) if self._tasks else ((), ())
        for task in pending:
            task.cancel()
        for stage in self.stages:
            try:
                await stage.close()
            except Exception:
                log.exception("stage %s did not close cleanly", stage.name)

    def abort(self) -> None:
        """Stop every stage at once, mid-frame (the service is shutting down)."""
        for task in self._tasks:
            task.cancel()

    async def _run(self, index: int) -> None:
        stage = self.stages[index]
        data, control, wake = self._data[index], self._control[index], self._wake[index]
        try:
            while True:
                if control.empty() and data.empty():
                    wake.clear()
                    await wake.wait()
                if not control.empty():
                    await stage.process(control.get_nowait())
                    continue
                frame = data.get_nowait()
                if frame is None:
                    return
                await stage.process(frame)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            log.exception("stage %s failed", stage.name)
            self.failure = exc
            await self.broadcast(Hangup(self.clock.now(), f"internal error in {stage.name}"))
