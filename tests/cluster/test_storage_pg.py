"""What only PostgreSQL's store has to keep, as a server several processes share: nodes migrating
together, an older schema upgraded with its rooms and a newer one refused, racing writers from
two pools, a PostgreSQL restart or kill under a running store. The behaviour every adapter keeps
(SQLite and PostgreSQL alike) is the suite in ``tests/test_store_behaviour.py``."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from livehub.adapters.postgres.outbox import PostgresDeliveryQueue
from livehub.adapters.postgres.store import MIGRATIONS, PostgresStore, SchemaTooNew
from livehub.domain.room import EventType, RoomStatus
from livehub.domain.store import StoreUnavailable
from tests.engines import PostgresEngine
from tests.helpers import ENDPOINTS, event, make_room

# -- PostgreSQL only: a server shared by several processes ----------------------------------


async def test_nodes_starting_together_migrate_once(pg_url: str) -> None:
    stores = await asyncio.gather(*(PostgresStore.open(pg_url) for _ in range(4)))
    try:
        assert [await s.schema_version() for s in stores] == [len(MIGRATIONS)] * 4
        conn = await asyncpg.connect(pg_url)
        try:
            versions = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
        finally:
            await conn.close()
        assert [row["version"] for row in versions] == list(range(1, len(MIGRATIONS) + 1))
    finally:
        for store in stores:
            await store.close()


async def test_the_store_and_the_outbox_commit_with_synchronous_commit_on(pg_url: str) -> None:
    """A cluster's acknowledged change is flushed to PostgreSQL's WAL before the answer, as the
    SQLite file's with LIVEHUB_DB_SYNC=full: no connection livehub opens turns that off (the
    test server runs with ``synchronous_commit=on``; a session setting would show here)."""
    store = await PostgresStore.open(pg_url)
    queue = PostgresDeliveryQueue(pg_url)
    try:
        async with store._pool.acquire() as conn:
            assert await conn.fetchval("SHOW synchronous_commit") == "on"
        async with (await queue._connection_pool()).acquire() as conn:
            assert await conn.fetchval("SHOW synchronous_commit") == "on"
    finally:
        await queue.close()
        await store.close()


async def test_a_newer_schema_is_refused(pg_url: str) -> None:
    store = await PostgresStore.open(pg_url)
    await store.close()
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute("INSERT INTO schema_migrations (version) VALUES (99)")
    finally:
        await conn.close()
    with pytest.raises(SchemaTooNew, match="schema version 99"):
        await PostgresStore.open(pg_url)


async def test_a_schema_1_database_upgrades_to_origins_with_its_rooms(pg_url: str) -> None:
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(
            "CREATE TABLE schema_migrations "
            "(version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        await conn.execute(MIGRATIONS[0])
        await conn.execute("INSERT INTO schema_migrations (version) VALUES (1)")
        await conn.execute(
            "INSERT INTO rooms (id, title, stream_key, status, created_at, publish_token, "
            "owner_token_hash, publisher_client_id, version) "
            "VALUES ('r1', 't', 's1', 'live', 1000, 'pt', 'oh', 'c1', 4)"
        )
    finally:
        await conn.close()
    store = await PostgresStore.open(pg_url)
    try:
        assert await store.schema_version() == len(MIGRATIONS) >= 2
        room = await store.get("r1")
        assert room is not None
        assert (room.status, room.version, room.publisher_client_id) == (RoomStatus.LIVE, 4, "c1")
        assert (room.publisher_server_id, room.publisher_origin) == (None, None)
        assert await store.count(RoomStatus.LIVE) == 1
    finally:
        await store.close()


async def test_racing_conditional_updates_from_two_pools_exactly_one_wins(pg_url: str) -> None:
    one = await PostgresStore.open(pg_url, webhook_endpoints=ENDPOINTS)
    two = await PostgresStore.open(pg_url, webhook_endpoints=ENDPOINTS)
    try:
        for n in range(20):
            room = make_room(n)
            await one.insert(room)
            seen_by_one, seen_by_two = await asyncio.gather(one.get(room.id), two.get(room.id))
            assert seen_by_one is not None and seen_by_two is not None
            # two publishers for one room, on two nodes
            seen_by_one.status, seen_by_one.publisher_client_id = RoomStatus.LIVE, "pub-1"
            seen_by_two.status, seen_by_two.publisher_client_id = RoomStatus.LIVE, "pub-2"
            won = await asyncio.gather(
                one.update(seen_by_one, 1, [event(EventType.ROOM_LIVE, seen_by_one)]),
                two.update(seen_by_two, 1, [event(EventType.ROOM_LIVE, seen_by_two)]),
            )
            assert sorted(won) == [False, True]
            winner = seen_by_one if won[0] else seen_by_two
            assert await two.get(room.id) == winner
        conn = await asyncpg.connect(pg_url)
        try:
            staged = await conn.fetchval("SELECT count(*) FROM webhook_deliveries")
        finally:
            await conn.close()
        assert staged == 20 * len(ENDPOINTS)  # only the winners' events
    finally:
        await one.close()
        await two.close()


async def test_postgres_restart_the_pool_recovers_and_nothing_acknowledged_is_lost(
    pg_url: str, postgres: PostgresEngine
) -> None:
    store = await PostgresStore.open(pg_url, min_size=2, max_size=4)
    try:
        acknowledged = [make_room(1), make_room(2)]
        for room in acknowledged:
            await store.insert(room)

        postgres.stop()
        with pytest.raises(StoreUnavailable):
            await store.insert(make_room(3))
        with pytest.raises(StoreUnavailable):
            await store.get("room001")
        assert not await store.ping()

        postgres.start()
        assert await store.get("room001") == acknowledged[0]  # stale connections replaced
        assert not await store.ping()  # reads answer; writes failed a moment ago
        room = make_room(4)
        await store.insert(room)
        acknowledged.append(room)
        assert await store.ping()  # and now they do not

        postgres.kill()  # SIGKILL, every backend at once
        postgres.start()
        for room in acknowledged:
            assert await store.get(room.id) == room
        assert await store.get("room003") is None  # refused, so never acknowledged
        assert await store.count() == 3
    finally:
        await store.close()


async def test_postgres_down_at_start_is_unavailable(postgres: PostgresEngine) -> None:
    url = postgres.database_url("postgres")
    postgres.stop()
    with pytest.raises(StoreUnavailable):
        await PostgresStore.open(url, command_timeout=2)


async def test_queries_in_flight_when_postgres_stops_or_dies_fail_as_unavailable_only(
    pg_url: str, postgres: PostgresEngine
) -> None:
    """Readers running while PostgreSQL is stopped and killed, again and again, see rows or
    ``StoreUnavailable``, nothing else: a connection dropped mid-query once surfaced as
    asyncpg's ``InternalClientError`` ("cannot switch to state 12") and failed the leader's
    sweep with a traceback."""
    store = await PostgresStore.open(pg_url, min_size=2, max_size=4)
    outcomes: dict[str, int] = {}
    done = asyncio.Event()

    async def reader() -> None:
        calls = (
            lambda: store.reconnect_due(0),
            lambda: store.preparing_before(0),
            lambda: store.delete_ended_before(0, 10),
        )
        while not done.is_set():
            for call in calls:
                try:
                    await call()
                    outcome = "rows"
                except StoreUnavailable:
                    outcome = "unavailable"
                except Exception as exc:  # what the test is about: none of these
                    outcome = f"{type(exc).__name__}: {exc}"
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
            await asyncio.sleep(0.002)

    readers = [asyncio.create_task(reader()) for _ in range(4)]
    try:
        for outage in (postgres.kill, postgres.stop) * 4:
            await asyncio.sleep(0.2)
            outage()
            await asyncio.sleep(0.2)
            postgres.start()
        await asyncio.sleep(0.5)
    finally:
        done.set()
        await asyncio.gather(*readers)
        await store.close()
    assert set(outcomes) == {"rows", "unavailable"}, outcomes


async def test_a_statement_slower_than_command_timeout_is_not_a_dead_connection(
    pg_url: str,
) -> None:
    """``pg_sleep`` past ``command_timeout``: reported unavailable once, not run again, and the
    pool keeps its connection (it was alive: the same backend answers next)."""
    store = await PostgresStore.open(pg_url, min_size=1, max_size=1, command_timeout=0.5)
    try:
        backends: list[int] = []
        runs = 0

        async def backend(conn: Any, _: Any) -> int:
            pid: int = await conn.fetchval("SELECT pg_backend_pid()")
            return pid

        async def slow(conn: Any, _: Any) -> None:
            nonlocal runs
            runs += 1
            backends.append(await conn.fetchval("SELECT pg_backend_pid()"))
            await conn.execute("SELECT pg_sleep(3)")

        before = await store._with_connection(backend)
        with pytest.raises(StoreUnavailable, match=r"longer than 0\.5 s"):
            await store._with_connection(slow)
        assert runs == 1  # not run again
        assert backends == [before]
        assert await store._with_connection(backend) == before  # the pool was not emptied
        assert await store.count(RoomStatus.LIVE) == 0
    finally:
        await store.close()
