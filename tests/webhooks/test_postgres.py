"""The PostgreSQL outbox shared by several nodes: two dispatchers (two "nodes", each with its own
connection pool) on one database deliver every event exactly once in the normal case, in
``seq`` order per room and endpoint; and the app picks this adapter in cluster mode."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import AsyncIterator, Callable

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from livehub.adapters.memory.players import MemoryPlayers
from livehub.adapters.postgres.outbox import PostgresDeliveryQueue
from livehub.adapters.postgres.store import PostgresStore
from livehub.adapters.sqlite.outbox import SQLiteDeliveryQueue
from livehub.app import create_app
from livehub.domain.service import RoomService
from livehub.webhooks.dispatcher import Dispatcher
from livehub.webhooks.presence import PresenceEvents
from livehub.webhooks.schedule import RetrySchedule
from livehub.webhooks.setup import default_queue
from livehub.webhooks.signing import Signer
from tests.conftest import make_config
from tests.engines import PostgresEngine
from tests.helpers import eventually
from tests.webhooks.conftest import PostgresRows, StartReceiver, secret

ROOMS = [f"r{number}" for number in range(8)]
STEPS = ["room.created", "host.joined", "room.live", "viewers.updated", "room.ended"]


@pytest.fixture
async def rows(pg_url: str) -> AsyncIterator[PostgresRows]:
    store = await PostgresStore.open(pg_url)  # its migrations make the table
    await store.close()
    conn = await asyncpg.connect(pg_url)
    yield PostgresRows(conn)
    await conn.close()


def recorder(*into: list[str]) -> Callable[[str], None]:
    def record(outcome: str) -> None:
        for outcomes in into:
            outcomes.append(outcome)

    return record


async def test_two_nodes_deliver_every_event_once_and_in_order(
    pg_url: str, rows: PostgresRows, receiver_factory: StartReceiver
) -> None:
    # a receiver that answers some attempts with errors, so rows move between nodes
    receiver = await receiver_factory(replies=[(503, {})] * 5)
    outcomes: list[str] = []
    per_node: list[list[str]] = [[], []]
    nodes: list[tuple[Dispatcher, asyncio.Task[None]]] = []
    for node in range(2):
        dispatcher = Dispatcher(
            PostgresDeliveryQueue(pg_url),
            aiohttp.ClientSession(),
            Signer((secret(),)),
            schedule=RetrySchedule().scaled(0.002),
            timeout=2.0,
            concurrency=4,
            poll_interval=0.01,
            stats_interval=0.0,
            random=lambda: 0.5,
            on_outcome=recorder(outcomes, per_node[node]),
        )
        nodes.append((dispatcher, asyncio.create_task(dispatcher.run())))
    try:
        # written while both nodes poll: every claim races with the other node's
        for step in STEPS:
            for room in ROOMS:
                await rows.add([receiver.url], room, step)
        total = len(ROOMS) * len(STEPS)
        await receiver.wait_for(total, within=20)
        await eventually(lambda: outcomes.count("delivered") == total)
    finally:
        for dispatcher, task in nodes:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await dispatcher.stop(grace=1.0)
            await dispatcher.session.close()
            await dispatcher.queue.close()
    assert receiver.rejected == []
    # exactly once: one successful delivery per row, and no row attempted twice at once
    delivered_ids = [event["id"] for event in receiver.received]
    assert len(delivered_ids) == len(set(delivered_ids)) == total
    for room in ROOMS:
        assert receiver.types(room) == STEPS
        assert receiver.seqs(room) == list(range(1, len(STEPS) + 1))
    # attempts per row: one, or the failed ones plus one (never a duplicate success)
    attempts = collections.Counter(attempt[1] for attempt in receiver.attempts)
    assert sum(attempts.values()) == total + 5
    assert outcomes.count("retried") == 5 and "failed" not in outcomes
    assert {row["state"] for row in await rows.rows()} == {"delivered"}
    assert all("delivered" in node for node in per_node), "both nodes delivered"


async def test_concurrent_claims_never_share_a_row(pg_url: str, rows: PostgresRows) -> None:
    for room in range(40):
        await rows.add(["http://a.example/hooks"], f"r{room}", "room.created")
        await rows.add(["http://a.example/hooks"], f"r{room}", "room.live")
    queues = [PostgresDeliveryQueue(pg_url), PostgresDeliveryQueue(pg_url)]
    try:
        claimed: list[int] = []
        for _ in range(10):
            now = int(time.time() * 1000)
            batches = await asyncio.gather(*(queue.claim(now, 3, 60_000) for queue in queues))
            claimed += [row.id for batch in batches for row in batch]
            assert all(row.seq == 1 for batch in batches for row in batch)  # heads only
    finally:
        for queue in queues:
            await queue.close()
    assert len(claimed) == len(set(claimed)) == 40


async def test_cluster_mode_uses_the_postgresql_outbox(tmp_path: object) -> None:
    url = "postgresql://livehub@127.0.0.1:1/livehub"
    config = make_config(
        database_url=url, webhook_urls=("http://127.0.0.1:1/hooks",), webhook_secrets=(secret(),)
    )
    queue = default_queue(create_app(config))
    assert isinstance(queue, PostgresDeliveryQueue) and queue.url == url
    await queue.close()  # never opened: nothing to close
    embedded = make_config(
        db_path=f"{tmp_path}/livehub.db",
        webhook_urls=("http://127.0.0.1:1/hooks",),
        webhook_secrets=(secret(),),
    )
    sqlite_queue = default_queue(create_app(embedded))
    assert isinstance(sqlite_queue, SQLiteDeliveryQueue)
    await sqlite_queue.close()


async def test_presence_events_wait_out_a_postgresql_outage(
    pg_url: str, postgres: PostgresEngine
) -> None:
    endpoint = "http://a.example/hooks"
    store = await PostgresStore.open(pg_url, webhook_endpoints=[endpoint], command_timeout=2)
    rooms = RoomService(store, players=MemoryPlayers())
    room, _ = await rooms.create("presence")
    viewers = {room.id: 0}
    presence = PresenceEvents(rooms, viewers.__getitem__, interval=0.05)
    presence.start()
    conn: asyncpg.Connection | None = None
    try:
        postgres.stop()
        viewers[room.id] = 1
        presence.on_presence(room.id, "peer1", "host", True)
        await asyncio.sleep(0.5)  # staging failed: the events wait
        postgres.start()
        conn = await asyncpg.connect(pg_url)

        async def staged() -> list[tuple[int, str]]:
            assert conn is not None
            rows = await conn.fetch("SELECT seq, type FROM webhook_deliveries ORDER BY id")
            return [(row["seq"], row["type"]) for row in rows]

        deadline = time.monotonic() + 10
        while len(await staged()) < 3:
            assert time.monotonic() < deadline, await staged()
            await asyncio.sleep(0.1)
        assert await staged() == [(1, "room.created"), (2, "host.joined"), (3, "viewers.updated")]
        bodies = await conn.fetch("SELECT body FROM webhook_deliveries WHERE seq = 2")
        assert '"peerId":"peer1"' in bodies[0]["body"]
    finally:
        await presence.close()
        await store.close()
        if conn is not None:
            await conn.close()


async def test_a_node_whose_lease_was_taken_over_leaves_the_row_to_the_new_holder(
    pg_url: str,
    rows: PostgresRows,
    aiohttp_server: AiohttpServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Node A's attempt outlives its lease (here: node B's clock is ahead by more than the
    lease), B claims the row and sends it too. A's late 2xx must not mark the row delivered
    while B's attempt is in flight: the room's next event would become the head and overtake
    B's copy (the receiver would see created, live, created). Found by an audit."""
    arrived: list[str] = []
    gates = [asyncio.Event(), asyncio.Event()]

    async def hook(request: web.Request) -> web.Response:
        body = await request.json()
        arrived.append(body["type"])
        if len(arrived) <= len(gates):  # the first two attempts wait to be let through
            await gates[len(arrived) - 1].wait()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hooks", hook)
    server = await aiohttp_server(app)
    url = str(server.make_url("/hooks"))
    await rows.add([url], "r1", "room.created")
    await rows.add([url], "r1", "room.live")
    outcomes: list[list[str]] = [[], []]
    timeout = 1.0
    lease = timeout * 2 + 5

    def node(n: int, skew: float) -> Dispatcher:
        return Dispatcher(
            PostgresDeliveryQueue(pg_url),
            aiohttp.ClientSession(),
            Signer((secret(),)),
            timeout=timeout,
            poll_interval=0.01,
            stats_interval=0.0,
            clock=lambda: time.time() + skew,
            on_outcome=outcomes[n].append,
        )

    a, b = node(0, 0.0), node(1, lease + 1)
    assert a.lease_ms == lease * 1000
    tasks = [asyncio.create_task(a.run())]
    try:
        await eventually(lambda: arrived == ["room.created"])  # A's attempt, held
        tasks.append(asyncio.create_task(b.run()))
        await eventually(lambda: arrived == ["room.created"] * 2)  # B's, held too
        gates[0].set()  # A's 204 comes late: the row is B's now
        # A's outcome is written (before the fix) or dropped with a warning
        await eventually(lambda: "outlived its lease" in caplog.text or outcomes[0])
        assert outcomes[0] == []
        [first, _] = await rows.rows()
        assert (first["state"], first["attempts"]) == ("pending", 0)
        assert arrived == ["room.created"] * 2  # room.live waits for B
        # A is done: left running, it could claim room.live, which B (its clock 8 s ahead)
        # would take over at once, and both would send it
        tasks[0].cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await tasks[0]
        gates[1].set()
        await eventually(lambda: arrived == ["room.created", "room.created", "room.live"])
        await eventually(lambda: len(outcomes[1]) == 2)
        assert outcomes == [[], ["delivered", "delivered"]]
        assert [(row["state"], row["attempts"]) for row in await rows.rows()] == [
            ("delivered", 1),
            ("delivered", 1),
        ]
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for gate in gates:
            gate.set()
        for dispatcher in (a, b):
            await dispatcher.stop(grace=1.0)
            await dispatcher.session.close()
            await dispatcher.queue.close()
