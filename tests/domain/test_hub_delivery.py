"""The hub's batched fan-out delivers exactly what per-recipient queues would, in the same order.

The hub appends a broadcast to a room backlog in O(1) and hands each member its share at flush
time. The reference here is the naive design: every send and broadcast appends the frame to each
recipient's list at once. For any sequence of joins, leaves, disconnects, broadcasts (with and
without an excluded sender), direct sends and flushes, every peer must receive the same frames
in the same order, in one write per flush. With big-room batching on (here: from 2 members), a
peer may get its frames later, never in another order or twice.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from livehub.domain import delivery as delivery_module
from livehub.domain import viewer_counts as viewer_counts_module
from livehub.domain.hub import Hub
from livehub.domain.peer import Peer
from tests.domain.fakes import CountingEncoder, FakeSink, ManualLoop, Timer, make_hub

PEERS = 4
ROOMS = ("a", "b", "c")


class Reference:
    """Per-recipient queues, filled at send time, written at flush time; a peer that
    disconnects loses what was queued for it."""

    def __init__(self) -> None:
        self.members: dict[str, list[int]] = {room: [] for room in ROOMS}
        self.closed: set[int] = set()
        self.queued: dict[int, list[bytes]] = {index: [] for index in range(PEERS)}
        self.got: dict[int, list[bytes]] = {index: [] for index in range(PEERS)}

    def broadcast(self, room: str, frame: bytes, exclude: int | None) -> None:
        for index in self.members[room]:
            if index != exclude:
                self.queued[index].append(frame)

    def send(self, index: int, frame: bytes) -> None:
        if index not in self.closed:
            self.queued[index].append(frame)

    def disconnect(self, index: int) -> None:
        self.closed.add(index)
        self.queued[index].clear()
        for members in self.members.values():
            if index in members:
                members.remove(index)

    def flush(self) -> None:
        for index, frames in self.queued.items():
            self.got[index].extend(frames)
            frames.clear()


def received(peer: Peer) -> list[bytes]:
    """What the peer got, without the hub's own coalesced viewer counts."""
    assert isinstance(peer.sink, FakeSink)
    return [frame for frame in peer.sink.frames if b"viewer-count" not in frame]


operations = st.lists(
    st.tuples(
        st.sampled_from(
            ["join", "leave", "disconnect", "broadcast", "exclude", "send", "flush", "tick"]
        ),
        st.integers(min_value=0, max_value=PEERS - 1),
        st.sampled_from(ROOMS),
    ),
    max_size=80,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class TimedLoop(ManualLoop):
    """Timers fire in order of their due time, and the clock moves to it."""

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock
        self.due: dict[int, float] = {}

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        timer = super().call_later(delay, callback)
        self.due[id(timer)] = self.clock.now + delay
        return timer

    def run_timers(self) -> None:
        self.run_soon()
        for _ in range(1000):
            if not self.timers:
                return
            timer = min(self.timers, key=lambda each: self.due[id(each)])
            self.timers.remove(timer)
            self.clock.now = max(self.clock.now, self.due.pop(id(timer)))
            if not timer.cancelled:
                timer.callback()
            self.run_soon()
        raise AssertionError("timers keep rescheduling themselves")


@settings(max_examples=300, deadline=None)
@given(operations)
def test_batched_fan_out_matches_per_recipient_queues(ops: list[tuple[str, int, str]]) -> None:
    check_against_reference(ops, batching=False)


@settings(max_examples=300, deadline=None)
@given(operations)
@example(  # a peer in a room whose batch waits and in one flushed now: still in send order
    [
        ("join", 0, "a"),
        ("join", 1, "a"),
        ("join", 0, "b"),
        ("broadcast", 1, "a"),
        ("flush", 0, "a"),
        ("broadcast", 1, "a"),
        ("broadcast", 1, "b"),
        ("flush", 0, "a"),
    ]
)
def test_big_room_batching_only_delays(ops: list[tuple[str, int, str]]) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(delivery_module, "BATCH_MIN_MEMBERS", 2)
        patch.setattr(viewer_counts_module, "BATCH_MIN_MEMBERS", 2)  # count pacing's big rooms
        check_against_reference(ops, batching=True)


def check_against_reference(ops: list[tuple[str, int, str]], *, batching: bool) -> None:
    clock = Clock()
    loop = TimedLoop(clock)
    hub = Hub(CountingEncoder(), loop.call_soon, loop.call_later, clock=clock)
    peers = [Peer(FakeSink(), peer_id=f"p{i}") for i in range(PEERS)]
    for peer in peers:
        hub.connect(peer)
    ref = Reference()
    writes_before = [0] * PEERS

    def check(*, complete: bool, one_flush: bool = False) -> None:
        for i, each in enumerate(peers):
            got, expected = received(each), ref.got[i]
            assert got == expected if complete else got == expected[: len(got)]
            assert isinstance(each.sink, FakeSink)
            if one_flush:
                assert len(each.sink.writes) - writes_before[i] <= 1  # one write per flush
            writes_before[i] = len(each.sink.writes)

    for step, (op, index, room) in enumerate(ops):
        peer = peers[index]
        frame = f'{{"step":{step}}}'.encode()
        if op == "join" and not peer.closed:
            if hub.join(peer, room, "", "viewer"):
                ref.members[room].append(index)
        elif op == "leave":
            if hub.leave(peer, room):
                ref.members[room].remove(index)
        elif op == "disconnect":
            hub.disconnect(peer)
            ref.disconnect(index)
            if batching:  # what was still waiting for it is lost with the connection
                got = received(peer)
                assert got == ref.got[index][: len(got)]
                ref.got[index] = got
        elif op in ("broadcast", "exclude"):
            exclude = peer if op == "exclude" else None
            expected = len([i for i in ref.members[room] if i != index or exclude is None])
            assert hub.broadcast(room, {"step": step}, exclude=exclude) == expected
            ref.broadcast(room, frame, index if exclude is not None else None)
        elif op == "send":
            hub.send(peer, {"step": step})
            ref.send(index, frame)
        elif op == "flush":
            loop.run_soon()
            ref.flush()
            check(complete=not batching, one_flush=True)
        elif op == "tick":  # time passes: every batching window ends
            clock.now += 1.0
            loop.run_timers()
            ref.flush()
            check(complete=True)

    clock.now += 1.0
    loop.run_timers()
    ref.flush()
    check(complete=True)


def test_a_join_storm_writes_once_per_member_per_flush() -> None:
    loop = ManualLoop()
    hub: Hub = make_hub(loop)
    peers = [Peer(FakeSink()) for _ in range(100)]
    for peer in peers:  # each join announced to the members before it, as the protocol does
        hub.connect(peer)
        hub.join(peer, "r", "", "viewer")
        hub.send(peer, {"type": "joined", "peerId": peer.id})
        hub.broadcast("r", {"type": "peer-joined", "peerId": peer.id}, exclude=peer)
    loop.run_soon()

    for position, peer in enumerate(peers):
        assert isinstance(peer.sink, FakeSink)
        assert len(peer.sink.writes) == 1
        announced = [m["peerId"] for m in peer.sink.of_type("peer-joined")]
        assert announced == [later.id for later in peers[position + 1 :]]
        assert peer.sink.messages()[0] == {"type": "joined", "peerId": peer.id}
    assert hub.stats.relayed == 100 + 99 * 100 // 2
    assert hub.describe_members("r") == [peer.describe("r") for peer in peers]
