"""The shared inference pool: what a caller waits for goes before what refines a guess."""

import asyncio
import time

import pytest

from voice.pool import BACKGROUND, URGENT, InferencePool


@pytest.fixture
def pool():
    pool = InferencePool(workers=2)
    yield pool
    pool.close()


def test_urgent_work_queued_behind_running_passes_goes_before_older_partials(
        pool: InferencePool) -> None:
    order: list[str] = []

    def job(name: str, seconds: float = 0.0) -> None:
        order.append(name)
        time.sleep(seconds)

    async def scenario() -> None:
        busy = [asyncio.ensure_future(pool.run(URGENT, job, f"busy-{i}", 0.2))
                for i in range(2)]
        await asyncio.sleep(0.05)  # both workers taken
        waiting = [asyncio.ensure_future(pool.run(BACKGROUND, job, "partial")),
                   asyncio.ensure_future(pool.run(URGENT, job, "final"))]
        await asyncio.gather(*busy, *waiting)

    asyncio.run(scenario())
    assert order.index("final") < order.index("partial"), order


def test_a_cancelled_partial_pass_is_dropped_not_run(pool: InferencePool) -> None:
    ran: list[str] = []

    async def scenario() -> None:
        busy = [asyncio.ensure_future(pool.run(URGENT, time.sleep, 0.2)) for _ in range(2)]
        await asyncio.sleep(0.05)
        stale = asyncio.ensure_future(pool.run(BACKGROUND, ran.append, "stale"))
        await asyncio.sleep(0.01)
        stale.cancel()  # the guess went stale before a worker was free
        await asyncio.gather(*busy)
        await pool.run(BACKGROUND, ran.append, "fresh")

    asyncio.run(scenario())
    assert ran == ["fresh"]


def test_an_error_in_a_job_reaches_the_call_that_sent_it(pool: InferencePool) -> None:
    def broken() -> None:
        raise ValueError("model failed")

    with pytest.raises(ValueError, match="model failed"):
        asyncio.run(pool.run(URGENT, broken))
    assert asyncio.run(pool.run(BACKGROUND, lambda: "still serving")) == "still serving"
