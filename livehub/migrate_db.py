"""Moving up: copy an embedded SQLite database into PostgreSQL (issue 9).

    python -m livehub.migrate_db --from livehub.db [--to postgresql://...]

``--to`` defaults to ``LIVEHUB_DATABASE_URL``. Every room is copied as it is (ids, stream keys,
publish tokens, owner token *hashes*, versions and event sequence numbers), and the webhook
outbox with it, so owners keep their tokens and pending webhook deliveries still go out. The
copy is one PostgreSQL transaction: it lands whole or not at all. The target must hold no rooms
(the PostgreSQL schema is created or upgraded first); the SQLite file is opened read-only.
Stop the embedded livehub first, so the file does not change during the copy.

Exit status: 0 copied, 2 bad arguments or a refused source/target, 1 PostgreSQL unreachable.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import sqlite3
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import asyncpg

from livehub.adapters.postgres.store import UNAVAILABLE, PostgresStore, SchemaTooNew
from livehub.adapters.rows import RECORDING_COLUMNS, ROOM_COLUMNS
from livehub.config import Config, ConfigError
from livehub.domain.store import StoreUnavailable
from livehub.webhooks.queue import DELIVERY_COLUMNS

log = logging.getLogger(__name__)

#: the SQLite schema versions this copy understands (``PRAGMA user_version``)
SQLITE_VERSIONS = (1, 2, 3, 4, 5)

#: columns an older SQLite schema lacks, and what they mean there
ROOM_DEFAULTS: dict[str, int | str | None] = {
    "published_at": None,
    "version": 1,
    "event_seq": 0,
    "publisher_server_id": None,
    "publisher_origin": None,
    "record": 0,
    # schema 5: private rooms, the stage, moderation
    "visibility": "public",
    "stage": "{}",
    "moderation": "{}",
}


class MigrationRefused(RuntimeError):
    """The source or the target is not one this copy may touch; the message says why."""


@dataclasses.dataclass(frozen=True)
class CopyReport:
    rooms: int
    deliveries: int


def _rows(
    db: sqlite3.Connection, table: str, columns: Sequence[str], batch: int
) -> Iterator[list[tuple[object, ...]]]:
    present = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
    select = ", ".join(
        column if column in present else f"{_literal(ROOM_DEFAULTS[column])} AS {column}"
        for column in columns
    )
    cursor = db.execute(f"SELECT {select} FROM {table} ORDER BY rowid")
    while chunk := cursor.fetchmany(batch):
        yield [tuple(row) for row in chunk]


def _has_table(db: sqlite3.Connection, name: str) -> bool:
    query = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
    return db.execute(query, (name,)).fetchone() is not None


def _literal(value: int | str | None) -> str:
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return "NULL" if value is None else str(value)


def _open_sqlite(path: str) -> sqlite3.Connection:
    if not Path(path).is_file():
        raise MigrationRefused(f"{path}: no such SQLite database")
    db = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True)
    try:
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
    except sqlite3.DatabaseError as exc:
        db.close()
        raise MigrationRefused(f"{path}: not a SQLite database ({exc})") from None
    if version not in SQLITE_VERSIONS:
        db.close()
        raise MigrationRefused(
            f"{path}: SQLite schema version {version}; this livehub copies versions "
            f"{', '.join(map(str, SQLITE_VERSIONS))} (start the matching livehub once, or upgrade)"
        )
    return db


#: the tables a copy fills, which must be empty in the target, and what they hold
_TARGET_TABLES = (
    ("rooms", "rooms"),
    ("webhook_deliveries", "webhook deliveries"),
    ("recordings", "recordings"),
)


async def copy_sqlite_to_postgres(
    sqlite_path: str, database_url: str, *, batch: int = 5000
) -> CopyReport:
    """Copy every room and webhook delivery of ``sqlite_path`` into the empty PostgreSQL
    database ``database_url`` in one transaction."""
    db = _open_sqlite(sqlite_path)
    try:
        has_outbox = (
            db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'webhook_deliveries'"
            ).fetchone()
            is not None
        )
        store = await PostgresStore.open(database_url, min_size=1, max_size=1)
        await store.close()  # the schema is up to date; the copy needs one plain connection
        try:
            conn = await asyncpg.connect(database_url)
        except UNAVAILABLE as exc:
            raise StoreUnavailable(f"PostgreSQL unreachable: {exc}") from exc
        try:
            async with conn.transaction():
                # nobody else writes these while we check and copy
                await conn.execute(
                    "LOCK TABLE rooms, webhook_deliveries, recordings IN EXCLUSIVE MODE"
                )
                for table, what in _TARGET_TABLES:
                    # a database without rooms may still hold failed deliveries (kept for
                    # good) or recordings: their ids and paths would collide with the copy's
                    if await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {table})"):
                        raise MigrationRefused(
                            f"the PostgreSQL database already holds {what}: copy into an empty one"
                        )
                rooms = 0
                for chunk in _rows(db, "rooms", ROOM_COLUMNS, batch):
                    await conn.copy_records_to_table("rooms", records=chunk, columns=ROOM_COLUMNS)
                    rooms += len(chunk)
                deliveries = 0
                if has_outbox:
                    for chunk in _rows(db, "webhook_deliveries", DELIVERY_COLUMNS, batch):
                        await conn.copy_records_to_table(
                            "webhook_deliveries", records=chunk, columns=DELIVERY_COLUMNS
                        )
                        deliveries += len(chunk)
                    # new deliveries continue after the copied ids
                    await conn.execute(
                        "SELECT setval(pg_get_serial_sequence('webhook_deliveries', 'id'), "
                        "coalesce(max(id), 0) + 1, false) FROM webhook_deliveries"
                    )
                if _has_table(db, "recordings"):  # schema 4: the recordings' rows (the
                    # files stay where they are: the same directory serves both modes)
                    for chunk in _rows(db, "recordings", RECORDING_COLUMNS, batch):
                        await conn.copy_records_to_table(
                            "recordings", records=chunk, columns=RECORDING_COLUMNS
                        )
        finally:
            await conn.close()
    finally:
        db.close()
    return CopyReport(rooms=rooms, deliveries=deliveries)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="livehub migrate-db",
        description="Copy an embedded SQLite database into PostgreSQL (cluster mode).",
    )
    parser.add_argument("--from", dest="source", required=True, help="the SQLite file")
    parser.add_argument(
        "--to", dest="target", help="postgresql:// URL (default: LIVEHUB_DATABASE_URL)"
    )
    return parser


def main(argv: Sequence[str] | None = None, env: dict[str, str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = _parser().parse_args(argv)
    environ = os.environ if env is None else env
    raw = args.target or environ.get("LIVEHUB_DATABASE_URL", "")
    if not raw:
        print("livehub migrate-db: give --to or set LIVEHUB_DATABASE_URL", file=sys.stderr)
        return 2
    try:
        url = Config.from_env({"LIVEHUB_DATABASE_URL": raw}).database_url
    except ConfigError as exc:
        message = str(exc).replace("LIVEHUB_DATABASE_URL", "--to") if args.target else str(exc)
        print(f"livehub migrate-db: {message}", file=sys.stderr)
        return 2
    assert url is not None
    try:
        report = asyncio.run(copy_sqlite_to_postgres(args.source, url))
    except (MigrationRefused, SchemaTooNew) as exc:
        print(f"livehub migrate-db: {exc}", file=sys.stderr)
        return 2
    except StoreUnavailable as exc:
        print(f"livehub migrate-db: {exc}", file=sys.stderr)
        return 1
    print(
        f"livehub migrate-db: copied {report.rooms} rooms and {report.deliveries} webhook "
        f"deliveries from {args.source}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
