"""Requests take turns: a burst of handlers is spread over passes of the event loop
(``livehub/api/turns.py``)."""

from __future__ import annotations

import asyncio
import collections

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpClient

from livehub.api.turns import Turns, turns_middleware


class Passes:
    """Counts passes of the running loop: a callback that schedules itself again runs once in
    every pass."""

    def __init__(self) -> None:
        self.number = 0
        self._running = True
        asyncio.get_running_loop().call_soon(self._tick)

    def _tick(self) -> None:
        self.number += 1
        if self._running:
            asyncio.get_running_loop().call_soon(self._tick)

    def stop(self) -> None:
        self._running = False


async def test_at_most_per_pass_callers_go_on_in_one_pass_in_call_order() -> None:
    turns = Turns(per_pass=3)
    passes = Passes()
    went: list[tuple[int, int]] = []  # (caller, pass)

    async def caller(number: int) -> None:
        await turns.take()
        went.append((number, passes.number))

    await asyncio.gather(*(caller(number) for number in range(10)))
    passes.stop()
    assert [number for number, _ in went] == list(range(10))  # first come, first served
    per_pass = collections.Counter(at for _, at in went)
    assert max(per_pass.values()) <= 3
    assert len(per_pass) >= 4  # ten callers, three a pass
    assert turns.waiting == 0


async def test_a_free_turn_does_not_wait_for_a_pass() -> None:
    turns = Turns(per_pass=2)
    passes = Passes()
    before = passes.number
    await turns.take()
    await turns.take()
    assert passes.number == before  # both went on in the pass they asked in
    passes.stop()


async def test_a_caller_cancelled_while_waiting_gives_its_turn_up() -> None:
    turns = Turns(per_pass=1)
    went: list[int] = []

    async def caller(number: int) -> None:
        await turns.take()
        went.append(number)

    tasks = [asyncio.create_task(caller(number)) for number in range(4)]
    await asyncio.sleep(0)  # all four asked; the first went on, three wait
    assert turns.waiting == 3
    tasks[1].cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert went == [0, 2, 3]
    assert tasks[1].cancelled()
    assert turns.waiting == 0


def test_a_pass_lets_at_least_one_handler_on() -> None:
    with pytest.raises(ValueError, match="per_pass"):
        Turns(per_pass=0)


async def test_a_burst_of_requests_begins_a_few_handlers_a_pass(
    aiohttp_client: AiohttpClient,
) -> None:
    """Over real HTTP: 40 requests sent at once all succeed, and no pass of the loop begins more
    handlers than two passes' worth of turns (arrivals counted before a pass's reset, and the
    waiters it lets on)."""
    begun: collections.Counter[int] = collections.Counter()
    passes: list[Passes] = []

    async def handler(_: web.Request) -> web.Response:
        begun[passes[0].number] += 1
        await asyncio.sleep(0)
        return web.json_response({"ok": True})

    app = web.Application(middlewares=[turns_middleware(Turns(per_pass=2))])
    app.router.add_get("/work", handler)
    client = await aiohttp_client(app)
    passes.append(Passes())
    responses = await asyncio.gather(*(client.get("/work") for _ in range(40)))
    passes[0].stop()
    assert [response.status for response in responses] == [200] * 40
    assert sum(begun.values()) == 40
    assert max(begun.values()) <= 4
