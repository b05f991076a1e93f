"""Unit tests of the signaling protocol over a fake sink: parsing, limits, rate limiting."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livehub.adapters.memory.players import MemoryPlayers
from livehub.adapters.sqlite.store import SQLiteStore
from livehub.domain.errors import RoomEnded, RoomNotFound
from livehub.domain.hub import Hub
from livehub.domain.moderation import Moderation
from livehub.domain.peer import Peer
from livehub.domain.ratelimit import FLOOD_QUIET_S
from livehub.domain.room import Room
from livehub.domain.service import RoomService
from livehub.domain.signaling import CLOSE_POLICY_VIOLATION, Limits, ProtocolError, Signaling
from livehub.domain.stage import Stage
from tests.domain.fakes import FakeSink, ManualLoop, make_hub


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


T = TypeVar("T")


@dataclasses.dataclass
class World:
    loop: ManualLoop
    hub: Hub
    rooms: RoomService
    signaling: Signaling
    clock: Clock
    room: Room
    owner_token: str
    ended: Room

    def connect(self) -> tuple[Peer, FakeSink]:
        sink = FakeSink()
        return self.signaling.open(sink), sink

    def send(self, peer: Peer, message: Any) -> None:
        pending = self.signaling.handle(peer, message)
        if pending is not None:
            drive(pending)
        self.loop.run_soon()


def drive(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends: here the domain awaits nothing that waits."""
    try:
        coro.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    coro.close()
    raise AssertionError("the coroutine suspended")


def room_view(room: Room) -> dict[str, Any]:
    return {"id": room.id, "status": room.status.value}


def make_world(limits: Limits | None = None) -> World:
    loop = ManualLoop()
    hub = make_hub(loop)
    rooms = RoomService(SQLiteStore(":memory:"), reconnect_window=0, players=MemoryPlayers())
    clock = Clock()

    signaling = Signaling(
        hub,
        rooms,
        room_view=room_view,
        close_room=rooms.close,
        limits=limits,
        clock=clock,
        wall_clock=lambda: 1_700_000_000.5,
    )
    room, owner_token = drive(rooms.create("Room"))
    ended, _ = drive(rooms.create("Ended"))
    ended = drive(rooms.close(ended.id))
    return World(loop, hub, rooms, signaling, clock, room, owner_token, ended)


@pytest.fixture
def world() -> World:
    return make_world()


def errors(sink: FakeSink) -> list[dict[str, Any]]:
    return sink.of_type("error")


# -- parsing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ([], {"code": "invalid_message", "message": "A message must be a JSON object"}),
        ("join", {"code": "invalid_message", "message": "A message must be a JSON object"}),
        (None, {"code": "invalid_message", "message": "A message must be a JSON object"}),
        (
            {"roomId": "r"},
            {"code": "missing_type", "message": "Field 'type' is required and must be a string"},
        ),
        (
            {"type": 7, "roomId": "r"},
            {"code": "missing_type", "message": "Field 'type' is required and must be a string"},
        ),
        (
            {"type": "dance", "roomId": "r"},
            {
                "code": "unknown_type",
                "message": "Unknown message type 'dance'",
                "inReplyTo": "dance",
            },
        ),
        (
            {"type": "join"},
            {
                "code": "missing_room_id",
                "message": "Field 'roomId' is required and must be a room id",
                "inReplyTo": "join",
            },
        ),
        (
            {"type": "offer", "roomId": ["r"]},
            {
                "code": "missing_room_id",
                "message": "Field 'roomId' is required and must be a room id",
                "inReplyTo": "offer",
            },
        ),
        (
            {"type": "chat", "roomId": "x" * 65},
            {
                "code": "missing_room_id",
                "message": "Field 'roomId' is required and must be a room id",
                "inReplyTo": "chat",
            },
        ),
    ],
)
def test_malformed_messages_get_one_error(world: World, message: Any, expected: Any) -> None:
    peer, sink = world.connect()
    world.send(peer, message)
    assert sink.messages() == [{"type": "error", **expected}]


