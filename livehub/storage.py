"""SQLite persistence of rooms (the embedded default).

One row per room, written in its own transaction on every accepted change. WAL journal with
``synchronous=NORMAL``: a committed change survives the process being killed (``kill -9``); the
WAL is fsynced at checkpoints. Owner tokens are stored only as SHA-256 hashes. The schema is
versioned with ``PRAGMA user_version`` and upgraded by the ordered ``MIGRATIONS`` at start-up.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from livehub.domain.rooms import Room, RoomStatus

log = logging.getLogger(__name__)

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
)

_COLUMNS = (
    "id",
    "title",
    "stream_key",
    "status",
    "created_at",
    "start_time",
    "end_time",
    "publish_token",
    "owner_token_hash",
    "publisher_client_id",
    "publisher_service_id",
    "reconnecting_since",
)
_UPSERT = (
    f"INSERT INTO rooms ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' for _ in _COLUMNS)}) "
    "ON CONFLICT (id) DO UPDATE SET " + ", ".join(f"{col} = excluded.{col}" for col in _COLUMNS[1:])
)


class SchemaTooNew(RuntimeError):
    """The database was written by a newer livehub: refuse it rather than guess."""


class SQLiteStore:
    """:class:`livehub.domain.rooms.RoomStore` on SQLite."""

    def __init__(self, path: str) -> None:
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self.migrate()

    @property
    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def migrate(self) -> None:
        """Bring the schema up to date, one transaction per migration."""
        version = self.schema_version
        if version > len(MIGRATIONS):
            self._db.close()
            raise SchemaTooNew(
                f"database {self.path} has schema version {version}, newer than this livehub "
                f"supports ({len(MIGRATIONS)}): upgrade livehub or restore a backup"
            )
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            log.info("migrating database %s to schema version %d", self.path, number)
            try:
                self._db.executescript(f"BEGIN; {script}; PRAGMA user_version = {number}; COMMIT;")
            except sqlite3.Error:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def load_all(self) -> list[Room]:
        rows = self._db.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM rooms ORDER BY created_at, rowid"
        ).fetchall()
        return [_room(row) for row in rows]

    def save(self, room: Room) -> None:
        self._db.execute(
            _UPSERT,
            (
                room.id,
                room.title,
                room.stream_key,
                room.status.value,
                room.created_at,
                room.start_time,
                room.end_time,
                room.publish_token,
                room.owner_token_hash,
                room.publisher_client_id,
                room.publisher_service_id,
                room.reconnecting_since,
            ),
        )

    def ping(self) -> bool:
        """Whether the database answers a read of the rooms table."""
        try:
            self._db.execute("SELECT 1 FROM rooms LIMIT 1").fetchone()
        except sqlite3.Error:
            return False
        return True

    def close(self) -> None:
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:  # pragma: no cover - best effort at shutdown
            log.warning("WAL checkpoint at shutdown failed", exc_info=True)
        self._db.close()


def _room(row: tuple[object, ...]) -> Room:
    values = dict(zip(_COLUMNS, row, strict=True))
    values["status"] = RoomStatus(str(values["status"]))
    return Room(**values)  # type: ignore[arg-type]
