"""RoomService lifecycle rules, without aiohttp: a fake clock and scheduler drive the window."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from livehub.domain.rooms import (
    HookEvent,
    Room,
    RoomService,
    RoomStatus,
    hash_token,
    param_token,
    parse_param,
)

from livehub.domain.errors import Forbidden, RoomNotFound, Unauthorized

T0 = 1_700_000_000_000


class FakeTime:
    """A wall clock in epoch ms and a scheduler whose callbacks run when time is advanced."""

    def __init__(self) -> None:
        self.now = T0
        self._timers: list[tuple[int, int, Callable[[], None], Timer]] = []
        self._seq = 0

    def clock(self) -> int:
        return self.now

    def schedule(self, delay: float, callback: Callable[[], None]) -> Timer:
        timer = Timer()
        self._seq += 1
        self._timers.append((self.now + int(delay * 1000), self._seq, callback, timer))
        return timer

    def advance(self, ms: int) -> None:
        target = self.now + ms
        while True:
            due = sorted(t for t in self._timers if t[0] <= target and not t[3].cancelled)
            if not due:
                break
            when, seq, callback, _timer = due[0]
            self._timers = [t for t in self._timers if t[1] != seq]
            self.now = max(self.now, when)
            callback()
        self.now = target

    @property
    def pending(self) -> int:
        return sum(1 for t in self._timers if not t[3].cancelled)


class Timer:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class RecordingStore:
    """Keeps a copy of every saved room, as a database would."""

    def __init__(self) -> None:
        self.rows: dict[str, Room] = {}
        self.saves = 0

    def load_all(self) -> list[Room]:
        return [dataclasses.replace(room) for room in self.rows.values()]

    def save(self, room: Room) -> None:
        self.rows[room.id] = dataclasses.replace(room)
        self.saves += 1

    def ping(self) -> bool:
        return True

    def close(self) -> None:
        pass


def status(room: Room) -> RoomStatus:
    """The room's status, read through a call so that mypy does not narrow it between steps."""
    return room.status


def service(
    window: float = 30.0, store: RecordingStore | None = None, grace: float = 0.0
) -> tuple[RoomService, FakeTime, RecordingStore]:
    time = FakeTime()
    store = store or RecordingStore()
    rooms = RoomService(
        store,
        reconnect_window=window,
        publish_grace=grace,
        scheduler=time.schedule,
        clock=time.clock,
    )
    return rooms, time, store


def publish(room: Room, client_id: str = "c1", token: str | None = None, **kw: str) -> HookEvent:
    return HookEvent(
        action="on_publish",
        client_id=client_id,
        app="live",
        stream=room.stream_key,
        param=f"?secret={room.publish_token if token is None else token}",
        **kw,
    )


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
    ],
)
def test_param_token_shapes(param: str, token: str | None) -> None:
    assert param_token(param) == token


def test_parse_param_first_value_wins() -> None:
    assert parse_param("?a=1&a=2&b=") == {"a": "1", "b": ""}


def test_create_stores_only_the_owner_token_hash() -> None:
    rooms, _, store = service()
    room, owner_token = rooms.create("Hello")
    assert status(room) is RoomStatus.PREPARING and room.created_at == T0
    assert room.owner_token_hash == hash_token(owner_token) != owner_token
    assert owner_token not in repr(store.rows[room.id])
    assert store.rows[room.id] == room
    assert room.is_owner_token(owner_token) and not room.is_owner_token("x" + owner_token)


def test_create_not_indexed_when_the_store_refuses() -> None:
    class Broken(RecordingStore):
        def save(self, room: Room) -> None:
            raise OSError("disk full")

    rooms = RoomService(Broken())
    with pytest.raises(OSError, match="disk full"):
        rooms.create("x")
    assert rooms.rooms() == []


def test_authorize() -> None:
    rooms, _, _ = service()
    room, owner = rooms.create("x")
    rooms.authorize(room, owner, None)
    rooms.authorize(room, "admin-token-0123456789", "admin-token-0123456789")
    with pytest.raises(Unauthorized):
        rooms.authorize(room, None, "admin")
    with pytest.raises(Forbidden):
        rooms.authorize(room, "wrong", "admin-token-0123456789")
    with pytest.raises(RoomNotFound):
        rooms.get("missing")


# -- publish / unpublish / reconnect window -------------------------------------------------


