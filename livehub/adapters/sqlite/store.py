"""SQLite persistence of rooms (the embedded default): :class:`RoomStore` on SQLite.

Every accepted change is one transaction: the room row (a conditional update on ``version``)
and, for each event it reports, ``rooms.event_seq`` incremented and one ``webhook_deliveries``
row per configured endpoint. Owner tokens are stored only as SHA-256 hashes.

**Durability** (``LIVEHUB_DB_SYNC``). WAL journal. With ``full`` (the default) every store
write (a room created or changed and the webhook rows it stages, a recording, a recording
deleted) commits with ``synchronous=FULL``: the WAL is fsynced before ``COMMIT`` returns, so
before the client or SRS gets its answer, and before any other connection can read the
change; an answered change survives a power loss or an OS crash. The outbox's own bookkeeping
(claims, outcomes, pruning) and the rooms' retention commit with ``synchronous=NORMAL`` even
then: a power loss can take back only the last of them, which means a webhook sent again
(at-least-once) or a room deleted again, never a change a client was told of. The writer
switches the level between transactions (a pragma, ~2 µs, only when it changes). The WAL is
written in order, so the fsync of a FULL commit also makes every NORMAL commit before it
durable: what a power loss can lose is only bookkeeping written since the last store write.
With ``normal`` every write commits with NORMAL (livehub before this setting): a committed
change survives the process being killed (``kill -9``) but the last ones can be lost in a
power loss (the WAL is fsynced at checkpoints only); for operators who prefer the throughput,
or whose storage survives a power loss (a battery-backed write cache).

The schema is versioned with ``PRAGMA user_version`` and upgraded by the ordered ``MIGRATIONS``
at start-up (append new ones; never edit one).

**Writes never run on the event loop.** One :class:`SQLiteWriter` owns the connection that
writes the file, on its own thread: every store write (a room change and its outbox rows, or a
recording and its ``recording.ready``, in one transaction) and every write of the webhook
outbox (claims, outcomes, pruning: it shares the writer, see
:mod:`livehub.adapters.sqlite.outbox`) runs there, one after the other in call order. So
the store and the outbox never wait for each other's file lock (one connection writes), and the
loop never waits on SQLite's lock at all: a webhook burst cannot stall signaling or answer an
SRS hook 503. The rows a write stages are built on the loop (the event view reads live state),
the SQL runs on the writer. Reads stay on the loop's connection: under WAL they never wait for
the writer.

The reads are synchronous sqlite3 underneath (tens of microseconds each: one row, or one page
through an index) behind the async interface; nothing reads the whole table. Room counts per
status are kept by triggers, so counting is O(1) whatever the history. The one read that is not
that small, a list page (a page of 1,000 rooms takes ~10 ms to read and build), runs off the
event loop: on a file database, in one worker thread with its own read-only connection (WAL lets
it read while the loop's connection writes; it sees every committed change). ``render_page``
also renders the page there (the API builds its JSON body from the rows).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import os
import sqlite3
import stat
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

from livehub.adapters.rows import (
    COUNT_PRIVATE,
    RECORDING_COLUMNS,
    ROOM_COLUMNS,
    SELECT_LISTED,
    STAGED_COLUMNS,
    EventView,
    OutboxRow,
    bare_view,
    keyset_page,
    outbox_rows,
    recording_from_row,
    recording_values,
    room_from_row,
    room_values,
    schema_too_new,
)
from livehub.config import DbSync
from livehub.domain.recordings import Recording
from livehub.domain.room import ListedRoom, Room, RoomEvent, RoomStatus, Visibility
from livehub.domain.store import Cursor, StoreUnavailable, WriteHealth

log = logging.getLogger(__name__)

_M = TypeVar("_M", bound=Callable[..., Awaitable[Any]])
_T = TypeVar("_T")

MIGRATIONS: tuple[str, ...] = (
    # 1: rooms
    """
    CREATE TABLE rooms (
        id TEXT PRIMARY KEY,
        title TEXT NOT NULL,
        stream_key TEXT NOT NULL UNIQUE,
        status TEXT NOT NULL CHECK (status IN ('preparing', 'live', 'ended')),
        created_at INTEGER NOT NULL,
        start_time INTEGER,
        end_time INTEGER,
        publish_token TEXT NOT NULL,
        owner_token_hash TEXT NOT NULL,
        publisher_client_id TEXT,
        publisher_service_id TEXT,
        reconnecting_since INTEGER
    );
    CREATE INDEX rooms_created_at ON rooms (created_at);
    """,
    # 2: the store as source of truth: versions for conditional writes, event sequence, the
    # webhook outbox, keyset and due-query indexes, counts kept by triggers
    """
    ALTER TABLE rooms ADD COLUMN published_at INTEGER;
    ALTER TABLE rooms ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE rooms ADD COLUMN event_seq INTEGER NOT NULL DEFAULT 0;
    DROP INDEX rooms_created_at;
    CREATE INDEX rooms_created ON rooms (created_at, id);
    CREATE INDEX rooms_status_created ON rooms (status, created_at, id);
    CREATE INDEX rooms_publisher ON rooms (publisher_client_id) WHERE status != 'ended';
    CREATE INDEX rooms_reconnecting ON rooms (reconnecting_since)
        WHERE reconnecting_since IS NOT NULL;
    CREATE INDEX rooms_ended ON rooms (end_time) WHERE status = 'ended';
    CREATE TABLE webhook_deliveries (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        endpoint TEXT NOT NULL,
        room_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        type TEXT NOT NULL,
        body TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending','delivered','failed')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,
        last_status INTEGER,
        last_error TEXT,
        delivered_at INTEGER
    );
    CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_attempt_at);
    CREATE INDEX webhook_deliveries_order ON webhook_deliveries (endpoint, room_id, id);
    CREATE TABLE room_counts (status TEXT PRIMARY KEY, n INTEGER NOT NULL);
    INSERT INTO room_counts (status, n)
        SELECT s.status, (SELECT count(*) FROM rooms WHERE rooms.status = s.status)
        FROM (SELECT 'preparing' AS status UNION ALL SELECT 'live' UNION ALL SELECT 'ended') s;
    CREATE TRIGGER rooms_count_insert AFTER INSERT ON rooms BEGIN
        UPDATE room_counts SET n = n + 1 WHERE status = NEW.status;
    END;
    CREATE TRIGGER rooms_count_delete AFTER DELETE ON rooms BEGIN
        UPDATE room_counts SET n = n - 1 WHERE status = OLD.status;
    END;
    CREATE TRIGGER rooms_count_update AFTER UPDATE OF status ON rooms
        WHEN OLD.status != NEW.status BEGIN
        UPDATE room_counts SET n = n - 1 WHERE status = OLD.status;
        UPDATE room_counts SET n = n + 1 WHERE status = NEW.status;
    END;
    """,
    # 3: several SRS origins: which SRS accepted the publisher (kicks and reconciliation go
    # to that origin's API)
    """
    ALTER TABLE rooms ADD COLUMN publisher_server_id TEXT;
    ALTER TABLE rooms ADD COLUMN publisher_origin TEXT;
    """,
    # 4: recordings (livehub.domain.recordings): whether a room records, and its files
    """
    ALTER TABLE rooms ADD COLUMN record INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE recordings (
        id TEXT PRIMARY KEY,
        room_id TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        ended_at INTEGER NOT NULL,
        duration_ms INTEGER NOT NULL,
        size_bytes INTEGER NOT NULL,
        path TEXT NOT NULL UNIQUE
    );
    CREATE INDEX recordings_room ON recordings (room_id, started_at, id);
    CREATE INDEX recordings_ended ON recordings (ended_at);
    """,
    # 5: private rooms, the stage (co-hosts publishing to SRS) and chat moderation
    """
    ALTER TABLE rooms ADD COLUMN visibility TEXT NOT NULL DEFAULT 'public'
        CHECK (visibility IN ('public', 'private'));
    ALTER TABLE rooms ADD COLUMN stage TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE rooms ADD COLUMN moderation TEXT NOT NULL DEFAULT '{}';
    CREATE INDEX rooms_private ON rooms (status, created_at, id) WHERE visibility = 'private';
    CREATE INDEX rooms_staged ON rooms (created_at, id) WHERE stage != '{}';
    """,
)

_SELECT = f"SELECT {', '.join(ROOM_COLUMNS)} FROM rooms"
_INSERT = (
    f"INSERT INTO rooms ({', '.join(ROOM_COLUMNS)}) VALUES ({', '.join('?' for _ in ROOM_COLUMNS)})"
)
#: rooms not ended (the partial index ``rooms_publisher`` holds exactly them)
_COUNT_OPEN = "SELECT count(*) FROM rooms WHERE status != 'ended'"
_UPDATE = (
    "UPDATE rooms SET "
    + ", ".join(f"{col} = ?" for col in ROOM_COLUMNS[1:])
    + " WHERE id = ? AND version = ?"
)
_STAGE = (
    f"INSERT INTO webhook_deliveries ({', '.join(STAGED_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in STAGED_COLUMNS)})"
)

_SELECT_RECORDING = f"SELECT {', '.join(RECORDING_COLUMNS)} FROM recordings"
#: a path stored already inserts nothing (``recordings.path`` is UNIQUE): SRS retried the hook
_INSERT_RECORDING = (
    f"INSERT INTO recordings ({', '.join(RECORDING_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in RECORDING_COLUMNS)}) ON CONFLICT (path) DO NOTHING"
)

#: milliseconds a write waits for another connection's lock once the store runs
BUSY_TIMEOUT_MS = 100
#: ``PRAGMA synchronous`` levels: FULL fsyncs the WAL at each commit, NORMAL at checkpoints
SYNC_FULL, SYNC_NORMAL = 2, 1
#: an event appended: the room's sequence moves on, and its version too (see the store's port)
_BUMP_SEQ = "UPDATE rooms SET event_seq = ?, version = version + 1 WHERE id = ? AND event_seq = ?"


def apply_migrations(db: sqlite3.Connection, name: str, upto: int | None = None) -> None:
    """Apply the ``MIGRATIONS`` ``db`` lacks up to schema version ``upto`` (default: all), one
    transaction each (``PRAGMA user_version`` moves with each). Tests build older schemas with
    ``upto``."""
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    for number, script in enumerate(MIGRATIONS[version:upto], start=version + 1):
        log.info("migrating database %s to schema version %d", name, number)
        try:
            db.executescript(f"BEGIN; {script}; PRAGMA user_version = {number}; COMMIT;")
        except sqlite3.Error:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise


def _unavailable(method: _M) -> _M:
    """Report the database failing (locked by another writer, I/O error, closed) as
    :class:`StoreUnavailable`; integrity errors (a duplicate) stay what they are."""

    @functools.wraps(method)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return await method(*args, **kwargs)
        except (sqlite3.OperationalError, sqlite3.ProgrammingError) as exc:
            log.warning("database unavailable: %s", exc)
            raise StoreUnavailable("The database is unavailable: try again") from exc

    return cast(_M, wrapper)


class SchemaTooNew(RuntimeError):
    """The database was written by a newer livehub: refuse it rather than guess."""


def private_file(path: str) -> None:
    """Create the SQLite file ``path`` readable by its owner only (0600): it holds publish and
    owner token hashes and the webhook outbox. SQLite gives its ``-wal`` and ``-shm`` files the
    database file's mode. An existing file (or journal) that others may read is made private."""
    if path == ":memory:" or path.startswith("file:"):
        return
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    for each in (path, f"{path}-wal", f"{path}-shm"):
        try:
            mode = stat.S_IMODE(os.stat(each).st_mode)
        except FileNotFoundError:
            continue
        if mode & 0o077:
            os.chmod(each, mode & 0o700)
            log.warning("%s was readable by others (mode %o): now %o", each, mode, mode & 0o700)


