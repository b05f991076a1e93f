"""The signaling WebSocket over real connections: protocol v2, limits, seed compatibility.

Most clients are aiohttp WebSocket clients. :class:`RawWebSocket` speaks the protocol over a
plain socket for what a well-behaved client cannot do: vanish without a close frame, or stop
reading.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import inspect
import json
import os
import socket
import struct
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import WSMsgType, WSServerHandshakeError, web
from pytest_aiohttp import AiohttpClient

from livehub import keys
from livehub.app import create_app
from livehub.config import Config
from livehub.domain.ratelimit import JOIN_COST
from tests.conftest import ADMIN_TOKEN, Client, CreateRoom, PostHook, hook_for, make_config
from tests.signaling_client import TIMEOUT, WS, error, expect, join, receive

Start = Callable[..., Awaitable[Client]]


@pytest.fixture(params=["embedded", "cluster"])
def engine_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Every test of this suite runs in both modes: embedded (SQLite in memory, the
    in-process hub) and cluster (the throwaway PostgreSQL, a fresh database, and a Redis of
    the test's own: the cluster hub on the Redis bus, Redis player counts, the leader lock)."""
    if request.param == "embedded":
        return {}
    return {
        "database_url": request.getfixturevalue("pg_url"),
        "redis_url": request.getfixturevalue("redis_alone").url,
    }


@pytest.fixture
def config(engine_settings: dict[str, Any]) -> Config:
    return make_config(**engine_settings)


@pytest.fixture
async def client(
    engine_settings: dict[str, Any], aiohttp_client: AiohttpClient, app: web.Application
) -> Client:
    """As in tests/conftest.py, after the engines: the app closes before they stop."""
    return await aiohttp_client(app)


@pytest.fixture
def start(engine_settings: dict[str, Any], aiohttp_client: AiohttpClient) -> Start:
    """A client of an app built with ``make_config(**overrides)``, in the test's mode (set
    up after the engines: its apps close before they stop)."""

    async def start(**overrides: Any) -> Client:
        return await aiohttp_client(create_app(make_config(**engine_settings, **overrides)))

    return start


async def create_room_via(client: Client, title: str = "Big room") -> dict[str, Any]:
    """A new room with its owner token."""
    resp = await client.post("/api/rooms", json={"title": title})
    assert resp.status == 201
    data: dict[str, Any] = await resp.json()
    return data


async def new_room(client: Client, title: str = "Signaling room") -> dict[str, Any]:
    resp = await client.post("/api/rooms", json={"title": title})
    assert resp.status == 201
    data: dict[str, Any] = await resp.json()
    return data


async def get_room(client: Client, room_id: str) -> dict[str, Any]:
    resp = await client.get(f"/api/rooms/{room_id}")
    assert resp.status == 200
    data: dict[str, Any] = await resp.json()
    return data


async def joined_peers(client: Client, room_id: str, count: int) -> list[tuple[WS, str]]:
    """``count`` connections joined to the room, each with its peer id; every earlier member
    has seen every later one's ``peer-joined``, so no join event is left to read."""
    peers: list[tuple[WS, str]] = []
    for _ in range(count):
        ws = await client.ws_connect("/ws")
        peer_id = (await join(ws, room_id))["peerId"]
        for earlier, _ in peers:
            assert (await expect(earlier, "peer-joined"))["peer"]["peerId"] == peer_id
        peers.append((ws, peer_id))
    return peers


async def metric(client: Client, name: str) -> float:
    resp = await client.get("/metrics")
    for line in (await resp.text()).splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"metric {name} not exposed")