def test_publish_makes_room_live_and_wrong_token_is_refused() -> None:
    rooms, time, store = service()
    room, _ = rooms.create("x")
    refused = rooms.handle_hook(publish(room, token="wrong"))
    assert (refused.allowed, refused.outcome) == (False, "rejected")
    assert status(room) is RoomStatus.PREPARING
    time.advance(1000)
    result = rooms.handle_hook(publish(room, "c1", service_id="s1"))
    assert (result.allowed, result.outcome, result.room) == (True, "accepted", room)
    assert status(room) is RoomStatus.LIVE and room.start_time == T0 + 1000
    assert room.publisher_client_id == "c1" and room.publisher_service_id == "s1"
    assert store.rows[room.id] == room


def test_publish_to_unknown_stream_or_other_app_is_refused() -> None:
    rooms, _, _ = service()
    room, _ = rooms.create("x")
    other_app = dataclasses.replace(publish(room), app="other")
    assert not rooms.handle_hook(other_app).allowed
    unknown = dataclasses.replace(publish(room), stream="stream-nothere")
    assert not rooms.handle_hook(unknown).allowed
    by_url = dataclasses.replace(
        publish(room), app="", stream="", stream_url=f"/live/{room.stream_key}"
    )
    assert rooms.handle_hook(by_url).allowed


def test_busy_second_publisher_is_refused_and_its_unpublish_ignored() -> None:
    rooms, _, _ = service()
    room, _ = rooms.create("x")
    assert rooms.handle_hook(publish(room, "c1", service_id="s1")).allowed
    busy = rooms.handle_hook(publish(room, "c2", service_id="s1"))
    assert (busy.allowed, busy.reason) == (False, "room already has a live publisher")
    ignored = rooms.handle_hook(unpublish("c2"))
    assert (ignored.allowed, ignored.outcome) == (True, "ignored")
    assert status(room) is RoomStatus.LIVE and not room.reconnecting
    assert room.publisher_client_id == "c1"


def test_duplicated_publish_of_the_same_client_changes_nothing() -> None:
    rooms, time, store = service()
    room, _ = rooms.create("x")
    rooms.handle_hook(publish(room, "c1"))
    saves = store.saves
    time.advance(500)
    again = rooms.handle_hook(publish(room, "c1"))
    assert again.allowed and room.start_time == T0 and store.saves == saves


def test_unpublish_opens_window_and_republish_continues_the_broadcast() -> None:
    rooms, time, store = service(window=30)
    room, _ = rooms.create("x")
    rooms.handle_hook(publish(room, "c1"))
    time.advance(10_000)
    result = rooms.handle_hook(unpublish("c1"))
    assert result.outcome == "accepted"
    assert status(room) is RoomStatus.LIVE and room.reconnecting
    assert room.reconnecting_since == T0 + 10_000
    assert store.rows[room.id].reconnecting_since == T0 + 10_000
    # a duplicated unpublish changes nothing
    assert rooms.handle_hook(unpublish("c1")).outcome == "ignored"
    time.advance(29_000)
    assert rooms.handle_hook(publish(room, "c2")).allowed
    room = rooms.get(room.id)  # (forget mypy's narrowing of the fields checked above)
    assert status(room) is RoomStatus.LIVE and not room.reconnecting
    assert room.start_time == T0 and room.publisher_client_id == "c2"
    time.advance(60_000)  # the old window's timer was cancelled
    assert status(room) is RoomStatus.LIVE
    # the old client's late unpublish does not touch the new publisher
    assert rooms.handle_hook(unpublish("c1")).outcome == "ignored"
    assert not room.reconnecting


def test_rtmp_republish_on_the_same_connection_inside_the_window_continues() -> None:
    rooms, time, _ = service(window=30)
    room, _ = rooms.create("x")
    rooms.handle_hook(publish(room, "c1"))
    rooms.handle_hook(unpublish("c1"))
    time.advance(1000)
    assert rooms.handle_hook(publish(room, "c1")).allowed
    assert not room.reconnecting
    time.advance(60_000)
    assert status(room) is RoomStatus.LIVE and room.start_time == T0


def test_window_passes_and_room_ends_at_the_unpublish_moment() -> None:
    rooms, time, _ = service(window=30)
    room, _ = rooms.create("x")
    rooms.handle_hook(publish(room, "c1"))
    time.advance(5_000)
    rooms.handle_hook(unpublish("c1"))
    time.advance(29_999)
    assert status(room) is RoomStatus.LIVE
    time.advance(1)
    assert status(room) is RoomStatus.ENDED
    assert room.end_time == T0 + 5_000 and not room.reconnecting
    late = rooms.handle_hook(publish(room, "c3"))
    assert (late.allowed, late.reason) == (False, "room has ended")