class SQLiteStore:
    """:class:`livehub.domain.store.RoomStore` on SQLite."""

    def __init__(
        self,
        path: str,
        *,
        webhook_endpoints: Sequence[str] = (),
        event_view: EventView | None = None,
        clock: Callable[[], int] | None = None,
        sync: DbSync = "full",
    ) -> None:
        """``sync``: LIVEHUB_DB_SYNC (see the module docstring)."""
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            private_file(path)
        self.path = path
        #: whether writes fail now (ping says so: reads alone may not show it)
        self.write_health = WriteHealth()
        self.webhook_endpoints = tuple(webhook_endpoints)
        self._event_view = event_view or bare_view
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # this connection writes only the migrations (and, for ``:memory:``, everything)
        self._db.execute(f"PRAGMA synchronous={SYNC_FULL if sync == 'full' else SYNC_NORMAL}")
        self._db.execute("PRAGMA busy_timeout=5000")
        self.migrate()
        # from here on the event loop waits at most this long for another writer's lock (a
        # backup tool, a second process): then the write fails with 503 database_unavailable
        self._db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        #: pages are read here, off the event loop (a ``:memory:`` database is private to its
        #: connection, so it is read inline)
        self._reader: concurrent.futures.ThreadPoolExecutor | None = None
        self._reader_db: sqlite3.Connection | None = None
        if path != ":memory:":
            self._reader = concurrent.futures.ThreadPoolExecutor(1, "livehub-sqlite-read")
        #: the one connection that writes the file, on its own thread (None for ``:memory:``:
        #: writes run inline on our connection); the webhook outbox shares it
        self.writer = None if path == ":memory:" else SQLiteWriter(path, sync=sync)

    @property
    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def migrate(self) -> None:
        """Bring the schema up to date, one transaction per migration."""
        version = self.schema_version
        if version > len(MIGRATIONS):
            self._db.close()
            raise SchemaTooNew(schema_too_new(f"database {self.path}", version, len(MIGRATIONS)))
        apply_migrations(self._db, self.path)

    # -- writes ---------------------------------------------------------------------------

    async def _write(self, work: Callable[[sqlite3.Connection], _T], *, durable: bool = True) -> _T:
        """``work`` on the writer's connection (inline for ``:memory:``, private to ours);
        ``durable``: fsynced before this returns (with LIVEHUB_DB_SYNC=full), see
        :meth:`SQLiteWriter.run`."""
        try:
            if self.writer is None:
                result = work(self._db)
            else:
                result = await self.writer.run(work, durable=durable)
        except sqlite3.OperationalError:  # locked, full, read-only, I/O: not a conflict
            self.write_health.failed()
            raise
        self.write_health.succeeded()
        return result

    @_unavailable
    async def insert(
        self, room: Room, events: Sequence[RoomEvent] = (), *, max_open: int = 0
    ) -> bool:
        seq = room.event_seq
        room.version = 1
        room.event_seq = seq + len(events)
        values = room_values(room)
        staged = self._rows(room, events, seq)
        outcome = _Outcome()

        def work(db: sqlite3.Connection) -> bool:
            with _transaction(db, outcome):
                # one writer: the count cannot change before the insert commits (exact)
                if max_open > 0 and db.execute(_COUNT_OPEN).fetchone()[0] >= max_open:
                    raise _Conflict
                db.execute(_INSERT, values)
                if staged:
                    db.executemany(_STAGE, staged)
            return True

        try:
            return await self._write(work)
        except _Conflict:
            room.version, room.event_seq = 0, seq
            return False
        except BaseException:
            if not outcome.committed:
                room.version, room.event_seq = 0, seq
            raise

    @_unavailable
    async def update(
        self, room: Room, expected_version: int, events: Sequence[RoomEvent] = ()
    ) -> bool:
        seq, version = room.event_seq, room.version
        room.version = expected_version + 1
        room.event_seq = seq + len(events)
        params = (*room_values(room)[1:], room.id, expected_version)
        staged = self._rows(room, events, seq)
        outcome = _Outcome()

        def work(db: sqlite3.Connection) -> bool:
            with _transaction(db, outcome):
                if db.execute(_UPDATE, params).rowcount != 1:
                    raise _Conflict
                if staged:
                    db.executemany(_STAGE, staged)
            return True

        try:
            return await self._write(work)
        except _Conflict:
            room.version, room.event_seq = version, seq
            return False
        except BaseException:
            if not outcome.committed:
                room.version, room.event_seq = version, seq
            raise

    def _rows(self, room: Room, events: Iterable[RoomEvent], first_seq: int) -> list[OutboxRow]:
        """The webhook rows ``events`` of ``room`` stage (built on the loop)."""
        return outbox_rows(self.webhook_endpoints, self._event_view, room, events, first_seq)

    @_unavailable
    async def append_events(self, events: Sequence[RoomEvent]) -> None:
        await self._append(events)

    async def _append(
        self, events: Sequence[RoomEvent], first: Callable[[sqlite3.Connection], bool] | None = None
    ) -> None:
        """Each event staged with its room's next sequence number, after ``first`` (if any) in
        the same transaction on the writer (``first`` returning False stages nothing). The rows
        are built here from the rooms as read now; the writer stages them only if no write
        queued before changed a room's sequence since (then all is rolled back, and they are
        built again)."""
        while True:
            rooms: list[tuple[str, int]] = []
            staged: list[OutboxRow] = []
            next_seq: dict[str, int] = {}
            for event in events:
                row = self._db.execute(f"{_SELECT} WHERE id = ?", (event.room_id,)).fetchone()
                if row is None:
                    continue
                room = room_from_row(row)
                seq = next_seq.get(room.id, room.event_seq)
                if room.id not in next_seq:
                    rooms.append((room.id, room.event_seq))
                next_seq[room.id] = seq + 1
                staged.extend(self._rows(room, [event], seq))
            if not rooms and first is None:
                return
            bumps = [(next_seq[room_id], room_id, seq) for room_id, seq in rooms]
            try:
                await self._write(functools.partial(_stage_events, bumps, staged, first))
                return
            except _Conflict:
                continue  # a write queued before ours moved a sequence: build them again

    @_unavailable
    async def delete_ended_before(self, ended_before: int, limit: int = 1000) -> int:
        def work(db: sqlite3.Connection) -> int:
            cursor = db.execute(
                "DELETE FROM rooms WHERE id IN (SELECT id FROM rooms INDEXED BY rooms_ended "
                "WHERE status = 'ended' AND end_time < ? LIMIT ?)",
                (ended_before, limit),
            )
            return cursor.rowcount

        # retention answers no one: lost in a power cut, the next sweep deletes them again
        return await self._write(work, durable=False)

    # -- reads ----------------------------------------------------------------------------

    def _one(self, where: str, *args: object) -> Room | None:
        row = self._db.execute(f"{_SELECT} WHERE {where}", args).fetchone()
        return None if row is None else room_from_row(row)

    def _many(self, where: str, *args: object, index: str = "") -> list[Room]:
        indexed = f" INDEXED BY {index}" if index else ""
        query = f"{_SELECT}{indexed} WHERE {where}"
        return [room_from_row(row) for row in self._db.execute(query, args)]

    def _reader_connection(self) -> sqlite3.Connection:
        """The reader thread's own read-only connection (opened there on first use)."""
        db = self._reader_db
        if db is None:
            uri = f"{Path(self.path).resolve().as_uri()}?mode=ro"
            db = self._reader_db = sqlite3.connect(
                uri, uri=True, isolation_level=None, check_same_thread=False
            )
            db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        return db

    def _read_many(self, where: str, *args: object) -> list[Room]:
        """``_many`` on the reader thread's connection."""
        db = self._reader_connection()
        return [room_from_row(row) for row in db.execute(f"{_SELECT} WHERE {where}", args)]

    def _read_render(
        self, query: str, args: Sequence[object], render: Callable[[list[ListedRoom]], _T]
    ) -> _T:
        """``render`` of a listed page, both on the reader thread: one ``fetchall``, then one
        call (the GIL is held for as few Python steps as possible)."""
        return render(self._reader_connection().execute(query, args).fetchall())

    @_unavailable
    async def get(self, room_id: str) -> Room | None:
        return self._one("id = ?", room_id)

    @_unavailable
    async def get_by_stream(self, stream_key: str) -> Room | None:
        return self._one("stream_key = ?", stream_key)

    @_unavailable
    async def get_by_publisher(self, client_id: str) -> Room | None:
        return self._one(
            "publisher_client_id = ? AND status != 'ended' "
            "ORDER BY published_at DESC, created_at DESC LIMIT 1",
            client_id,
        )

    @_unavailable
    async def page(
        self,
        status: RoomStatus | None,
        limit: int,
        after: Cursor | None = None,
        visibility: Visibility | None = None,
    ) -> list[Room]:
        query, args = page_query(status, limit, after, visibility)
        if self._reader is None:
            return self._many(query, *args)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._reader, functools.partial(self._read_many, query, *args)
        )

    @_unavailable
    async def render_page(
        self,
        status: RoomStatus | None,
        limit: int,
        after: Cursor | None,
        render: Callable[[list[ListedRoom]], _T],
        visibility: Visibility | None = None,
    ) -> _T:
        where, args = page_query(status, limit, after, visibility)
        query = f"{SELECT_LISTED} WHERE {where}"
        if self._reader is None:
            return render(self._db.execute(query, args).fetchall())
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._reader, self._read_render, query, args, render)

    @_unavailable
    async def count(
        self, status: RoomStatus | None = None, visibility: Visibility | None = None
    ) -> int:
        if visibility is not None:
            where, args = ("", ()) if status is None else (" AND status = ?", (status.value,))
            private = int(self._db.execute(f"{COUNT_PRIVATE}{where}", args).fetchone()[0])
            if visibility is Visibility.PRIVATE:
                return private
            return await self.count(status) - private
        if status is None:
            row = self._db.execute("SELECT coalesce(sum(n), 0) FROM room_counts").fetchone()
        else:
            row = self._db.execute(
                "SELECT coalesce(sum(n), 0) FROM room_counts WHERE status = ?", (status.value,)
            ).fetchone()
        return int(row[0])

    @_unavailable
    async def live(self) -> list[Room]:
        return self._many("status = 'live' ORDER BY created_at, id")

    @_unavailable
    async def staged(self) -> list[Room]:
        return self._many(
            "stage != '{}' AND status != 'ended' ORDER BY created_at, id", index="rooms_staged"
        )

    @_unavailable
    async def reconnect_due(self, opened_before: int) -> list[Room]:
        return self._many(
            "reconnecting_since IS NOT NULL AND reconnecting_since <= ? AND status = 'live'",
            opened_before,
            index="rooms_reconnecting",
        )

    @_unavailable
    async def preparing_before(self, created_before: int, limit: int = 500) -> list[Room]:
        return self._many(
            "status = 'preparing' AND created_at < ? ORDER BY created_at, id LIMIT ?",
            created_before,
            limit,
        )

    # -- recordings (livehub.domain.recordings.RecordingStore) -----------------------------

    @_unavailable
    async def insert_recording(
        self, recording: Recording, events: Sequence[RoomEvent] = ()
    ) -> Recording:
        """On the writer, the row and ``events`` staged as :meth:`append_events` stages them, in
        one transaction; a path stored already: that recording, nothing written."""
        values = recording_values(recording)
        stored = recording

        def insert(db: sqlite3.Connection) -> bool:
            nonlocal stored
            if db.execute(_INSERT_RECORDING, values).rowcount == 1:
                stored = recording
                return True
            # one writer: the row that holds the path is committed, and stays while we write
            row = db.execute(f"{_SELECT_RECORDING} WHERE path = ?", (recording.path,)).fetchone()
            stored = recording_from_row(row)
            return False

        await self._append(events, first=insert)
        return stored

    def _recordings(self, where: str, *args: object) -> list[Recording]:
        return [
            recording_from_row(row)
            for row in self._db.execute(f"{_SELECT_RECORDING} WHERE {where}", args)
        ]

    @_unavailable
    async def recordings_of(self, room_id: str) -> list[Recording]:
        return self._recordings("room_id = ? ORDER BY started_at, id", room_id)

    @_unavailable
    async def get_recording(self, recording_id: str) -> Recording | None:
        found = self._recordings("id = ?", recording_id)
        return found[0] if found else None

    @_unavailable
    async def delete_recording(self, recording_id: str) -> Recording | None:
        def work(db: sqlite3.Connection) -> Recording | None:
            rows = db.execute(
                f"DELETE FROM recordings WHERE id = ? RETURNING {', '.join(RECORDING_COLUMNS)}",
                (recording_id,),
            ).fetchall()  # the statement done: committed, the lock let go
            return recording_from_row(rows[0]) if rows else None

        return await self._write(work)

    @_unavailable
    async def expired_recordings(self, ended_before: int | None, limit: int) -> list[Recording]:
        orphan = "NOT EXISTS (SELECT 1 FROM rooms WHERE rooms.id = recordings.room_id)"
        if ended_before is None:
            return self._recordings(f"{orphan} LIMIT ?", limit)
        return self._recordings(f"(ended_at < ? OR {orphan}) LIMIT ?", ended_before, limit)

    async def ping(self) -> bool:
        """Whether the database answers a read of the rooms table, and its writes do not fail
        (:class:`WriteHealth`)."""
        if self.write_health.failing:
            return False
        try:
            self._db.execute("SELECT 1 FROM rooms LIMIT 1").fetchone()
        except sqlite3.Error:
            return False
        return True

    async def close(self) -> None:
        if self.writer is not None:
            await self.writer.close()
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:  # pragma: no cover - best effort at shutdown
            log.warning("WAL checkpoint at shutdown failed", exc_info=True)
        self._db.close()
        if self._reader is not None:
            reader, self._reader = self._reader, None
            if self._reader_db is not None:
                reader.submit(self._reader_db.close)
            reader.shutdown(wait=True)


