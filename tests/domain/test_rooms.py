"""RoomService lifecycle rules, without aiohttp: a fake clock and scheduler drive the window.

The service keeps no room in memory: every test reads rooms back from the store (SQLite in
memory, the embedded adapter), as another process sharing the database would.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livehub.adapters.memory.players import MemoryPlayers
from livehub.adapters.sqlite.store import SQLiteStore
from livehub.domain.errors import Forbidden, RoomNotFound, Unauthorized
from livehub.domain.room import EventType, Room, RoomEvent, RoomStatus
from livehub.domain.service import RoomService
from livehub.domain.srs_params import HookEvent, param_token, parse_param
from livehub.domain.tokens import hash_token
from tests.helpers import publish

T0 = 1_700_000_000_000


class FakeTime:
    """A wall clock in epoch ms and a scheduler whose callbacks run when time is advanced."""

    def __init__(self) -> None:
        self.now = T0
        self._timers: list[tuple[int, int, Callable[[], Awaitable[None]], Timer]] = []
        self._seq = 0

    def clock(self) -> int:
        return self.now

    def schedule(self, delay: float, callback: Callable[[], Awaitable[None]]) -> Timer:
        timer = Timer()
        self._seq += 1
        self._timers.append((self.now + int(delay * 1000), self._seq, callback, timer))
        return timer

    async def advance(self, ms: int) -> None:
        target = self.now + ms
        while True:
            due = sorted(
                (t for t in self._timers if t[0] <= target and not t[3].cancelled),
                key=lambda t: (t[0], t[1]),
            )
            if not due:
                break
            when, seq, callback, _timer = due[0]
            self._timers = [t for t in self._timers if t[1] != seq]
            self.now = max(self.now, when)
            await callback()
        self.now = target

    @property
    def pending(self) -> int:
        return sum(1 for t in self._timers if not t[3].cancelled)


class Timer:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


def service(
    window: float = 30.0,
    store: SQLiteStore | None = None,
    grace: float = 0.0,
    kicked: list[str] | None = None,
    preparing_ttl: float = 0.0,
    ended_retention: float = 0.0,
) -> tuple[RoomService, FakeTime, SQLiteStore]:
    time = FakeTime()
    store = store or SQLiteStore(":memory:")
    rooms = RoomService(
        store,
        players=MemoryPlayers(),
        reconnect_window=window,
        publish_grace=grace,
        scheduler=time.schedule,
        clock=time.clock,
        kick=None if kicked is None else (lambda publisher: kicked.append(publisher.client_id)),
        preparing_ttl=preparing_ttl,
        ended_retention=ended_retention,
    )
    return rooms, time, store


def unpublish(client_id: str = "c1", **kw: str) -> HookEvent:
    return HookEvent(action="on_unpublish", client_id=client_id, **kw)


def play(room: Room, client_id: str, stream_suffix: str = ".flv") -> HookEvent:
    return HookEvent(
        action="on_play", client_id=client_id, app="live", stream=room.stream_key + stream_suffix
    )


def stop(client_id: str) -> HookEvent:
    return HookEvent(action="on_stop", client_id=client_id)


# -- params and tokens --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("param", "token"),
    [
        ("?secret=abc", "abc"),  # RTMP, FLV, HLS
        ("?secret=abc&upstream=rtc", "abc"),  # legacy RTC publish
        ("secret=abc", "abc"),  # SRT
        ("app=live&stream=room42&secret=abc&eip=1.2.3.4", "abc"),  # WHIP raw query
        ("?token=v1ew3r", "v1ew3r"),
        ("?secret=abc#frag", "abc"),
        ("?secret=&token=t", "t"),
        ("", None),
        ("?upstream=rtc", None),
        ("?secret=", None),
        # RTMP with a query in the tcUrl (OBS server rtmp://host/live?secret=abc), as SRS 5.0.216
        # and 6.0.157 send it: the tcUrl's query twice, after the stream's own
        ("?secret=abc?secret=abc", "abc"),
        ("?secret=abc?secret=tc?secret=tc", "abc"),
        ("?x=1?secret=tc?secret=tc", "tc"),
    ],
)
def test_param_token_shapes(param: str, token: str | None) -> None:
    assert param_token(param) == token


def test_parse_param_first_value_wins() -> None:
    assert parse_param("?a=1&a=2&b=") == {"a": "1", "b": ""}


async def test_create_stores_only_the_owner_token_hash() -> None:
    rooms, _, store = service()
    room, owner_token = await rooms.create("Hello")
    assert room.status is RoomStatus.PREPARING and room.created_at == T0
    assert room.owner_token_hash == hash_token(owner_token) != owner_token
    assert (room.version, room.event_seq) == (1, 1)  # one write, one event (room.created)
    stored = await store.get(room.id)
    assert stored == room and owner_token not in repr(stored)
    assert room.is_owner_token(owner_token) and not room.is_owner_token("x" + owner_token)


async def test_creation_times_are_unique_and_ordered() -> None:
    rooms, _, _ = service()
    created = [(await rooms.create(f"r{i}"))[0] for i in range(3)]  # all within one ms
    assert [room.created_at for room in created] == [T0, T0 + 1, T0 + 2]
    assert await rooms.page(None, 10) == created[::-1]


async def test_a_room_the_store_refuses_is_not_there() -> None:
    class Broken(SQLiteStore):
        async def insert(
            self, room: Room, events: Sequence[RoomEvent] = (), *, max_open: int = 0
        ) -> bool:
            raise OSError("disk full")

    rooms = RoomService(Broken(":memory:"), players=MemoryPlayers())
    with pytest.raises(OSError, match="disk full"):
        await rooms.create("x")
    assert await rooms.count() == 0 and await rooms.page(None, 10) == []


async def test_authorize() -> None:
    rooms, _, _ = service()
    room, owner = await rooms.create("x")
    rooms.authorize(room, owner, None)
    rooms.authorize(room, "admin-token-0123456789", "admin-token-0123456789")
    with pytest.raises(Unauthorized):
        rooms.authorize(room, None, "admin")
    with pytest.raises(Forbidden):
        rooms.authorize(room, "wrong", "admin-token-0123456789")
    with pytest.raises(RoomNotFound):
        await rooms.get("missing")


# -- publish / unpublish / reconnect window -------------------------------------------------


async def test_publish_makes_room_live_and_wrong_token_is_refused() -> None:
    rooms, time, _ = service()
    room, _ = await rooms.create("x")
    refused = await rooms.handle_hook(publish(room, token="wrong"))
    assert (refused.allowed, refused.outcome) == (False, "rejected")
    assert (await rooms.get(room.id)).status is RoomStatus.PREPARING
    await time.advance(1000)
    result = await rooms.handle_hook(publish(room, "c1", service_id="s1"))
    live = await rooms.get(room.id)
    assert (result.allowed, result.outcome, result.room) == (True, "accepted", live)
    assert live.status is RoomStatus.LIVE and live.start_time == T0 + 1000
    assert live.publisher_client_id == "c1" and live.publisher_service_id == "s1"
    assert live.published_at == T0 + 1000 and live.version == 2


async def test_publish_to_unknown_stream_or_other_app_is_refused() -> None:
    rooms, _, _ = service()
    room, _ = await rooms.create("x")
    other_app = dataclasses.replace(publish(room), app="other")
    assert not (await rooms.handle_hook(other_app)).allowed
    unknown = dataclasses.replace(publish(room), stream="stream-nothere")
    assert not (await rooms.handle_hook(unknown)).allowed
    by_url = dataclasses.replace(
        publish(room), app="", stream="", stream_url=f"/live/{room.stream_key}"
    )
    assert (await rooms.handle_hook(by_url)).allowed


async def test_busy_second_publisher_is_refused_and_its_unpublish_ignored() -> None:
    rooms, _, _ = service()
    room, _ = await rooms.create("x")
    assert (await rooms.handle_hook(publish(room, "c1", service_id="s1"))).allowed
    busy = await rooms.handle_hook(publish(room, "c2", service_id="s1"))
    assert (busy.allowed, busy.reason) == (False, "room already has a live publisher")
    ignored = await rooms.handle_hook(unpublish("c2"))
    assert (ignored.allowed, ignored.outcome) == (True, "ignored")
    room = await rooms.get(room.id)
    assert room.status is RoomStatus.LIVE and not room.reconnecting
    assert room.publisher_client_id == "c1"


async def test_duplicated_publish_of_the_same_client_changes_nothing() -> None:
    rooms, time, _ = service()
    room, _ = await rooms.create("x")
    await rooms.handle_hook(publish(room, "c1"))
    before = await rooms.get(room.id)
    await time.advance(500)
    assert (await rooms.handle_hook(publish(room, "c1"))).allowed
    assert await rooms.get(room.id) == before  # not even written again (same version)


async def test_unpublish_opens_window_and_republish_continues_the_broadcast() -> None:
    rooms, time, _ = service(window=30)
    room, _ = await rooms.create("x")
    await rooms.handle_hook(publish(room, "c1"))
    await time.advance(10_000)
    result = await rooms.handle_hook(unpublish("c1"))
    assert result.outcome == "accepted"
    room = await rooms.get(room.id)
    assert room.status is RoomStatus.LIVE and room.reconnecting
    assert room.reconnecting_since == T0 + 10_000
    # a duplicated unpublish changes nothing
    assert (await rooms.handle_hook(unpublish("c1"))).outcome == "ignored"
    await time.advance(29_000)
    assert (await rooms.handle_hook(publish(room, "c2"))).allowed
    room = await rooms.get(room.id)
    assert room.status is RoomStatus.LIVE and not room.reconnecting
    assert room.start_time == T0 and room.publisher_client_id == "c2"
    await time.advance(60_000)  # the old window's timer was cancelled
    assert (await rooms.get(room.id)).status is RoomStatus.LIVE
    # the old client's late unpublish does not touch the new publisher
    assert (await rooms.handle_hook(unpublish("c1"))).outcome == "ignored"
    assert not (await rooms.get(room.id)).reconnecting


async def test_rtmp_republish_on_the_same_connection_inside_the_window_continues() -> None:
    rooms, time, _ = service(window=30)
    room, _ = await rooms.create("x")
    await rooms.handle_hook(publish(room, "c1"))
    await rooms.handle_hook(unpublish("c1"))
    await time.advance(1000)
    assert (await rooms.handle_hook(publish(room, "c1"))).allowed
    assert not (await rooms.get(room.id)).reconnecting
    await time.advance(60_000)
    room = await rooms.get(room.id)
    assert room.status is RoomStatus.LIVE and room.start_time == T0


async def test_window_passes_and_room_ends_at_the_unpublish_moment() -> None:
    rooms, time, _ = service(window=30)
    room, _ = await rooms.create("x")
    await rooms.handle_hook(publish(room, "c1"))
    await time.advance(5_000)
    await rooms.handle_hook(unpublish("c1"))
    await time.advance(29_999)
    assert (await rooms.get(room.id)).status is RoomStatus.LIVE
    await time.advance(1)
    room = await rooms.get(room.id)
    assert room.status is RoomStatus.ENDED
    assert room.end_time == T0 + 5_000 and not room.reconnecting
    late = await rooms.handle_hook(publish(room, "c3"))
    assert (late.allowed, late.reason) == (False, "room has ended")


async def test_window_zero_ends_at_once() -> None:
    rooms, time, _ = service(window=0)
    room, _ = await rooms.create("x")
    await rooms.handle_hook(publish(room, "c1"))
    await time.advance(2_000)
    await rooms.handle_hook(unpublish("c1"))
    room = await rooms.get(room.id)
    assert room.status is RoomStatus.ENDED and room.end_time == T0 + 2_000
    assert time.pending == 0


async def test_srs_restart_lets_the_reconnected_encoder_continue() -> None:
    rooms, time, _ = service()
    room, _ = await rooms.create("x")
    await rooms.handle_hook(publish(room, "c1", service_id="s1"))
    await time.advance(1000)
    result = await rooms.handle_hook(publish(room, "c9", service_id="s2"))
    assert result.allowed and result.srs_restarted
    room = await rooms.get(room.id)
    assert room.publisher_client_id == "c9" and room.start_time == T0
    # the old connection's unpublish can no longer end the room
    assert (await rooms.handle_hook(unpublish("c1"))).outcome == "ignored"


async def test_close_ends_for_good_and_kicks_the_publisher() -> None:
    kicked: list[str] = []
    rooms, time, _ = service(kicked=kicked)
    room, _ = await rooms.create("x")
    await rooms.handle_hook(publish(room, "c1"))
    await time.advance(100)
    closed = await rooms.close(room.id)
    assert closed == await rooms.get(room.id) and kicked == ["c1"]
    assert closed.status is RoomStatus.ENDED and closed.end_time == T0 + 100
    assert await rooms.close(room.id) == closed and kicked == ["c1"]  # idempotent, one kick
    # SRS's on_unpublish after the kick is ignored
    assert (await rooms.handle_hook(unpublish("c1"))).outcome == "ignored"
    assert (await rooms.get(room.id)).end_time == T0 + 100


async def test_closing_during_the_window_ends_at_the_unpublish() -> None:
    kicked: list[str] = []
    rooms, time, _ = service(window=30, kicked=kicked)
    room, _ = await rooms.create("x")
    await rooms.handle_hook(publish(room, "c1"))
    await time.advance(1_000)
    await rooms.handle_hook(unpublish("c1"))
    await time.advance(5_000)
    closed = await rooms.close(room.id)
    assert kicked == ["c1"]
    assert closed.status is RoomStatus.ENDED and closed.end_time == T0 + 1_000
    assert time.pending == 0


async def test_a_new_process_rearms_an_open_window() -> None:
    rooms, time, store = service(window=30)
    room, _ = await rooms.create("x")
    await rooms.handle_hook(publish(room, "c1"))
    await time.advance(1_000)
    await rooms.handle_hook(unpublish("c1"))
    rooms.shutdown()
    # a new process, 10 s later
    again, time2, _ = service(window=30, store=store)
    time2.now = time.now + 10_000
    await again.rearm()
    assert (await again.get(room.id)).reconnecting and time2.pending == 1
    await time2.advance(19_000)
    assert (await again.get(room.id)).status is RoomStatus.LIVE
    await time2.advance(1_000)
    loaded = await again.get(room.id)
    assert loaded.status is RoomStatus.ENDED and loaded.end_time == T0 + 1_000


async def test_the_sweep_ends_a_window_opened_by_a_process_that_died() -> None:
    rooms, _, store = service(window=30)
    room, _ = await rooms.create("x")
    await rooms.handle_hook(publish(room, "c1"))
    await rooms.handle_hook(unpublish("c1"))
    # the process that opened the window is gone (its timer with it); another sweeps
    other, time2, _ = service(window=30, store=store)
    time2.now = T0 + 29_999
    assert await other.sweep() == []
    time2.now = T0 + 30_000
    [ended] = await other.sweep()
    assert ended.status is RoomStatus.ENDED and ended.end_time == T0
    assert await other.sweep() == []


async def test_the_sweep_ends_rooms_never_used_within_the_ttl() -> None:
    rooms, time, _ = service(preparing_ttl=3600.0)
    stale, _ = await rooms.create("stale")
    used, _ = await rooms.create("used")
    await rooms.handle_hook(publish(used, "c1"))
    await time.advance(3_600_000)
    fresh, _ = await rooms.create("fresh")
    assert await rooms.sweep() == []  # not older than the TTL yet
    await time.advance(1)
    [ended] = await rooms.sweep()
    assert ended.id == stale.id and ended.end_time == time.now and ended.start_time is None
    assert (await rooms.get(used.id)).status is RoomStatus.LIVE
    assert (await rooms.get(fresh.id)).status is RoomStatus.PREPARING


async def test_the_sweep_deletes_ended_rooms_past_the_retention() -> None:
    rooms, time, store = service(window=0, ended_retention=86_400.0)
    old, _ = await rooms.create("old")
    await rooms.close(old.id)
    await time.advance(1000)
    recent, _ = await rooms.create("recent")
    await rooms.close(recent.id)
    live, _ = await rooms.create("live")
    await rooms.handle_hook(publish(live, "c1"))
    await time.advance(86_400_000 - 999)
    await rooms.sweep()
    with pytest.raises(RoomNotFound):
        await rooms.get(old.id)
    assert (await rooms.get(recent.id)).status is RoomStatus.ENDED
    await time.advance(10 * 86_400_000)
    await rooms.sweep()
    assert [room.id for room in await rooms.page(None, 10)] == [live.id]
    assert await store.count(RoomStatus.ENDED) == 0 and await store.count() == 1


# -- racing writers -------------------------------------------------------------------------


class Interleaving(SQLiteStore):
    """Runs another writer between this one's read and its conditional write, once."""

    before_update: Callable[[], Awaitable[object]] | None = None

    async def update(
        self, room: Room, expected_version: int, events: Sequence[RoomEvent] = ()
    ) -> bool:
        other, self.before_update = self.before_update, None
        if other is not None:
            await other()
        return await super().update(room, expected_version, events)


