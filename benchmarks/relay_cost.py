"""What livehub's own relay work costs, without sockets: the ``pairs`` relay in the domain.

``pairs`` (``benchmarks/run.sh``) measures a whole server: aiohttp's reading, the heartbeat,
the event loop, the kernel, and livehub's work per relay. This measures only the last, in one
process and with no I/O, so that it is not lost in the noise of a loaded host: 500 rooms of two
members (real :class:`~livehub.domain.signaling.Signaling` of the embedded app, as
``python -m livehub`` builds it, with the benchmarks' settings), each pair relaying an offer
and an answer per round, with one flush of the hub per round as the event loop would run it;
sinks that drop what they are given. Against it, the floor's work for the same relays
(``benchmarks/floor_server.py``: set ``from``, encode once, hand the frame to each other
member), so the difference is what livehub does per relay beyond the floor: the message's
checks, the rate and size limits, membership, and the delivery queue.

    .venv/bin/python benchmarks/relay_cost.py [--rounds 40] [--repeat 5]

Prints CPU µs per round trip (two relays) for each, median and range of the repeats.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

import floor_server  # benchmarks/, the script's own directory
from aiohttp import web  # noqa: TID251 - a benchmark of the app, not livehub.domain

from livehub import keys
from livehub.__main__ import load_config
from livehub.app import create_app

PAIRS = 500
ENV = {
    # as benchmarks/run.sh runs livehub
    "LIVEHUB_RATE_PER_S": "0",
    "LIVEHUB_CREATE_RATE_PER_MIN": "0",
    "LIVEHUB_MAX_CONNECTIONS_PER_ADDRESS": "0",
    "LIVEHUB_RELAY_BYTES_PER_S": "0",
}


class Sink:
    """A connection that takes everything and sends nothing."""

    def write(self, frames: list[bytes]) -> int:
        return 0

    def abort(self, code: int, reason: str) -> None:
        raise AssertionError(f"aborted: {code} {reason}")


def offer(room_id: str) -> dict[str, Any]:
    return {"type": "offer", "roomId": room_id, "payload": {"type": "offer", "sdp": "v=0 o"}}


def answer(room_id: str) -> dict[str, Any]:
    return {"type": "answer", "roomId": room_id, "payload": {"type": "answer", "sdp": "v=0 a"}}


async def livehub_rounds(rounds: int) -> tuple[Callable[[], None], web.AppRunner]:
    app = create_app(load_config(["--db", ":memory:"], ENV))
    runner = web.AppRunner(app)
    await runner.setup()
    signaling = app[keys.signaling]
    pairs = []
    for n in range(PAIRS):
        room, _ = await app[keys.rooms].create(f"room {n}")
        a, b = signaling.open(Sink(), "127.0.0.1"), signaling.open(Sink(), "127.0.0.1")
        for peer in (a, b):
            pending = signaling.handle(peer, {"type": "join", "roomId": room.id})
            if pending is not None:
                await pending
        pairs.append((a, b, room.id))
    hub = signaling.hub

    def run() -> None:
        for _ in range(rounds):
            for a, b, room_id in pairs:
                if signaling.handle(a, offer(room_id)) is not None:
                    raise AssertionError("a relay took a coroutine")
                if signaling.handle(b, answer(room_id)) is not None:
                    raise AssertionError("a relay took a coroutine")
            hub.flush()

    return run, runner


class Transport:
    """What the floor writes to: a transport that drops its bytes."""

    def write(self, data: bytes) -> None:
        pass


def floor_rounds(rounds: int) -> Callable[[], None]:
    """The floor server's own relay (``floor_server.relay``), after the same check of the
    message's type its handler makes."""
    floor_server.rooms.clear()
    pairs = []
    for _ in range(PAIRS):
        room_id = uuid.uuid4().hex[:12]
        a, b = Transport(), Transport()
        floor_server.rooms[room_id] = {a, b}
        pairs.append((a, b, room_id))

    def run() -> None:
        for _ in range(rounds):
            for a, b, room_id in pairs:
                for me, message, peer_id in ((a, offer(room_id), "pa"), (b, answer(room_id), "pb")):
                    if message.get("type") in floor_server.RELAYED:
                        floor_server.relay(me, message, peer_id)

    return run


def measure(run: Callable[[], None], rounds: int, repeat: int) -> list[float]:
    run()  # warm up
    results = []
    for _ in range(repeat):
        started = time.process_time()
        run()
        results.append((time.process_time() - started) / (rounds * PAIRS) * 1e6)
    return results


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # no SRS here: its start-up warnings are noise
    livehub, runner = await livehub_rounds(args.rounds)
    targets = {"livehub": livehub, "floor": floor_rounds(args.rounds)}
    results: dict[str, list[float]] = {name: [] for name in targets}
    for _ in range(args.repeat):  # interleaved
        for name, run in targets.items():
            results[name] += measure(run, args.rounds, 1)
    for name, values in results.items():
        print(
            f"{name}: {statistics.median(values):.2f} µs CPU per round trip "
            f"({min(values):.2f}-{max(values):.2f}), {args.repeat} repeats of "
            f"{args.rounds * PAIRS:,} round trips"
        )
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
