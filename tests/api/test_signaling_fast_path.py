"""The signaling tests over :class:`SignalingSite`, the way ``python -m livehub`` serves.

There, WebSocket upgrades are answered by :class:`UpgradeSniffer` before aiohttp's request
handling, and every other connection is handed to aiohttp. Every test of
``tests/api/test_signaling.py`` runs here again against that server (the ``client`` and
``start`` fixtures are replaced), followed by what only the fast path has to get right.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from typing import Any, cast

import pytest
from aiohttp import TCPConnector, WSCloseCode, WSMsgType, web
from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpClient
from yarl import URL

from livehub import keys
from livehub.api import signaling as signaling_module
from livehub.api.signaling import SignalingSite, WebSocket, parse_upgrade
from livehub.app import create_app
from tests.api.test_signaling import *  # noqa: F403  (every test there runs here too)
from tests.api.test_signaling import RawWebSocket, Start, join, new_room, receive
from tests.conftest import Client, make_config


class FastPathServer(TestServer):
    """aiohttp's test server, listening through SignalingSite instead of SockSite."""

    def __init__(self, app: web.Application, *, runner_kwargs: dict[str, Any] | None = None):
        super().__init__(app)
        self._runner_kwargs = runner_kwargs or {}

    async def start_server(
        self, loop: asyncio.AbstractEventLoop | None = None, **kwargs: Any
    ) -> None:
        if self.runner:
            return
        self._loop = loop
        self.runner = await self._make_runner(**kwargs, **self._runner_kwargs)
        await self.runner.setup()
        assert isinstance(self.runner, web.AppRunner)
        site = SignalingSite(self.runner, self.host, 0)
        await site.start()
        self.port = site.port
        self.scheme = "http"
        self._root = URL(f"http://{self.host}:{self.port}")


async def fast_client(aiohttp_client: AiohttpClient, app: web.Application) -> Client:
    # no keep-alive: a pooled REST connection would carry the next upgrade, which aiohttp then
    # serves (correctly, but these tests are about the fast path)
    connector = TCPConnector(force_close=True)
    return cast(Client, await aiohttp_client(FastPathServer(app), connector=connector))


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, app: web.Application) -> Client:
    return await fast_client(aiohttp_client, app)


@pytest.fixture  # type: ignore[no-redef]  # replaces the imported one, on purpose
def start(aiohttp_client: AiohttpClient) -> Start:
    async def start(**overrides: Any) -> Client:
        return await fast_client(aiohttp_client, create_app(make_config(**overrides)))

    return start


def aiohttp_requests(client: Client) -> int:
    """Requests aiohttp's own request handling has seen."""
    runner = client.server.runner
    assert runner is not None and runner.server is not None
    return runner.server.requests_count


def handshake(path: str = "/ws", **headers: str) -> bytes:
    fields = {
        "Host": "127.0.0.1",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        "Sec-WebSocket-Version": "13",
        **headers,
    }
    lines = "".join(f"{name}: {value}\r\n" for name, value in fields.items() if value)
    return f"GET {path} HTTP/1.1\r\n{lines}\r\n".encode()


async def raw_connect(client: Client) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    assert client.port is not None
    return await asyncio.open_connection(client.host, client.port)


# -- what only the fast path does ---------------------------------------------------------------


async def test_upgrades_skip_aiohttp_and_everything_else_reaches_it(client: Client) -> None:
    room = await new_room(client)
    before = aiohttp_requests(client)
    a, b = await client.ws_connect("/ws"), await client.ws_connect("/")
    await join(a, room["id"])
    await join(b, room["id"])
    await a.send_json({"type": "candidate", "roomId": room["id"], "payload": 1})
    assert (await receive(b, skip=("viewer-count", "peer-joined")))["payload"] == 1
    assert aiohttp_requests(client) == before  # no aiohttp request for either upgrade
    sinks = [peer.sink for peer in client.app[keys.hub].peers.values()]
    assert len(sinks) == 2 and all(isinstance(sink, WebSocket) for sink in sinks)

    resp = await client.get(f"/api/rooms/{room['id']}")  # REST on the same port: aiohttp
    assert (await resp.json())["viewerCount"] == 2
    assert aiohttp_requests(client) == before + 1
    page = await client.get("/")  # the console, not an upgrade
    assert page.status == 200 and page.content_type == "text/html"


