"""The outbox on SQLite (embedded mode).

Its writes (claims, outcomes, retries, pruning) go through the store's
:class:`~livehub.adapters.sqlite.store.SQLiteWriter`: the one connection that writes the file, on
its own thread, so the outbox and the store never wait for each other's lock and the event loop
never waits on SQLite. (An outbox in a file of its own would need the store's transaction to span
two files to stage rows with each change; one writer keeps them one transaction.) Its reads (the
admin list, stats) use a connection of their own on another thread: under WAL they wait for nobody,
and a stats scan does not hold up the writer. The table itself is created by the store's migrations
(:mod:`livehub.adapters.sqlite.store`).

**Durability.** The rows themselves are staged by the store in its own transactions, fsynced
with LIVEHUB_DB_SYNC=full. The outbox's bookkeeping (claims, outcomes, retries later, pruning)
commits with ``synchronous=NORMAL`` in either mode (:meth:`SQLiteWriter.run` with
``durable=False``): it survives the process being killed, and a power loss can take back only
the last of it, so a webhook is sent again (delivery is at-least-once anyway) but never lost;
and it does not pay an fsync per attempt. An operator's manual retry answers a client: it is a
durable write.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from livehub.adapters.sqlite.store import SQLiteWriter, private_file
from livehub.webhooks.queue import (
    DELIVERY_COLUMNS,
    Delivery,
    DeliveryNotFailed,
    DeliveryNotFound,
    DeliveryState,
    QueueStats,
    delivery_from_row,
)

T = TypeVar("T")

_SELECT = f"SELECT {', '.join(DELIVERY_COLUMNS)} FROM webhook_deliveries"
#: due heads: the oldest pending row of its (endpoint, room), due now
_CLAIM = f"""
{_SELECT} AS d
WHERE d.state = 'pending' AND d.next_attempt_at <= :now
  AND d.id = (
    SELECT min(h.id) FROM webhook_deliveries AS h
    WHERE h.endpoint = d.endpoint AND h.room_id = d.room_id AND h.state = 'pending'
  )