async def test_two_processes_racing_publishers_exactly_one_wins() -> None:
    """Two services on one database; the second publishes between the first's read and
    write: the first's conditional write fails, it decides again on the stored room."""
    store = Interleaving(":memory:")
    first, _, _ = service(store=store)
    second, _, _ = service(store=store)
    room, _ = await first.create("x")
    store.before_update = lambda: second.handle_hook(publish(room, "c2", service_id="s1"))
    lost = await first.handle_hook(publish(room, "c1", service_id="s1"))
    assert (lost.allowed, lost.reason) == (False, "room already has a live publisher")
    stored = await store.get(room.id)
    assert stored is not None and stored.publisher_client_id == "c2"
    assert stored.version == 2 and stored.event_seq == 2  # created, live: one write each


async def test_close_racing_a_publish_never_leaves_a_live_ended_room() -> None:
    store = Interleaving(":memory:")
    hooks, _, _ = service(store=store)
    owner, _, _ = service(store=store)
    room, _ = await hooks.create("x")
    store.before_update = lambda: owner.close(room.id)
    refused = await hooks.handle_hook(publish(room, "c1"))
    assert (refused.allowed, refused.reason) == (False, "room has ended")
    stored = await store.get(room.id)
    assert stored is not None and stored.status is RoomStatus.ENDED
    assert stored.start_time is None and stored.publisher_client_id is None