class RawWebSocket:
    """A WebSocket client over a plain socket, one frame at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(
        cls, client: Client, path: str = "/ws", *, rcvbuf: int | None = None
    ) -> RawWebSocket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, (client.host, client.port))
        except BaseException:
            sock.close()
            raise
        reader, writer = await asyncio.open_connection(sock=sock)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {client.host}:{client.port}\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        async with asyncio.timeout(TIMEOUT):
            head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer)

    def send_frame(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        length = len(payload)
        if length < 126:
            header = bytes((0x80 | opcode, 0x80 | length))
        elif length < 65536:
            header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
        masked = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
        self.writer.write(header + mask + masked)

    def send_json(self, message: dict[str, Any]) -> None:
        self.send_frame(0x1, json.dumps(message).encode())

    async def receive(self) -> tuple[int, bytes]:
        """The next frame from the server (unmasked, unfragmented): opcode and payload."""
        head = await self.reader.readexactly(2)
        length = head[1] & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await self.reader.readexactly(8))
        return head[0] & 0x0F, await self.reader.readexactly(length)

    async def receive_json(self) -> dict[str, Any]:
        async with asyncio.timeout(TIMEOUT):
            while True:
                opcode, payload = await self.receive()
                assert opcode == 0x1, (opcode, payload)
                data: dict[str, Any] = json.loads(payload)
                if data["type"] != "viewer-count":
                    return data

    def abort(self) -> None:
        """Vanish: no close frame, no FIN handshake."""
        self.writer.transport.abort()


# -- join, leave, presence -------------------------------------------------------------------------


async def test_join_answers_with_peer_id_room_state_and_members(client: Client) -> None:
    room = await new_room(client)
    alice = await client.ws_connect("/ws")
    first = await join(alice, room["id"], name="  Alice  ")
    bob = await client.ws_connect("/ws")
    second = await join(bob, room["id"], name="Bob")

    alice_id, bob_id = first["peerId"], second["peerId"]
    assert isinstance(alice_id, str) and alice_id and alice_id != bob_id
    public = await get_room(client, room["id"])
    assert public["viewerCount"] == 2
    assert second == {
        "type": "joined",
        "roomId": room["id"],
        "peerId": bob_id,
        "role": "viewer",
        "room": public,
        "members": [
            {"peerId": alice_id, "name": "Alice", "role": "viewer"},
            {"peerId": bob_id, "name": "Bob", "role": "viewer"},
        ],
        "presence": "full",
        "viewerCount": 2,
        "slowMode": 0,
    }
    assert first["members"] == [{"peerId": alice_id, "name": "Alice", "role": "viewer"}]
    assert first["room"]["viewerCount"] == 1
    for secret in ("ownerToken", "publish"):
        assert secret not in first["room"]
    assert room["ownerToken"] not in json.dumps([first, second])
    assert room["publish"]["token"] not in json.dumps([first, second])

    assert await expect(alice, "peer-joined") == {
        "type": "peer-joined",
        "roomId": room["id"],
        "peer": {"peerId": bob_id, "name": "Bob", "role": "viewer"},
    }
    assert await receive(alice, skip=()) == {
        "type": "viewer-count",
        "roomId": room["id"],
        "viewerCount": 2,
    }

    await bob.send_json({"type": "leave", "roomId": room["id"]})
    assert await expect(bob, "left") == {"type": "left", "roomId": room["id"]}
    assert await expect(alice, "peer-left") == {
        "type": "peer-left",
        "roomId": room["id"],
        "peerId": bob_id,
    }
    assert (await get_room(client, room["id"]))["viewerCount"] == 1


async def test_join_of_a_missing_or_ended_room_is_an_error(client: Client) -> None:
    room = await new_room(client)
    closed = await client.post(
        f"/api/rooms/{room['id']}/close",
        headers={"Authorization": f"Bearer {room['ownerToken']}"},
    )
    assert closed.status == 200
    ws = await client.ws_connect("/ws")

    await ws.send_json({"type": "join", "roomId": "doesnotexist"})
    assert await receive(ws) == error(
        "room_not_found", "Room not found", inReplyTo="join", roomId="doesnotexist"
    )
    await ws.send_json({"type": "join", "roomId": room["id"]})
    assert await receive(ws) == error(
        "room_ended", "Room has ended", inReplyTo="join", roomId=room["id"]
    )
    assert (await get_room(client, room["id"]))["viewerCount"] == 0


NAME_ERROR = (
    "Field 'name' must be a string of at most 64 characters, empty or with a visible one, and "
    "no control characters"
)


@pytest.mark.parametrize(
    ("fields", "code", "message"),
    [
        ({"name": "n" * 65}, "invalid_name", NAME_ERROR),
        ({"name": ["Ana"]}, "invalid_name", NAME_ERROR),
        ({"name": "\u200b\u200d"}, "invalid_name", NAME_ERROR),  # shows as no name
        ({"name": "Ana\nBob"}, "invalid_name", NAME_ERROR),  # one line in every list
        ({"name": "Ana\u0085"}, "invalid_name", NAME_ERROR),
        ({"role": "admin"}, "invalid_role", "Field 'role' must be 'viewer' or 'host'"),
        ({"role": 1}, "invalid_role", "Field 'role' must be 'viewer' or 'host'"),
    ],
)
async def test_join_field_errors(
    client: Client, fields: dict[str, Any], code: str, message: str
) -> None:
    room = await new_room(client)
    ws = await client.ws_connect("/ws")
    await ws.send_json({"type": "join", "roomId": room["id"], **fields})
    assert await receive(ws) == error(code, message, inReplyTo="join", roomId=room["id"])
    assert (await get_room(client, room["id"]))["viewerCount"] == 0
    joined = await join(ws, room["id"], name="n" * 64, role=None)
    assert joined["members"][0]["name"] == "n" * 64


async def test_joining_twice_counts_once(client: Client) -> None:
    room = await new_room(client)
    (alice, alice_id), (bob, bob_id) = await joined_peers(client, room["id"], 2)

    again = await join(bob, room["id"], name="Bob")
    assert again["peerId"] == bob_id
    assert [member["peerId"] for member in again["members"]] == [alice_id, bob_id]
    assert (await get_room(client, room["id"]))["viewerCount"] == 2

    # alice hears no second peer-joined: her next event is bob's chat
    await bob.send_json({"type": "chat", "roomId": room["id"], "text": "hi"})
    assert (await receive(alice))["type"] == "chat"


def _finished_signaling_coroutines() -> list[Any]:
    gc.collect()
    return [
        obj
        for obj in gc.get_objects()
        if inspect.iscoroutine(obj)
        and inspect.getcoroutinestate(obj) == inspect.CORO_CLOSED
        and obj.__qualname__.startswith("Signaling.")
    ]


async def test_idle_members_hold_no_finished_coroutines(client: Client) -> None:
    """What a connection's messages ran is freed when they are done: a finished coroutine
    keeps its frame's memory while something references it, and the handler once kept each
    connection's last awaited one until its next message (0.3-0.5 kB per idle connection in
    the idle benchmark)."""
    earlier = weakref.WeakSet(_finished_signaling_coroutines())  # other tests' garbage
    room = await new_room(client)
    peers = await joined_peers(client, room["id"], 10)
    for ws, _ in peers:
        await ws.send_json({"type": "chat", "roomId": room["id"], "text": "hi"})
    for ws, _ in peers:  # every member hears the ten lines: every chat is done
        for _ in peers:
            await expect(ws, "chat")
    await asyncio.sleep(0)
    held = [obj.__qualname__ for obj in _finished_signaling_coroutines() if obj not in earlier]
    assert held == []
    for ws, _ in peers:
        await ws.close()


def _livehub_frames_of_connections() -> list[list[str]]:
    """For each WebSocket connection being served, the frames of livehub's code in the chain of
    coroutines its handler task awaits in, outermost first."""
    package = os.path.dirname(inspect.getfile(keys))
    chains = []
    for task in asyncio.all_tasks():
        names: list[str] = []
        coroutine: Any = task.get_coro()
        while coroutine is not None:
            code = getattr(coroutine, "cr_code", None)
            if code is not None and code.co_filename.startswith(package):
                names.append(code.co_qualname)
            coroutine = getattr(coroutine, "cr_await", None)
        if "websocket" in names:
            chains.append(names)
    return chains


async def test_a_connection_waits_for_each_message_in_one_frame_of_livehub_s(
    client: Client,
) -> None:
    """Each message resumes the handler's coroutine and every frame that awaits it. The
    middlewares return the WebSocket handler's coroutine instead of awaiting it, so livehub has
    one frame in that chain for ``/ws`` (the seed's ``/`` has the console's too)."""
    room = await new_room(client)
    ws = await client.ws_connect("/ws")
    await join(ws, room["id"])
    seed = await client.ws_connect("/")
    await join(seed, room["id"])
    await expect(ws, "peer-joined")
    assert sorted(_livehub_frames_of_connections()) == [["index", "websocket"], ["websocket"]]
    for each in (ws, seed):
        await each.close()


def _handler_locals_of_connections() -> list[dict[str, Any]]:
    """For each WebSocket connection being served, the locals of livehub's ``websocket``
    handler while it waits for the next message."""
    found = []
    for task in asyncio.all_tasks():
        coroutine: Any = task.get_coro()
        while coroutine is not None:
            code = getattr(coroutine, "cr_code", None)
            if code is not None and code.co_qualname == "websocket" and coroutine.cr_frame:
                found.append(dict(coroutine.cr_frame.f_locals))
            coroutine = getattr(coroutine, "cr_await", None)
    return found


async def test_an_idle_connection_holds_none_of_its_last_message(client: Client) -> None:
    """While a connection waits for its next message, its handler keeps neither the last frame
    aiohttp read nor what it decoded to: an idle member held its join message (three objects,
    about 0.2 kB) and the frame's bytes until it sent something else, 10,000 of them held
    megabytes in the idle benchmark."""
    room = await new_room(client)
    peers = await joined_peers(client, room["id"], 3)
    await peers[0][0].send_json({"type": "chat", "roomId": room["id"], "text": "hi"})
    for ws, _ in peers:
        await expect(ws, "chat")
    await asyncio.sleep(0)
    handlers = _handler_locals_of_connections()
    assert len(handlers) == 3
    for names in handlers:
        assert names.get("msg") is None and names.get("message") is None, sorted(names)
    for ws, _ in peers:
        await ws.close()


async def test_a_connection_that_fails_unexpectedly_closes_with_1011_and_leaves(
    client: Client, app: web.Application, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug in handling one connection's message: logged with its traceback, that connection
    closed with 1011 (its room hears it leave), and everyone else served as before."""
    signaling = app[keys.signaling]
    handle = signaling.handle

    def failing(peer: Any, message: Any) -> Any:
        if isinstance(message, dict) and message.get("type") == "chat" and message["text"] == "x":
            raise RuntimeError("a bug")
        return handle(peer, message)

    room = await new_room(client)
    (stays, _), (fails, failing_id) = await joined_peers(client, room["id"], 2)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(signaling, "handle", failing)
        await fails.send_json({"type": "chat", "roomId": room["id"], "text": "x"})
        closed = await fails.receive(timeout=TIMEOUT)
        assert (closed.type, fails.close_code) == (WSMsgType.CLOSE, 1011)
        left = await expect(stays, "peer-left")
        assert left["peerId"] == failing_id
    assert [record.getMessage() for record in caplog.records if record.exc_info] == [
        f"signaling connection of peer {failing_id} failed"
    ]
    await stays.send_json({"type": "chat", "roomId": room["id"], "text": "still here"})
    assert (await expect(stays, "chat"))["text"] == "still here"
    assert (await get_room(client, room["id"]))["viewerCount"] == 1
    await stays.close()


