"""The attacks of issue 15 items 5 and 7, replayed against a real server (embedded mode): relays
that would amplify, oversized relays, relayed-byte floods, a 101st socket from one address, a
rejoin after a kick, and the anonymous create limit counting IPv6 by /64.

Every test client connects from 127.0.0.1: the per-address tests that need other addresses
come through a trusted proxy (``X-Forwarded-For``), as in production behind one.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from pytest_aiohttp import AiohttpClient

from livehub.app import create_app
from livehub.config import Config, ConfigError
from livehub.domain.addresses import LocalBans, SharedUnavailable, address_key
from livehub.domain.admission import CreatePolicy
from livehub.domain.errors import RateLimited
from tests.conftest import Client, make_config
from tests.helpers import scrape

Start = Callable[..., Awaitable[Client]]
#: the test clients' address: a trusted proxy where a test needs other client addresses
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")


@pytest.fixture
def start(aiohttp_client: AiohttpClient) -> Start:
    """A client of an app built with ``make_config(**overrides)``."""

    async def start(**overrides: Any) -> Client:
        return await aiohttp_client(create_app(make_config(**overrides)))

    return start


class Member:
    """One signaling connection; every event it receives is kept, in order."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, session: aiohttp.ClientSession) -> None:
        self.ws = ws
        self.session = session
        self.events: list[dict[str, Any]] = []
        self.peer_id = ""
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                self.events.append(msg.json())

    async def send(self, **message: Any) -> None:
        await self.ws.send_json(message)

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [event for event in self.events if event["type"] == kind]

    async def until(
        self, check: Callable[[dict[str, Any]], bool], within: float = 5.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + within
        seen = 0
        while True:
            for event in self.events[seen:]:
                if check(event):
                    return event
            seen = len(self.events)
            if time.monotonic() > deadline:
                raise AssertionError(f"no such event in time; got {self.events[-10:]}")
            await asyncio.sleep(0.01)

    async def next_error(self) -> dict[str, Any]:
        """The first error not looked at yet (each is taken once)."""
        event = await self.until(lambda e: e["type"] == "error" and not e.get("_seen"))
        event["_seen"] = True
        return {k: v for k, v in event.items() if k != "_seen"}

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self.session.close()


@contextlib.asynccontextmanager
async def members() -> AsyncIterator[list[Member]]:
    opened: list[Member] = []
    try:
        yield opened
    finally:
        for member in opened:
            await member.close()


async def connect(client: Client, opened: list[Member], path: str = "/ws", **kw: Any) -> Member:
    """A new signaling connection, on a session of its own: the test client's session holds
    at most 100 connections."""
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    try:
        ws = await session.ws_connect(client.make_url(path), **kw)
    except BaseException:
        await session.close()
        raise
    member = Member(ws, session)
    opened.append(member)
    return member


async def join(member: Member, room_id: str, **fields: Any) -> dict[str, Any]:
    await member.send(type="join", roomId=room_id, **fields)
    event = await member.until(lambda e: e["type"] in ("joined", "error") and not e.get("_seen"))
    event["_seen"] = True
    if event["type"] == "joined":
        member.peer_id = event["peerId"]
    return {k: v for k, v in event.items() if k != "_seen"}


async def new_room(client: Client, headers: dict[str, str] | None = None) -> dict[str, Any]:
    resp = await client.post("/api/rooms", json={"title": "Limits"}, headers=headers)
    assert resp.status == 201, await resp.text()
    room: dict[str, Any] = await resp.json()
    return room


async def room_of(
    client: Client, opened: list[Member], size: int, path: str = "/ws"
) -> tuple[dict[str, Any], Member, list[Member]]:
    """A room with its host and ``size - 1`` viewers, every join seen by every member."""
    room = await new_room(client)
    host = await connect(client, opened, path)
    assert (await join(host, room["id"], role="host", token=room["ownerToken"]))["type"] == (
        "joined"
    )
    viewers = []
    for _ in range(size - 1):
        viewer = await connect(client, opened, path)
        assert (await join(viewer, room["id"]))["type"] == "joined"
        viewers.append(viewer)
    last = viewers[-1].peer_id if viewers else host.peer_id
    for member in [host, *viewers[:-1]]:
        await member.until(lambda e: e["type"] == "peer-joined" and e["peer"]["peerId"] == last)
    return room, host, viewers


async def marker(sender: Member, room_id: str, text: str, everyone: list[Member]) -> None:
    """A chat line from ``sender``, waited for by everyone: what was relayed before it has
    arrived too (one connection's messages arrive in order)."""
    await sender.send(type="chat", roomId=room_id, text=text)
    for member in everyone:
        await member.until(lambda e: e["type"] == "chat" and e["text"] == text)


# -- item 5: relays that cannot amplify ----------------------------------------------------------


async def test_a_viewers_room_wide_relay_in_a_room_of_12_reaches_nobody(client: Client) -> None:
    async with members() as opened:
        room, host, viewers = await room_of(client, opened, 12)
        rid = room["id"]
        attacker, others = viewers[0], viewers[1:]
        await attacker.send(type="candidate", roomId=rid, payload={"candidate": "x" * 1000})
        assert await attacker.next_error() == {
            "type": "error",
            "code": "relay_needs_to",
            "message": "In a room of more than 10 members relays need 'to' "
            "(only hosts may relay to the whole room)",
            "inReplyTo": "candidate",
            "roomId": rid,
        }
        await marker(attacker, rid, "after the refused relay", [host, *others])
        assert not any(member.of_type("candidate") for member in [host, *others])

        # addressed, the viewer reaches the one peer it names
        await attacker.send(type="offer", roomId=rid, to=host.peer_id, payload={"sdp": "o"})
        offer = await host.until(lambda e: e["type"] == "offer")
        assert offer["from"] == attacker.peer_id and offer["to"] == host.peer_id
        # the host may still relay to the whole room
        await host.send(type="candidate", roomId=rid, payload={"candidate": "h"})
        for viewer in viewers:
            got = await viewer.until(lambda e: e["type"] == "candidate")
            assert got == {
                "type": "candidate",
                "roomId": rid,
                "payload": {"candidate": "h"},
                "from": host.peer_id,
            }


def offers(count: int, member: Member) -> Callable[[dict[str, Any]], bool]:
    """An event check: ``member`` has received ``count`` offers."""
    return lambda event: event["type"] == "offer" and len(member.of_type("offer")) == count


async def test_seed_clients_in_a_room_of_10_still_relay_room_wide(client: Client) -> None:
    """The seed's P2P rooms: viewers at ``/``, no ``to``, in a room of 10."""
    async with members() as opened:
        room = await new_room(client)
        rid = room["id"]
        seeds = [await connect(client, opened, "/") for _ in range(10)]
        for seed in seeds:
            assert (await join(seed, rid))["type"] == "joined"
        for index, seed in enumerate(seeds):
            await seed.send(type="offer", roomId=rid, payload={"n": index})
        for seed in seeds:
            await seed.until(offers(9, seed))
            # every other member's offer, each once
            senders = {event["payload"]["n"]: event["from"] for event in seed.of_type("offer")}
            assert sorted(senders) == [n for n, other in enumerate(seeds) if other is not seed]
            assert set(senders.values()) == {other.peer_id for other in seeds if other is not seed}
        assert not any(seed.of_type("error") for seed in seeds)


async def test_a_20_kb_relay_is_refused_and_the_connection_stays(client: Client) -> None:
    async with members() as opened:
        room, host, (viewer,) = await room_of(client, opened, 2)
        rid = room["id"]
        big = {"sdp": "x" * (20 * 1024)}
        for to in (None, host.peer_id):  # addressed or not
            extra = {} if to is None else {"to": to}
            await viewer.send(type="offer", roomId=rid, payload=big, **extra)
            assert await viewer.next_error() == {
                "type": "error",
                "code": "payload_too_large",
                "message": "Field 'payload' must be at most 16384 bytes of JSON",
                "inReplyTo": "offer",
                "roomId": rid,
            }
        # the limit is the payload's JSON: 16,384 bytes pass ("x" * 16382 and its quotes)
        await viewer.send(type="offer", roomId=rid, payload="x" * 16382)
        got = await host.until(lambda e: e["type"] == "offer")
        assert len(got["payload"]) == 16382
        assert len(host.of_type("offer")) == 1  # the refused ones reached nobody
        assert not viewer.ws.closed


async def test_the_relayed_byte_budget_is_payload_times_recipients(start: Start) -> None:
    client = await start(relay_bytes_per_s=10_000)
    async with members() as opened:
        room, host, viewers = await room_of(client, opened, 3, path="/ws")
        rid = room["id"]
        payload = "y" * 3000  # 3,002 bytes of JSON
        # the host's relay to the room goes to 2: 6,004 of the 10,000 bytes
        await host.send(type="candidate", roomId=rid, payload=payload)
        for viewer in viewers:
            await viewer.until(lambda e: e["type"] == "candidate")
        # another one would cost 6,004 more: refused, with one rate_limited error
        await host.send(type="candidate", roomId=rid, payload=payload)
        assert await host.next_error() == {
            "type": "error",
            "code": "rate_limited",
            "message": "Too many relayed bytes: slow down",
            "inReplyTo": "candidate",
            "roomId": rid,
        }
        await marker(host, rid, "budget", viewers)
        assert [len(viewer.of_type("candidate")) for viewer in viewers] == [1, 1]
        # to one peer it costs 3,002 bytes, which the budget still holds
        await host.send(type="candidate", roomId=rid, to=viewers[0].peer_id, payload=payload)
        await viewers[0].until(lambda e: e["type"] == "candidate" and "to" in e)
        # a relay costing more than a second's budget never passes (12 members x 1 KB)
    client = await start(relay_bytes_per_s=10_000)
    async with members() as opened:
        room, host, viewers = await room_of(client, opened, 12)
        await host.send(type="candidate", roomId=room["id"], payload="z" * 1000)
        assert (await host.next_error())["code"] == "rate_limited"
        await marker(host, room["id"], "too costly", viewers)
        assert not any(viewer.of_type("candidate") for viewer in viewers)


async def test_a_relay_flood_in_a_small_room_is_bounded_by_the_byte_budget(
    client: Client,
) -> None:
    """The amplification attack within what a viewer may do (a room of 10, payloads under the
    size limit): 100 room-wide relays of 8 KB would send 7 MB; the default budget (256 KiB/s,
    payload x 9 recipients) lets a few through, refuses the rest with one ``rate_limited``, and
    the connection stays open (fewer refusals than a flood close needs)."""
    async with members() as opened:
        room, host, viewers = await room_of(client, opened, 10)
        rid = room["id"]
        attacker, others = viewers[0], [host, *viewers[1:]]
        payload = "p" * 8190  # 8,192 bytes of JSON, 73,728 per relay to 9
        began = time.monotonic()
        for index in range(100):
            await attacker.send(type="candidate", roomId=rid, payload=[index, payload])
        await marker(attacker, rid, "flood over", others)
        took = time.monotonic() - began
        errors = attacker.of_type("error")
        assert [(e["code"], e["message"]) for e in errors] == [
            ("rate_limited", "Too many relayed bytes: slow down")
        ]
        # what got through: the budget's second, and what refilled while the flood was sent
        allowed = int((262144 + 262144 * took) // (8192 * 9))
        for member in others:
            got = [e["payload"][0] for e in member.of_type("candidate")]
            assert 1 <= len(got) <= allowed, (len(got), took)
            assert got == sorted(got)
        assert not attacker.ws.closed


# -- item 7: per-address limits ------------------------------------------------------------------


def upgrade_headers() -> dict[str, str]:
    return {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        "Sec-WebSocket-Version": "13",
    }


async def refused_upgrade(client: Client, path: str = "/ws", **headers: str) -> None:
    """An upgrade request from an address at its limit: 429 in the REST error shape, with
    ``Retry-After``, and no handshake."""
    resp = await client.get(path, headers={**upgrade_headers(), **headers})
    assert resp.status == 429
    assert resp.headers["Retry-After"] == "10"
    assert "Sec-WebSocket-Accept" not in resp.headers
    body = await resp.json()
    limit = body["details"]["maxConnections"]
    assert body == {
        "error": f"Too many connections from this address (at most {limit}): retry in 10 s",
        "code": "too_many_connections",
        "details": {"retryAfter": 10, "maxConnections": limit},
    }


async def test_joining_and_leaving_in_a_loop_is_bounded_by_the_message_rate(start: Start) -> None:
    """Each join is announced to the room, so a connection that joins and leaves in a loop
    would have every member hear its message rate many times over: a join costs 10 messages of
    the rate (its frame and 9 more). With 100 tokens that barely refill, 9 rounds of join (10)
    and leave (1) pass; the 10th join is refused with one ``rate_limited`` naming it, changes
    nothing, and the room heard 9 joins."""
    client = await start(rate_per_s=0.001, rate_burst=100, chat_rate_per_s=0)
    async with members() as opened:
        room, host, _ = await room_of(client, opened, 2)
        rid = room["id"]
        churner = await connect(client, opened)
        for _ in range(9):
            assert (await join(churner, rid))["type"] == "joined"
            await churner.send(type="leave", roomId=rid)
        assert await join(churner, rid) == {
            "type": "error",
            "code": "rate_limited",
            "message": "Too many joins: slow down",
            "inReplyTo": "join",
            "roomId": rid,
        }
        await host.send(type="chat", roomId=rid, text="still here")
        await host.until(lambda e: e["type"] == "chat")
        heard = [e for e in host.of_type("peer-joined") if e["peer"]["peerId"] == churner.peer_id]
        assert len(heard) == 9
        view = await (await client.get(f"/api/rooms/{rid}")).json()
        assert view["viewerCount"] == 2  # the host and its viewer: the refused join changed nothing


async def test_a_client_joins_its_16_rooms_at_once_within_the_default_rate(
    client: Client,
) -> None:
    """What a real client does when it connects (the SDK rejoins all its rooms): 16 joins at
    once, then a candidate for each room, pass the default limits."""
    async with members() as opened:
        member = await connect(client, opened)
        rooms = [await new_room(client) for _ in range(16)]
        for room in rooms:
            await member.send(type="join", roomId=room["id"])
        for room in rooms:
            await member.send(type="candidate", roomId=room["id"], to="nobody", payload={})
        last = rooms[-1]["id"]
        await member.until(lambda e: e.get("inReplyTo") == "candidate" and e["roomId"] == last)
        assert len(member.of_type("joined")) == 16
        # each candidate got its peer_not_found: it was read, not dropped by the rate
        assert [e["code"] for e in member.of_type("error")] == ["peer_not_found"] * 16


async def test_the_101st_socket_from_one_address_is_refused_before_the_upgrade(
    client: Client, config: Config
) -> None:
    assert config.max_connections_per_address == 100  # the production default
    room = await new_room(client)
    async with members() as opened:
        for index in range(100):
            member = await connect(client, opened, "/" if index % 2 else "/ws")
            assert (await join(member, room["id"]))["type"] == "joined"
        for path in ("/ws", "/"):
            await refused_upgrade(client, path)
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await connect(client, opened, path)
            assert refused.value.status == 429
        resp = await client.get(f"/api/rooms/{room['id']}")
        assert (await resp.json())["viewerCount"] == 100  # REST is not limited
        assert (
            await scrape(client, "livehub_ws_upgrades_refused_total", reason="address_limit") == 4
        )

        # closing one frees its slot (once the server has seen it go)
        await opened.pop().close()
        deadline = time.monotonic() + 5
        while True:
            try:
                member = await connect(client, opened)
                break
            except aiohttp.WSServerHandshakeError:
                assert time.monotonic() < deadline, "the slot was never freed"
                await asyncio.sleep(0.02)
        assert (await join(member, room["id"]))["type"] == "joined"
        await refused_upgrade(client)


async def test_addresses_through_a_trusted_proxy_and_ipv6_by_64(start: Start) -> None:
    client = await start(max_connections_per_address=2, trusted_proxies=(LOOPBACK,))
    async with members() as opened:

        async def open_from(address: str) -> Member:
            return await connect(client, opened, headers={"X-Forwarded-For": address})

        for address in ("203.0.113.5", "203.0.113.5"):
            await open_from(address)
        await refused_upgrade(client, **{"X-Forwarded-For": "203.0.113.5"})
        await open_from("203.0.113.6")  # another address: its own count
        # IPv6: one /64 is one address, whichever host part; another /64 is another
        await open_from("2001:db8:0:1::1")
        await open_from("2001:db8:0:1:ffff::2")
        await refused_upgrade(client, **{"X-Forwarded-For": "2001:db8:0:1::3"})
        await open_from("2001:db8:0:2::1")
        # an IPv4-mapped IPv6 address is its IPv4 address
        await refused_upgrade(client, **{"X-Forwarded-For": "::ffff:203.0.113.5"})
        # a proxy that writes the client's port (Azure Application Gateway, IIS ARR): one
        # address whatever the port, not a new one per source port
        await refused_upgrade(client, **{"X-Forwarded-For": "203.0.113.5:40001"})
        await refused_upgrade(client, **{"X-Forwarded-For": "[2001:db8:0:1::4]:443"})
        # a hop that is no address is the proxy's (the peer's): no key of its own
        await open_from("not-an-address")
        await open_from("still-not-one")
        await refused_upgrade(client)  # the proxy's own two: counted as its


async def test_the_anonymous_create_limit_counts_ipv6_by_64(start: Start) -> None:
    client = await start(create_rate_per_min=2, trusted_proxies=(LOOPBACK,))
    for address in ("2001:db8:5::1", "2001:db8:5::2"):
        await new_room(client, {"X-Forwarded-For": address})
    resp = await client.post(
        "/api/rooms", json={"title": "third"}, headers={"X-Forwarded-For": "2001:db8:5:0:1::9"}
    )
    assert resp.status == 429
    assert (await resp.json())["code"] == "rate_limited"
    await new_room(client, {"X-Forwarded-For": "2001:db8:6::1"})  # another /64


async def test_a_kicked_peer_cannot_rejoin_that_room_until_the_ban_ends(start: Start) -> None:
    client = await start(kick_ban_s=1.0)
    async with members() as opened:
        room, host, (viewer, bystander) = await room_of(client, opened, 3)
        rid = room["id"]
        other = await new_room(client)
        await host.send(type="kick", roomId=rid, peerId=viewer.peer_id)
        await viewer.until(lambda e: e["type"] == "kicked")

        banned = {
            "type": "error",
            "code": "banned",
            "message": "A peer from this address was kicked from this room: try again later",
            "inReplyTo": "join",
            "roomId": rid,
        }
        assert await join(viewer, rid) == banned
        fresh = await connect(client, opened)  # a new socket from the same address
        assert (await join(fresh, rid))["code"] == "banned"
        assert (await join(fresh, other["id"]))["type"] == "joined"  # other rooms are fine
        # members already in the room stay; the owner is never banned from its own room
        await marker(bystander, rid, "still here", [host])
        owner = await connect(client, opened)
        assert (await join(owner, rid, role="host", token=room["ownerToken"]))["type"] == "joined"

        # the ban ends
        deadline = time.monotonic() + 5
        while (await join(viewer, rid))["type"] != "joined":
            assert time.monotonic() < deadline, "the ban never ended"
            await asyncio.sleep(0.05)


def test_address_keys() -> None:
    assert address_key("203.0.113.7") == "203.0.113.7"
    assert address_key("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:2::9") == "2001:db8:1:2::/64"
    assert address_key("fe80::1%eth0") == "fe80::/64"
    assert address_key("::ffff:198.51.100.1") == "198.51.100.1"
    assert address_key("") == ""
    assert address_key("not-an-address") == "not-an-address"


def test_bans_end_and_are_bounded() -> None:
    now = [0.0]
    bans = LocalBans(10.0, clock=lambda: now[0])
    bans.ban("r", "a")
    assert bans.is_banned("r", "a")
    assert not bans.is_banned("other", "a") and not bans.is_banned("r", "b")
    now[0] = 10.0
    assert not bans.is_banned("r", "a")
    assert not LocalBans(0.0).is_banned("r", "a")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("LIVEHUB_BROADCAST_RELAY_MAX_MEMBERS", "-1", "LIVEHUB_BROADCAST_RELAY_MAX_MEMBERS must"),
        ("LIVEHUB_MAX_RELAY_BYTES", "16k", "LIVEHUB_MAX_RELAY_BYTES must be an integer"),
        ("LIVEHUB_RELAY_BYTES_PER_S", "-5", "LIVEHUB_RELAY_BYTES_PER_S must be >= 0"),
        ("LIVEHUB_MAX_CONNECTIONS_PER_ADDRESS", "x", "LIVEHUB_MAX_CONNECTIONS_PER_ADDRESS must"),
        ("LIVEHUB_KICK_BAN_S", "-1", "LIVEHUB_KICK_BAN_S must be a number"),
    ],
)
def test_bad_limit_settings_name_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Config.from_env({name: value})


