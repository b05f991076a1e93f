"""PostgreSQL persistence of rooms (cluster mode): :class:`RoomStore` on asyncpg.

The same semantics as the SQLite store (:mod:`livehub.adapters.sqlite.store`), for several
livehub processes sharing one database:

- Every accepted change is one transaction: the room row, written as a **conditional update** on
  ``version`` (``UPDATE ... WHERE id = $n AND version = $m``: of two nodes racing for one room
  exactly one wins, the other gets ``False`` and decides again), and for each event it reports
  ``rooms.event_seq`` incremented and one ``webhook_deliveries`` row per configured endpoint.
- Versioned migrations in ``schema_migrations``, applied at start-up under a transaction-scoped
  advisory lock, so nodes starting together migrate once; a database newer than this code is
  refused (:class:`SchemaTooNew`).
- Keyset paging on ``(created_at, id)``; counts per status kept by a trigger (O(1)).
- A connection pool. Losing PostgreSQL raises :class:`livehub.domain.store.StoreUnavailable`
  (the API answers 503 ``database_unavailable``). A statement that fails on a connection that
  died (say, after a PostgreSQL restart) is retried once on a fresh connection when nothing can
  have been committed; a failure during ``COMMIT`` is never retried (the outcome is unknown, so
  it is reported, not guessed). A statement slower than ``command_timeout`` is reported as
  unavailable too, but is not taken for a dead connection: the pool is kept, nothing is rerun.
  What was acknowledged was committed: nothing acknowledged is lost.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TypeVar, cast

import asyncpg

from livehub.adapters.rows import (
    COUNT_PRIVATE,
    RECORDING_COLUMNS,
    ROOM_COLUMNS,
    SELECT_LISTED,
    STAGED_COLUMNS,
    EventView,
    bare_view,
    keyset_page,
    outbox_rows,
    recording_from_row,
    recording_values,
    room_from_row,
    room_values,
    schema_too_new,
)
from livehub.domain.recordings import Recording
from livehub.domain.room import ListedRoom, Room, RoomEvent, RoomStatus, Visibility
from livehub.domain.store import Cursor, StoreUnavailable, WriteHealth

log = logging.getLogger(__name__)

T = TypeVar("T")

#: any constant identifies livehub's migration lock among advisory locks
MIGRATION_LOCK = 0x6C697665_6875620  # "livehub"

MIGRATIONS: tuple[str, ...] = (
    # 1: rooms (the SQLite schema as of its migration 2), the webhook outbox, counts by trigger
    """
    CREATE TABLE rooms (
        id TEXT PRIMARY KEY,
        title TEXT NOT NULL,
        stream_key TEXT NOT NULL UNIQUE,
        status TEXT NOT NULL CHECK (status IN ('preparing', 'live', 'ended')),
        created_at BIGINT NOT NULL,
        start_time BIGINT,
        end_time BIGINT,
        publish_token TEXT NOT NULL,
        owner_token_hash TEXT NOT NULL,
        publisher_client_id TEXT,
        publisher_service_id TEXT,
        reconnecting_since BIGINT,
        published_at BIGINT,
        version INTEGER NOT NULL DEFAULT 1,
        event_seq INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX rooms_created ON rooms (created_at, id);
    CREATE INDEX rooms_status_created ON rooms (status, created_at, id);
    CREATE INDEX rooms_publisher ON rooms (publisher_client_id) WHERE status != 'ended';
    CREATE INDEX rooms_reconnecting ON rooms (reconnecting_since)
        WHERE reconnecting_since IS NOT NULL;
    CREATE INDEX rooms_ended ON rooms (end_time) WHERE status = 'ended';
    CREATE TABLE webhook_deliveries (
        id BIGSERIAL PRIMARY KEY,
        endpoint TEXT NOT NULL,
        room_id TEXT NOT NULL,
        seq BIGINT NOT NULL,
        type TEXT NOT NULL,
        body TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending','delivered','failed')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at BIGINT NOT NULL,
        last_status INTEGER,
        last_error TEXT,
        delivered_at BIGINT
    );
    CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_attempt_at);
    CREATE INDEX webhook_deliveries_order ON webhook_deliveries (endpoint, room_id, id);
    CREATE TABLE room_counts (status TEXT PRIMARY KEY, n BIGINT NOT NULL);
    INSERT INTO room_counts (status, n) VALUES ('preparing', 0), ('live', 0), ('ended', 0);
    CREATE FUNCTION rooms_count() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        -- one statement locks both rows in index order: no deadlock between transitions
        IF TG_OP = 'INSERT' THEN
            UPDATE room_counts SET n = n + 1 WHERE status = NEW.status;
        ELSIF TG_OP = 'DELETE' THEN
            UPDATE room_counts SET n = n - 1 WHERE status = OLD.status;
        ELSIF OLD.status != NEW.status THEN
            UPDATE room_counts
                SET n = n + CASE WHEN status = NEW.status THEN 1 ELSE -1 END
                WHERE status IN (OLD.status, NEW.status);
        END IF;
        RETURN NULL;
    END $$;
    CREATE TRIGGER rooms_count AFTER INSERT OR DELETE OR UPDATE OF status ON rooms
        FOR EACH ROW EXECUTE FUNCTION rooms_count();
    """,
    # 2: several SRS origins (SQLite migration 3): which SRS accepted the publisher
    """
    ALTER TABLE rooms ADD COLUMN publisher_server_id TEXT;
    ALTER TABLE rooms ADD COLUMN publisher_origin TEXT;
    """,
    # 3: recordings (SQLite migration 4); ``record`` is 0/1 as in SQLite, so the SQLite copy
    # (livehub.migrate_db) moves it as it is
    """
    ALTER TABLE rooms ADD COLUMN record SMALLINT NOT NULL DEFAULT 0;
    CREATE TABLE recordings (
        id TEXT PRIMARY KEY,
        room_id TEXT NOT NULL,
        started_at BIGINT NOT NULL,
        ended_at BIGINT NOT NULL,
        duration_ms BIGINT NOT NULL,
        size_bytes BIGINT NOT NULL,
        path TEXT NOT NULL UNIQUE
    );
    CREATE INDEX recordings_room ON recordings (room_id, started_at, id);
    CREATE INDEX recordings_ended ON recordings (ended_at);
    """,
    # 4: private rooms, the stage and chat moderation (SQLite migration 5)
    """
    ALTER TABLE rooms ADD COLUMN visibility TEXT NOT NULL DEFAULT 'public'
        CHECK (visibility IN ('public', 'private'));
    ALTER TABLE rooms ADD COLUMN stage TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE rooms ADD COLUMN moderation TEXT NOT NULL DEFAULT '{}';
    CREATE INDEX rooms_private ON rooms (status, created_at, id) WHERE visibility = 'private';
    CREATE INDEX rooms_staged ON rooms (created_at, id) WHERE stage != '{}';
    """,
)

_MIGRATIONS_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations "
    "(version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
)

_SELECT = f"SELECT {', '.join(ROOM_COLUMNS)} FROM rooms"
_INSERT = (
    f"INSERT INTO rooms ({', '.join(ROOM_COLUMNS)}) "
    f"VALUES ({', '.join(f'${n}' for n in range(1, len(ROOM_COLUMNS) + 1))})"
)
#: rooms not ended (the partial index ``rooms_publisher`` holds exactly them)
_COUNT_OPEN = "SELECT count(*) FROM rooms WHERE status != 'ended'"
_UPDATE = (
    "UPDATE rooms SET "
    + ", ".join(f"{col} = ${n}" for n, col in enumerate(ROOM_COLUMNS[1:], start=1))
    + f" WHERE id = ${len(ROOM_COLUMNS)} AND version = ${len(ROOM_COLUMNS) + 1}"
)
_STAGE = (
    f"INSERT INTO webhook_deliveries ({', '.join(STAGED_COLUMNS)}) "
    f"VALUES ({', '.join(f'${n}' for n in range(1, len(STAGED_COLUMNS) + 1))})"
)

_SELECT_RECORDING = f"SELECT {', '.join(RECORDING_COLUMNS)} FROM recordings"
#: a path stored already inserts nothing (``recordings.path`` is UNIQUE): SRS retried the hook
_INSERT_RECORDING = (
    f"INSERT INTO recordings ({', '.join(RECORDING_COLUMNS)}) "
    f"VALUES ({', '.join(f'${n}' for n in range(1, len(RECORDING_COLUMNS) + 1))}) "
    "ON CONFLICT (path) DO NOTHING"
)

#: what "PostgreSQL is unreachable" looks like from asyncpg
UNAVAILABLE: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,  # shutdown, crash recovery, cannot connect now
    asyncpg.exceptions.InsufficientResourcesError,  # too many connections, disk full
    asyncpg.exceptions.ReadOnlySQLTransactionError,  # a standby (after a failover)
    asyncpg.InterfaceError,  # connection closed under us
    # a connection the server dropped mid-query, then used again: "cannot switch to state 12;
    # another operation (2) is in progress" (seen while PostgreSQL stopped under queries)
    asyncpg.exceptions.InternalClientError,
    OSError,
    TimeoutError,
)


class SchemaTooNew(RuntimeError):
    """The database was migrated by a newer livehub: refuse it rather than guess."""


class _Attempt:
    """Whether a connection was acquired (a time-out after that is a slow statement, not a dead
    connection), and whether a write reached COMMIT (then it must not be retried)."""

    __slots__ = ("acquired", "committing")

    def __init__(self) -> None:
        self.acquired = False
        self.committing = False


class PostgresStore:
    """:class:`livehub.domain.store.RoomStore` on PostgreSQL. Build it with :meth:`open`."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        webhook_endpoints: Sequence[str] = (),
        event_view: EventView | None = None,
        command_timeout: float = 10.0,
    ) -> None:
        self._pool = pool
        self._command_timeout = command_timeout
        self.webhook_endpoints = tuple(webhook_endpoints)
        #: whether writes fail now (ping says so: reads alone may not show it)
        self.write_health = WriteHealth()
        self._event_view = event_view or bare_view

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        command_timeout: float = 10.0,
        webhook_endpoints: Sequence[str] = (),
        event_view: EventView | None = None,
    ) -> PostgresStore:
        """Connect a pool and migrate; :class:`StoreUnavailable` if PostgreSQL cannot be
        reached, :class:`SchemaTooNew` if the database is newer than this livehub."""
        try:
            pool = await asyncpg.create_pool(
                url,
                min_size=min_size,
                max_size=max_size,
                command_timeout=command_timeout,
                timeout=command_timeout,
            )
        except UNAVAILABLE as exc:
            raise StoreUnavailable(f"PostgreSQL unreachable: {exc}") from exc
        store = cls(
            pool,
            webhook_endpoints=webhook_endpoints,
            event_view=event_view,
            command_timeout=command_timeout,
        )
        try:
            await store.migrate()
        except BaseException:
            await pool.close()
            raise
        return store

    # -- migrations -----------------------------------------------------------------------

    async def schema_version(self) -> int:
        async def run(conn: asyncpg.Connection, _: _Attempt) -> int:
            return await self._version(conn)

        return await self._with_connection(run)

    @staticmethod
    async def _version(conn: asyncpg.Connection) -> int:
        exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
        if not exists:
            return 0
        return int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_migrations"))

    async def migrate(self) -> None:
        """Bring the schema up to date, one transaction per migration, each under the advisory
        lock (another node migrating at the same time waits, then finds nothing to do)."""

        async def run(conn: asyncpg.Connection, _: _Attempt) -> None:
            while True:
                async with conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
                    await conn.execute(_MIGRATIONS_TABLE)
                    version = await self._version(conn)
                    if version > len(MIGRATIONS):
                        raise SchemaTooNew(schema_too_new("database", version, len(MIGRATIONS)))
                    if version == len(MIGRATIONS):
                        return
                    log.info("migrating PostgreSQL database to schema version %d", version + 1)
                    await conn.execute(MIGRATIONS[version])
                    await conn.execute(
                        "INSERT INTO schema_migrations (version) VALUES ($1)", version + 1
                    )

        await self._with_connection(run)

    # -- plumbing -------------------------------------------------------------------------

    async def _with_connection(
        self, work: Callable[[asyncpg.Connection, _Attempt], Awaitable[T]]
    ) -> T:
        """Run ``work`` on a pooled connection, retrying once on a fresh one if the connection
        was found dead before anything could be committed."""
        for attempt_number in (1, 2):
            attempt = _Attempt()
            try:
                async with self._pool.acquire() as conn:
                    attempt.acquired = True
                    return await work(conn, attempt)
            except TimeoutError as exc:
                if attempt.acquired:
                    # a statement slower than command_timeout: asyncpg cancelled it and the
                    # connection is fine. Not a dead connection: neither the pool emptied nor
                    # the statement run again (it may be what made the database slow)
                    raise StoreUnavailable(
                        f"PostgreSQL statement took longer than {self._command_timeout:g} s"
                    ) from exc
                if attempt_number == 2:
                    raise StoreUnavailable(f"PostgreSQL unavailable: {exc}") from exc
                await self._pool.expire_connections()
                log.debug("PostgreSQL connection lost (%s); retrying once", exc)
            except UNAVAILABLE as exc:
                if attempt.committing or attempt_number == 2:
                    raise StoreUnavailable(f"PostgreSQL unavailable: {exc}") from exc
                # the other pooled connections likely died with this one: replace them all
                await self._pool.expire_connections()
                log.debug("PostgreSQL connection lost (%s); retrying once", exc)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _write(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """``work`` in a transaction; commit failures are reported, never retried."""
        try:
            result = await self._transaction(work)
        except StoreUnavailable:  # unreachable, full, read-only: not a conflict
            self.write_health.failed()
            raise
        self.write_health.succeeded()
        return result

    async def _transaction(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:

        async def run(conn: asyncpg.Connection, attempt: _Attempt) -> T:
            transaction = conn.transaction()
            await transaction.start()
            try:
                result = await work(conn)
            except BaseException:
                if not conn.is_closed():
                    # shielded: a cancellation must not interrupt the rollback (the
                    # connection would go back to the pool inside a transaction)
                    await asyncio.shield(transaction.rollback())
                raise
            attempt.committing = True
            await transaction.commit()
            return result

        return await self._with_connection(run)

    async def _stage(
        self, conn: asyncpg.Connection, room: Room, events: Iterable[RoomEvent], first_seq: int
    ) -> None:
        rows = outbox_rows(self.webhook_endpoints, self._event_view, room, events, first_seq)
        if rows:
            await conn.executemany(_STAGE, rows)

    # -- writes ---------------------------------------------------------------------------

    async def insert(
        self, room: Room, events: Sequence[RoomEvent] = (), *, max_open: int = 0
    ) -> bool:
        seq, version = room.event_seq, room.version

        async def work(conn: asyncpg.Connection) -> bool:
            # counted in the insert's transaction, but read committed: creations racing on
            # other connections (of this node or others) do not see each other's rows, so the
            # cap may be passed by at most the creations in flight at once (docs/operations.md)
            if max_open > 0 and await conn.fetchval(_COUNT_OPEN) >= max_open:
                raise _Conflict
            room.version = 1
            room.event_seq = seq + len(events)
            await conn.execute(_INSERT, *room_values(room))
            await self._stage(conn, room, events, seq)
            return True

        try:
            return await self._write(work)
        except _Conflict:
            room.version, room.event_seq = version, seq
            return False
        except BaseException:
            room.version, room.event_seq = version, seq
            raise

    async def update(
        self, room: Room, expected_version: int, events: Sequence[RoomEvent] = ()
    ) -> bool:
        seq, version = room.event_seq, room.version

        async def work(conn: asyncpg.Connection) -> bool:
            room.version = expected_version + 1
            room.event_seq = seq + len(events)
            status = await conn.execute(_UPDATE, *room_values(room)[1:], room.id, expected_version)
            if status != "UPDATE 1":
                raise _Conflict
            await self._stage(conn, room, events, seq)
            return True

        try:
            return await self._write(work)
        except _Conflict:
            room.version, room.event_seq = version, seq
            return False
        except BaseException:
            room.version, room.event_seq = version, seq
            raise

    async def append_events(self, events: Sequence[RoomEvent]) -> None:
        if not events:
            return
        await self._write(functools.partial(self._append, events))

    async def _append(self, events: Sequence[RoomEvent], conn: asyncpg.Connection) -> None:
        """Stage ``events`` in the transaction of ``conn``: each moves its room's sequence on
        and bumps its version (the row locked until the commit); a room gone drops its event."""
        for event in events:
            row = await conn.fetchrow(
                "UPDATE rooms SET event_seq = event_seq + 1, version = version + 1 "
                "WHERE id = $1 "
                f"RETURNING {', '.join(ROOM_COLUMNS)}",
                event.room_id,
            )
            if row is None:
                continue
            room = room_from_row(row)
            await self._stage(conn, room, [event], room.event_seq - 1)

    async def delete_ended_before(self, ended_before: int, limit: int = 1000) -> int:
        async def work(conn: asyncpg.Connection) -> int:
            status = await conn.execute(
                "DELETE FROM rooms WHERE id IN (SELECT id FROM rooms "
                "WHERE status = 'ended' AND end_time < $1 LIMIT $2)",
                ended_before,
                limit,
            )
            return int(status.split()[-1])

        return await self._write(work)

    # -- reads ----------------------------------------------------------------------------

    async def _fetch(self, query: str, *args: object) -> list[Room]:
        async def run(conn: asyncpg.Connection, _: _Attempt) -> list[Room]:
            return [room_from_row(row) for row in await conn.fetch(query, *args)]

        return await self._with_connection(run)

    async def _fetch_one(self, where: str, *args: object, order: str = "") -> Room | None:
        rooms = await self._fetch(f"{_SELECT} WHERE {where} {order} LIMIT 1", *args)
        return rooms[0] if rooms else None

    async def get(self, room_id: str) -> Room | None:
        return await self._fetch_one("id = $1", room_id)

    async def get_by_stream(self, stream_key: str) -> Room | None:
        return await self._fetch_one("stream_key = $1", stream_key)

    async def get_by_publisher(self, client_id: str) -> Room | None:
        # SRS reuses client ids after a restart: the publish accepted last is the one meant
        return await self._fetch_one(
            "publisher_client_id = $1 AND status != 'ended'",
            client_id,
            order="ORDER BY published_at DESC NULLS LAST, created_at DESC",
        )

    async def page(
        self,
        status: RoomStatus | None,
        limit: int,
        after: Cursor | None = None,
        visibility: Visibility | None = None,
    ) -> list[Room]:
        where, args = _page_query(status, limit, after, visibility)
        return await self._fetch(f"{_SELECT} WHERE {where}", *args)

    async def render_page(
        self,
        status: RoomStatus | None,
        limit: int,
        after: Cursor | None,
        render: Callable[[list[ListedRoom]], T],
        visibility: Visibility | None = None,
    ) -> T:
        where, args = _page_query(status, limit, after, visibility)
        query = f"{SELECT_LISTED} WHERE {where}"

        async def run(conn: asyncpg.Connection, _: _Attempt) -> list[asyncpg.Record]:
            rows: list[asyncpg.Record] = await conn.fetch(query, *args)
            return rows

        rows = await self._with_connection(run)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, _render_records, render, rows)

    async def count(
        self, status: RoomStatus | None = None, visibility: Visibility | None = None
    ) -> int:
        async def run(conn: asyncpg.Connection, _: _Attempt) -> int:
            if visibility is not None:
                private = int(
                    await conn.fetchval(COUNT_PRIVATE)
                    if status is None
                    else await conn.fetchval(f"{COUNT_PRIVATE} AND status = $1", status.value)
                )
                if visibility is Visibility.PRIVATE:
                    return private
                total = await conn.fetchval(
                    "SELECT coalesce(sum(n), 0) FROM room_counts"
                    + ("" if status is None else " WHERE status = $1"),
                    *(() if status is None else (status.value,)),
                )
                return int(total) - private
            if status is None:
                value = await conn.fetchval("SELECT coalesce(sum(n), 0) FROM room_counts")
            else:
                value = await conn.fetchval(
                    "SELECT coalesce(sum(n), 0) FROM room_counts WHERE status = $1", status.value
                )
            return int(value)

        return await self._with_connection(run)

    async def live(self) -> list[Room]:
        return await self._fetch(f"{_SELECT} WHERE status = 'live' ORDER BY created_at, id")

    async def staged(self) -> list[Room]:
        return await self._fetch(
            f"{_SELECT} WHERE stage != '{{}}' AND status != 'ended' ORDER BY created_at, id"
        )

    async def reconnect_due(self, opened_before: int) -> list[Room]:
        return await self._fetch(
            f"{_SELECT} WHERE reconnecting_since IS NOT NULL AND reconnecting_since <= $1 "
            "AND status = 'live'",
            opened_before,
        )

    async def preparing_before(self, created_before: int, limit: int = 500) -> list[Room]:
        return await self._fetch(
            f"{_SELECT} WHERE status = 'preparing' AND created_at < $1 "
            "ORDER BY created_at, id LIMIT $2",
            created_before,
            limit,
        )

    # -- recordings (livehub.domain.recordings.RecordingStore) -----------------------------

    async def insert_recording(
        self, recording: Recording, events: Sequence[RoomEvent] = ()
    ) -> Recording:
        """The row and ``events`` staged as :meth:`append_events` stages them, in one
        transaction; a path stored already: that recording, nothing written."""

        async def work(conn: asyncpg.Connection) -> Recording:
            while True:
                # a transaction inserting the same path makes this wait for its outcome
                status = await conn.execute(_INSERT_RECORDING, *recording_values(recording))
                if status == "INSERT 0 1":
                    await self._append(events, conn)
                    return recording
                # read committed: this statement sees the row the insert met
                row = await conn.fetchrow(f"{_SELECT_RECORDING} WHERE path = $1", recording.path)
                if row is not None:
                    return recording_from_row(row)
                # deleted in between: insert again

        return await self._write(work)

    async def _recordings(self, where: str, *args: object) -> list[Recording]:
        async def run(conn: asyncpg.Connection, _: _Attempt) -> list[Recording]:
            rows = await conn.fetch(f"{_SELECT_RECORDING} WHERE {where}", *args)
            return [recording_from_row(row) for row in rows]

        return await self._with_connection(run)

    async def recordings_of(self, room_id: str) -> list[Recording]:
        return await self._recordings("room_id = $1 ORDER BY started_at, id", room_id)

    async def get_recording(self, recording_id: str) -> Recording | None:
        found = await self._recordings("id = $1", recording_id)
        return found[0] if found else None

    async def delete_recording(self, recording_id: str) -> Recording | None:
        async def work(conn: asyncpg.Connection) -> Recording | None:
            row = await conn.fetchrow(
                f"DELETE FROM recordings WHERE id = $1 RETURNING {', '.join(RECORDING_COLUMNS)}",
                recording_id,
            )
            return None if row is None else recording_from_row(row)

        return await self._write(work)

    async def expired_recordings(self, ended_before: int | None, limit: int) -> list[Recording]:
        orphan = "NOT EXISTS (SELECT 1 FROM rooms WHERE rooms.id = recordings.room_id)"
        if ended_before is None:
            return await self._recordings(f"{orphan} LIMIT $1", limit)
        return await self._recordings(f"(ended_at < $1 OR {orphan}) LIMIT $2", ended_before, limit)

    async def ping(self) -> bool:
        """Whether the database answers a read of the rooms table now, and its writes do not
        fail (:class:`WriteHealth`)."""
        if self.write_health.failing:
            return False
        try:
            async with asyncio.timeout(2.0):
                await self._fetch(f"{_SELECT} LIMIT 1")
        except (StoreUnavailable, TimeoutError, asyncpg.PostgresError):
            return False
        return True

    async def close(self) -> None:
        try:
            async with asyncio.timeout(10.0):
                # shielded: a cancellation of close() must not leave the pool half closed
                await asyncio.shield(self._pool.close())
        except TimeoutError:  # pragma: no cover - a connection stuck in a query
            log.warning("PostgreSQL pool did not close in 10 s; terminating it")
            self._pool.terminate()


class _Conflict(Exception):
    """The conditional update matched no row: roll back, report False."""


def _page_query(
    status: RoomStatus | None,
    limit: int,
    after: Cursor | None,
    visibility: Visibility | None = None,
) -> tuple[str, list[object]]:
    """:func:`livehub.adapters.rows.keyset_page` in PostgreSQL's parameter style."""
    return keyset_page(status, limit, after, lambda n: f"${n}", visibility)


def _render_records(render: Callable[[list[ListedRoom]], T], rows: list[asyncpg.Record]) -> T:
    """``render`` of a page's records, as the tuples it takes (in the default executor)."""
    return render(cast(list[ListedRoom], [tuple(row) for row in rows]))