async def test_leave_without_join_is_an_error(client: Client) -> None:
    room = await new_room(client)
    ws = await client.ws_connect("/ws")
    await ws.send_json({"type": "leave", "roomId": room["id"]})
    assert await receive(ws) == error(
        "not_in_room", "Not a member of this room", inReplyTo="leave", roomId=room["id"]
    )
    await join(ws, room["id"])
    await ws.send_json({"type": "leave", "roomId": room["id"]})
    assert await expect(ws, "left") == {"type": "left", "roomId": room["id"]}
    await ws.send_json({"type": "leave", "roomId": room["id"]})
    assert (await receive(ws))["code"] == "not_in_room"
    assert (await get_room(client, room["id"]))["viewerCount"] == 0


async def test_viewer_count_is_distinct_connections_including_abrupt_disconnects(
    client: Client,
) -> None:
    room = await new_room(client)
    observer = await client.ws_connect("/ws")
    await join(observer, room["id"])
    vanishing = []
    for _ in range(3):
        raw = await RawWebSocket.connect(client)
        raw.send_json({"type": "join", "roomId": room["id"]})
        raw.send_json({"type": "join", "roomId": room["id"]})  # twice: still one
        assert (await raw.receive_json())["type"] == "joined"
        vanishing.append(raw)
    polite = await client.ws_connect("/ws")
    await join(polite, room["id"])
    assert (await get_room(client, room["id"]))["viewerCount"] == 5

    for raw in vanishing:
        raw.abort()
    gone: set[str] = set()
    async with asyncio.timeout(TIMEOUT):
        while len(gone) < 3:
            event = await receive(observer)
            if event["type"] == "peer-left":
                gone.add(event["peerId"])
    assert (await get_room(client, room["id"]))["viewerCount"] == 2

    await polite.close()
    assert (await expect(observer, "peer-left"))["roomId"] == room["id"]
    assert (await get_room(client, room["id"]))["viewerCount"] == 1


# -- presence in big rooms ------------------------------------------------------------------------


async def test_above_the_presence_limit_viewers_are_counted_not_announced(start: Start) -> None:
    client = await start(presence_limit=3)
    room = await create_room_via(client)
    rid = room["id"]
    host = await client.ws_connect("/ws")
    host_id = (await join(host, rid, role="host", token=room["ownerToken"], name="Host"))["peerId"]
    viewers = await joined_peers(client, rid, 2)  # 3 members: still full presence
    for _ in viewers:
        assert (await expect(host, "peer-joined"))["peer"]["role"] == "viewer"

    fourth = await client.ws_connect("/ws")
    joined = await join(fourth, rid, name="Fourth")
    assert joined["presence"] == "counted"
    assert joined["viewerCount"] == 4
    assert joined["members"] == [
        {"peerId": host_id, "name": "Host", "role": "host"},
        {"peerId": joined["peerId"], "name": "Fourth", "role": "viewer"},
    ]
    for ws in (host, viewers[0][0], viewers[1][0]):  # no peer-joined: the mode changed
        assert await expect(ws, "presence-mode") == {
            "type": "presence-mode",
            "roomId": rid,
            "presence": "counted",
            "viewerCount": 4,
        }

    # more viewers come and go unannounced; counts stay exact
    fifth = await client.ws_connect("/ws")
    fifth_id = (await join(fifth, rid))["peerId"]
    await fifth.close()
    co_host = await client.ws_connect("/ws")
    co_host_id = (await join(co_host, rid, role="host", token=room["ownerToken"]))["peerId"]
    got = await expect(host, "peer-joined")  # hosts are always announced
    assert got["peer"] == {"peerId": co_host_id, "name": "", "role": "host"}
    assert (await get_room(client, rid))["viewerCount"] == 5
    seen: list[dict[str, Any]] = []
    while not seen or seen[-1].get("viewerCount") != 5:
        seen.append(await receive(viewers[0][0], skip=()))
    # the fifth viewer's coming and going was never announced; the co-host was
    assert fifth_id not in json.dumps(seen)
    assert {event["type"] for event in seen} <= {"viewer-count", "peer-joined"}
    assert [event["peer"]["peerId"] for event in seen if event["type"] == "peer-joined"] == [
        co_host_id
    ]

    # a host can still call a viewer it knows by id (from the members page)
    await co_host.send_json(
        {"type": "offer", "roomId": rid, "payload": {"sdp": "v=0"}, "to": joined["peerId"]}
    )
    offer = await receive(fourth, skip=("viewer-count", "peer-joined"))
    assert (offer["type"], offer["from"]) == ("offer", co_host_id)

    # back to 90 % of the limit or below (here 3): full presence, with the member list
    await fourth.close()
    await co_host.send_json({"type": "leave", "roomId": rid})
    assert await expect(host, "peer-left") == {
        "type": "peer-left",
        "roomId": rid,
        "peerId": co_host_id,
    }
    switched = await expect(host, "presence-mode")
    assert switched == {
        "type": "presence-mode",
        "roomId": rid,
        "presence": "full",
        "viewerCount": 3,
        "members": [
            {"peerId": host_id, "name": "Host", "role": "host"},
            {"peerId": viewers[0][1], "name": "", "role": "viewer"},
            {"peerId": viewers[1][1], "name": "", "role": "viewer"},
        ],
    }
    assert fifth_id not in json.dumps(switched)
    await viewers[1][0].close()  # full presence: announced again
    assert (await expect(host, "peer-left"))["peerId"] == viewers[1][1]


async def test_a_host_that_joins_again_as_viewer_leaves_the_counted_lists(start: Start) -> None:
    """In a counted room the members' lists hold the hosts: a co-host that comes back as a
    plain viewer is announced as gone from them (it is still counted), and its leave later is
    not announced again."""
    client = await start(presence_limit=2)
    room = await create_room_via(client)
    rid = room["id"]
    host = await client.ws_connect("/ws")
    await join(host, rid, role="host", token=room["ownerToken"], name="Host")
    co_host = await client.ws_connect("/ws")
    co_id = (await join(co_host, rid, role="host", token=room["ownerToken"], name="Co"))["peerId"]
    assert (await expect(host, "peer-joined"))["peer"]["peerId"] == co_id
    viewer = await client.ws_connect("/ws")
    joined = await join(viewer, rid)
    assert joined["presence"] == "counted"
    assert co_id in [m["peerId"] for m in joined["members"]]  # listed, as a host
    for ws in (host, co_host):
        assert (await expect(ws, "presence-mode"))["presence"] == "counted"
    again = await join(co_host, rid, role="viewer")
    assert again["role"] == "viewer" and again["viewerCount"] == 3
    for ws in (host, viewer):
        gone = await receive(ws, skip=("viewer-count", "presence-mode"))
        assert gone == {"type": "peer-left", "roomId": rid, "peerId": co_id}
    await co_host.send_json({"type": "leave", "roomId": rid})
    assert (await receive(co_host, skip=("viewer-count", "presence-mode")))["type"] == "left"
    await host.send_json({"type": "chat", "roomId": rid, "text": "marker"})
    for ws in (host, viewer):  # its leave, as a viewer: not announced again
        seen = [await receive(ws, skip=("viewer-count",))]
        while seen[-1]["type"] != "chat":
            seen.append(await receive(ws, skip=("viewer-count",)))
        assert [e["type"] for e in seen] == ["presence-mode", "chat"]  # back to full: 2 left
        assert co_id not in json.dumps(seen[0]["members"])