async def test_a_conditional_write_on_a_stale_version_is_retried_on_fresh_state() -> None:
    rooms, _, store = service()
    room, _ = await rooms.create("x")
    stale = await store.get(room.id)
    assert stale is not None
    await rooms.close(room.id)  # another writer: version 2, ended
    draft = dataclasses.replace(stale, status=RoomStatus.LIVE, start_time=T0)
    assert not await store.update(draft, stale.version)
    assert (await store.get(room.id)) == await rooms.get(room.id)  # nothing written
    # the service re-reads after a lost race and decides on what is stored
    refused = await rooms.handle_hook(publish(stale, "c1"))
    assert (refused.allowed, refused.reason) == (False, "room has ended")


# -- players --------------------------------------------------------------------------------


async def test_player_counts_are_per_client_and_never_negative() -> None:
    rooms, _, _ = service()
    room, _ = await rooms.create("x")
    seen: list[int] = []
    rooms.subscribe(lambda r: seen.append(rooms.player_count(r.id)))
    assert (await rooms.handle_hook(play(room, "p1"))).allowed
    assert (await rooms.handle_hook(play(room, "p1"))).allowed  # duplicate
    assert (await rooms.handle_hook(play(room, "p2", ".m3u8"))).allowed
    assert rooms.player_count(room.id) == 2
    await rooms.handle_hook(stop("p1"))
    await rooms.handle_hook(stop("p1"))
    await rooms.handle_hook(stop("unknown"))
    assert rooms.player_count(room.id) == 1
    assert seen == [1, 2, 1]