def test_a_handler_is_done_on_return_or_returns_what_to_await(world: World) -> None:
    """Relays finish inside the call of ``handle`` (no coroutine per relay); other handlers
    return a coroutine that is awaited. Errors from either are answered with the message's
    type, room and id."""
    ran: list[str] = []

    def at_once(peer: Peer, message: dict[str, Any], room_id: str) -> None:
        if message.get("bad"):
            raise ProtocolError("bad_wave", "No waving here")
        ran.append(f"at once {room_id}")

    async def later(peer: Peer, message: dict[str, Any], room_id: str) -> None:
        if message.get("bad"):
            raise ProtocolError("bad_bow", "No bowing here")
        ran.append(f"later {room_id}")

    world.signaling.register("wave", at_once)
    world.signaling.register("bow", later)
    peer, sink = world.connect()
    world.send(peer, {"type": "wave", "roomId": "r1"})
    world.send(peer, {"type": "bow", "roomId": "r2"})
    world.send(peer, {"type": "wave", "roomId": "r3", "bad": True, "id": "w"})
    world.send(peer, {"type": "bow", "roomId": "r4", "bad": True, "id": 7})
    world.send(peer, {"type": "wave", "roomId": "r5", "bad": True})

    assert ran == ["at once r1", "later r2"]
    # a relay is done when handle returns; a join returns what to await
    other, _ = world.connect()
    for member in (peer, other):
        world.send(member, {"type": "join", "roomId": world.room.id})
    relay = {"type": "offer", "roomId": world.room.id, "payload": {"sdp": "v=0"}}
    assert world.signaling.handle(peer, relay) is None
    joining = world.signaling.handle(world.connect()[0], {"type": "join", "roomId": world.room.id})
    assert joining is not None
    drive(joining)
    assert world.hub.count(world.room.id) == 3
    assert errors(sink) == [
        {
            "type": "error",
            "code": "bad_wave",
            "message": "No waving here",
            "inReplyTo": "wave",
            "roomId": "r3",
            "id": "w",
        },
        {
            "type": "error",
            "code": "bad_bow",
            "message": "No bowing here",
            "inReplyTo": "bow",
            "roomId": "r4",
            "id": 7,
        },
        # the id of an earlier message does not stick to a later one's error
        {
            "type": "error",
            "code": "bad_wave",
            "message": "No waving here",
            "inReplyTo": "wave",
            "roomId": "r5",
        },
    ]


async def test_while_the_hub_is_backed_up_a_message_waits_then_is_handled(world: World) -> None:
    """Backpressure from the bus to other nodes: ``handle`` returns a wait, and the message is
    handled, in order, once the hub takes more."""
    alice, _ = world.connect()
    bob, bob_sink = world.connect()
    for peer in (alice, bob):
        world.send(peer, {"type": "join", "roomId": world.room.id})
    bob_sink.clear()
    released = asyncio.Event()
    hub = world.hub
    hub.can_back_up = True  # as a cluster node's hub, whose bus can back up
    hub.backed_up = lambda: not released.is_set()  # type: ignore[method-assign]
    hub.writable = released.wait  # type: ignore[method-assign,assignment]

    relay = {"type": "offer", "roomId": world.room.id, "payload": {"n": 1}}
    pending = world.signaling.handle(alice, relay)
    assert pending is not None
    waiting = asyncio.create_task(pending)
    await asyncio.sleep(0)
    world.loop.run_soon()
    assert not waiting.done()
    assert bob_sink.of_type("offer") == []  # nothing relayed while the hub is backed up

    released.set()
    await asyncio.wait_for(waiting, 5)
    world.loop.run_soon()
    assert [m["payload"] for m in bob_sink.of_type("offer")] == [{"n": 1}]
    assert world.signaling.handle(alice, {**relay, "payload": {"n": 2}}) is None
    world.loop.run_soon()
    assert [m["payload"] for m in bob_sink.of_type("offer")] == [{"n": 1}, {"n": 2}]


def test_a_payload_the_codec_cannot_encode_is_an_error_not_a_crash(world: World) -> None:
    alice, alice_sink = world.connect()
    bob, bob_sink = world.connect()
    for peer in (alice, bob):
        world.send(peer, {"type": "join", "roomId": world.room.id})
    alice_sink.clear()
    bob_sink.clear()

    deep: Any = []
    for _ in range(300):  # orjson encodes at most 254 levels
        deep = [deep]
    world.send(alice, {"type": "offer", "roomId": world.room.id, "payload": deep})
    world.send(alice, {"type": "offer", "roomId": world.room.id, "payload": deep, "to": bob.id})

    expected = {
        "type": "error",
        "code": "invalid_payload",
        "message": "Field 'payload' cannot be relayed",
        "inReplyTo": "offer",
        "roomId": world.room.id,
    }
    assert alice_sink.messages() == [expected, expected]
    assert bob_sink.messages() == []