def test_window_zero_ends_at_once() -> None:
    rooms, time, _ = service(window=0)
    room, _ = rooms.create("x")
    rooms.handle_hook(publish(room, "c1"))
    time.advance(2_000)
    rooms.handle_hook(unpublish("c1"))
    assert status(room) is RoomStatus.ENDED and room.end_time == T0 + 2_000
    assert time.pending == 0


def test_srs_restart_lets_the_reconnected_encoder_continue() -> None:
    rooms, time, _ = service()
    room, _ = rooms.create("x")
    rooms.handle_hook(publish(room, "c1", service_id="s1"))
    time.advance(1000)
    result = rooms.handle_hook(publish(room, "c9", service_id="s2"))
    assert result.allowed and result.srs_restarted
    assert room.publisher_client_id == "c9" and room.start_time == T0
    # the old connection's unpublish can no longer end the room
    assert rooms.handle_hook(unpublish("c1")).outcome == "ignored"


def test_close_ends_for_good_and_names_the_publisher_to_kick() -> None:
    rooms, time, _ = service()
    room, _ = rooms.create("x")
    rooms.handle_hook(publish(room, "c1"))
    time.advance(100)
    closed, kick = rooms.close(room.id)
    assert closed is room and kick == "c1"
    assert status(room) is RoomStatus.ENDED and room.end_time == T0 + 100
    assert rooms.close(room.id) == (room, None)
    # SRS's on_unpublish after the kick is ignored
    assert rooms.handle_hook(unpublish("c1")).outcome == "ignored"
    assert room.end_time == T0 + 100


def test_closing_during_the_window_ends_at_the_unpublish() -> None:
    rooms, time, _ = service(window=30)
    room, _ = rooms.create("x")
    rooms.handle_hook(publish(room, "c1"))
    time.advance(1_000)
    rooms.handle_hook(unpublish("c1"))
    time.advance(5_000)
    assert rooms.close(room.id) == (room, "c1")
    assert status(room) is RoomStatus.ENDED and room.end_time == T0 + 1_000
    assert time.pending == 0


def test_reload_rearms_an_open_window() -> None:
    rooms, time, store = service(window=30)
    room, _ = rooms.create("x")
    rooms.handle_hook(publish(room, "c1"))
    time.advance(1_000)
    rooms.handle_hook(unpublish("c1"))
    rooms.shutdown()
    # a new process, 10 s later
    again, time2, _ = service(window=30, store=store)
    time2.now = time.now + 10_000
    again.load()
    loaded = again.get(room.id)
    assert loaded.reconnecting and time2.pending == 1
    time2.advance(19_000)
    assert status(loaded) is RoomStatus.LIVE
    time2.advance(1_000)
    assert status(loaded) is RoomStatus.ENDED and loaded.end_time == T0 + 1_000


# -- players --------------------------------------------------------------------------------


def test_player_counts_are_per_client_and_never_negative() -> None:
    rooms, _, _ = service()
    room, _ = rooms.create("x")
    seen: list[int] = []
    rooms.subscribe(lambda r: seen.append(rooms.player_count(r.id)))
    assert rooms.handle_hook(play(room, "p1")).allowed
    assert rooms.handle_hook(play(room, "p1")).allowed  # duplicate
    assert rooms.handle_hook(play(room, "p2", ".m3u8")).allowed
    assert rooms.player_count(room.id) == 2
    rooms.handle_hook(stop("p1"))
    rooms.handle_hook(stop("p1"))
    rooms.handle_hook(stop("unknown"))
    assert rooms.player_count(room.id) == 1
    assert seen == [1, 2, 1]


def test_play_of_an_ended_room_is_refused() -> None:
    rooms, _, _ = service()
    room, _ = rooms.create("x")
    rooms.close(room.id)
    result = rooms.handle_hook(play(room, "p1"))
    assert (result.allowed, result.reason) == (False, "room has ended")


# -- reconciliation -------------------------------------------------------------------------