async def test_a_head_in_pieces_and_a_frame_right_behind_it(client: Client) -> None:
    room = await new_room(client)
    reader, writer = await raw_connect(client)
    head = handshake()
    for index in range(0, len(head) - 5, 7):  # the head trickles in
        writer.write(head[index : min(index + 7, len(head) - 5)])
        await writer.drain()
        await asyncio.sleep(0.001)
    # the end of the head and a join in one segment (the client does not wait for the 101)
    mask = os.urandom(4)
    data = json.dumps({"type": "join", "roomId": room["id"]}).encode()
    masked = bytes(byte ^ mask[index % 4] for index, byte in enumerate(data))
    writer.write(head[-5:] + bytes((0x81, 0x80 | len(data))) + mask + masked)
    async with asyncio.timeout(3):
        status = await reader.readuntil(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert b"\r\nSec-WebSocket-Accept: " in status
    assert (await RawWebSocket(reader, writer).receive_json())["type"] == "joined"
    writer.close()


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Sec-WebSocket-Key": "short"}, 400),
        ({"Sec-WebSocket-Version": "12"}, 400),
        ({"Upgrade": "h2c"}, 400),
    ],
)
async def test_upgrades_aiohttp_refuses_are_refused_by_aiohttp(
    client: Client, headers: dict[str, str], status: int
) -> None:
    before = aiohttp_requests(client)
    reader, writer = await raw_connect(client)
    writer.write(handshake(**headers))
    async with asyncio.timeout(3):
        head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status} ".encode()), head
    assert aiohttp_requests(client) == before + 1
    writer.close()


async def test_an_origin_outside_the_allow_list_gets_aiohttps_403(start: Start) -> None:
    client = await start(ws_origins=("https://ok.example",))
    reader, writer = await raw_connect(client)
    writer.write(handshake(Origin="https://evil.example"))
    async with asyncio.timeout(3):
        head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 403 ")
    writer.close()
    ok = await client.ws_connect("/ws", headers={"Origin": "https://ok.example"})
    assert not ok.closed
    assert aiohttp_requests(client) == 1  # only the refused one


async def test_runner_cleanup_closes_fast_path_sockets_with_1001(client: Client) -> None:
    room = await new_room(client)
    ws = await client.ws_connect("/ws")
    await join(ws, room["id"])
    runner = client.server.runner
    assert runner is not None
    cleanup = asyncio.ensure_future(runner.cleanup())
    async with asyncio.timeout(5):
        msg = await ws.receive()
        while msg.type is WSMsgType.TEXT:
            msg = await ws.receive()
        await cleanup
    assert (msg.type, msg.data, msg.extra) == (
        WSMsgType.CLOSE,
        WSCloseCode.GOING_AWAY,
        "server shutdown",
    )


@pytest.mark.parametrize(
    "head",
    [
        b"POST /ws HTTP/1.1\r\nUpgrade: websocket",
        b"GET /ws HTTP/1.0\r\nUpgrade: websocket",
        b"GET /api/rooms HTTP/1.1\r\nHost: x",
        b"GET /w%73 HTTP/1.1\r\nHost: x",
        b"GET /ws HTTP/1.1\r\nHost: x\r\nHost: y",
        b"GET /ws HTTP/1.1\r\nBad Header: x",
        b"GET /ws HTTP/1.1\r\n folded: x",
        b"GET /ws HTTP/1.1\r\nContent-Length: 0",
        "GET /ws HTTP/1.1\r\nX: é".encode(),
    ],
)
def test_unusual_heads_are_left_to_aiohttp(head: bytes) -> None:
    assert parse_upgrade(head) is None


def test_a_plain_upgrade_head_is_parsed() -> None:
    head = b"GET /ws?v=2 HTTP/1.1\r\nHost: x\r\nUpgrade:websocket\r\nSec-WebSocket-Key:  k \r\nX:"
    assert parse_upgrade(head) == (
        "/ws",
        {"host": "x", "upgrade": "websocket", "sec-websocket-key": "k", "x": ""},
    )


async def test_a_client_close_is_answered_with_1000_and_the_others_hear_peer_left(
    client: Client,
) -> None:
    room = await new_room(client)
    stays, goes = await client.ws_connect("/ws"), await client.ws_connect("/ws")
    await join(stays, room["id"])
    gone_id = (await join(goes, room["id"]))["peerId"]
    await goes.close()
    assert goes.close_code == 1000
    event = await receive(stays, skip=("viewer-count", "peer-joined"))
    assert event == {"type": "peer-left", "roomId": room["id"], "peerId": gone_id}


async def test_a_stalled_connection_is_handed_to_aiohttp_and_its_idle_timeout(
    aiohttp_client: AiohttpClient, app: web.Application, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(signaling_module, "HEAD_TIMEOUT", 0.05)
    server = FastPathServer(app, runner_kwargs={"keepalive_timeout": 0.2})
    client = cast(Client, await aiohttp_client(server))
    reader, writer = await raw_connect(client)
    writer.write(b"GET /ws HT")  # and then nothing: not held by the sniffer for ever
    async with asyncio.timeout(3):
        assert await reader.read() == b""  # aiohttp closed it as an idle connection
    writer.close()

    reader, writer = await raw_connect(client)
    writer.write(b"GE")
    await asyncio.sleep(0.1)  # handed over by now; the rest still makes one request
    writer.write(b"T /api/rooms HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    async with asyncio.timeout(3):
        head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert aiohttp_requests(client) == 1
    writer.close()
