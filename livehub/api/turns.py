"""Requests take turns: a burst of them is spread over passes of the event loop.

A pass of the event loop runs every callback that was ready when it began. Requests that arrive
together (SRS sends its hooks in bursts; a page load opens several calls at once) each become
ready in the same pass, so aiohttp starts all their handlers in one go, and each handler runs
until its first real wait: parsing, validation, tokens, building the room and its webhook rows.
Seventy of those at 0.25 ms each held the loop for 20-30 ms, and every WebSocket frame, timer
and heartbeat that came due waited for all of them (``benchmarks/loop_stall.py``).

:class:`Turns` lets at most ``per_pass`` handlers begin in one pass; the others queue, first
come first served, and begin in the next passes. Nothing is refused and nothing is reordered:
the same work is done, in arrival order, in shorter slices, so what is due in between is served
between them. A queue that is empty costs one counter and one scheduled callback per pass.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

#: handlers that may begin in one pass of the loop: about 1 ms of handler work in the heaviest
#: case (creating rooms). The handlers that resume after their writes share the passes too, and
#: a wake-up waits for up to three passes, so the burst benchmark's longest stall went from
#: 21-30 ms (16 a pass) and 15-35 ms (8) to 9-13.5 ms (4), at the same throughput.
PER_PASS = 4


class Turns:
    """At most ``per_pass`` callers of :meth:`take` go on in one pass of the running loop; the
    rest wait, in call order, for a later pass."""

    def __init__(self, per_pass: int = PER_PASS) -> None:
        if per_pass < 1:
            raise ValueError("per_pass must be at least 1")
        self.per_pass = per_pass
        self._begun = 0  # callers let on since the last pass began
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()
        self._pass_due = False

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def try_take(self) -> bool:
        """Take a turn in this pass if it has room and nobody waits."""
        if self._begun < self.per_pass and not self._waiting:
            self._begun += 1
            self._next_pass()
            return True
        return False

    async def take(self) -> None:
        """Return at once if this pass has room (and nobody waits), else in a later pass.
        A caller cancelled while waiting gives its turn up to the next one."""
        if self.try_take():
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        self._next_pass()
        await waiter

    def _next_pass(self) -> None:
        if not self._pass_due:
            self._pass_due = True
            asyncio.get_running_loop().call_soon(self._on_pass)

    def _on_pass(self) -> None:
        """A new pass: the count starts again, and the first ``per_pass`` waiters go on (their
        handlers run in the pass after this one)."""
        self._pass_due = False
        self._begun = 0
        while self._waiting and self._begun < self.per_pass:
            waiter = self._waiting.popleft()
            if not waiter.done():  # a waiter cancelled meanwhile is skipped
                waiter.set_result(None)
                self._begun += 1
        if self._begun:
            self._next_pass()


def turns_middleware(turns: Turns) -> Middleware:
    """Outside every middleware but the connection guard's: every handler begins in its turn.
    A handler that has its turn at once is returned as it is, not awaited here: no frame of
    this middleware's stays around it (a WebSocket's handler runs for as long as the connection
    is open, and each of its messages would pass through that frame)."""

    @web.middleware
    def take_turns(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
        if turns.try_take():
            return handler(request)
        return _in_turn(turns, request, handler)

    return take_turns


async def _in_turn(turns: Turns, request: web.Request, handler: Handler) -> web.StreamResponse:
    await turns.take()
    return await handler(request)
