"""The outbox port, one suite over both adapters (SQLite embedded, PostgreSQL cluster): heads
only, leases, terminal states, listing, manual retry, retention, stats."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

import asyncpg
import pytest

from livehub.adapters.postgres.outbox import PostgresDeliveryQueue
from livehub.adapters.postgres.store import PostgresStore
from livehub.adapters.sqlite.outbox import SQLiteDeliveryQueue
from livehub.webhooks.queue import (
    DeliveryNotFailed,
    DeliveryNotFound,
    DeliveryQueue,
    DeliveryState,
)
from tests.engines import PostgresEngine
from tests.webhooks.conftest import Outbox, PostgresRows

A, B = "http://a.example/hooks", "http://b.example/hooks"


def now() -> int:
    return int(time.time() * 1000)


class Rows(Protocol):
    """The table as the store writes it, on one engine."""

    async def add(
        self,
        endpoints: list[str],
        room_id: str,
        type: str,
        *,
        extra: dict[str, Any] | None = None,
        delay_ms: int = 0,
    ) -> int: ...

    async def rows(self) -> list[dict[str, Any]]: ...


class SQLiteRows:
    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    async def add(self, endpoints: list[str], room_id: str, type: str, **options: Any) -> int:
        return self.outbox.add(endpoints, room_id, type, **options)

    async def rows(self) -> list[dict[str, Any]]:
        return self.outbox.rows()


@pytest.fixture(params=["sqlite", "postgres"])
async def engine(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Rows, DeliveryQueue]]:
    if request.param == "sqlite":
        box = Outbox(tmp_path / "livehub.db")
        sqlite_queue = SQLiteDeliveryQueue(box.path)
        yield SQLiteRows(box), sqlite_queue
        await sqlite_queue.close()
        box.close()
        return
    postgres: PostgresEngine = request.getfixturevalue("postgres")
    url = await postgres.create_database()
    store = await PostgresStore.open(url)  # its migrations make the table
    await store.close()
    conn = await asyncpg.connect(url)
    pg_queue = PostgresDeliveryQueue(url)
    yield PostgresRows(conn), pg_queue
    await pg_queue.close()
    await conn.close()
    await postgres.drop_database(url)


@pytest.fixture
def outbox(engine: tuple[Rows, DeliveryQueue]) -> Rows:
    return engine[0]


@pytest.fixture
def queue(engine: tuple[Rows, DeliveryQueue]) -> DeliveryQueue:
    return engine[1]


async def test_only_the_oldest_pending_row_of_each_endpoint_and_room_is_claimed(
    outbox: Rows, queue: DeliveryQueue
) -> None:
    for step in ("room.created", "room.live", "room.ended"):
        await outbox.add([A, B], "r1", step)
    await outbox.add([A], "r2", "room.created")
    claimed = await queue.claim(now(), 10, lease=60_000)
    assert [(row.endpoint, row.room_id, row.seq) for row in claimed] == [
        (A, "r1", 1),
        (B, "r1", 1),
        (A, "r2", 1),
    ]
    # leased: not claimed again, and the rows behind them wait
    assert await queue.claim(now(), 10, lease=60_000) == []

    await queue.delivered(claimed[0], now(), 200)
    await queue.fail(claimed[1], status=500, error="HTTP 500")
    await queue.retry_later(claimed[2], at=now() + 60_000, status=None, error="timed out")
    again = await queue.claim(now(), 10, lease=60_000)
    assert [(row.endpoint, row.room_id, row.seq) for row in again] == [(A, "r1", 2), (B, "r1", 2)]
    rows = {row["id"]: row for row in (await outbox.rows())}
    assert rows[claimed[0].id]["state"] == "delivered" and rows[claimed[0].id]["attempts"] == 1
    assert rows[claimed[1].id]["state"] == "failed" and rows[claimed[1].id]["last_status"] == 500
    assert rows[claimed[2].id]["attempts"] == 1 and rows[claimed[2].id]["last_error"] == "timed out"


async def test_claim_respects_the_limit_and_due_time(outbox: Rows, queue: DeliveryQueue) -> None:
    for room in ("r1", "r2", "r3"):
        await outbox.add([A], room, "room.created")
    await outbox.add([A], "r4", "room.created", delay_ms=60_000)
    first = await queue.claim(now(), 2, lease=60_000)
    second = await queue.claim(now(), 2, lease=60_000)
    assert [row.room_id for row in first + second] == ["r1", "r2", "r3"]
    later = await queue.claim(now() + 61_000, 10, lease=60_000)
    assert sorted(row.room_id for row in later) == ["r1", "r2", "r3", "r4"]  # leases over


async def test_list_pages_newest_first_by_state(outbox: Rows, queue: DeliveryQueue) -> None:
    for number in range(5):
        await outbox.add([A], f"r{number}", "room.created")
    [head, *_] = await queue.claim(now(), 1, lease=1000)
    await queue.fail(head, status=None, error="cannot connect")
    listed = await queue.list(None, 3, 0)
    assert [row.room_id for row in listed] == ["r4", "r3", "r2"]
    assert [row.room_id for row in await queue.list(None, 3, 3)] == ["r1", "r0"]
    assert [row.id for row in await queue.list(DeliveryState.FAILED, 10, 0)] == [head.id]
    assert len(await queue.list(DeliveryState.PENDING, 10, 0)) == 4
    assert await queue.list(DeliveryState.DELIVERED, 10, 0) == []


async def test_retry_only_a_failed_row(outbox: Rows, queue: DeliveryQueue) -> None:
    await outbox.add([A], "r1", "room.created")
    [row] = await queue.claim(now(), 1, lease=1000)
    with pytest.raises(DeliveryNotFailed):
        await queue.retry(row.id, now())
    await queue.fail(row, status=503, error="HTTP 503")
    at = now()
    retried = await queue.retry(row.id, at)
    assert (retried.state, retried.attempts, retried.next_attempt_at) == (
        DeliveryState.PENDING,
        0,
        at,
    )
    assert retried.last_status == 503  # the history stays until the next attempt
    with pytest.raises(DeliveryNotFound):
        await queue.retry(row.id + 100, now())
    assert await queue.get(row.id + 100) is None
    assert await queue.get(row.id) == retried


async def test_stats(outbox: Rows, queue: DeliveryQueue) -> None:
    empty = await queue.stats()
    assert empty.counts == dict.fromkeys(DeliveryState, 0)
    assert empty.oldest_pending_created_at is None
    await outbox.add([A, B], "r1", "room.created")
    [first, _] = await queue.claim(now(), 2, lease=1000)
    await queue.delivered(first, now(), 204)
    stats = await queue.stats()
    assert stats.counts == {
        DeliveryState.PENDING: 1,
        DeliveryState.DELIVERED: 1,
        DeliveryState.FAILED: 0,
    }
    assert stats.oldest_pending_created_at == (await outbox.rows())[1]["created_at"]


def test_memory_databases_are_refused() -> None:
    with pytest.raises(ValueError, match="file"):
        SQLiteDeliveryQueue(":memory:")


async def test_prune_deletes_only_delivered_rows_past_the_retention(
    outbox: Rows, queue: DeliveryQueue
) -> None:
    for room in ("r1", "r2", "r3"):
        await outbox.add([A], room, "room.created")
    old, recent, failed = await queue.claim(now(), 3, lease=1000)
    await queue.delivered(old, now() - 10_000, 204)
    await queue.delivered(recent, now(), 204)
    await queue.fail(failed, status=500, error="HTTP 500")
    await outbox.add([A], "r1", "room.live")  # pending
    assert await queue.prune(now() - 5_000, 10) == 1
    assert [(row["room_id"], row["state"]) for row in await outbox.rows()] == [
        ("r2", "delivered"),
        ("r3", "failed"),
        ("r1", "pending"),
    ]
    assert await queue.prune(now() + 1, 10) == 1  # the recent one, once it is old enough
    assert await queue.prune(now() + 1, 10) == 0


async def test_a_holder_whose_lease_was_taken_over_records_nothing(
    outbox: Rows, queue: DeliveryQueue
) -> None:
    # node A claims a row, its attempt outlives the lease (a paused process, a clock behind the
    # others'), node B claims the row again and sends it: A's late outcome must not overwrite
    # the row B now holds (found by an audit: the outcome matched the id only)
    await outbox.add([A], "r1", "room.created")
    await outbox.add([A], "r1", "room.live")
    t = now()
    [first] = await queue.claim(t, 1, lease=1000)
    [second] = await queue.claim(t + 1000, 1, lease=1000)
    assert second.id == first.id and second.next_attempt_at == t + 2000
    assert first.next_attempt_at == t + 1000  # a claimed row carries its lease's end

    # A's late retry: B's lease stays, so nobody else sends the row while B does
    assert not await queue.retry_later(first, at=t + 1001, status=503, error="HTTP 503")
    assert await queue.claim(t + 1001, 10, lease=1000) == []
    # A's late failure: the row stays pending (B's success must count)
    assert not await queue.fail(first, status=None, error="timed out")
    # A's late success: the row is B's; room.live stays behind it until B is done
    assert not await queue.delivered(first, t + 1002, 200)
    assert await queue.claim(t + 1002, 10, lease=1000) == []
    [row] = [row for row in await outbox.rows() if row["id"] == first.id]
    assert (row["state"], row["attempts"], row["next_attempt_at"]) == ("pending", 0, t + 2000)
    assert row["last_status"] is None and row["delivered_at"] is None

    # B's outcome counts, once
    assert await queue.retry_later(second, at=t + 1500, status=500, error="HTTP 500")
    assert not await queue.retry_later(second, at=t + 1500, status=500, error="HTTP 500")
    [third] = await queue.claim(t + 1500, 1, lease=1000)
    assert (third.id, third.attempts) == (first.id, 1)
    assert not await queue.delivered(second, t + 1600, 200)  # B's lease ended with its retry
    assert await queue.delivered(third, t + 1600, 204)
    [row] = [row for row in await outbox.rows() if row["id"] == first.id]
    assert (row["state"], row["attempts"], row["last_status"]) == ("delivered", 2, 204)
    [live] = await queue.claim(t + 1600, 10, lease=1000)
    assert live.type == "room.live"
    assert await queue.fail(live, status=410, error="HTTP 410")
    assert not await queue.fail(live, status=410, error="HTTP 410")  # once