async def test_a_role_change_in_a_full_room_reaches_the_others_lists(start: Start) -> None:
    """Members keep their lists from the events (a counted room's holds its hosts): a co-host
    that comes back as a viewer while the room is still full is announced with its new role,
    or the others would keep it as a host once the room is counted, and its leave then (a
    viewer's, not announced) would leave it in their lists for good."""
    client = await start(presence_limit=2)
    room = await create_room_via(client)
    rid = room["id"]
    host = await client.ws_connect("/ws")
    host_id = (await join(host, rid, role="host", token=room["ownerToken"], name="Host"))["peerId"]
    listed = {host_id: "host"}  # the host's list, kept as docs/protocol.md says
    co_host = await client.ws_connect("/ws")
    co_id = (await join(co_host, rid, role="host", token=room["ownerToken"], name="Co"))["peerId"]
    assert (await expect(host, "peer-joined"))["peer"]["role"] == "host"
    listed[co_id] = "host"
    assert (await join(co_host, rid, role="viewer"))["presence"] == "full"
    viewer = await client.ws_connect("/ws")
    assert (await join(viewer, rid))["presence"] == "counted"
    await co_host.send_json({"type": "leave", "roomId": rid})
    assert (await receive(co_host, skip=("viewer-count", "presence-mode")))["type"] == "left"
    await host.send_json({"type": "chat", "roomId": rid, "text": "marker"})
    while (event := await receive(host))["type"] != "chat":
        if event["type"] == "peer-joined":
            listed[event["peer"]["peerId"]] = event["peer"]["role"]
        elif event["type"] == "peer-left":
            listed.pop(event["peerId"], None)
        elif event["type"] == "presence-mode" and event["presence"] == "counted":
            listed = {p: role for p, role in listed.items() if role == "host" or p == host_id}
    assert listed == {host_id: "host"}


async def test_a_join_in_a_counted_room_costs_o1_messages(start: Start) -> None:
    client = await start(presence_limit=5, viewer_count_interval=30.0)
    room = await create_room_via(client)
    rid = room["id"]
    members = await joined_peers(client, rid, 5)
    sixth = await client.ws_connect("/ws")
    await join(sixth, rid)  # crosses the limit: every member hears presence-mode once
    for ws, _ in members:
        assert (await receive(ws, skip=()))["type"] == "presence-mode"
    for _ in range(10):
        ws = await client.ws_connect("/ws")
        assert (await join(ws, rid))["presence"] == "counted"
    # nothing was sent to the members for those ten joins (counts wait for their interval)
    await members[0][0].send_json({"type": "chat", "roomId": rid, "text": "marker"})
    for ws, _ in members:
        assert (await receive(ws, skip=()))["text"] == "marker"
    assert (await get_room(client, rid))["viewerCount"] == 16


# -- members page (REST) ---------------------------------------------------------------------------


async def test_the_owner_pages_through_the_members(start: Start) -> None:
    client = await start(presence_limit=2)
    room = await create_room_via(client)
    rid = room["id"]
    peers = await joined_peers(client, rid, 2)
    for name in ("c", "d", "e"):
        ws = await client.ws_connect("/ws")
        peers.append((ws, (await join(ws, rid, name=name))["peerId"]))
    owner = {"Authorization": f"Bearer {room['ownerToken']}"}

    resp = await client.get(f"/api/rooms/{rid}/members?limit=2&offset=1", headers=owner)
    assert resp.status == 200
    assert await resp.json() == {
        "members": [
            {"peerId": peers[1][1], "name": "", "role": "viewer"},
            {"peerId": peers[2][1], "name": "c", "role": "viewer"},
        ],
        "total": 5,
        "limit": 2,
        "offset": 1,
    }
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    resp = await client.get(f"/api/rooms/{rid}/members", headers=admin)
    body = await resp.json()
    assert [member["peerId"] for member in body["members"]] == [peer_id for _, peer_id in peers]
    assert (body["total"], body["limit"], body["offset"]) == (5, 100, 0)

    resp = await client.get(f"/api/rooms/{rid}/members")
    assert (resp.status, (await resp.json())["code"]) == (401, "unauthorized")
    resp = await client.get(f"/api/rooms/{rid}/members", headers={"Authorization": "Bearer no"})
    assert (resp.status, (await resp.json())["code"]) == (403, "forbidden")
    resp = await client.get("/api/rooms/nope/members", headers=owner)
    assert resp.status == 404
    for query, field in (("limit=0", "limit"), ("offset=-1", "offset"), ("page=2", "page")):
        resp = await client.get(f"/api/rooms/{rid}/members?{query}", headers=owner)
        assert resp.status == 400
        body = await resp.json()
        assert body["code"] == "validation_error" and field in body["details"], body


# -- relay -----------------------------------------------------------------------------------------

PAYLOADS: list[Any] = [
    None,
    {"type": "offer", "sdp": "v=0\r\no=- 46117 2 IN IP4 127.0.0.1\r\ns=-\r\n"},
    {
        "candidate": "candidate:1 1 udp 2122260223 127.0.0.1 41563 typ host",
        "sdpMid": "0",
        "sdpMLineIndex": 0,
        "usernameFragment": None,
    },
    {"nested": {"list": [1, 2.5, -3, True, False, None, {"deep": ["x", {"y": "ü 🎥"}]}]}},
    ["an", "array"],
    "a string",
    18446744073709551615,
    0.1,
    {},
]


async def test_relay_goes_to_the_others_with_payload_untouched_and_server_set_from(
    client: Client,
) -> None:
    room = await new_room(client)
    peers = await joined_peers(client, room["id"], 3)
    (sender, sender_id), receivers = peers[0], peers[1:]

    for kind, payload in zip(["offer", "answer", "candidate"] * 3, PAYLOADS, strict=True):
        await sender.send_json(
            {
                "type": kind,
                "roomId": room["id"],
                "payload": payload,
                "from": "somebody-else",
                "extra": "dropped",
            }
        )
        for ws, _ in receivers:
            assert await receive(ws) == {
                "type": kind,
                "roomId": room["id"],
                "payload": payload,
                "from": sender_id,
            }
    # a message without payload relays payload null; the sender never hears its own
    await sender.send_json({"type": "candidate", "roomId": room["id"]})
    for ws, _ in receivers:
        assert (await receive(ws))["payload"] is None
    await sender.send_json({"type": "chat", "roomId": room["id"], "text": "marker"})
    assert (await receive(sender))["type"] == "chat"


async def test_to_sends_to_that_peer_only(client: Client) -> None:
    room = await new_room(client)
    (alice, alice_id), (bob, bob_id), (carol, _) = await joined_peers(client, room["id"], 3)

    payload = {"type": "offer", "sdp": "v=0\r\n"}
    await alice.send_json({"type": "offer", "roomId": room["id"], "payload": payload, "to": bob_id})
    assert await receive(bob) == {
        "type": "offer",
        "roomId": room["id"],
        "payload": payload,
        "from": alice_id,
        "to": bob_id,
    }
    await bob.send_json({"type": "answer", "roomId": room["id"], "payload": 1, "to": alice_id})
    assert await receive(alice) == {
        "type": "answer",
        "roomId": room["id"],
        "payload": 1,
        "from": bob_id,
        "to": alice_id,
    }
    # carol got neither: the next thing she receives is this broadcast
    await alice.send_json({"type": "candidate", "roomId": room["id"], "payload": "marker"})
    assert (await receive(carol))["payload"] == "marker"


async def test_relay_errors(client: Client) -> None:
    room = await new_room(client)
    outsider = await client.ws_connect("/ws")
    [(alice, alice_id)] = await joined_peers(client, room["id"], 1)
    rid = room["id"]

    await outsider.send_json({"type": "offer", "roomId": rid, "payload": {}})
    assert await receive(outsider) == error(
        "not_in_room", "Join the room first", inReplyTo="offer", roomId=rid
    )
    await outsider.send_json({"type": "candidate", "roomId": rid, "payload": {}, "to": alice_id})
    assert (await receive(outsider))["code"] == "not_in_room"

    for to in ("nobody", alice_id):  # unknown peer, or oneself
        await alice.send_json({"type": "offer", "roomId": rid, "payload": {}, "to": to})
        assert await receive(alice) == error(
            "peer_not_found", "No such peer in this room", inReplyTo="offer", roomId=rid
        )
    await alice.send_json({"type": "answer", "roomId": rid, "payload": {}, "to": 5})
    assert await receive(alice) == error(
        "invalid_to", "Field 'to' must be a peer id", inReplyTo="answer", roomId=rid
    )
    deep: Any = None
    for _ in range(400):
        deep = [deep]
    await alice.send_json({"type": "offer", "roomId": rid, "payload": deep})
    assert await receive(alice) == error(
        "invalid_payload", "Field 'payload' cannot be relayed", inReplyTo="offer", roomId=rid
    )
    await alice.send_json({"type": "leave", "roomId": rid})
    assert (await receive(alice))["type"] == "left"


