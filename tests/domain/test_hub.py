"""Unit tests of the hub: membership, fan-out, slow consumers, coalesced viewer counts."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from livehub.domain.delivery import CLOSE_TRY_AGAIN_LATER
from livehub.domain.hub import Hub
from livehub.domain.peer import Peer
from tests.domain.fakes import CountingEncoder, FakeSink, ManualLoop, make_hub


def new_peer(hub: Hub, sink: FakeSink | None = None, peer_id: str | None = None) -> Peer:
    peer = Peer(sink or FakeSink(), peer_id=peer_id)
    hub.connect(peer)
    return peer


def sink_of(peer: Peer) -> FakeSink:
    assert isinstance(peer.sink, FakeSink)
    return peer.sink


# -- membership --------------------------------------------------------------------------


def test_join_twice_counts_once_and_leave_deletes_empty_room() -> None:
    hub = make_hub(ManualLoop())
    alice, bob = new_peer(hub), new_peer(hub)

    assert hub.join(alice, "r1", "Alice", "host") is True
    assert hub.join(alice, "r1", "Alice again", "host") is False
    assert hub.join(bob, "r1", "Bob", "viewer") is True
    assert hub.count("r1") == 2
    assert [peer.id for peer in hub.members("r1")] == [alice.id, bob.id]
    assert alice.describe("r1") == {"peerId": alice.id, "name": "Alice again", "role": "host"}
    assert hub.member("r1", bob.id) is bob

    assert hub.leave(bob, "r1") is True
    assert hub.leave(bob, "r1") is False
    assert hub.leave(bob, "never-joined") is False
    assert hub.count("r1") == 1
    assert hub.leave(alice, "r1") is True
    assert "r1" not in hub.rooms
    assert hub.count("r1") == 0
    assert alice.rooms == set()
    assert alice.names == {}
    assert alice.roles == {}


def test_disconnect_leaves_every_room_and_reports_them() -> None:
    hub = make_hub(ManualLoop())
    alice, bob = new_peer(hub), new_peer(hub)
    hub.join(alice, "r1", "", "viewer")
    hub.join(alice, "r2", "", "viewer")
    hub.join(bob, "r2", "", "viewer")

    assert sorted(hub.disconnect(alice)) == ["r1", "r2"]
    assert alice.closed
    assert alice.id not in hub.peers
    assert hub.stats.connections == 1
    assert list(hub.rooms) == ["r2"]
    assert hub.count("r2") == 1
    assert hub.disconnect(alice) == []


# -- fan-out -----------------------------------------------------------------------------


def test_broadcast_encodes_once_and_skips_the_sender() -> None:
    loop = ManualLoop()
    encoder = CountingEncoder()
    hub = make_hub(loop, encoder=encoder)
    peers = [new_peer(hub) for _ in range(5)]
    for peer in peers:
        hub.join(peer, "r", "", "viewer")

    sent = hub.broadcast("r", {"type": "offer", "payload": {"sdp": "x"}}, exclude=peers[0])

    assert sent == 4
    assert encoder.calls == 1
    assert sink_of(peers[0]).writes == []  # nothing written before the flush either
    loop.run_soon()
    frames = [sink_of(peer).frames for peer in peers[1:]]
    assert all(len(batch) == 1 for batch in frames)
    assert all(batch[0] is frames[0][0] for batch in frames)  # the same bytes object
    assert sink_of(peers[0]).writes == []
    assert hub.broadcast("empty-room", {"type": "x"}) == 0


def test_a_burst_is_flushed_with_one_write_per_peer() -> None:
    loop = ManualLoop()
    hub = make_hub(loop)
    alice, bob = new_peer(hub), new_peer(hub)
    hub.join(alice, "r", "", "viewer")
    hub.join(bob, "r", "", "viewer")

    for seq in range(10):
        hub.broadcast("r", {"type": "candidate", "payload": seq}, exclude=alice)
    hub.send(alice, {"type": "left", "roomId": "r"})

    assert len(loop.soon) == 1  # one flush scheduled for the whole burst
    loop.run_soon()
    assert len(sink_of(bob).writes) == 1
    assert [message["payload"] for message in sink_of(bob).messages()] == list(range(10))
    assert sink_of(alice).messages() == [{"type": "left", "roomId": "r"}]
    assert hub.stats.relayed == 11


def test_slow_consumer_is_disconnected_with_1013_and_the_others_still_get_everything() -> None:
    loop = ManualLoop()
    hub = make_hub(loop, max_buffer=1000)
    slow = new_peer(hub, FakeSink(backlog=5000))  # its transport never drains
    fast = [new_peer(hub) for _ in range(3)]
    for peer in [slow, *fast]:
        hub.join(peer, "r", "", "viewer")

    hub.broadcast("r", {"type": "candidate", "payload": 1})
    loop.run_soon()

    assert sink_of(slow).aborted == (CLOSE_TRY_AGAIN_LATER, "outbound queue full")
    assert slow.closed
    assert hub.stats.slow_disconnects == 1
    hub.broadcast("r", {"type": "candidate", "payload": 2})
    loop.run_soon()
    assert len(sink_of(slow).frames) == 1  # nothing more is written to it
    assert hub.stats.dropped == 1
    for peer in fast:
        assert [message["payload"] for message in sink_of(peer).messages()] == [1, 2]
        assert sink_of(peer).aborted is None


def test_queue_over_the_limit_before_a_flush_disconnects_at_once() -> None:
    loop = ManualLoop()
    hub = make_hub(loop, max_buffer=300)
    slow, other = new_peer(hub), new_peer(hub)
    hub.join(slow, "r", "", "viewer")
    hub.join(other, "r", "", "viewer")

    for _ in range(3):
        hub.send(slow, {"type": "chat", "text": "x" * 120})
    hub.send(other, {"type": "chat", "text": "y"})

    assert sink_of(slow).aborted == (CLOSE_TRY_AGAIN_LATER, "outbound queue full")
    loop.run_soon()
    assert sink_of(slow).writes == []
    assert sink_of(other).messages() == [{"type": "chat", "text": "y"}]


def test_a_failing_write_disconnects_only_that_peer() -> None:
    loop = ManualLoop()
    hub = make_hub(loop)
    broken, ok = new_peer(hub, FakeSink(fail=True)), new_peer(hub)
    hub.join(broken, "r", "", "viewer")
    hub.join(ok, "r", "", "viewer")

    hub.broadcast("r", {"type": "candidate", "payload": None})
    loop.run_soon()

    assert sink_of(broken).aborted == (CLOSE_TRY_AGAIN_LATER, "outbound queue full")
    assert sink_of(ok).messages() == [{"type": "candidate", "payload": None}]


# -- coalesced viewer counts ---------------------------------------------------------------


def test_a_join_storm_costs_one_viewer_count_per_member_not_n_squared() -> None:
    loop = ManualLoop()
    hub = make_hub(loop)
    peers = [new_peer(hub) for _ in range(50)]
    for peer in peers:
        hub.join(peer, "r", "", "viewer")

    assert len(loop.timers) == 1  # one coalescing timer for the whole storm
    loop.run_timers()

    counts = [sink_of(peer).of_type("viewer-count") for peer in peers]
    expected = [{"type": "viewer-count", "roomId": "r", "viewerCount": 50}]
    assert all(got == expected for got in counts)
    assert sum(len(got) for got in counts) == 50  # not 1 + 2 + ... + 50 = 1275

    for peer in peers[:20]:
        hub.disconnect(peer)
    loop.run_timers()
    assert sink_of(peers[-1]).of_type("viewer-count")[-1]["viewerCount"] == 30


def test_a_big_rooms_viewer_counts_are_spaced_by_its_size_and_stay_exact() -> None:
    loop = ManualLoop()
    now = [100.0]
    hub = Hub(
        CountingEncoder(), loop.call_soon, loop.call_later, count_interval=0.2, clock=lambda: now[0]
    )
    peers = [new_peer(hub) for _ in range(1000)]
    for peer in peers:
        hub.join(peer, "r", "", "viewer")

    def fire() -> None:  # the timers due now (push_counts reschedules itself)
        timers, loop.timers = loop.timers, []
        for timer in timers:
            timer.callback()
        loop.run_soon()

    fire()
    first = sink_of(peers[0]).of_type("viewer-count")
    assert first == [{"type": "viewer-count", "roomId": "r", "viewerCount": 1000}]

    hub.join(new_peer(hub), "r", "", "viewer")
    for _ in range(2):  # 0.4 s later: under 1,000 x COUNT_PER_MEMBER = 0.5 s, nothing yet
        now[0] += 0.2
        fire()
    assert len(sink_of(peers[0]).of_type("viewer-count")) == 1
    now[0] += 0.2
    fire()
    assert sink_of(peers[0]).of_type("viewer-count")[-1]["viewerCount"] == 1001
    assert hub.count("r") == 1001


def test_viewer_count_of_a_room_that_emptied_is_not_sent() -> None:
    loop = ManualLoop()
    hub = make_hub(loop)
    peer = new_peer(hub)
    hub.join(peer, "r", "", "viewer")
    hub.leave(peer, "r")
    loop.run_timers()
    assert sink_of(peer).writes == []


# -- membership invariants under any order of events -----------------------------------------

PEERS = 4
ROOMS = ("a", "b", "c")
operations = st.lists(
    st.tuples(
        st.sampled_from(["join", "leave", "disconnect", "reconnect"]),
        st.integers(min_value=0, max_value=PEERS - 1),
        st.sampled_from(ROOMS),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(operations)
def test_membership_invariants_hold_for_any_sequence(ops: list[tuple[str, int, str]]) -> None:
    loop = ManualLoop()
    hub = make_hub(loop)
    peers = [new_peer(hub, peer_id=f"p{index}") for index in range(PEERS)]
    model: dict[str, set[int]] = {room: set() for room in ROOMS}

    for op, index, room in ops:
        peer = peers[index]
        if op == "join" and not peer.closed:
            assert hub.join(peer, room, "", "viewer") is (index not in model[room])
            model[room].add(index)
        elif op == "leave":
            assert hub.leave(peer, room) is (index in model[room])
            model[room].discard(index)
        elif op == "disconnect":
            left = hub.disconnect(peer)
            assert sorted(left) == sorted(r for r in ROOMS if index in model[r])
            for members in model.values():
                members.discard(index)
        elif op == "reconnect" and peer.closed:
            peers[index] = new_peer(hub, peer_id=f"p{index}")

        for name in ROOMS:
            assert hub.count(name) == len(model[name])
            assert (name in hub.rooms) is bool(model[name])  # empty rooms are deleted
        assert all(members for members in hub.rooms.values())
        for position, each in enumerate(peers):
            assert each.rooms == {r for r in ROOMS if position in model[r]}
        assert hub.stats.connections == sum(1 for each in peers if not each.closed)

    loop.run_timers()
    for each in peers:
        counts = sink_of(each).of_type("viewer-count")
        for room in each.rooms:  # every member hears the room's final count
            latest = [c for c in counts if c["roomId"] == room][-1]
            assert latest["viewerCount"] == len(model[room])