@pytest.mark.parametrize(
    "limits", [Limits(), Limits(rate_per_s=0, relay_bytes_per_s=0)], ids=["limited", "unlimited"]
)
def test_a_relay_is_answered_alike_with_and_without_a_request_id(limits: Limits) -> None:
    """A relay without ``id`` in one of the sender's rooms takes a shorter path (``handle``'s
    own); with an ``id`` it is routed as any message. Both deliver and refuse the same."""
    world = make_world(limits)
    alice, alice_sink = world.connect()
    bob, bob_sink = world.connect()
    for peer in (alice, bob):
        world.send(peer, {"type": "join", "roomId": world.room.id})
    room_id = world.room.id
    relays: list[dict[str, Any]] = [
        {"type": "offer", "roomId": room_id, "payload": {"sdp": "v=0"}},
        {"type": "answer", "roomId": room_id, "payload": "x", "to": bob.id},
        {"type": "candidate", "roomId": room_id, "payload": None, "to": alice.id},
        {"type": "candidate", "roomId": room_id, "payload": 1, "to": "nobody"},
        {"type": "offer", "roomId": room_id, "payload": 1, "to": 7},
        {"type": "offer", "roomId": room_id, "payload": "a" * 20_000},
        {"type": "offer", "roomId": world.ended.id, "payload": 1},
        {"type": "offer", "roomId": "", "payload": 1},
        {"type": "offer", "roomId": ["x"], "payload": 1},
        {"type": "offer", "roomId": "r" * 200, "payload": 1},
    ]
    answers = []
    for relay in relays:
        heard = []
        for message in (relay, {**relay, "id": "r1"}):
            alice_sink.clear()
            bob_sink.clear()
            world.send(alice, message)
            heard.append(
                (
                    [{k: v for k, v in m.items() if k != "id"} for m in alice_sink.messages()],
                    bob_sink.messages(),
                )
            )
        assert heard[0] == heard[1], relay
        answers.append(heard[0])
    assert [bob_heard for _, bob_heard in answers[:2]] == [
        [{"type": "offer", "roomId": room_id, "payload": {"sdp": "v=0"}, "from": alice.id}],
        [{"type": "answer", "roomId": room_id, "payload": "x", "from": alice.id, "to": bob.id}],
    ]
    codes = [[m["code"] for m in alice_heard] for alice_heard, _ in answers[2:]]
    assert codes == [
        ["peer_not_found"],
        ["peer_not_found"],
        ["invalid_to"],
        ["payload_too_large"],
        ["not_in_room"],
        ["missing_room_id"],
        ["missing_room_id"],
        ["missing_room_id"],
    ]


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(codec="utf-8"), max_size=80)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(st.characters(codec="utf-8"), max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
TYPES = ["join", "leave", "offer", "answer", "candidate", "chat", "close-room", "kick"]


@st.composite
def messages(draw: st.DrawFn, room_ids: list[str], peer_ids: list[str], token: str) -> Any:
    """Arbitrary JSON, or objects shaped like protocol messages with arbitrary field values."""
    if draw(st.integers(min_value=0, max_value=4)) == 0:
        return draw(json_values)
    message: dict[str, Any] = {}
    if draw(st.integers(min_value=0, max_value=5)):
        message["type"] = draw(st.sampled_from(TYPES) | json_values)
    if draw(st.integers(min_value=0, max_value=5)):
        message["roomId"] = draw(st.sampled_from(room_ids) | json_values)
    optional = {
        "name": st.text(max_size=70) | json_values,
        "role": st.sampled_from(["viewer", "host"]) | json_values,
        "token": st.just(token) | json_values,
        "payload": json_values,
        "to": st.sampled_from(peer_ids) | json_values,
        "peerId": st.sampled_from(peer_ids) | json_values,
        "text": st.text(st.characters(codec="utf-8"), max_size=600) | json_values,
        "from": json_values,
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            message[key] = draw(strategy)
    return message


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_any_json_value_is_handled_or_answered_with_an_error(data: st.DataObject) -> None:
    # presence limit 1: rooms of two or three are counted, and switch back and forth
    limit = data.draw(st.sampled_from([1, 100]))
    world = make_world(Limits(rate_per_s=1e9, rate_burst=10**6, presence_limit=limit))
    connections = [world.connect() for _ in range(3)]
    peer_ids = [peer.id for peer, _ in connections] + ["nobody"]
    room_ids = [world.room.id, world.ended.id, "missing"]
    strategy = messages(room_ids, peer_ids, world.owner_token)

    for _ in range(data.draw(st.integers(min_value=1, max_value=8))):
        index = data.draw(st.integers(min_value=0, max_value=2))
        peer, sink = connections[index]
        message = data.draw(strategy)
        before = len(sink.frames)
        world.send(peer, message)  # never raises
        replies = sink.messages()[before:]

        for reply in replies:
            assert isinstance(reply.get("type"), str)
        failures = [reply for reply in replies if reply["type"] == "error"]
        assert len(failures) <= 1
        for failure in failures:
            assert isinstance(failure["code"], str) and failure["code"]
            assert isinstance(failure["message"], str) and failure["message"]
        well_formed = (
            isinstance(message, dict)
            and message.get("type") in TYPES
            and isinstance(message.get("roomId"), str)
            and 0 < len(message["roomId"]) <= 64
        )
        if not well_formed:
            assert len(failures) == 1, (message, replies)
            assert len(replies) == 1
        elif message["type"] == "join" and not failures:
            assert replies[0]["type"] == "joined"
        elif message["type"] == "leave" and not failures:
            assert replies == [{"type": "left", "roomId": message["roomId"]}]
        for other_peer, other_sink in connections:  # relays carry the server-set sender
            for relayed in other_sink.messages():
                if relayed["type"] in ("offer", "answer", "candidate"):
                    assert relayed["from"] in peer_ids and relayed["from"] != other_peer.id

        for room_id, members in world.hub.rooms.items():
            assert members
            assert world.hub.count(room_id) == len(
                [peer for peer, _ in connections if room_id in peer.rooms]
            )
        assert world.ended.id not in world.hub.rooms
        assert "missing" not in world.hub.rooms
        for room_id in world.hub.rooms:  # counted above the limit, full at 90 % or below
            counted = room_id in world.signaling._counted
            assert world.hub.count(room_id) > (limit - limit // 10 if counted else -1)
            assert counted or world.hub.count(room_id) <= limit
        assert world.signaling._counted <= set(world.hub.rooms)  # emptied rooms are forgotten


# -- limits ---------------------------------------------------------------------------------


def test_rooms_per_connection_limit() -> None:
    world = make_world(Limits(max_rooms_per_connection=1))
    other, _ = drive(world.rooms.create("Other"))
    peer, sink = world.connect()
    world.send(peer, {"type": "join", "roomId": world.room.id})
    world.send(peer, {"type": "join", "roomId": world.room.id})  # rejoining is not a new room
    world.send(peer, {"type": "join", "roomId": other.id})
    assert [m["type"] for m in sink.messages()] == ["joined", "joined", "error"]
    assert errors(sink) == [
        {
            "type": "error",
            "code": "too_many_rooms",
            "message": "This connection has joined too many rooms",
            "inReplyTo": "join",
            "roomId": other.id,
        }
    ]


def test_members_per_room_limit() -> None:
    world = make_world(Limits(max_members_per_room=2))
    joined = [world.connect() for _ in range(3)]
    for peer, _ in joined:
        world.send(peer, {"type": "join", "roomId": world.room.id})
    assert world.hub.count(world.room.id) == 2
    assert errors(joined[2][1]) == [
        {
            "type": "error",
            "code": "room_full",
            "message": "Room is full",
            "inReplyTo": "join",
            "roomId": world.room.id,
        }
    ]


def test_chat_length_limit_is_configurable() -> None:
    world = make_world(Limits(max_chat_length=5))
    peer, sink = world.connect()
    world.send(peer, {"type": "join", "roomId": world.room.id})
    sink.clear()
    world.send(peer, {"type": "chat", "roomId": world.room.id, "text": "12345"})
    world.send(peer, {"type": "chat", "roomId": world.room.id, "text": "123456"})
    assert sink.messages() == [
        {
            "type": "chat",
            "roomId": world.room.id,
            "from": peer.id,
            "name": "",
            "role": "viewer",
            "text": "12345",
            "ts": 1_700_000_000_500,
        },
        {
            "type": "error",
            "code": "chat_too_long",
            "message": "Field 'text' must be at most 5 characters",
            "inReplyTo": "chat",
            "roomId": world.room.id,
        },
    ]


# -- rate limit -------------------------------------------------------------------------------

RATE_LIMITED = {"type": "error", "code": "rate_limited", "message": "Too many messages: slow down"}


def leave(world: World) -> dict[str, Any]:
    return {"type": "leave", "roomId": "elsewhere"}  # answered with not_in_room every time


def test_a_burst_passes_then_one_rate_limited_error() -> None:
    world = make_world(Limits(rate_per_s=10, rate_burst=5))
    peer, sink = world.connect()
    for _ in range(8):
        world.send(peer, leave(world))
    codes = [message["code"] for message in sink.messages()]
    assert codes == ["not_in_room"] * 5 + ["rate_limited"]
    assert sink.messages()[-1] == RATE_LIMITED
    assert sink.aborted is None

    world.clock.now += 0.1  # one token back
    world.send(peer, leave(world))
    assert sink.messages()[-1]["code"] == "not_in_room"


def test_a_sustained_flood_is_closed_with_1008_even_when_some_messages_get_through() -> None:
    world = make_world(Limits(rate_per_s=10, rate_burst=5))
    peer, sink = world.connect()
    world.send(peer, {"type": "join", "roomId": world.room.id})  # costs the whole burst
    assert sink.of_type("joined")
    sink.clear()

    sent = 0
    while sink.aborted is None and sent < 1000:
        world.clock.now += 0.05  # 20 messages/s against a rate of 10/s: every other one passes
        world.send(peer, {"type": "chat", "roomId": world.room.id, "text": "spam"})
        sent += 1

    assert sink.aborted == (CLOSE_POLICY_VIOLATION, "message rate limit exceeded")
    assert peer.closed
    assert errors(sink) == [RATE_LIMITED]  # one error per episode, not one per drop
    assert 1 < len(sink.of_type("chat")) < sent  # some got through, the episode went on
    before = len(sink.frames)
    world.send(peer, {"type": "leave", "roomId": world.room.id})
    assert len(sink.frames) == before  # a closing peer's last frames change nothing
    assert world.hub.is_member(peer, world.room.id)
    world.signaling.close(peer)
    assert world.hub.count(world.room.id) == 0


def test_a_quiet_second_ends_the_episode() -> None:
    world = make_world(Limits(rate_per_s=10, rate_burst=2))
    peer, sink = world.connect()
    for _ in range(3):
        world.send(peer, leave(world))
    world.clock.now += FLOOD_QUIET_S  # refills the bucket (2 tokens) and ends the episode
    for _ in range(4):
        world.send(peer, leave(world))
    codes = [m["code"] for m in sink.messages()]
    assert codes == ["not_in_room"] * 2 + ["rate_limited"] + ["not_in_room"] * 2 + ["rate_limited"]
    assert sink.aborted is None


def test_bad_frames_count_against_the_rate_limit() -> None:
    world = make_world(Limits(rate_per_s=10, rate_burst=3))
    peer, sink = world.connect()
    for _ in range(8):
        world.signaling.bad_frame(peer, "invalid_json", "Message is not valid JSON")
    world.loop.run_soon()
    assert [m["code"] for m in sink.messages()] == ["invalid_json"] * 3 + ["rate_limited"]
    assert sink.aborted == (CLOSE_POLICY_VIOLATION, "message rate limit exceeded")
    before = len(sink.frames)
    world.signaling.bad_frame(peer, "binary_not_supported", "Send JSON text frames")
    world.loop.run_soon()
    assert len(sink.frames) == before


# -- roles --------------------------------------------------------------------------------------


def test_host_needs_the_owner_token(world: World) -> None:
    peer, sink = world.connect()
    world.send(peer, {"type": "join", "roomId": world.room.id, "role": "host", "token": "nope"})
    world.send(peer, {"type": "join", "roomId": world.room.id, "role": "host"})
    world.send(peer, {"type": "join", "roomId": world.room.id, "role": "admin"})
    assert [(m["code"], m["message"]) for m in errors(sink)] == [
        ("forbidden", "Joining as host needs the room's owner token"),
        ("forbidden", "Joining as host needs the room's owner token"),
        ("invalid_role", "Field 'role' must be 'viewer' or 'host'"),
    ]
    world.send(
        peer,
        {"type": "join", "roomId": world.room.id, "role": "host", "token": world.owner_token},
    )
    assert sink.messages()[-1]["role"] == "host"


def test_null_name_and_role_mean_the_defaults(world: World) -> None:
    peer, sink = world.connect()
    world.send(peer, {"type": "join", "roomId": world.room.id, "name": None, "role": None})
    joined = sink.messages()[-1]
    assert joined["members"] == [{"peerId": peer.id, "name": "", "role": "viewer"}]


# -- docs/protocol.md matches the code ------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]


def test_the_protocol_doc_lists_every_error_code_and_nothing_else() -> None:
    sources = "".join(
        (ROOT / path).read_text()
        for path in (
            "livehub/domain/signaling.py",
            "livehub/api/websocket.py",
            # issue 18: the stage, private rooms' joins and moderation speak the protocol too
            "livehub/domain/stage.py",
            "livehub/domain/viewer_tokens.py",
            "livehub/domain/moderation.py",
        )
    )
    raised = set(
        re.findall(r'(?:ProtocolError\(|reject\(|bad_frame\()\s*(?:peer,\s*)?"(\w+)"', sources)
    )
    raised.add(RoomNotFound.code)  # rooms.get() raises it for a join of an unknown room
    raised.add(RoomEnded.code)  # join, chat or close-room in an ended room
    doc = (ROOT / "docs/protocol.md").read_text()
    table = doc.split("## Errors", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `(\w+)` \|", table, re.M))
    assert documented == raised


def test_the_protocol_doc_describes_every_client_message_type() -> None:
    doc = (ROOT / "docs/protocol.md").read_text()
    headings = re.findall(r"^### (.+)$", doc, re.M)
    documented = {name for heading in headings for name in re.findall(r"`([\w-]+)`", heading)}
    world = make_world()
    # the stage and moderation register their messages as the app wires them
    Stage(
        world.signaling,
        world.rooms,
        world.hub,
        play_urls=lambda key: {},
        credentials=lambda key, token: {},
    )
    Moderation(world.signaling, world.rooms, world.hub)
    handled = set(world.signaling._handlers)
    assert {"stage-invite", "stage-accept", "chat-delete", "slow-mode"} <= handled
    assert handled <= documented


def test_a_general_rate_of_0_turns_the_limit_off() -> None:
    world = make_world(Limits(rate_per_s=0, rate_burst=5))
    peer, sink = world.connect()
    for _ in range(1000):
        world.send(peer, leave(world))
    assert [m["code"] for m in sink.messages()] == ["not_in_room"] * 1000
    assert sink.aborted is None


def test_refused_chats_count_towards_a_flood() -> None:
    world = make_world(Limits(rate_per_s=0, rate_burst=10, chat_rate_per_s=1, chat_rate_burst=2))
    peer, sink = world.connect()
    world.send(peer, {"type": "join", "roomId": world.room.id})
    sink.clear()
    for _ in range(2 + 11):
        world.send(peer, {"type": "chat", "roomId": world.room.id, "text": "spam"})
    assert len(sink.of_type("chat")) == 2
    assert errors(sink) == [
        {
            "type": "error",
            "code": "rate_limited",
            "message": "Too many chat messages: slow down",
            "inReplyTo": "chat",
            "roomId": world.room.id,
        }
    ]
    assert sink.aborted == (CLOSE_POLICY_VIOLATION, "message rate limit exceeded")


# -- presence -------------------------------------------------------------------------------------


def test_presence_switches_above_the_limit_and_back_at_90_percent() -> None:
    world = make_world(Limits(presence_limit=10))
    host, host_sink = world.connect()
    world.send(
        host, {"type": "join", "roomId": world.room.id, "role": "host", "token": world.owner_token}
    )
    viewers = [world.connect() for _ in range(10)]
    for peer, _ in viewers:
        world.send(peer, {"type": "join", "roomId": world.room.id})
    modes = [m["presence"] for m in host_sink.of_type("presence-mode")]
    assert modes == ["counted"]  # at the 11th member
    assert len(host_sink.of_type("peer-joined")) == 9  # the 11th was not announced
    assert viewers[-1][1].of_type("joined")[0]["members"] == [
        {"peerId": host.id, "name": "", "role": "host"},
        {"peerId": viewers[-1][0].id, "name": "", "role": "viewer"},
    ]

    host_sink.clear()
    world.signaling.close(viewers[0][0])  # 10 members: still counted (no flapping at the limit)
    world.loop.run_soon()
    assert host_sink.of_type("presence-mode") == []
    assert host_sink.of_type("peer-left") == []
    world.signaling.close(viewers[1][0])  # 9 members, 90 % of the limit: full again
    world.loop.run_soon()
    [full] = host_sink.of_type("presence-mode")
    assert full["presence"] == "full" and full["viewerCount"] == 9
    assert [m["peerId"] for m in full["members"]] == [host.id] + [p.id for p, _ in viewers[2:]]
    world.signaling.close(viewers[2][0])
    world.loop.run_soon()
    assert host_sink.of_type("peer-left")[-1]["peerId"] == viewers[2][0].id  # announced again


def test_a_host_that_kicks_in_a_counted_room_hears_the_peer_left() -> None:
    world = make_world(Limits(presence_limit=2))
    host, host_sink = world.connect()
    world.send(
        host, {"type": "join", "roomId": world.room.id, "role": "host", "token": world.owner_token}
    )
    viewers = [world.connect() for _ in range(3)]
    for peer, _ in viewers:
        world.send(peer, {"type": "join", "roomId": world.room.id})
    host_sink.clear()
    target = viewers[2][0]
    world.send(host, {"type": "kick", "roomId": world.room.id, "peerId": target.id})
    assert host_sink.of_type("peer-left") == [
        {"type": "peer-left", "roomId": world.room.id, "peerId": target.id}
    ]
    assert viewers[0][1].of_type("peer-left") == []


# -- slow mode through a reconnect (the rest over real connections: tests/api/test_moderation.py)


def test_slow_mode_follows_an_address_only_within_its_interval() -> None:
    """A viewer whose last line is older than the slow-mode interval when it leaves leaves
    nothing behind: the next connection from its address chats at once, and nothing is stored
    with the room. (A line within the interval is handed on: tests/api/test_moderation.py and
    the cluster's test, over real connections, for it writes the room in the background.)"""
    world = make_world()
    Moderation(
        world.signaling,
        world.rooms,
        world.hub,
        clock=world.clock,
        wall_clock=lambda: int(world.clock.now * 1000),
    )
    rid = world.room.id
    host, _ = world.connect()
    world.send(host, {"type": "join", "roomId": rid, "role": "host", "token": world.owner_token})
    world.send(host, {"type": "slow-mode", "roomId": rid, "seconds": 10})

    def viewer() -> tuple[Peer, FakeSink]:
        sink = FakeSink()
        peer = world.signaling.open(sink, "198.51.100.7")
        world.send(peer, {"type": "join", "roomId": rid})
        sink.clear()
        return peer, sink

    def chat(peer: Peer, sink: FakeSink, text: str) -> list[dict[str, Any]]:
        sink.clear()
        world.send(peer, {"type": "chat", "roomId": rid, "text": text})
        return [m for m in sink.messages() if m["type"] in ("chat", "error")]

    first, first_sink = viewer()
    assert [m["type"] for m in chat(first, first_sink, "one")] == ["chat"]
    world.clock.now += 10  # the interval has passed when it leaves
    world.signaling.close(first)
    second, second_sink = viewer()
    assert [m["type"] for m in chat(second, second_sink, "two")] == ["chat"]
    assert "slowKeys" not in drive(world.rooms.get(rid)).moderation
    # a line within the interval, from the same connection: refused as ever
    world.clock.now += 9
    refused = chat(second, second_sink, "three")
    assert [(m["type"], m.get("code")) for m in refused] == [("error", "slow_mode")]
