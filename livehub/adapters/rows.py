"""The rows both room stores write (:mod:`livehub.adapters.sqlite.store` on SQLite,
:mod:`livehub.adapters.postgres.store` on PostgreSQL) and the SQLite → PostgreSQL copy
(:mod:`livehub.migrate_db`) moves.

One definition of the ``rooms`` and ``webhook_deliveries`` columns, of how a :class:`Room` maps
to and from a ``rooms`` row, and of the outbox rows a store write stages for its events (the
exact webhook body included), so the two adapters cannot drift apart. Plain Python: the SQL
dialects (placeholders, transactions, migrations) stay in the adapters.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson

from livehub.domain.recordings import Recording
from livehub.domain.room import LISTED_COLUMNS, Room, RoomEvent, RoomStatus, Visibility
from livehub.domain.store import Cursor

#: the ``rooms`` columns, in the order of :func:`room_values` and :func:`room_from_row`
ROOM_COLUMNS = (
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
    "published_at",
    "version",
    "event_seq",
    "publisher_server_id",
    "publisher_origin",
    "record",
    "visibility",
    "stage",
    "moderation",
)

#: the ``recordings`` columns, in the order of :func:`recording_values` and
#: :func:`recording_from_row`
RECORDING_COLUMNS = (
    "id",
    "room_id",
    "started_at",
    "ended_at",
    "duration_ms",
    "size_bytes",
    "path",
)

#: what a store write fills in a new outbox row (the rest keep their defaults), in the order
#: of :func:`outbox_rows`
STAGED_COLUMNS = ("endpoint", "room_id", "seq", "type", "body", "created_at", "next_attempt_at")

#: the public view of a room, for webhook bodies (injected: the API owns how rooms are shown)
EventView = Callable[[Room], dict[str, Any]]

OutboxRow = tuple[str, str, int, str, str, int, int]


def iso_ms(epoch_ms: int) -> str:
    """ISO 8601 in UTC with milliseconds, e.g. ``2026-11-30T13:00:00.000Z``."""
    moment = datetime.datetime.fromtimestamp(epoch_ms / 1000, tz=datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def bare_view(room: Room) -> dict[str, Any]:
    """The fields of a room safe to publish, when no view is injected."""
    return {
        "id": room.id,
        "title": room.title,
        "status": room.status.value,
        "createdAt": room.created_at,
        "startTime": room.start_time,
        "endTime": room.end_time,
    }


def room_values(room: Room) -> tuple[object, ...]:
    """``room`` as a ``rooms`` row, in :data:`ROOM_COLUMNS` order."""
    return (
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
        room.published_at,
        room.version,
        room.event_seq,
        room.publisher_server_id,
        room.publisher_origin,
        int(room.record),
        room.visibility.value,
        _json(room.stage),
        _json(room.moderation),
    )


def room_from_row(row: Any) -> Room:
    """A room from a row in :data:`ROOM_COLUMNS` order (a sqlite3 tuple or an asyncpg record;
    spelled out: pages build a thousand of them)."""
    return Room(
        id=row[0],
        title=row[1],
        stream_key=row[2],
        status=_STATUS[row[3]],
        created_at=row[4],
        start_time=row[5],
        end_time=row[6],
        publish_token=row[7],
        owner_token_hash=row[8],
        publisher_client_id=row[9],
        publisher_service_id=row[10],
        reconnecting_since=row[11],
        published_at=row[12],
        version=row[13],
        event_seq=row[14],
        publisher_server_id=row[15],
        publisher_origin=row[16],
        record=bool(row[17]),
        visibility=_VISIBILITY[row[18]],
        stage=_unjson(row[19]),
        moderation=_unjson(row[20]),
    )


_VISIBILITY = {visibility.value: visibility for visibility in Visibility}


def _json(value: dict[str, Any]) -> str:
    return orjson.dumps(value).decode() if value else "{}"


def _unjson(text: str | None) -> dict[str, Any]:
    if not text or text == "{}":
        return {}
    value = orjson.loads(text)
    return value if isinstance(value, dict) else {}


def recording_values(recording: Recording) -> tuple[object, ...]:
    """``recording`` as a ``recordings`` row, in :data:`RECORDING_COLUMNS` order."""
    return tuple(getattr(recording, column) for column in RECORDING_COLUMNS)


def recording_from_row(row: Any) -> Recording:
    return Recording(**dict(zip(RECORDING_COLUMNS, row, strict=True)))


_STATUS = {status.value: status for status in RoomStatus}


def outbox_rows(
    endpoints: Sequence[str],
    view: EventView,
    room: Room,
    events: Iterable[RoomEvent],
    first_seq: int,
) -> list[OutboxRow]:
    """The ``webhook_deliveries`` rows (:data:`STAGED_COLUMNS`) for ``events`` of ``room``:
    one per endpoint per event, the events numbered from ``first_seq + 1``. The body is the
    exact JSON to send: ``{"type", "timestamp", "data"}``, ``data`` being the room's public
    view plus the event's extra fields and ``"seq"``. No endpoints, no rows."""
    if not endpoints:
        return []
    rows: list[OutboxRow] = []
    for offset, event in enumerate(events, start=1):
        seq = first_seq + offset
        data = {**view(room), **event.extra, "seq": seq}
        body = orjson.dumps(
            {"type": event.type.value, "timestamp": iso_ms(event.at), "data": data}
        ).decode()
        rows.extend(
            (endpoint, room.id, seq, event.type.value, body, event.at, event.at)
            for endpoint in endpoints
        )
    return rows


def schema_too_new(where: str, version: int, supported: int) -> str:
    """The message of a store refusing a database migrated by a newer livehub."""
    return (
        f"{where} has schema version {version}, newer than this livehub supports "
        f"({supported}): upgrade livehub or restore a backup"
    )


#: what a list page reads of each room (``ListedRoom``)
SELECT_LISTED = f"SELECT {', '.join(LISTED_COLUMNS)} FROM rooms"


def keyset_page(
    status: RoomStatus | None,
    limit: int,
    after: Cursor | None,
    placeholder: Callable[[int], str],
    visibility: Visibility | None = None,
) -> tuple[str, list[object]]:
    """The WHERE clause (with ORDER BY and LIMIT) of a keyset page and its arguments, in the
    engine's parameter style (``placeholder(n)`` is the n-th: ``?`` or ``$n``): a range of
    ``rooms_created`` or ``rooms_status_created`` read backwards, never a sort. ``visibility``
    filters the rows read (private rooms are few)."""
    where: list[str] = []
    args: list[object] = []
    if visibility is not None:
        args.append(visibility.value)
        where.append(f"visibility = {placeholder(len(args))}")
    if status is not None:
        args.append(status.value)
        where.append(f"status = {placeholder(len(args))}")
    if after is not None:
        args.extend(after)
        where.append(f"(created_at, id) < ({placeholder(len(args) - 1)}, {placeholder(len(args))})")
    clause = " AND ".join(where) or "TRUE"
    args.append(limit)
    return f"{clause} ORDER BY created_at DESC, id DESC LIMIT {placeholder(len(args))}", args


#: rooms of one status that are private (counted through the partial index ``rooms_private``:
#: private rooms are few, so a public count is the status count minus this)
COUNT_PRIVATE = "SELECT count(*) FROM rooms WHERE visibility = 'private'"