async def test_play_of_an_ended_room_is_refused() -> None:
    rooms, _, _ = service()
    room, _ = await rooms.create("x")
    await rooms.close(room.id)
    result = await rooms.handle_hook(play(room, "p1"))
    assert (result.allowed, result.reason) == (False, "room has ended")


# -- events ---------------------------------------------------------------------------------


async def test_every_change_reports_its_event_with_the_next_seq() -> None:
    store = SQLiteStore(":memory:", webhook_endpoints=("https://a.example/hook",))
    rooms, time, _ = service(window=30, store=store)
    room, _ = await rooms.create("x")
    await rooms.handle_hook(publish(room, "c1"))
    await rooms.handle_hook(publish(room, "c1"))  # a duplicate reports nothing
    await time.advance(1000)
    await rooms.handle_hook(unpublish("c1"))
    await time.advance(30_000)
    await rooms.append_events([RoomEvent(type=EventType.HOST_JOINED, room_id=room.id, at=time.now)])
    rows = store._db.execute(
        "SELECT seq, type FROM webhook_deliveries WHERE room_id = ? ORDER BY id", (room.id,)
    ).fetchall()
    assert rows == [
        (1, "room.created"),
        (2, "room.live"),
        (3, "room.reconnecting"),
        (4, "room.ended"),
        (5, "host.joined"),
    ]
    assert (await rooms.get(room.id)).event_seq == 5