ORDER BY d.next_attempt_at, d.id
LIMIT :limit
"""
#: the row is still held by the claim that leased it: an attempt that outlived its lease (the
#: dispatcher re-claimed the row meanwhile) records nothing over the new attempt
#: (livehub.webhooks.queue)
_HELD = "id = :id AND state = 'pending' AND next_attempt_at = :leased_until"


class SQLiteDeliveryQueue:
    """:class:`livehub.webhooks.queue.DeliveryQueue` on a SQLite file."""

    def __init__(self, path: str, writer: SQLiteWriter | None = None) -> None:
        """``writer``: the store's (shared); without one, the queue has its own."""
        if path == ":memory:":
            raise ValueError("the webhook outbox needs a database file, not :memory:")
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="livehub-webhooks")
        self._db: sqlite3.Connection | None = None
        self._own_writer = writer is None
        self._writer = writer or SQLiteWriter(path)

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            private_file(self.path)
            db = sqlite3.connect(self.path, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=5000")
            self._db = db
        return self._db

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """A read, on the queue's own reading thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: work(self._connection()))

    async def _write(self, work: Callable[[sqlite3.Connection], T], *, durable: bool) -> T:
        """``work`` on the shared writer; ``durable`` only for what answers a client (see the
        module docstring)."""
        return await self._writer.run(work, durable=durable)

    async def claim(self, now: int, limit: int, lease: int) -> list[Delivery]:
        def work(db: sqlite3.Connection) -> list[Delivery]:
            db.execute("BEGIN IMMEDIATE")
            try:
                rows = db.execute(_CLAIM, {"now": now, "limit": limit}).fetchall()
                db.executemany(
                    "UPDATE webhook_deliveries SET next_attempt_at = ? WHERE id = ?",
                    [(now + lease, row[0]) for row in rows],
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            # as leased: the lease's end is the token the outcome is recorded with
            return [
                dataclasses.replace(delivery_from_row(row), next_attempt_at=now + lease)
                for row in rows
            ]

        return await self._write(work, durable=False)

    async def delivered(self, claimed: Delivery, now: int, status: int) -> bool:
        return await self._record(
            "UPDATE webhook_deliveries SET state = 'delivered', attempts = attempts + 1, "
            f"delivered_at = :now, last_status = :status, last_error = NULL WHERE {_HELD}",
            claimed,
            now=now,
            status=status,
        )

    async def retry_later(
        self, claimed: Delivery, *, at: int, status: int | None, error: str
    ) -> bool:
        return await self._record(
            "UPDATE webhook_deliveries SET attempts = attempts + 1, next_attempt_at = :at, "
            f"last_status = :status, last_error = :error WHERE {_HELD}",
            claimed,
            at=at,
            status=status,
            error=error,
        )

    async def fail(self, claimed: Delivery, *, status: int | None, error: str) -> bool:
        return await self._record(
            "UPDATE webhook_deliveries SET state = 'failed', attempts = attempts + 1, "
            f"last_status = :status, last_error = :error WHERE {_HELD}",
            claimed,
            status=status,
            error=error,
        )

    async def _record(self, sql: str, claimed: Delivery, **params: Any) -> bool:
        """An attempt's outcome, written only while ``claimed``'s lease is still the row's."""
        params |= {"id": claimed.id, "leased_until": claimed.next_attempt_at}
        changed: int = await self._write(lambda db: db.execute(sql, params).rowcount, durable=False)
        return changed == 1

    async def get(self, delivery_id: int) -> Delivery | None:
        def work(db: sqlite3.Connection) -> Delivery | None:
            row = db.execute(f"{_SELECT} WHERE id = ?", (delivery_id,)).fetchone()
            return None if row is None else delivery_from_row(row)

        return await self._run(work)

    async def list(self, state: DeliveryState | None, limit: int, offset: int) -> list[Delivery]:
        def work(db: sqlite3.Connection) -> list[Delivery]:
            if state is None:
                rows = db.execute(
                    f"{_SELECT} ORDER BY id DESC LIMIT ? OFFSET ?", (limit, offset)
                ).fetchall()
            else:
                rows = db.execute(
                    f"{_SELECT} WHERE state = ? ORDER BY id DESC LIMIT ? OFFSET ?",
                    (state.value, limit, offset),
                ).fetchall()
            return [delivery_from_row(row) for row in rows]

        return await self._run(work)

    async def retry(self, delivery_id: int, now: int) -> Delivery:
        def work(db: sqlite3.Connection) -> Delivery:
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute(f"{_SELECT} WHERE id = ?", (delivery_id,)).fetchone()
                if row is None:
                    raise DeliveryNotFound(delivery_id)
                current = delivery_from_row(row)
                if current.state is not DeliveryState.FAILED:
                    raise DeliveryNotFailed(delivery_id, current.state)
                db.execute(
                    "UPDATE webhook_deliveries SET state = 'pending', attempts = 0, "
                    "next_attempt_at = ? WHERE id = ?",
                    (now, delivery_id),
                )
                row = db.execute(f"{_SELECT} WHERE id = ?", (delivery_id,)).fetchone()
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return delivery_from_row(row)

        return await self._write(work, durable=True)  # the operator is answered

    async def prune(self, delivered_before: int, limit: int) -> int:
        def work(db: sqlite3.Connection) -> int:
            cursor = db.execute(
                "DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM webhook_deliveries "
                "WHERE state = 'delivered' AND delivered_at < ? LIMIT ?)",
                (delivered_before, limit),
            )
            return cursor.rowcount

        return await self._write(work, durable=False)

    async def stats(self) -> QueueStats:
        def work(db: sqlite3.Connection) -> QueueStats:
            counts = dict.fromkeys(DeliveryState, 0)
            for state, count in db.execute(
                "SELECT state, count(*) FROM webhook_deliveries GROUP BY state"
            ):
                counts[DeliveryState(state)] = int(count)
            oldest = db.execute(
                "SELECT min(created_at) FROM webhook_deliveries WHERE state = 'pending'"
            ).fetchone()[0]
            return QueueStats(counts, None if oldest is None else int(oldest))

        return await self._run(work)

    async def close(self) -> None:
        def work() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await asyncio.get_running_loop().run_in_executor(self._executor, work)
        self._executor.shutdown(wait=True)
        if self._own_writer:
            await self._writer.close()
