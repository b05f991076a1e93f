"""Stopping background tasks so that a stop always ends, and a task that ignores its
cancellation is seen.

``task.cancel(); await task`` waits forever when the task swallows the cancellation and goes on.
It was seen: a Redis bus's reaper, cancelled during its redis-py calls, was found back in its
``asyncio.sleep`` with the cancellation spent (first with ``asyncio.TaskGroup``; again with
redis-py 8.2, cancelled inside a pipeline's ``execute``, caught by the warning below; where
exactly redis-py spends it was not pinned down). ``asyncio.wait_for`` can do the same on
Python 3.11 (cpython#86296): livehub uses ``asyncio.timeout``. Background loops here stop on
an event as well as on ``CancelledError`` (so such a loop still ends), and cleanup
(``aclose``, ``rollback``) is shielded rather than interrupted.

:func:`cancel_and_wait` cancels once and waits; a task still running after ``grace`` seconds
ignored its cancellation: that is a bug, so its stack is logged at WARNING (the line starts with
:data:`IGNORED`; the test suite fails on it) and it is cancelled again, so that the stop still
ends. :func:`drain` lets work in flight finish within a budget first. :func:`run_together` is
a task group for loops meant to run until cancelled that stops them so.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections.abc import Collection, Coroutine
from typing import Any

log = logging.getLogger(__name__)

#: seconds a cancelled task has to end before it is taken to have ignored the cancellation
GRACE = 2.0
#: how the warning about such a task begins (tests/conftest.py fails a test on it)
IGNORED = "task ignored a cancellation"


def _stack(task: asyncio.Future[Any]) -> str:
    if not isinstance(task, asyncio.Task):
        return repr(task)
    out = io.StringIO()
    task.print_stack(file=out)
    return out.getvalue()


async def cancel_and_wait(
    *tasks: asyncio.Future[Any] | None, grace: float = GRACE, log_errors: bool = True
) -> None:
    """Cancel ``tasks`` (``None`` is skipped) and return once every one has ended. One still
    running ``grace`` seconds after its cancellation has its stack logged at WARNING and is
    cancelled again. A task that ended with an exception other than a cancellation has it
    logged (``log_errors``), not raised."""
    pending = {task for task in tasks if task is not None and not task.done()}
    finished = [task for task in tasks if task is not None and task.done()]
    for task in pending:
        task.cancel()
    warned: set[asyncio.Future[Any]] = set()
    while pending:
        done, pending = await asyncio.wait(pending, timeout=grace)
        finished.extend(done)
        for task in pending:
            if task not in warned:
                warned.add(task)
                log.warning("%s: %r; where it is now:\n%s", IGNORED, task, _stack(task))
            task.cancel()
    for task in finished:
        if log_errors and not task.cancelled() and task.exception() is not None:
            log.error("%r ended with an error", task, exc_info=task.exception())


async def drain(tasks: Collection[asyncio.Future[Any]], budget: float) -> int:
    """Let ``tasks`` (work in flight at a shutdown) finish within ``budget`` seconds, then
    cancel the rest (:func:`cancel_and_wait`); returns how many were cancelled."""
    if not tasks:
        return 0
    _, late = await asyncio.wait(tasks, timeout=budget)
    await cancel_and_wait(*late)
    return len(late)


async def pause(stop: asyncio.Event, seconds: float) -> bool:
    """A loop's sleep: ``seconds``, or less if ``stop`` is set; whether it is set (the loop
    ends then, whatever became of a cancellation)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()
    return stop.is_set()


async def run_together(
    *coros: Coroutine[Any, Any, None], name: str = "", stop: asyncio.Event | None = None
) -> None:
    """Run ``coros`` (loops meant to run until cancelled) as tasks, as a task group would:
    when one ends, the others are stopped with :func:`cancel_and_wait` and what it ended with
    is raised; when this call is cancelled, all of them are stopped so. ``stop``, the event the
    loops stop on, is set first."""
    tasks = [asyncio.create_task(coro, name=f"{name}-{n}") for n, coro in enumerate(coros)]
    try:
        done, running = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        if stop is not None:
            stop.set()
        # shielded: a second cancellation of this call must not leave the loops running
        await asyncio.shield(cancel_and_wait(*tasks, log_errors=False))
        raise
    if stop is not None:
        stop.set()
    await cancel_and_wait(*running, log_errors=False)
    for task in done:
        error = None if task.cancelled() else task.exception()
        if error is not None:
            raise error