# -- chat ------------------------------------------------------------------------------------------


async def test_chat_goes_to_every_member_with_sender_and_server_time(client: Client) -> None:
    room = await new_room(client)
    alice = await client.ws_connect("/ws")
    alice_id = (await join(alice, room["id"], name="Alice"))["peerId"]
    bob = await client.ws_connect("/ws")
    await join(bob, room["id"], name="Bob")
    await expect(alice, "peer-joined")

    before = int(time.time() * 1000)
    text = "é" * 500
    await alice.send_json({"type": "chat", "roomId": room["id"], "text": text, "from": "x"})
    got = [await expect(ws, "chat") for ws in (alice, bob)]
    after = int(time.time() * 1000)
    assert got[0] == got[1]
    ts = got[0].pop("ts")
    assert before <= ts <= after
    chat_id = got[0].pop("id")  # server-assigned, for chat-delete
    assert isinstance(chat_id, str) and chat_id
    assert got[0] == {
        "type": "chat",
        "roomId": room["id"],
        "from": alice_id,
        "name": "Alice",
        "role": "viewer",
        "text": text,
    }


TEXT_ERROR = (
    "Field 'text' must be a string with a visible character and no control characters but "
    "tabs and line feeds"
)


@pytest.mark.parametrize(
    ("text", "code", "message"),
    [
        ("x" * 501, "chat_too_long", "Field 'text' must be at most 500 characters"),
        ("", "invalid_text", TEXT_ERROR),
        ("   ", "invalid_text", TEXT_ERROR),
        (None, "invalid_text", TEXT_ERROR),
        (42, "invalid_text", TEXT_ERROR),
        ("\u200b\u2060", "invalid_text", TEXT_ERROR),  # nothing a reader sees
        ("hi\x1b[2J", "invalid_text", TEXT_ERROR),  # a terminal escape
        ("hi\x85", "invalid_text", TEXT_ERROR),  # a C1 control
    ],
)
async def test_chat_errors(client: Client, text: Any, code: str, message: str) -> None:
    room = await new_room(client)
    ws = await client.ws_connect("/ws")
    await ws.send_json({"type": "chat", "roomId": room["id"], "text": "hi"})
    assert (await receive(ws))["code"] == "not_in_room"
    await join(ws, room["id"])
    await ws.send_json({"type": "chat", "roomId": room["id"], "text": text})
    assert await receive(ws) == error(code, message, inReplyTo="chat", roomId=room["id"])


# -- roles: host, close-room, kick -----------------------------------------------------------------


async def test_host_role_needs_the_owner_token(client: Client, create_room: CreateRoom) -> None:
    room = await create_room()
    other = await create_room()
    ws = await client.ws_connect("/ws")
    forbidden = error(
        "forbidden",
        "Joining as host needs the room's owner token",
        inReplyTo="join",
        roomId=room["id"],
    )
    for token in (None, "wrong", other["ownerToken"], room["publish"]["token"]):
        await ws.send_json({"type": "join", "roomId": room["id"], "role": "host", "token": token})
        assert await receive(ws) == forbidden
    joined = await join(ws, room["id"], role="host", token=room["ownerToken"], name="Owner")
    assert joined["role"] == "host"
    assert joined["members"] == [{"peerId": joined["peerId"], "name": "Owner", "role": "host"}]
    assert room["ownerToken"] not in json.dumps(joined)


async def test_only_hosts_close_the_room(client: Client, create_room: CreateRoom) -> None:
    room = await create_room()
    host = await client.ws_connect("/ws")
    await join(host, room["id"], role="host", token=room["ownerToken"])
    viewer = await client.ws_connect("/ws")
    await join(viewer, room["id"])
    await expect(host, "peer-joined")

    await viewer.send_json({"type": "close-room", "roomId": room["id"]})
    assert await receive(viewer) == error(
        "forbidden", "Only the room's host may do this", inReplyTo="close-room", roomId=room["id"]
    )
    assert (await get_room(client, room["id"]))["status"] == "preparing"

    await host.send_json({"type": "close-room", "roomId": room["id"]})
    pushed = [await expect(ws, "room-status") for ws in (host, viewer)]
    ended = await get_room(client, room["id"])
    assert ended["status"] == "ended"
    assert isinstance(ended["endTime"], int)
    for event in pushed:
        assert event == {
            "type": "room-status",
            "roomId": room["id"],
            "status": "ended",
            "room": ended,
        }

    await host.send_json({"type": "close-room", "roomId": room["id"]})  # again
    assert await receive(host) == error(
        "room_ended", "Room has ended", inReplyTo="close-room", roomId=room["id"]
    )
    late = await client.ws_connect("/ws")
    await late.send_json({"type": "join", "roomId": room["id"]})
    assert (await receive(late))["code"] == "room_ended"


async def test_only_hosts_kick(client: Client, create_room: CreateRoom) -> None:
    room = await create_room()
    rid = room["id"]
    host = await client.ws_connect("/ws")
    host_id = (await join(host, rid, role="host", token=room["ownerToken"]))["peerId"]
    viewer = await client.ws_connect("/ws")
    viewer_id = (await join(viewer, rid))["peerId"]
    other = await client.ws_connect("/ws")
    await join(other, rid)
    await expect(host, "peer-joined")
    await expect(host, "peer-joined")
    await expect(viewer, "peer-joined")

    await viewer.send_json({"type": "kick", "roomId": rid, "peerId": host_id})
    assert await receive(viewer) == error(
        "forbidden", "Only the room's host may do this", inReplyTo="kick", roomId=rid
    )
    for target in ("nobody", host_id, None):
        await host.send_json({"type": "kick", "roomId": rid, "peerId": target})
        assert await receive(host) == error(
            "peer_not_found", "No such peer in this room", inReplyTo="kick", roomId=rid
        )

    await host.send_json({"type": "kick", "roomId": rid, "peerId": viewer_id})
    assert await expect(viewer, "kicked") == {"type": "kicked", "roomId": rid, "by": host_id}
    for ws in (host, other):
        assert await expect(ws, "peer-left") == {
            "type": "peer-left",
            "roomId": rid,
            "peerId": viewer_id,
        }
    assert (await get_room(client, rid))["viewerCount"] == 2
    await viewer.send_json({"type": "offer", "roomId": rid, "payload": {}})
    assert (await receive(viewer))["code"] == "not_in_room"


# -- room events -----------------------------------------------------------------------------------


async def test_room_status_is_pushed_on_srs_hooks(
    client: Client, create_room: CreateRoom, post_hook: PostHook
) -> None:
    room = await create_room()
    ws = await client.ws_connect("/ws")
    await join(ws, room["id"])

    assert await post_hook(hook_for(room, "on_publish.json")) == (200, {"code": 0})
    live = await expect(ws, "room-status")
    assert live == {
        "type": "room-status",
        "roomId": room["id"],
        "status": "live",
        "room": await get_room(client, room["id"]),
    }
    assert live["room"]["status"] == "live" and live["room"]["viewerCount"] == 1

    assert await post_hook(hook_for(room, "on_play.json")) == (200, {"code": 0})
    played = await expect(ws, "room-status")
    assert (played["status"], played["room"]["playerCount"]) == ("live", 1)

    assert await post_hook(hook_for(room, "on_unpublish.json")) == (200, {"code": 0})
    ended = await expect(ws, "room-status")
    assert ended["status"] == "ended"
    assert ended["room"] == await get_room(client, room["id"])
    text = json.dumps([live, played, ended])
    assert room["publish"]["token"] not in text and room["ownerToken"] not in text


