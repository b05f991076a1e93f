"""The behaviour every :class:`RoomStore` adapter keeps (``livehub/domain/store.py``), run against
each adapter in ``ADAPTERS``: SQLite (embedded) and PostgreSQL (cluster; skipped with the reason
where PostgreSQL is not installed). Adapter-specific checks stay with the adapter: SQLite's
files and migrations in ``tests/test_storage.py``; what only a shared server brings (nodes
migrating together, racing pools, restarts) in ``tests/cluster/test_storage_pg.py``."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import sqlite3
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import asyncpg
import pytest

from livehub.adapters.postgres.store import PostgresStore
from livehub.adapters.sqlite.store import SQLiteStore
from livehub.domain.recordings import Recording, RecordingStore
from livehub.domain.room import EventType, Room, RoomEvent, RoomStatus, Visibility, now_ms
from livehub.domain.service import RoomService
from livehub.domain.store import RoomStore, StoreUnavailable
from tests.engines import PostgresEngine
from tests.helpers import ENDPOINTS, T0, event, make_room, publish


@dataclasses.dataclass
class Opened:
    """An adapter on an empty database, and a reader of the webhook rows it staged (what a
    webhook sender would read)."""

    store: RoomStore
    read: Callable[[str], Any]  # query -> rows as dicts (awaitable)

    async def deliveries(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = await self.read(
            "SELECT endpoint, room_id, seq, type, body, state, attempts "
            "FROM webhook_deliveries ORDER BY id"
        )
        return rows


Adapter = Callable[
    [pytest.FixtureRequest, tuple[str, ...]], contextlib.AbstractAsyncContextManager[Opened]
]


@contextlib.asynccontextmanager
async def sqlite_adapter(
    request: pytest.FixtureRequest, endpoints: tuple[str, ...]
) -> AsyncIterator[Opened]:
    path = str(request.getfixturevalue("tmp_path") / "livehub.db")
    store = SQLiteStore(path, webhook_endpoints=endpoints)

    async def read(query: str) -> list[dict[str, Any]]:
        db = sqlite3.connect(path)
        try:
            cursor = db.execute(query)
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor]
        finally:
            db.close()

    try:
        yield Opened(store, read)
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def postgres_adapter(
    request: pytest.FixtureRequest, endpoints: tuple[str, ...]
) -> AsyncIterator[Opened]:
    engine: PostgresEngine = request.getfixturevalue("postgres")  # skips without PostgreSQL
    url = await engine.create_database()
    store = await PostgresStore.open(url, webhook_endpoints=endpoints)

    async def read(query: str) -> list[dict[str, Any]]:
        conn = await asyncpg.connect(url)
        try:
            return [dict(row.items()) for row in await conn.fetch(query)]
        finally:
            await conn.close()

    try:
        yield Opened(store, read)
    finally:
        await store.close()
        await engine.drop_database(url)


ADAPTERS: dict[str, Adapter] = {"sqlite": sqlite_adapter, "postgres": postgres_adapter}


@pytest.fixture(params=sorted(ADAPTERS))
async def outbox(request: pytest.FixtureRequest) -> AsyncIterator[Opened]:
    """An adapter with two webhook endpoints configured."""
    async with ADAPTERS[request.param](request, ENDPOINTS) as opened:
        yield opened


@pytest.fixture(params=sorted(ADAPTERS))
async def quiet(request: pytest.FixtureRequest) -> AsyncIterator[Opened]:
    """An adapter with no webhook endpoints configured."""
    async with ADAPTERS[request.param](request, ()) as opened:
        yield opened


async def test_insert_then_read_by_every_key_as_fresh_objects(quiet: Opened) -> None:
    store = quiet.store
    room = make_room(
        1,
        publisher_client_id="c1",
        publisher_service_id="t3q9z0bm",
        status=RoomStatus.LIVE,
        start_time=T0 + 5,
        reconnecting_since=T0 + 7,
        published_at=T0 + 5,
    )
    await store.insert(room)
    assert (room.version, room.event_seq) == (1, 0)
    for found in (
        await store.get("room001"),
        await store.get_by_stream("key001"),
        await store.get_by_publisher("c1"),
    ):
        assert found == room
        assert found is not room
    assert await store.get("nope") is None
    assert await store.get_by_stream("nope") is None
    # reads are fresh objects: mutating one changes nothing stored
    copy = await store.get("room001")
    assert copy is not None
    copy.title = "changed here only"
    assert await store.get("room001") == room
    assert await store.ping()


async def test_a_duplicate_id_or_stream_key_raises_and_is_not_unavailability(
    quiet: Opened,
) -> None:
    store = quiet.store
    await store.insert(make_room(1))
    for duplicate in (make_room(1, stream_key="other"), make_room(2, stream_key="key001")):
        with pytest.raises(Exception) as raised:
            await store.insert(duplicate)
        assert not isinstance(raised.value, StoreUnavailable)
        assert duplicate.version == 0  # not stored
    assert await store.count() == 1


async def test_a_conditional_update_writes_only_on_the_expected_version(outbox: Opened) -> None:
    store = outbox.store
    room = make_room(1)
    await store.insert(room, [event(EventType.ROOM_CREATED, room)])
    first = await store.get(room.id)
    second = await store.get(room.id)
    assert first is not None and second is not None
    first.status, first.start_time, first.publisher_client_id = RoomStatus.LIVE, T0 + 9, "c1"
    assert await store.update(first, 1, [event(EventType.ROOM_LIVE, first, T0 + 9)])
    assert (first.version, first.event_seq) == (2, 2)
    # the second writer read version 1 too: it loses, and nothing of it is written
    second.status, second.end_time = RoomStatus.ENDED, T0 + 10
    assert not await store.update(second, 1, [event(EventType.ROOM_ENDED, second, T0 + 10)])
    assert (second.version, second.event_seq) == (1, 1)  # the object is left as it was
    assert await store.get(room.id) == first
    assert [(r["type"], r["seq"]) for r in await outbox.deliveries()] == [
        ("room.created", 1),
        ("room.created", 1),
        ("room.live", 2),
        ("room.live", 2),
    ]
    # the loser reads again and decides again
    assert await store.update(first, 2) is True
    assert first.version == 3
    # a room that is not there is never written
    assert not await store.update(dataclasses.replace(room, id="missing"), 1)


async def test_events_are_staged_once_per_endpoint_with_the_public_view(outbox: Opened) -> None:
    store = outbox.store
    room = make_room(7)
    await store.insert(room, [event(EventType.ROOM_CREATED, room, T0 + 1)])
    room.status = RoomStatus.LIVE
    await store.update(
        room,
        1,
        [
            event(EventType.ROOM_LIVE, room, T0 + 2),
            event(EventType.HOST_JOINED, room, T0 + 3, peerId="p1"),
        ],
    )
    rows = await outbox.deliveries()
    assert [(r["endpoint"], r["seq"], r["type"]) for r in rows] == [
        (ENDPOINTS[0], 1, "room.created"),
        (ENDPOINTS[1], 1, "room.created"),
        (ENDPOINTS[0], 2, "room.live"),
        (ENDPOINTS[1], 2, "room.live"),
        (ENDPOINTS[0], 3, "host.joined"),
        (ENDPOINTS[1], 3, "host.joined"),
    ]
    assert {(r["state"], r["attempts"], r["room_id"]) for r in rows} == {("pending", 0, "room007")}
    body = json.loads(rows[4]["body"])
    assert body["type"] == "host.joined"
    assert body["timestamp"] == "2026-09-21T14:13:20.003Z"
    assert (body["data"]["id"], body["data"]["peerId"], body["data"]["seq"]) == ("room007", "p1", 3)
    for row in rows:  # never a secret in a webhook body
        assert "secret" not in row["body"]
        assert room.owner_token_hash not in row["body"]


async def test_without_endpoints_nothing_is_staged_but_seq_counts(quiet: Opened) -> None:
    store = quiet.store
    room = make_room(1)
    await store.insert(room, [event(EventType.ROOM_CREATED, room)])
    await store.append_events([event(EventType.VIEWERS_UPDATED, room)])
    stored = await store.get(room.id)
    assert stored is not None and stored.event_seq == 2
    assert await quiet.deliveries() == []


async def test_append_events_counts_and_stages_and_drops_unknown_rooms(outbox: Opened) -> None:
    store = outbox.store
    room = make_room(1)
    await store.insert(room)
    gone = make_room(2)
    await store.append_events(
        [
            event(EventType.VIEWERS_UPDATED, room, viewers=3),
            event(EventType.VIEWERS_UPDATED, gone),
            event(EventType.HOST_LEFT, room),
        ]
    )
    stored = await store.get(room.id)
    # each event moves the sequence on, and the version (a write that read before conflicts)
    assert stored is not None and stored.event_seq == 2 and stored.version > 1
    rows = await outbox.deliveries()
    assert [(r["room_id"], r["seq"], r["type"]) for r in rows[::2]] == [
        ("room001", 1, "viewers.updated"),
        ("room001", 2, "host.left"),
    ]
    assert json.loads(rows[0]["body"])["data"]["viewers"] == 3


async def test_a_write_that_read_the_room_before_an_appended_event_conflicts(
    outbox: Opened,
) -> None:
    """An update decided on a room read before ``append_events`` would write the older
    ``event_seq`` back: its events would get the appended event's seq (receivers drop one of
    two events with the same seq as a duplicate). It conflicts instead, and the next try,
    on the room read again, stages its event after the appended one."""
    store = outbox.store
    room = make_room(1)
    await store.insert(room)
    read = await store.get(room.id)
    assert read is not None
    await store.append_events([event(EventType.HOST_JOINED, room)])
    draft = dataclasses.replace(read, status=RoomStatus.LIVE, start_time=T0)
    assert not await store.update(draft, read.version, [event(EventType.ROOM_LIVE, room)])
    again = await store.get(room.id)
    assert again is not None
    draft = dataclasses.replace(again, status=RoomStatus.LIVE, start_time=T0)
    assert await store.update(draft, again.version, [event(EventType.ROOM_LIVE, room)])
    rows = await outbox.deliveries()
    assert [(r["seq"], r["type"]) for r in rows[::2]] == [(1, "host.joined"), (2, "room.live")]


async def test_a_recording_and_its_events_are_one_write_and_a_path_is_kept_once(
    outbox: Opened,
) -> None:
    """``insert_recording`` stages its events as ``append_events`` does (the room's next seq,
    its version bumped: a write decided before conflicts), with the row; a second recording of
    the same path writes nothing (neither row nor events) and gives back the first."""
    store = outbox.store
    recordings = cast(RecordingStore, store)
    room = make_room(1)
    await store.insert(room, [event(EventType.ROOM_CREATED, room)])
    read = await store.get(room.id)
    assert read is not None
    first = Recording(
        id="r1", room_id=room.id, started_at=T0, ended_at=T0 + 5000, duration_ms=5000,
        size_bytes=4096, path="live/key001.1.mp4",
    )  # fmt: skip
    ready = event(EventType.RECORDING_READY, room, T0 + 5000, recording="r1")
    assert await recordings.insert_recording(first, [ready]) == first
    stored = await store.get(room.id)
    assert stored is not None and stored.event_seq == 2 and stored.version > read.version
    assert not await store.update(read, read.version)  # decided before the event: conflicts

    again = dataclasses.replace(first, id="r2", ended_at=T0 + 6000)
    retried = event(EventType.RECORDING_READY, room, T0 + 6000, recording="r2")
    assert await recordings.insert_recording(again, [retried]) == first
    assert await recordings.recordings_of(room.id) == [first]
    assert await store.get(room.id) == stored  # nothing moved
    rows = await outbox.deliveries()
    assert [(r["seq"], r["type"]) for r in rows[::2]] == [
        (1, "room.created"),
        (2, "recording.ready"),
    ]
    assert json.loads(rows[2]["body"])["data"]["recording"] == "r1"


def _shared_seqs(rows: list[dict[str, Any]]) -> list[tuple[str, int, list[str]]]:
    """(room, seq, types) of the seqs that more than one event of a room got, per endpoint."""
    types: dict[tuple[str, str, int], list[str]] = {}
    for row in rows:
        types.setdefault((row["endpoint"], row["room_id"], row["seq"]), []).append(row["type"])
    return [(room, seq, kinds) for (_, room, seq), kinds in types.items() if len(kinds) > 1]


async def test_lifecycle_changes_and_presence_events_never_share_a_seq(outbox: Opened) -> None:
    """A publish while the host joins (the presence task, or another node, stages host.joined
    meanwhile), and a reconciliation of live rooms SRS no longer lists while a viewers.updated
    is staged: each event of a room gets its own seq. (Before the fix, the audit that found it
    saw PostgreSQL give 36-39 of 40 rooms a room.live with the seq of their host.joined, and
    both stores give 19-20 of 20 rooms a room.ended with the seq of their viewers.updated;
    this test failed on both stores.)"""
    rooms = RoomService(outbox.store, players=None, reconnect_window=0.0, publish_grace=0.0)
    for n in range(20):
        room, _ = await rooms.create(f"r{n}")
        host_joined = RoomEvent(type=EventType.HOST_JOINED, room_id=room.id, at=now_ms())
        published, _ = await asyncio.gather(
            rooms.handle_hook(publish(room, f"c{n}")), rooms.append_events([host_joined])
        )
        assert published.allowed
    for n in range(10):
        pair = [(await rooms.create(f"{side}{n}"))[0] for side in "ab"]
        for room in pair:
            assert (await rooms.handle_hook(publish(room, f"c-{room.id}"))).allowed
        viewers = RoomEvent(type=EventType.VIEWERS_UPDATED, room_id=pair[1].id, at=now_ms())
        ended, _ = await asyncio.gather(
            rooms.reconcile({}, asked_at=now_ms() + 60_000), rooms.append_events([viewers])
        )
        assert {room.id for room in pair} <= {room.id for room in ended}
    rows = await outbox.deliveries()
    assert _shared_seqs(rows) == []
    assert {row["type"] for row in rows} >= {"host.joined", "room.live", "room.ended"}


async def test_the_publisher_origin_is_stored_and_updated(quiet: Opened) -> None:
    store = quiet.store
    room = make_room(
        1,
        status=RoomStatus.LIVE,
        publisher_client_id="c1",
        publisher_server_id="vid-aaaaaa1",
        publisher_origin="srs-a",
    )
    await store.insert(room)
    assert await store.get(room.id) == room
    moved = dataclasses.replace(
        room, publisher_client_id="c2", publisher_server_id="vid-bbbbbb2", publisher_origin="b"
    )
    assert await store.update(moved, room.version)
    again = await store.get(room.id)
    assert again is not None
    assert (again.publisher_server_id, again.publisher_origin) == ("vid-bbbbbb2", "b")
    assert await store.get_by_publisher("c2") == again
    assert [r.publisher_origin for r in await store.live()] == ["b"]


async def test_publisher_lookup_ignores_ended_rooms_and_prefers_the_latest_publish(
    quiet: Opened,
) -> None:
    store = quiet.store
    client = "2o5x91ed"
    ended = make_room(1, publisher_client_id=client, status=RoomStatus.ENDED, published_at=T0 + 20)
    older = make_room(2, publisher_client_id=client, status=RoomStatus.LIVE, published_at=T0 + 5)
    newer = make_room(3, publisher_client_id=client, status=RoomStatus.LIVE, published_at=T0 + 9)
    for room in (ended, newer, older):  # insertion order is not what decides
        await store.insert(room)
    assert await store.get_by_publisher("2o5x91ed") == newer  # SRS reuses ids after a restart
    assert await store.get_by_publisher("unknown") is None


async def test_keyset_pages_cover_every_room_once_newest_first(quiet: Opened) -> None:
    store = quiet.store
    statuses = [RoomStatus.ENDED, RoomStatus.PREPARING, RoomStatus.LIVE]
    # three rooms per millisecond: the id breaks the tie
    rooms = [make_room(n, created_at=T0 + n // 3, status=statuses[n % 3]) for n in range(25)]
    for room in rooms:
        await store.insert(room)
    newest_first = sorted(rooms, key=lambda r: (r.created_at, r.id), reverse=True)
    seen: list[Room] = []
    after = None
    while page := await store.page(None, 7, after):
        seen.extend(page)
        after = (page[-1].created_at, page[-1].id)
    assert seen == newest_first
    for status in statuses:
        expected = [r for r in newest_first if r.status is status]
        first = await store.page(status, 3)
        rest = await store.page(status, 10, (first[-1].created_at, first[-1].id))
        assert first + rest == expected
    # a cursor is a position, not a room: any (created_at, id) pair works
    assert (
        await store.page(None, 2, (T0 + 4, "room013"))
        == [r for r in newest_first if (r.created_at, r.id) < (T0 + 4, "room013")][:2]
    )


async def test_rendered_pages_hand_the_listed_columns_of_the_same_rooms(quiet: Opened) -> None:
    store = quiet.store
    statuses = [RoomStatus.ENDED, RoomStatus.PREPARING, RoomStatus.LIVE]
    rooms = [
        make_room(
            n,
            created_at=T0 + n // 2,
            status=statuses[n % 3],
            start_time=None if n % 3 == 1 else T0 + n,
            end_time=T0 + n + 1 if n % 3 == 0 else None,
            reconnecting_since=T0 + n if n == 5 else None,
        )
        for n in range(12)
    ]
    for room in rooms:
        await store.insert(room)

    def rows_of(page: list[Room]) -> list[tuple[object, ...]]:
        return [
            (r.id, r.title, r.stream_key, r.status.value, r.created_at, r.start_time,
             r.end_time, r.reconnecting_since, r.visibility.value, "{}")
            for r in page
        ]  # fmt: skip

    for status in (None, *statuses):
        for after in (None, (T0 + 3, "room007")):
            for limit in (1, 3, 20):
                got = await store.render_page(status, limit, after, list)
                assert got == rows_of(await store.page(status, limit, after))
                assert all(type(row) is tuple for row in got)
    assert any(row[7] is not None for row in await store.render_page(None, 20, None, list))


async def test_counts_follow_inserts_transitions_and_deletes(quiet: Opened) -> None:
    store = quiet.store
    rooms = [make_room(n) for n in range(6)]
    for room in rooms:
        await store.insert(room)
    for room in rooms[:3]:
        room.status = RoomStatus.LIVE
        assert await store.update(room, room.version)
    rooms[0].status, rooms[0].end_time = RoomStatus.ENDED, T0 + 100
    assert await store.update(rooms[0], rooms[0].version)
    rooms[5].status, rooms[5].end_time = RoomStatus.ENDED, T0 + 200
    assert await store.update(rooms[5], rooms[5].version)
    counts = [await store.count(s) for s in RoomStatus] + [await store.count()]
    assert counts == [2, 2, 2, 6]  # preparing, live, ended, all
    assert {r.id for r in await store.live()} == {"room001", "room002"}
    assert await store.delete_ended_before(T0 + 150) == 1
    assert (await store.count(RoomStatus.ENDED), await store.count()) == (1, 5)
    assert await store.get(rooms[0].id) is None


async def test_due_queries(quiet: Opened) -> None:
    store = quiet.store
    live = make_room(1, status=RoomStatus.LIVE, reconnecting_since=T0 + 10)
    later = make_room(2, status=RoomStatus.LIVE, reconnecting_since=T0 + 50)
    steady = make_room(3, status=RoomStatus.LIVE)
    old = make_room(4, created_at=T0 - 1000)
    fresh = make_room(5)
    for room in (live, later, steady, old, fresh):
        await store.insert(room)
    assert [r.id for r in await store.reconnect_due(T0 + 10)] == ["room001"]
    assert sorted(r.id for r in await store.reconnect_due(T0 + 60)) == ["room001", "room002"]
    assert [r.id for r in await store.live()] == ["room001", "room002", "room003"]
    assert [r.id for r in await store.preparing_before(T0)] == ["room004"]
    assert await store.preparing_before(T0 - 1000) == []
    assert [r.id for r in await store.preparing_before(T0 + 100, limit=1)] == ["room004"]


async def test_retention_deletes_in_bounded_batches(quiet: Opened) -> None:
    store = quiet.store
    for n in range(7):
        await store.insert(make_room(n, status=RoomStatus.ENDED, end_time=T0 + n))
    await store.insert(make_room(9, status=RoomStatus.LIVE))
    assert [await store.delete_ended_before(T0 + 5, limit=2) for _ in range(4)] == [2, 2, 1, 0]
    assert sorted(r.id for r in await store.page(None, 10)) == ["room005", "room006", "room009"]


async def test_visibility_stage_and_moderation_round_trip_and_filter_pages(quiet: Opened) -> None:
    """Private rooms: pages and counts by visibility (public = every room but the private
    ones); the stage and moderation JSON come back as written, and a conditional update writes
    them like any column."""
    store = quiet.store
    rooms = [
        make_room(n, visibility=Visibility.PRIVATE if n % 3 == 0 else Visibility.PUBLIC)
        for n in range(1, 10)
    ]
    for room in rooms:
        await store.insert(room)
    private = [r.id for r in reversed(rooms) if r.private]
    public = [r.id for r in reversed(rooms) if not r.private]
    assert [r.id for r in await store.page(None, 100, None, Visibility.PRIVATE)] == private
    assert [r.id for r in await store.page(None, 100, None, Visibility.PUBLIC)] == public
    assert [r.id for r in await store.page(None, 100)] == [r.id for r in reversed(rooms)]
    page = await store.page(None, 2, (rooms[5].created_at, rooms[5].id), Visibility.PUBLIC)
    assert [r.id for r in page] == public[public.index(rooms[4].id) :][:2]
    assert await store.count(None, Visibility.PRIVATE) == len(private)
    assert await store.count(RoomStatus.PREPARING, Visibility.PUBLIC) == len(public)
    assert await store.count(RoomStatus.LIVE, Visibility.PRIVATE) == 0
    assert await store.count() == len(rooms)
    listed = await store.render_page(None, 100, None, lambda rows: rows, Visibility.PRIVATE)
    assert [(row[0], row[8], row[9]) for row in listed] == [
        (rid, "private", "{}") for rid in private
    ]

    stored = await store.get(rooms[0].id)
    assert stored is not None and stored.stage == {} and stored.moderation == {}
    room = stored
    room.stage = {"guests": {"p-1": {"name": "Gus", "streamKey": "key001-p-1", "live": True}}}
    room.moderation = {"slowMode": 5, "mutes": {"p-2": T0 + 60_000}}
    assert await store.update(room, room.version)
    again = await store.get(room.id)
    assert again is not None
    assert (again.stage, again.moderation) == (room.stage, room.moderation)
    assert again.visibility is Visibility.PUBLIC
    # staged(): the rooms not ended with a stage, through the partial index
    assert [r.id for r in await store.staged()] == [room.id]
    again.status = RoomStatus.ENDED
    assert await store.update(again, again.version)
    assert await store.staged() == []