class _Outcome:
    __slots__ = ("committed",)

    def __init__(self) -> None:
        self.committed = False


class _Conflict(Exception):
    """The conditional write matched no row: roll back, decide again."""


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection, outcome: _Outcome) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``outcome.committed`` then), or ``ROLLBACK``."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    outcome.committed = True


def _stage_events(
    bumps: list[tuple[int, str, int]],
    staged: list[OutboxRow],
    first: Callable[[sqlite3.Connection], bool] | None,
    db: sqlite3.Connection,
) -> None:
    """Move each room's sequence on (if no one else did) and stage the rows, in one go, after
    ``first`` in the same transaction (False from it: nothing staged)."""
    with _transaction(db, _Outcome()):
        if first is not None and not first(db):
            return
        for bump in bumps:
            if db.execute(_BUMP_SEQ, bump).rowcount != 1:
                raise _Conflict
        if staged:
            db.executemany(_STAGE, staged)


class SQLiteWriter:
    """The one connection that writes a SQLite file, used from one dedicated thread: the store's
    and the outbox's writes run there in call order (see the module docstring).

    :meth:`run` is not cut short by a cancellation: the work goes on in its thread whatever the
    caller does, so the caller waits for its outcome (and then gets the cancellation), and what
    it believes was or was not committed is what was."""

    def __init__(self, path: str, *, sync: DbSync = "full") -> None:
        """``sync``: LIVEHUB_DB_SYNC, ``full`` (durable writes fsynced) or ``normal``."""
        self.path = path
        self.sync = sync
        self._executor = concurrent.futures.ThreadPoolExecutor(1, "livehub-sqlite-write")
        self._db: sqlite3.Connection | None = None
        #: the connection's ``PRAGMA synchronous`` now (set only when a write needs another)
        self._level = 0

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={SYNC_NORMAL}")
            self._level = SYNC_NORMAL
            # another process's lock (a backup tool): the write waits this long in its thread,
            # then fails (503 database_unavailable), as the loop's writes did before
            db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            self._db = db
        return self._db

    def _call(self, work: Callable[[sqlite3.Connection], _T], durable: bool) -> _T:
        """``work`` at the level it needs (in the writer's thread, between two transactions:
        SQLite refuses to change the level inside one, so a work left open fails loudly)."""
        db = self._connection()
        level = SYNC_FULL if durable and self.sync == "full" else SYNC_NORMAL
        if level != self._level:
            db.execute(f"PRAGMA synchronous={level}")
            self._level = level
        return work(db)

    async def run(self, work: Callable[[sqlite3.Connection], _T], *, durable: bool = True) -> _T:
        """``work`` on the writer's thread, after every write called before it. ``durable``
        (a write someone is answered for): with LIVEHUB_DB_SYNC=full, its commit is fsynced
        (``synchronous=FULL``) before this returns; False (the outbox's bookkeeping, which at
        worst sends a webhook again): NORMAL, which survives a crash of the process only."""
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, self._call, work, durable)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            while not future.done():  # the work goes on: wait for its outcome, then go
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.shield(future)
            raise

    async def close(self) -> None:
        def close() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None
                self._level = 0

        loop = asyncio.get_running_loop()
        await asyncio.shield(loop.run_in_executor(self._executor, close))
        self._executor.shutdown(wait=False)


def page_query(
    status: RoomStatus | None,
    limit: int,
    after: Cursor | None,
    visibility: Visibility | None = None,
) -> tuple[str, list[object]]:
    """:func:`livehub.adapters.rows.keyset_page` in SQLite's parameter style."""
    return keyset_page(status, limit, after, lambda _: "?", visibility)