async def test_viewer_counts_are_coalesced_in_a_join_storm(start: Start) -> None:
    interval = 0.5
    client = await start(viewer_count_interval=interval)
    room = await new_room(client)
    n = 50
    counts = [0] * n

    async def member(index: int) -> None:
        ws = await client.ws_connect("/ws")
        await ws.send_json({"type": "join", "roomId": room["id"]})
        while True:
            event = await receive(ws, skip=(), within=10)
            if event["type"] == "viewer-count":
                counts[index] += 1
                if event["viewerCount"] == n:
                    return

    began = time.monotonic()
    async with asyncio.timeout(15):
        await asyncio.gather(*(member(index) for index in range(n)))
    took = time.monotonic() - began

    # uncoalesced, join k would push k counts: 1 + 2 + ... + 50 = 1275 sends
    pushes = int(took / interval) + 2
    assert sum(counts) <= n * pushes
    assert sum(counts) < n * (n + 1) // 4
    assert (await get_room(client, room["id"]))["viewerCount"] == n


# -- bad frames ------------------------------------------------------------------------------------


async def test_bad_frames_get_an_error_and_the_socket_stays_open(client: Client) -> None:
    room = await new_room(client)
    ws = await client.ws_connect("/ws")
    cases: list[tuple[Callable[[], Awaitable[None]], dict[str, Any]]] = [
        (
            lambda: ws.send_str("{not json"),
            error("invalid_json", "Message is not valid JSON"),
        ),
        (
            lambda: ws.send_str("[1, 2]"),
            error("invalid_message", "A message must be a JSON object"),
        ),
        (
            lambda: ws.send_str('"join"'),
            error("invalid_message", "A message must be a JSON object"),
        ),
        (
            lambda: ws.send_bytes(b'{"type": "join"}'),
            error("binary_not_supported", "Send JSON text frames"),
        ),
        (
            lambda: ws.send_json({"roomId": room["id"]}),
            error("missing_type", "Field 'type' is required and must be a string"),
        ),
        (
            lambda: ws.send_json({"type": "teleport", "roomId": room["id"]}),
            error("unknown_type", "Unknown message type 'teleport'", inReplyTo="teleport"),
        ),
        (
            lambda: ws.send_json({"type": "join"}),
            error(
                "missing_room_id",
                "Field 'roomId' is required and must be a room id",
                inReplyTo="join",
            ),
        ),
        (
            lambda: ws.send_json({"type": "offer", "roomId": 12, "payload": {}}),
            error(
                "missing_room_id",
                "Field 'roomId' is required and must be a room id",
                inReplyTo="offer",
            ),
        ),
    ]
    for send, expected in cases:
        await send()
        assert await receive(ws) == expected
        assert not ws.closed
    joined = await join(ws, room["id"])  # still open and working
    assert joined["roomId"] == room["id"]


async def test_a_frame_over_max_msg_size_closes_with_1009(start: Start) -> None:
    client = await start(max_msg_size=1024)
    room = await new_room(client)
    (observer, _), (ws, peer_id) = await joined_peers(client, room["id"], 2)
    text = "é" * 450  # 900 bytes of UTF-8; unknown fields are ignored: pad to the limit
    chat = {"type": "chat", "roomId": room["id"], "text": text, "pad": ""}
    chat["pad"] = "p" * (1023 - len(json.dumps(chat, ensure_ascii=False).encode()))
    frame = json.dumps(chat, ensure_ascii=False)
    assert len(frame.encode()) == 1023  # the largest message allowed
    await ws.send_str(frame)
    assert (await expect(ws, "chat"))["text"] == text

    await ws.send_str(frame + " ")  # 1024 bytes: max_msg_size is exclusive
    async with asyncio.timeout(TIMEOUT):
        msg = await ws.receive()
        while msg.type is WSMsgType.TEXT:  # a coalesced count may come first
            msg = await ws.receive()
    assert msg.type is WSMsgType.CLOSE
    assert msg.data == 1009
    assert (await expect(observer, "chat"))["text"] == text
    assert (await expect(observer, "peer-left"))["peerId"] == peer_id
    assert (await get_room(client, room["id"]))["viewerCount"] == 1


async def test_default_frame_limit_is_64_kib(client: Client) -> None:
    ws = await client.ws_connect("/ws")
    await ws.send_str(json.dumps({"type": "x", "roomId": "r", "pad": "x" * (64 * 1024)}))
    async with asyncio.timeout(TIMEOUT):
        msg = await ws.receive()
    assert (msg.type, msg.data) == (WSMsgType.CLOSE, 1009)


# -- rate limit ------------------------------------------------------------------------------------


async def test_rate_limit_answers_rate_limited_then_closes_a_flood_with_1008(start: Start) -> None:
    client = await start(rate_per_s=5, rate_burst=10)
    ws = await client.ws_connect("/ws")
    for _ in range(30):
        await ws.send_json({"type": "leave", "roomId": "nowhere"})

    replies: list[dict[str, Any]] = []
    async with asyncio.timeout(TIMEOUT):
        msg = await ws.receive()
        while msg.type is WSMsgType.TEXT:
            replies.append(json.loads(msg.data))
            msg = await ws.receive()
    assert [reply["code"] for reply in replies] == ["not_in_room"] * 10 + ["rate_limited"]
    assert replies[-1] == error("rate_limited", "Too many messages: slow down")
    assert (msg.type, msg.data, msg.extra) == (
        WSMsgType.CLOSE,
        1008,
        "message rate limit exceeded",
    )


async def test_a_flood_of_undecodable_frames_is_rate_limited_too(start: Start) -> None:
    client = await start(rate_per_s=5, rate_burst=10)
    ws = await client.ws_connect("/ws")
    for index in range(30):
        if index % 2:
            await ws.send_str("{not json")
        else:
            await ws.send_bytes(b"\x00binary")
    replies: list[str] = []
    async with asyncio.timeout(TIMEOUT):
        msg = await ws.receive()
        while msg.type is WSMsgType.TEXT and len(replies) < 12:
            replies.append(json.loads(msg.data)["code"])
            msg = await ws.receive()
    assert replies == ["binary_not_supported", "invalid_json"] * 5 + ["rate_limited"]
    assert (msg.type, msg.data) == (WSMsgType.CLOSE, 1008)


async def test_a_client_under_the_rate_is_never_throttled(start: Start) -> None:
    client = await start(rate_per_s=50, rate_burst=20)
    room = await new_room(client)
    (sender, _), (receiver, _) = await joined_peers(client, room["id"], 2)
    rest = 20 - JOIN_COST  # the rest of the burst (the join took JOIN_COST tokens), at once
    for seq in range(rest):
        await sender.send_json({"type": "candidate", "roomId": room["id"], "payload": seq})
    for seq in range(rest):
        assert (await receive(receiver))["payload"] == seq
    await asyncio.sleep(0.1)  # time refills the bucket (5 tokens): nothing to await
    await sender.send_json({"type": "candidate", "roomId": room["id"], "payload": "after"})
    assert (await receive(receiver))["payload"] == "after"