def test_the_defaults_are_the_documented_ones() -> None:
    config = Config.from_env({})
    assert (
        config.broadcast_relay_max_members,
        config.max_relay_bytes,
        config.relay_bytes_per_s,
        config.max_connections_per_address,
        config.kick_ban_s,
    ) == (10, 16384, 262144, 100, 300.0)


class _Unreachable:
    async def take_create(self, key: str, rate_per_min: int) -> int:
        raise SharedUnavailable("Redis unreachable")

    async def give_back_create(self, key: str, rate_per_min: int) -> None:
        raise SharedUnavailable("Redis unreachable")


async def test_without_the_shared_buckets_the_create_limit_is_the_process_own() -> None:
    policy = CreatePolicy(rate_per_min=2, shared=_Unreachable())
    await policy.admit("2001:db8:7::1")
    await policy.admit("2001:db8:7::2")
    with pytest.raises(RateLimited):
        await policy.admit("2001:db8:7:0:5::3")  # the same /64
    await policy.admit("198.51.100.9")


async def test_handshakes_dropped_by_their_clients_log_no_errors(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    """Clients that send a WebSocket upgrade and drop the connection at once (a reset, or a
    plain close) before the answer goes out: the server answers nobody, logs no error and no
    traceback (one per connection would let anyone fill the log), and keeps serving."""
    import logging
    import socket
    import struct

    caplog.set_level(logging.DEBUG, logger="livehub.api.middlewares")
    request = (
        b"GET /ws HTTP/1.1\r\nHost: livehub\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    for i in range(60):
        # blocking calls, no await between them: the server reads the request and the close
        # in one pass of the loop, so its answer meets a closed transport
        with socket.create_connection((client.server.host, client.server.port)) as sock:
            sock.sendall(request)
            if i % 2:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    gone = [r for r in caplog.records if "client went away during GET /ws" in r.getMessage()]
    deadline = time.monotonic() + 5
    while not gone and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        gone = [r for r in caplog.records if "client went away during GET /ws" in r.getMessage()]
    await asyncio.sleep(0.2)
    assert gone  # the case happened (a few connections in ten meet it)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert errors == []
    ws = await client.ws_connect("/ws")
    await ws.send_json({"type": "join", "roomId": "nope"})
    reply = await ws.receive_json(timeout=5)
    assert reply["type"] == "error"
    await ws.close()
    assert (await client.get("/api/rooms")).status == 200
