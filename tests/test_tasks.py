"""Stopping background tasks: a stop ends even when a task swallows its cancellation."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest

from livehub.tasks import IGNORED, cancel_and_wait, drain, run_together


async def _swallows_once(started: asyncio.Event) -> None:
    """Goes on after its first cancellation, as the Redis bus's reaper once did."""
    started.set()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.sleep(3600)
    await asyncio.sleep(3600)


@pytest.mark.allow_ignored_cancellation
async def test_a_task_that_swallows_a_cancellation_is_logged_with_its_stack_and_cancelled_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    started = asyncio.Event()
    task = asyncio.create_task(_swallows_once(started), name="swallower")
    await started.wait()
    async with asyncio.timeout(5):
        await cancel_and_wait(task, grace=0.05)
    assert task.cancelled()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    text = warnings[0].getMessage()
    assert text.startswith(IGNORED) and "swallower" in text
    assert "_swallows_once" in text  # where it was: its stack


async def test_a_task_that_ends_on_its_cancellation_is_waited_for_once_without_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cleaned = asyncio.Event()

    async def loop() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            await asyncio.shield(asyncio.sleep(0.1))  # cleanup longer than nothing
            cleaned.set()

    task = asyncio.create_task(loop())
    await asyncio.sleep(0)
    await cancel_and_wait(task, grace=1.0)
    assert task.cancelled() and cleaned.is_set()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.allow_ignored_cancellation
async def test_loops_run_together_stop_even_when_one_swallows_a_cancellation() -> None:
    started = asyncio.Event()
    task = asyncio.create_task(run_together(_swallows_once(started), asyncio.sleep(3600)))
    await started.wait()
    async with asyncio.timeout(10):
        await cancel_and_wait(task, grace=0.05)
    assert task.cancelled()
    # asyncio.TaskGroup (what the Redis bus used) cancels such a child once, then waits for it
    # however often it is cancelled itself
    started.clear()

    async def group() -> None:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(_swallows_once(started))

    stuck = asyncio.create_task(group())
    await started.wait()
    for _ in range(3):
        stuck.cancel()
        done, _ = await asyncio.wait({stuck}, timeout=0.05)
        assert not done
    for leftover in asyncio.all_tasks() - {asyncio.current_task(), stuck}:
        leftover.cancel()  # the swallowing child: cancelled twice, it ends and so does the group
    await asyncio.wait({stuck}, timeout=5)
    assert stuck.done()


async def test_when_one_loop_fails_the_others_stop_and_its_error_is_raised() -> None:
    stopped = asyncio.Event()

    async def fails() -> None:
        await asyncio.sleep(0.01)
        raise ConnectionError("gone")

    async def forever() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            stopped.set()

    with pytest.raises(ConnectionError, match="gone"):
        await asyncio.wait_for(run_together(fails(), forever()), 5)
    assert stopped.is_set()


async def test_an_error_a_task_ended_with_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def fails() -> None:
        raise RuntimeError("boom")

    failed = asyncio.create_task(fails())
    await asyncio.sleep(0)
    finished = asyncio.create_task(asyncio.sleep(0))
    with caplog.at_level(logging.ERROR, logger="livehub.tasks"):
        await cancel_and_wait(failed, finished, None)
    assert failed.done() and finished.done()
    assert [r.exc_info[1] for r in caplog.records if r.exc_info] == [failed.exception()]


async def test_drain_lets_work_finish_within_its_budget_and_cancels_the_rest() -> None:
    quick = asyncio.create_task(asyncio.sleep(0.01))
    stuck = asyncio.create_task(asyncio.sleep(60))
    assert await drain([quick, stuck], 0.5) == 1
    assert quick.done() and not quick.cancelled()
    assert stuck.cancelled()
    assert await drain([], 0.5) == 0