def test_reconcile_ends_a_live_room_absent_from_srs_through_the_window() -> None:
    rooms, time, _ = service(window=30)
    kept, _ = rooms.create("kept")
    gone, _ = rooms.create("gone")
    rooms.handle_hook(publish(kept, "c1"))
    rooms.handle_hook(publish(gone, "c2"))
    time.advance(1_000)
    changed = rooms.reconcile({kept.stream_key: "c1", "not-ours": None})
    assert changed == [gone]
    assert gone.reconnecting and gone.reconnecting_since == T0 + 1_000
    assert not kept.reconnecting
    assert rooms.reconcile({}) == [kept]  # the reconnecting room is not counted twice
    time.advance(30_000)
    assert status(gone) is RoomStatus.ENDED and gone.end_time == T0 + 1_000


def test_reconcile_gives_a_fresh_publish_a_grace_period() -> None:
    rooms, time, _ = service(window=0, grace=10)
    room, _ = rooms.create("x")
    rooms.handle_hook(publish(room, "c1"))
    time.advance(500)
    # SRS was asked right after on_publish: it may not list the stream yet
    assert rooms.reconcile({}, asked_at=time.now) == []
    assert status(room) is RoomStatus.LIVE
    time.advance(10_000)
    assert rooms.reconcile({}, asked_at=time.now) == [room]
    assert status(room) is RoomStatus.ENDED


def test_reconcile_after_reload_has_no_grace() -> None:
    rooms, time, store = service(window=0, grace=10)
    room, _ = rooms.create("x")
    rooms.handle_hook(publish(room, "c1"))
    again, _, _ = service(window=0, store=store, grace=10)
    again.load()
    assert again.reconcile({}, asked_at=time.now) == [again.get(room.id)]


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


@settings(max_examples=400, deadline=None)
@given(window=st.sampled_from((0.0, 0.5, 30.0)), steps=st.lists(events, max_size=50))
def test_any_event_order_keeps_every_room_consistent(
    window: float, steps: list[tuple[object, ...]]
) -> None:
    rooms, time, store = service(window=window)
    expect = [Expect(rooms.create(f"room {i}")[0]) for i in range(2)]
    players: dict[str, int] = {}  # player client id -> room index it was last allowed into
    for step in steps:
        kind = step[0]
        for e in expect:
            e.reconnecting_since = e.room.reconnecting_since
        if kind == "publish":
            index, client, good, srs = step[1:]
            e = expect[int(str(index))]
            token = None if good else "wrong"
            result = rooms.handle_hook(publish(e.room, str(client), token, service_id=str(srs)))
            if result.allowed:
                assert good and not e.ended and result.room is e.room
                e.accepted = True
                assert status(e.room) is RoomStatus.LIVE and not e.room.reconnecting
                assert e.room.publisher_client_id == client
            else:
                assert not good or e.ended or status(e.room) is RoomStatus.LIVE
        elif kind == "unpublish":
            assert rooms.handle_hook(unpublish(str(step[1]))).allowed
        elif kind == "play":
            index, client = int(str(step[1])), str(step[2])
            result = rooms.handle_hook(play(expect[index].room, client))
            assert result.allowed is not expect[index].ended
            if result.allowed:
                players[client] = index
        elif kind == "stop":
            assert rooms.handle_hook(stop(str(step[1]))).allowed
            players.pop(str(step[1]), None)
        elif kind == "close":
            rooms.close(expect[int(str(step[1]))].room.id)
        elif kind == "expire":
            rooms.expire(expect[int(str(step[1]))].room.id)
        elif kind == "advance":
            time.advance(int(str(step[1])))
        else:
            listed: dict[str, str | None] = {
                e.room.stream_key: None for e, on in zip(expect, step[1:], strict=True) if on
            }
            rooms.reconcile(listed)

        for index, e in enumerate(expect):
            room = e.room
            # status never goes back from ended; live iff an accepted publish and no end
            if e.ended:
                assert status(room) is RoomStatus.ENDED
            elif status(room) is RoomStatus.ENDED:
                # what can end a room, and the end time each gives
                if kind in ("advance", "expire"):
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
            e.ended = status(room) is RoomStatus.ENDED
            assert (status(room) is RoomStatus.LIVE) == (e.accepted and not e.ended)
            assert (status(room) is RoomStatus.PREPARING) == (not e.accepted and not e.ended)
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
                assert status(room) is RoomStatus.LIVE and window > 0
            # counts never negative; a player is counted once, in the room it last joined
            expected_players = sum(1 for where in players.values() if where == index)
            assert rooms.player_count(room.id) == expected_players >= 0
            # every change was stored
            assert store.rows[room.id] == room
    # a restart finds exactly what was stored
    again, _, _ = service(window=window, store=store)
    again.load()
    assert [again.get(e.room.id) for e in expect] == [e.room for e in expect]