async def test_a_burst_of_3000_from_one_connection_is_mostly_refused_and_closed_1008(
    client: Client,
) -> None:
    """At the defaults (50/s, burst 200): a flood is cut off and the room keeps working."""
    limits = client.app[keys.config]
    room = await new_room(client)
    rid = room["id"]
    started = time.monotonic()  # before the flooder's bucket exists: bounds what it refilled
    (flooder, flooder_id), (receiver, _), (other, other_id) = await joined_peers(client, rid, 3)
    for seq in range(3000):
        await flooder.send_json({"type": "candidate", "roomId": rid, "payload": seq})

    replies: list[dict[str, Any]] = []
    async with asyncio.timeout(TIMEOUT):
        msg = await flooder.receive()
        while msg.type is WSMsgType.TEXT:
            replies.append(json.loads(msg.data))
            msg = await flooder.receive()
    assert (msg.type, msg.data, msg.extra) == (
        WSMsgType.CLOSE,
        1008,
        "message rate limit exceeded",
    )
    assert [reply for reply in replies if reply["type"] == "error"] == [
        error("rate_limited", "Too many messages: slow down")
    ]

    relayed: list[int] = []
    async with asyncio.timeout(TIMEOUT):
        while True:
            event = await receive(receiver)
            if event["type"] == "peer-left":
                assert event["peerId"] == flooder_id
                break
            relayed.append(event["payload"])
    elapsed = time.monotonic() - started
    # what the token bucket guarantees, whatever the timing: the burst less the join's tokens
    # gets through, and nothing beyond that plus what the rate refilled meanwhile
    burst = limits.rate_burst - JOIN_COST
    assert burst <= len(relayed) <= burst + limits.rate_per_s * elapsed
    # the burst is the first messages, whole; what the refill let through later comes after it,
    # in send order (a later message may pass where earlier ones were refused)
    assert relayed[:burst] == list(range(burst))
    assert relayed == sorted(set(relayed))

    await other.send_json({"type": "candidate", "roomId": rid, "payload": "still works"})
    assert await receive(receiver) == {
        "type": "candidate",
        "roomId": rid,
        "payload": "still works",
        "from": other_id,
    }
    assert (await get_room(client, rid))["viewerCount"] == 2


async def test_chat_has_its_own_lower_limit(client: Client) -> None:
    room = await new_room(client)
    rid = room["id"]
    (alice, _), (bob, _) = await joined_peers(client, rid, 2)
    for index in range(7):
        await alice.send_json({"type": "chat", "roomId": rid, "text": f"line {index}"})
    await alice.send_json({"type": "candidate", "roomId": rid, "payload": "not chat"})

    got = [await receive(bob) for _ in range(6)]
    assert [event.get("text", event.get("payload")) for event in got] == [
        *(f"line {index}" for index in range(5)),  # the chat burst
        "not chat",  # other messages are not held back by the chat limit
    ]
    replies = [await receive(alice) for _ in range(6)]
    assert [reply["type"] for reply in replies] == ["chat"] * 5 + ["error"]
    assert replies[-1] == error(
        "rate_limited", "Too many chat messages: slow down", inReplyTo="chat", roomId=rid
    )
    assert not alice.closed


async def test_nobody_chats_in_an_ended_room(client: Client, create_room: CreateRoom) -> None:
    room = await create_room()
    rid = room["id"]
    (alice, _), (bob, _) = await joined_peers(client, rid, 2)
    closed = await client.post(
        f"/api/rooms/{rid}/close", headers={"Authorization": f"Bearer {room['ownerToken']}"}
    )
    assert closed.status == 200
    for ws in (alice, bob):
        assert (await expect(ws, "room-status"))["status"] == "ended"

    await alice.send_json({"type": "chat", "roomId": rid, "text": "anyone?"})
    assert await receive(alice) == error(
        "room_ended", "Room has ended", inReplyTo="chat", roomId=rid
    )
    await alice.send_json({"type": "leave", "roomId": rid})  # bob's next event: no chat
    assert (await receive(bob))["type"] == "peer-left"


# -- limits ----------------------------------------------------------------------------------------


async def test_rooms_per_connection_limit(start: Start) -> None:
    client = await start(max_rooms_per_connection=2)
    rooms = [await new_room(client, f"Room {index}") for index in range(3)]
    ws = await client.ws_connect("/ws")
    await join(ws, rooms[0]["id"])
    await join(ws, rooms[1]["id"])
    await ws.send_json({"type": "join", "roomId": rooms[2]["id"]})
    assert await receive(ws) == error(
        "too_many_rooms",
        "This connection has joined too many rooms",
        inReplyTo="join",
        roomId=rooms[2]["id"],
    )
    await join(ws, rooms[1]["id"])  # rejoining a room it is in is fine
    await ws.send_json({"type": "leave", "roomId": rooms[0]["id"]})
    await expect(ws, "left")
    assert (await join(ws, rooms[2]["id"]))["roomId"] == rooms[2]["id"]


async def test_members_per_room_limit(start: Start) -> None:
    client = await start(max_members_per_room=2)
    room = await new_room(client)
    await joined_peers(client, room["id"], 2)
    third = await client.ws_connect("/ws")
    await third.send_json({"type": "join", "roomId": room["id"]})
    assert await receive(third) == error(
        "room_full", "Room is full", inReplyTo="join", roomId=room["id"]
    )
    assert (await get_room(client, room["id"]))["viewerCount"] == 2


# -- Origin ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/ws", "/"])
async def test_origin_allow_list(start: Start, path: str) -> None:
    client = await start(ws_origins=("https://ok.example",))
    room = await new_room(client)

    with pytest.raises(WSServerHandshakeError) as refused:
        await client.ws_connect(path, headers={"Origin": "https://evil.example"})
    assert refused.value.status == 403
    resp = await client.get(
        path,
        headers={
            "Origin": "https://evil.example",
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        },
    )
    assert resp.status == 403
    assert await resp.json() == {
        "error": "WebSocket Origin is not allowed",
        "code": "origin_not_allowed",
        "details": None,
    }

    listed = await client.ws_connect(path, headers={"Origin": "https://ok.example"})
    assert (await join(listed, room["id"]))["roomId"] == room["id"]
    no_origin = await client.ws_connect(path)  # not a browser
    assert (await join(no_origin, room["id"]))["roomId"] == room["id"]


# -- heartbeat -------------------------------------------------------------------------------------


async def test_heartbeat_removes_a_dead_peer_in_bounded_time(start: Start) -> None:
    heartbeat = 0.4
    client = await start(heartbeat=heartbeat)
    room = await new_room(client)
    observer = await client.ws_connect("/ws")  # answers pings while it reads
    await join(observer, room["id"])
    dead = await client.ws_connect("/ws", autoping=False)  # never answers a ping
    dead_id = (await join(dead, room["id"]))["peerId"]
    await expect(observer, "peer-joined")

    # without the heartbeat a silent peer would stay for good; with it, it goes after about
    # 1.5 heartbeats (the bound fails a hung run, it is not a speed requirement)
    event = await receive(observer, within=25 * heartbeat)
    assert event == {"type": "peer-left", "roomId": room["id"], "peerId": dead_id}
    assert (await get_room(client, room["id"]))["viewerCount"] == 1


# -- seed compatibility ----------------------------------------------------------------------------


async def test_seed_clients_at_root_work_unchanged(client: Client) -> None:
    room = await new_room(client)
    rid = room["id"]
    a = await client.ws_connect("/")
    b = await client.ws_connect("/")
    for ws in (a, b):  # the seed's join: no name, no role, no reply expected
        await ws.send_str(json.dumps({"type": "join", "roomId": rid}))
        await expect(ws, "joined")  # a first (concurrent joins have no order across nodes)
    await expect(a, "peer-joined")
    assert (await get_room(client, rid))["viewerCount"] == 2

    exchange = [
        (a, b, {"type": "offer", "payload": {"type": "offer", "sdp": "v=0\r\n"}, "roomId": rid}),
        (b, a, {"type": "answer", "payload": {"type": "answer", "sdp": "v=0\r\n"}, "roomId": rid}),
        (a, b, {"type": "candidate", "payload": {"candidate": "candidate:1"}, "roomId": rid}),
        (b, a, {"type": "candidate", "payload": None, "roomId": rid}),
    ]
    for sender, receiver, message in exchange:
        await sender.send_str(json.dumps(message))
        got = await receive(receiver, skip=("viewer-count", "peer-joined"))
        assert {key: got[key] for key in message} == message  # the seed's fields, unchanged

    await b.send_str(json.dumps({"type": "leave", "roomId": rid}))
    await expect(b, "left")
    assert (await get_room(client, rid))["viewerCount"] == 1


