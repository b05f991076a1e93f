"""The outbox on PostgreSQL (cluster mode): several nodes share one queue.

A claim is one statement: ``UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED)``. Of the
due heads (the oldest pending row of each endpoint and room) it takes the ones no other
dispatcher is claiming at that instant, and leases them (``next_attempt_at`` moved past the
attempt's timeout) in the same transaction. A dispatcher whose statement started before another
one's claim committed either skips the locked row or, re-checking it after the commit (READ
COMMITTED re-evaluates ``WHERE`` on the new row version), finds it leased: so in the normal
case each row is sent by one node only. A node that dies mid-attempt leaves a lease that
expires, and the row is sent again (at least once). The table is created by the store's
migrations (:mod:`livehub.adapters.postgres.store`); this adapter has a small pool of its own,
opened on first use, so it never competes with room writes for the store's connections.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from livehub.webhooks.queue import (
    DELIVERY_COLUMNS,
    Delivery,
    DeliveryNotFailed,
    DeliveryNotFound,
    DeliveryState,
    QueueStats,
    delivery_from_row,
)

_LIST = ", ".join(DELIVERY_COLUMNS)
_SELECT = f"SELECT {_LIST} FROM webhook_deliveries"
#: due heads nobody else is claiming, oldest due first, leased in the same statement
#: (RETURNING keeps no order: the caller sorts)
_CLAIM = f"""
UPDATE webhook_deliveries SET next_attempt_at = $3
WHERE id IN (
    SELECT d.id FROM webhook_deliveries AS d
    WHERE d.state = 'pending' AND d.next_attempt_at <= $1
      AND NOT EXISTS (
        SELECT 1 FROM webhook_deliveries AS h
        WHERE h.endpoint = d.endpoint AND h.room_id = d.room_id
          AND h.state = 'pending' AND h.id < d.id
      )
    ORDER BY d.next_attempt_at, d.id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
RETURNING {_LIST}
"""
#: the row is still held by the claim that leased it ($1 its id, $2 its lease's end): an attempt
#: that outlived its lease records nothing over the row's new holder (livehub.webhooks.queue)
_HELD = "id = $1 AND state = 'pending' AND next_attempt_at = $2"


class PostgresDeliveryQueue:
    """:class:`livehub.webhooks.queue.DeliveryQueue` on PostgreSQL."""

    def __init__(self, url: str, *, max_size: int = 4, command_timeout: float = 10.0) -> None:
        self.url = url
        self._max_size = max_size
        self._command_timeout = command_timeout
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()

    async def _connection_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._opening:
                if self._pool is None:
                    self._pool = await asyncpg.create_pool(
                        self.url,
                        min_size=1,
                        max_size=self._max_size,
                        command_timeout=self._command_timeout,
                        timeout=self._command_timeout,
                    )
        return self._pool

    async def claim(self, now: int, limit: int, lease: int) -> list[Delivery]:
        pool = await self._connection_pool()
        rows = await pool.fetch(_CLAIM, now, limit, now + lease)
        return sorted((delivery_from_row(row) for row in rows), key=lambda row: row.id)

    async def delivered(self, claimed: Delivery, now: int, status: int) -> bool:
        return await self._record(
            "UPDATE webhook_deliveries SET state = 'delivered', attempts = attempts + 1, "
            f"delivered_at = $3, last_status = $4, last_error = NULL WHERE {_HELD}",
            claimed,
            now,
            status,
        )

    async def retry_later(
        self, claimed: Delivery, *, at: int, status: int | None, error: str
    ) -> bool:
        return await self._record(
            "UPDATE webhook_deliveries SET attempts = attempts + 1, next_attempt_at = $3, "
            f"last_status = $4, last_error = $5 WHERE {_HELD}",
            claimed,
            at,
            status,
            error,
        )

    async def fail(self, claimed: Delivery, *, status: int | None, error: str) -> bool:
        return await self._record(
            "UPDATE webhook_deliveries SET state = 'failed', attempts = attempts + 1, "
            f"last_status = $3, last_error = $4 WHERE {_HELD}",
            claimed,
            status,
            error,
        )

    async def _record(self, sql: str, claimed: Delivery, *args: Any) -> bool:
        """An attempt's outcome, written only while ``claimed``'s lease is still the row's."""
        result = await self._execute(sql, claimed.id, claimed.next_attempt_at, *args)
        return result == "UPDATE 1"

    async def _execute(self, sql: str, *args: Any) -> str:
        pool = await self._connection_pool()
        result: str = await pool.execute(sql, *args)
        return result

    async def get(self, delivery_id: int) -> Delivery | None:
        pool = await self._connection_pool()
        row = await pool.fetchrow(f"{_SELECT} WHERE id = $1", delivery_id)
        return None if row is None else delivery_from_row(row)

    async def list(self, state: DeliveryState | None, limit: int, offset: int) -> list[Delivery]:
        pool = await self._connection_pool()
        if state is None:
            rows = await pool.fetch(f"{_SELECT} ORDER BY id DESC LIMIT $1 OFFSET $2", limit, offset)
        else:
            rows = await pool.fetch(
                f"{_SELECT} WHERE state = $1 ORDER BY id DESC LIMIT $2 OFFSET $3",
                state.value,
                limit,
                offset,
            )
        return [delivery_from_row(row) for row in rows]

    async def retry(self, delivery_id: int, now: int) -> Delivery:
        pool = await self._connection_pool()
        async with pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(f"{_SELECT} WHERE id = $1 FOR UPDATE", delivery_id)
            if row is None:
                raise DeliveryNotFound(delivery_id)
            current = delivery_from_row(row)
            if current.state is not DeliveryState.FAILED:
                raise DeliveryNotFailed(delivery_id, current.state)
            row = await conn.fetchrow(
                "UPDATE webhook_deliveries SET state = 'pending', attempts = 0, "
                f"next_attempt_at = $1 WHERE id = $2 RETURNING {_LIST}",
                now,
                delivery_id,
            )
        return delivery_from_row(row)

    async def prune(self, delivered_before: int, limit: int) -> int:
        result = await self._execute(
            "DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM webhook_deliveries "
            "WHERE state = 'delivered' AND delivered_at < $1 LIMIT $2)",
            delivered_before,
            limit,
        )
        return int(result.rsplit(" ", 1)[1])

    async def stats(self) -> QueueStats:
        pool = await self._connection_pool()
        counts = dict.fromkeys(DeliveryState, 0)
        for row in await pool.fetch(
            "SELECT state, count(*) AS n FROM webhook_deliveries GROUP BY state"
        ):
            counts[DeliveryState(row["state"])] = int(row["n"])
        oldest = await pool.fetchval(
            "SELECT min(created_at) FROM webhook_deliveries WHERE state = 'pending'"
        )
        return QueueStats(counts, None if oldest is None else int(oldest))

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
