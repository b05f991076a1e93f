"""Stopping background tasks so that a stop always ends.

``task.cancel(); await task`` waits forever when the task swallows the cancellation and goes on.
It was seen: a Redis bus's reaper, cancelled by its session's ``asyncio.TaskGroup``, was found
back in its ``asyncio.sleep`` with the cancellation spent (somewhere in its redis-py calls on
Python 3.11; where exactly was not pinned down). The task group, which cancels a child once and
then waits for it, and the node's ``close()`` waited for good (CI hung in that test's
teardown).

:func:`cancel_and_wait` sends the cancellation again until the task has ended;
:func:`run_together` is a task group for loops meant to run until cancelled that stops them so.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)

#: seconds between two cancellations of a task that has not ended yet
RESEND = 0.5


async def cancel_and_wait(
    *tasks: asyncio.Future[Any] | None, resend: float = RESEND, log_errors: bool = True
) -> None:
    """Cancel ``tasks`` (``None`` is skipped) and return once every one has ended; the
    cancellation is sent again every ``resend`` seconds to those still running. A task that
    ended with an exception other than a cancellation has it logged (``log_errors``), not
    raised."""
    pending = {task for task in tasks if task is not None and not task.done()}
    finished = [task for task in tasks if task is not None and task.done()]
    again = False
    while pending:
        for task in pending:
            task.cancel()
        done, pending = await asyncio.wait(pending, timeout=resend)
        finished.extend(done)
        if pending and not again:
            again = True
            log.info("%d task(s) still running after a cancellation; again", len(pending))
    for task in finished:
        if log_errors and not task.cancelled() and task.exception() is not None:
            log.error("%r ended with an error", task, exc_info=task.exception())


async def run_together(*coros: Coroutine[Any, Any, None], name: str = "") -> None:
    """Run ``coros`` (loops meant to run until cancelled) as tasks, as a task group would:
    when one ends, the others are stopped with :func:`cancel_and_wait` and what it ended with
    is raised; when this call is cancelled, all of them are stopped so."""
    tasks = [asyncio.create_task(coro, name=f"{name}-{n}") for n, coro in enumerate(coros)]
    try:
        done, running = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        # shielded: a second cancellation of this call must not leave the loops running
        await asyncio.shield(cancel_and_wait(*tasks, log_errors=False))
        raise
    await cancel_and_wait(*running, log_errors=False)
    for task in done:
        error = None if task.cancelled() else task.exception()
        if error is not None:
            raise error
