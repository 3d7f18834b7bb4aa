"""One pool of inference threads shared by every call in the process, with priorities.

The models are loaded once and every call borrows them here. On a small
machine the pool is what keeps eight calls responsive: work that a caller is
waiting for (the final transcript, the intent, the first sentence of speech)
jumps ahead of work that only refines a guess (a partial transcript), and
partial passes that have gone stale can be dropped instead of run.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

URGENT = 0  # a caller is waiting on this: final transcript, understanding, speech
BACKGROUND = 1  # refinements: partial transcripts


@dataclass(order=True)
class _Job:
    priority: int
    seq: int
    fn: Callable[[], Any] = field(compare=False)
    future: asyncio.Future[Any] = field(compare=False)
    loop: asyncio.AbstractEventLoop = field(compare=False)


class InferencePool:
    def __init__(self, workers: int = 0) -> None:
        self.workers = workers or max(1, len(os.sched_getaffinity(0)))
        self._heap: list[_Job] = []
        self._cond = threading.Condition()
        self._seq = itertools.count()
        self._closed = False
        self.busy = 0
        self._threads = [threading.Thread(target=self._work, name=f"inference-{i}", daemon=True)
                         for i in range(self.workers)]
        for thread in self._threads:
            thread.start()

    @property
    def waiting(self) -> int:
        with self._cond:
            return len(self._heap)

    @property
    def idle(self) -> bool:
        """Nothing running and nothing queued: spare CPU for work that may be wasted."""
        with self._cond:
            return self.busy == 0 and not self._heap

    async def run(self, priority: int, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        job = _Job(priority, next(self._seq), lambda: fn(*args), future, loop)
        with self._cond:
            if self._closed:
                raise RuntimeError("the inference pool is closed")
            heapq.heappush(self._heap, job)
            self._cond.notify()
        return await future

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=5)

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._heap and not self._closed:
                    self._cond.wait()
                if self._closed and not self._heap:
                    return
                job = heapq.heappop(self._heap)
                self.busy += 1
            try:
                if job.future.cancelled():
                    continue  # the call went away or the guess went stale
                try:
                    result, error = job.fn(), None
                except BaseException as exc:  # handed to the awaiting call, not lost
                    result, error = None, exc
                # RuntimeError: the call's event loop is gone, so nobody is waiting.
                with contextlib.suppress(RuntimeError):
                    job.loop.call_soon_threadsafe(_settle, job.future, result, error)
            finally:
                with self._cond:
                    self.busy -= 1


def _settle(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if future.cancelled():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)