# -- reconciliation -------------------------------------------------------------------------


async def test_reconcile_ends_a_live_room_absent_from_srs_through_the_window() -> None:
    rooms, time, _ = service(window=30)
    kept, _ = await rooms.create("kept")
    gone, _ = await rooms.create("gone")
    await rooms.handle_hook(publish(kept, "c1"))
    await rooms.handle_hook(publish(gone, "c2"))
    await time.advance(1_000)
    changed = await rooms.reconcile({kept.stream_key: "c1", "not-ours": None})
    assert [room.id for room in changed] == [gone.id]
    assert changed[0].reconnecting and changed[0].reconnecting_since == T0 + 1_000
    assert not (await rooms.get(kept.id)).reconnecting
    # the reconnecting room is not counted twice
    assert [room.id for room in await rooms.reconcile({})] == [kept.id]
    await time.advance(30_000)
    ended = await rooms.get(gone.id)
    assert ended.status is RoomStatus.ENDED and ended.end_time == T0 + 1_000


async def test_reconcile_gives_a_fresh_publish_a_grace_period() -> None:
    rooms, time, _ = service(window=0, grace=10)
    room, _ = await rooms.create("x")
    await rooms.handle_hook(publish(room, "c1"))
    await time.advance(500)
    # SRS was asked right after on_publish: it may not list the stream yet
    assert await rooms.reconcile({}, asked_at=time.now) == []
    assert (await rooms.get(room.id)).status is RoomStatus.LIVE
    await time.advance(10_000)
    assert [room.id for room in await rooms.reconcile({}, asked_at=time.now)] == [room.id]
    assert (await rooms.get(room.id)).status is RoomStatus.ENDED