async def test_root_without_upgrade_still_serves_the_console(client: Client) -> None:
    resp = await client.get("/")
    assert resp.status == 200
    assert resp.content_type == "text/html"


# -- slow consumers --------------------------------------------------------------------------------


async def test_a_slow_consumer_is_closed_with_1013_and_does_not_delay_the_others(
    start: Start,
) -> None:
    queue = 256 * 1024
    # big relays, to fill a queue quickly: the relay size and byte budget are not the subject
    client = await start(
        send_queue_bytes=queue, max_msg_size=1024 * 1024, max_relay_bytes=0, relay_bytes_per_s=0
    )
    room = await new_room(client)
    rid = room["id"]
    slow = await RawWebSocket.connect(client, rcvbuf=4096)
    slow.send_json({"type": "join", "roomId": rid})
    slow_id = (await slow.receive_json())["peerId"]
    (fast, _), (sender, _) = await joined_peers(client, rid, 2)
    # the slow client reads nothing from here on

    payload = "x" * (200 * 1024)
    sent = 0
    while await metric(client, "livehub_ws_slow_disconnects_total") == 0:
        assert sent < 60, "the slow consumer was never disconnected"
        await sender.send_json({"type": "candidate", "roomId": rid, "payload": [sent, payload]})
        got = await receive(fast, skip=("viewer-count", "peer-joined"), within=2)
        assert got["payload"][0] == sent  # delivered at once, in order
        sent += 1
    assert sent > 5  # kernel buffers absorbed a few megabytes first

    # the server gives up on a silent peer after 2 s; read what it queued, up to its close
    async with asyncio.timeout(1.5):
        opcode, data = await slow.receive()
        while opcode != 0x8:
            opcode, data = await slow.receive()
    code, reason = struct.unpack("!H", data[:2])[0], data[2:]
    assert (code, reason) == (1013, b"outbound queue full")
    slow.send_frame(0x8, data[:2])
    assert await expect(fast, "peer-left") == {
        "type": "peer-left",
        "roomId": rid,
        "peerId": slow_id,
    }
    slow.writer.close()

    await sender.send_json({"type": "candidate", "roomId": rid, "payload": "after"})
    assert (await receive(fast))["payload"] == "after"
    assert (await get_room(client, rid))["viewerCount"] == 2


# -- the frame layer (aiohttp's WebSocketResponse), over a raw socket ------------------------------


async def closed_with(raw: RawWebSocket) -> int:
    """Read up to the server's close frame; its close code."""
    async with asyncio.timeout(TIMEOUT):
        opcode, data = await raw.receive()
        while opcode != 0x8:
            opcode, data = await raw.receive()
    (code,) = struct.unpack("!H", data[:2])
    return int(code)


def send_raw_frame(raw: RawWebSocket, first: int, payload: bytes) -> None:
    """A masked frame with the given first byte (FIN, RSV bits, opcode) as a client sends it."""
    mask = os.urandom(4)
    length = len(payload)
    if length < 126:
        header = bytes((first, 0x80 | length))
    else:
        header = struct.pack("!BBH", first, 0x80 | 126, length)
    masked = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
    raw.writer.write(header + mask + masked)


async def test_a_fragmented_message_is_reassembled_and_a_ping_between_fragments_answered(
    client: Client,
) -> None:
    room = await new_room(client)
    raw = await RawWebSocket.connect(client)
    text = json.dumps({"type": "join", "roomId": room["id"], "name": "Frägment"}).encode()
    parts = [text[:5], text[5:20], text[20:]]
    send_raw_frame(raw, 0x01, parts[0])  # text, not final
    send_raw_frame(raw, 0x89, b"are you there")  # a ping in the middle
    send_raw_frame(raw, 0x00, parts[1])  # continuation
    send_raw_frame(raw, 0x80, parts[2])  # continuation, final
    async with asyncio.timeout(TIMEOUT):
        assert await raw.receive() == (0xA, b"are you there")
    joined = await raw.receive_json()
    assert (joined["type"], joined["members"][0]["name"]) == ("joined", "Frägment")
    assert (await get_room(client, room["id"]))["viewerCount"] == 1
    raw.writer.close()


@pytest.mark.parametrize(
    ("first", "payload", "code"),
    [
        (0x81, b'{"type": "chat", "text": "\xff\xfe"}', 1007),  # text that is not UTF-8
        (0x81, "caf\u00e9".encode()[:-1], 1007),  # a truncated sequence
        (0xC1, b'{"type": "join"}', 1002),  # RSV1 without a negotiated extension
        (0x91, b'{"type": "join"}', 1002),  # RSV3
        (0x89, b"p" * 126, 1002),  # a ping over 125 bytes
        (0x09, b"ping", 1002),  # a fragmented control frame
        (0x80, b"continuation of nothing", 1002),
        (0x83, b"reserved opcode", 1002),
    ],
)
async def test_a_broken_frame_closes_with_the_rfc_code_and_leaves_the_room(
    client: Client, first: int, payload: bytes, code: int
) -> None:
    room = await new_room(client)
    [(observer, _)] = await joined_peers(client, room["id"], 1)
    raw = await RawWebSocket.connect(client)
    raw.send_json({"type": "join", "roomId": room["id"]})
    raw_id = (await raw.receive_json())["peerId"]
    await expect(observer, "peer-joined")

    send_raw_frame(raw, first, payload)
    assert await closed_with(raw) == code
    assert await expect(observer, "peer-left") == {
        "type": "peer-left",
        "roomId": room["id"],
        "peerId": raw_id,
    }
    assert (await get_room(client, room["id"]))["viewerCount"] == 1
    raw.writer.close()


async def test_a_fragmented_message_over_max_msg_size_closes_with_1009(start: Start) -> None:
    client = await start(max_msg_size=2048)
    raw = await RawWebSocket.connect(client)
    send_raw_frame(raw, 0x01, b"x" * 1500)
    send_raw_frame(raw, 0x80, b"x" * 1500)  # each fragment fits; the message does not
    assert await closed_with(raw) == 1009
    raw.writer.close()


async def test_a_consumer_that_reads_nothing_is_cut_off_and_leaves_the_room(start: Start) -> None:
    client = await start(
        send_queue_bytes=256 * 1024,
        max_msg_size=1024 * 1024,
        max_relay_bytes=0,  # big relays fill the queue quickly: relay limits are not the subject
        relay_bytes_per_s=0,
    )
    rid = (await new_room(client))["id"]
    silent = await RawWebSocket.connect(client, rcvbuf=4096)
    silent.send_json({"type": "join", "roomId": rid})
    silent_id = (await silent.receive_json())["peerId"]
    (fast, _), (sender, _) = await joined_peers(client, rid, 2)
    # the silent client never reads again, not even the close frame

    payload = "x" * (100 * 1024)
    sent = 0
    while await metric(client, "livehub_ws_slow_disconnects_total") == 0:
        assert sent < 100, "the silent consumer was never disconnected"
        await sender.send_json({"type": "candidate", "roomId": rid, "payload": [sent, payload]})
        assert (await receive(fast, skip=("viewer-count", "peer-joined")))["payload"][0] == sent
        sent += 1
    # CLOSE_TIMEOUT (2 s), then the TCP connection goes (bounded well below the minutes a
    # kernel would keep it; the bound fails a hung run, it is not a speed requirement)
    assert await receive(fast, within=15.0) == {
        "type": "peer-left",
        "roomId": rid,
        "peerId": silent_id,
    }
    assert (await get_room(client, rid))["viewerCount"] == 2
    silent.writer.close()