async def test_the_grace_period_is_stored_so_any_process_honours_it() -> None:
    rooms, time, store = service(window=0, grace=10)
    room, _ = await rooms.create("x")
    await rooms.handle_hook(publish(room, "c1"))
    again, time2, _ = service(window=0, store=store, grace=10)
    time2.now = time.now + 500
    assert await again.reconcile({}, asked_at=time2.now) == []
    time2.now = time.now + 10_001
    assert [room.id for room in await again.reconcile({}, asked_at=time2.now)] == [room.id]


# -- property: any order of hooks leaves every room consistent ---------------------------------

CLIENTS = ("c1", "c2", "c3", "unknown")
ROOMS = st.integers(min_value=0, max_value=1)

events = st.one_of(
    # publish: room, client, right token?, SRS service id (a change means SRS restarted)
    st.tuples(
        st.just("publish"),
        ROOMS,
        st.sampled_from(CLIENTS),
        st.booleans(),
        st.sampled_from(("s1", "s2")),
    ),
    st.tuples(st.just("unpublish"), st.sampled_from(CLIENTS)),
    st.tuples(st.just("play"), ROOMS, st.sampled_from(CLIENTS)),
    st.tuples(st.just("stop"), st.sampled_from(CLIENTS)),
    st.tuples(st.just("close"), ROOMS),
    st.tuples(st.just("expire"), ROOMS),  # a stray or early window timer
    st.tuples(st.just("sweep")),  # another process's sweep
    st.tuples(st.just("advance"), st.integers(min_value=0, max_value=40_000)),
    # reconcile: which rooms SRS lists as published
    st.tuples(st.just("reconcile"), st.booleans(), st.booleans()),
)


class Expect:
    """What the test knows about one room from the outside."""

    def __init__(self, room: Room) -> None:
        self.room = room
        self.accepted = False
        self.ended = False
        self.start_time: int | None = None
        self.end_time: int | None = None
        self.reconnecting_since: int | None = None
        self.version = room.version


@settings(max_examples=300, deadline=None)
@given(window=st.sampled_from((0.0, 0.5, 30.0)), steps=st.lists(events, max_size=50))
def test_any_event_order_keeps_every_room_consistent(
    window: float, steps: list[tuple[object, ...]]
) -> None:
    asyncio.run(_run_steps(window, steps))


async def _run_steps(window: float, steps: list[tuple[object, ...]]) -> None:
    rooms, time, store = service(window=window)
    expect = [Expect((await rooms.create(f"room {i}"))[0]) for i in range(2)]
    players: dict[str, int] = {}  # player client id -> room index it was last allowed into
    for step in steps:
        kind = step[0]
        for e in expect:
            e.reconnecting_since = e.room.reconnecting_since
        if kind == "publish":
            index, client, good, srs = step[1:]
            e = expect[int(str(index))]
            token = None if good else "wrong"
            result = await rooms.handle_hook(
                publish(e.room, str(client), token, service_id=str(srs))
            )
            if result.allowed:
                assert good and not e.ended and result.room is not None
                assert result.room.id == e.room.id
                e.accepted = True
                assert result.room.status is RoomStatus.LIVE and not result.room.reconnecting
                assert result.room.publisher_client_id == client
            else:
                assert not good or e.ended or e.room.status is RoomStatus.LIVE
        elif kind == "unpublish":
            assert (await rooms.handle_hook(unpublish(str(step[1])))).allowed
        elif kind == "play":
            index, client = int(str(step[1])), str(step[2])
            result = await rooms.handle_hook(play(expect[index].room, client))
            assert result.allowed is not expect[index].ended
            if result.allowed:
                players[client] = index
        elif kind == "stop":
            assert (await rooms.handle_hook(stop(str(step[1])))).allowed
            players.pop(str(step[1]), None)
        elif kind == "close":
            await rooms.close(expect[int(str(step[1]))].room.id)
        elif kind == "expire":
            await rooms.expire(expect[int(str(step[1]))].room.id)
        elif kind == "sweep":
            await rooms.sweep()
        elif kind == "advance":
            await time.advance(int(str(step[1])))
        else:
            listed: dict[str, str | None] = {
                e.room.stream_key: None for e, on in zip(expect, step[1:], strict=True) if on
            }
            await rooms.reconcile(listed)

        for index, e in enumerate(expect):
            room = e.room = await rooms.get(e.room.id)
            # status never goes back from ended; live iff an accepted publish and no end
            if e.ended:
                assert room.status is RoomStatus.ENDED
            elif room.status is RoomStatus.ENDED:
                # what can end a room, and the end time each gives
                if kind in ("advance", "expire", "sweep"):
                    assert e.reconnecting_since is not None
                    assert time.now >= e.reconnecting_since + window * 1000
                    assert room.end_time == e.reconnecting_since
                elif kind == "close":
                    assert step[1] == index
                    at = time.now if e.reconnecting_since is None else e.reconnecting_since
                    assert room.end_time == max(at, e.start_time or 0)
                else:
                    assert kind in ("unpublish", "reconcile") and window == 0
                    assert room.end_time == time.now
            e.ended = room.status is RoomStatus.ENDED
            assert (room.status is RoomStatus.LIVE) == (e.accepted and not e.ended)
            assert (room.status is RoomStatus.PREPARING) == (not e.accepted and not e.ended)
            assert (room.start_time is not None) == e.accepted
            assert (room.end_time is not None) == e.ended
            if room.start_time is not None and room.end_time is not None:
                assert room.end_time >= room.start_time
            # times, once set, never move
            if e.start_time is not None:
                assert room.start_time == e.start_time
            if e.end_time is not None:
                assert room.end_time == e.end_time
            e.start_time, e.end_time = room.start_time, room.end_time
            if room.reconnecting:
                assert room.status is RoomStatus.LIVE and window > 0
            # versions only grow
            assert room.version >= e.version
            e.version = room.version
            # counts never negative; a player is counted once, in the room it last joined
            expected_players = sum(1 for where in players.values() if where == index)
            assert rooms.player_count(room.id) == expected_players >= 0
    # a new process on the same database finds exactly what was stored
    again, _, _ = service(window=window, store=store)
    assert [await again.get(e.room.id) for e in expect] == [e.room for e in expect]
    await store.close()


async def test_a_long_history_is_deleted_in_bounded_batches() -> None:
    rooms, _, store = service(ended_retention=1.0)
    for i in range(2_500):
        await store.insert(
            Room(
                id=f"old{i:05d}",
                title="old",
                stream_key=f"s{i:05d}",
                status=RoomStatus.ENDED,
                created_at=0,
                end_time=1,
                publish_token="pt",
                owner_token_hash="oh",
            )
        )
    await rooms.sweep()
    assert await store.count() == 0


async def test_close_of_a_room_deleted_meanwhile_is_not_found() -> None:
    store = Interleaving(":memory:")
    rooms, _, _ = service(store=store)
    room, _ = await rooms.create("x")
    store.before_update = lambda: _delete(store, room.id)
    with pytest.raises(RoomNotFound):
        await rooms.close(room.id)


async def _delete(store: SQLiteStore, room_id: str) -> None:
    store._db.execute("DELETE FROM rooms WHERE id = ?", (room_id,))
