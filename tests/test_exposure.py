"""The public port under connection-level abuse, against the real process (``python -m
livehub``: the connection guard lives in how it serves, not in the application): trickled
headers, idle connections piling up from one address, upgrades that never finish, the process
out of file descriptors, a flood of tiny requests. Every load here is bounded in count and in
time, on loopback only; what is asserted is an outcome (a fresh client is served, the flood's
connections were closed, the descriptors came back), never how fast.

Addresses: Linux routes all of 127.0.0.0/8 to loopback, so a client bound to 127.0.0.2 is
"another address" than the flood's 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import resource
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from livehub.config import Config
from tests.helpers import eventually
from tests.processes import Server

OTHER = "127.0.0.2"  # a client that is not the flood


async def start(servers: list[Server], tmp_path: Path, **env: str) -> Server:
    server = Server(tmp_path, tmp_path / "livehub.db", **env)
    servers.append(server)
    await server.start()
    return server


Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def connect(server: Server, source: str = "127.0.0.1") -> Stream:
    return await asyncio.open_connection("127.0.0.1", server.port, local_addr=(source, 0))


async def closed_by_server(stream: Stream, within: float) -> bytes:
    """What the server sent before it closed the connection (fails if it stays open longer
    than ``within`` seconds: the bound of the wait, not an assertion on speed)."""
    reader, writer = stream
    try:
        async with asyncio.timeout(within):
            return await reader.read()
    except ConnectionResetError:
        return b""
    finally:
        writer.close()


async def healthz(server: Server, source: str = OTHER) -> int:
    connector = aiohttp.TCPConnector(local_addr=(source, 0), force_close=True)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.get(server.url + "/healthz") as resp,
    ):
        return resp.status


async def closed_early(server: Server, reason: str) -> float:
    """``livehub_connections_closed_total{reason=...}`` of the process's ``/metrics``."""
    connector = aiohttp.TCPConnector(local_addr=(OTHER, 0))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.get(server.url + "/metrics") as resp,
    ):
        text = await resp.text()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "livehub_connections_closed_total" and sample.labels == {
                "reason": reason
            }:
                return float(sample.value)
    raise AssertionError(f"no livehub_connections_closed_total{{reason={reason}}}")


def open_fds(server: Server) -> int:
    assert server.proc is not None
    return len(os.listdir(f"/proc/{server.proc.pid}/fd"))


async def close_all(streams: list[Stream]) -> None:
    for _, writer in streams:
        writer.close()
    for _, writer in streams:
        with contextlib.suppress(OSError):
            await writer.wait_closed()


# -- slow headers (Slowloris) ------------------------------------------------------------------


async def test_trickled_headers_are_cut_off_at_the_header_timeout(
    servers: list[Server], tmp_path: Path
) -> None:
    """A client that sends its request line and then a header line now and then, never the
    blank line: closed once LIVEHUB_HEADER_TIMEOUT has passed (aiohttp alone kept it until its
    keep-alive timeout, 75 s, however many there were), from one address and from many; a fresh
    client is served meanwhile and afterwards."""
    server = await start(
        servers, tmp_path, LIVEHUB_HEADER_TIMEOUT="1", LIVEHUB_MAX_SOCKETS_PER_ADDRESS="0"
    )
    sources = ["127.0.0.1"] * 20 + [f"127.0.1.{n}" for n in range(1, 21)]
    streams = [await connect(server, source) for source in sources]
    for _, writer in streams:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")

    async def trickle() -> None:
        for n in range(60):  # bounded: 30 s at most
            for _, writer in streams:
                if not writer.is_closing():
                    writer.write(f"X-{n}: y\r\n".encode())
            await asyncio.sleep(0.5)

    trickling = asyncio.create_task(trickle())
    try:
        assert await healthz(server) == 200
        answers = await asyncio.gather(*(closed_by_server(s, within=20) for s in streams))
    finally:
        trickling.cancel()
    assert all(b"200 OK" not in answer for answer in answers)
    assert await closed_early(server, "header_timeout") == len(streams)
    assert await healthz(server) == 200
    assert await healthz(server, "127.0.0.1") == 200


async def test_a_connection_that_never_sends_a_request_is_closed(
    servers: list[Server], tmp_path: Path
) -> None:
    """Connections opened and left silent (a flood of them, or a half-open upgrade that never
    sent its headers): closed at the header timeout, and the process's descriptors come back."""
    server = await start(
        servers, tmp_path, LIVEHUB_HEADER_TIMEOUT="1", LIVEHUB_MAX_SOCKETS_PER_ADDRESS="0"
    )
    before = open_fds(server)
    streams = [await connect(server) for _ in range(50)]
    streams[0][1].write(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
    await asyncio.gather(*(closed_by_server(s, within=20) for s in streams))
    await eventually(lambda: open_fds(server) <= before, within=10)
    assert await healthz(server, "127.0.0.1") == 200


async def test_a_connection_keeps_its_keep_alive_after_its_first_request(
    servers: list[Server], tmp_path: Path
) -> None:
    """The header timeout is the first request's: a client that sent one in time keeps its
    connection for more requests (it is bounded by the keep-alive timeout then)."""
    server = await start(servers, tmp_path, LIVEHUB_HEADER_TIMEOUT="0.5")
    reader, writer = await connect(server)
    try:
        for _ in range(3):
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 "), head
            length = re.search(rb"Content-Length: (\d+)", head, re.IGNORECASE)
            assert length is not None
            await reader.readexactly(int(length[1]))
            await asyncio.sleep(1)  # past the header timeout: the connection stays open
    finally:
        writer.close()


async def read_response(reader: asyncio.StreamReader) -> bytes:
    """One whole response (its head, and a body of Content-Length bytes)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = re.search(rb"Content-Length: (\d+)", head, re.IGNORECASE)
    assert length is not None, head
    return head + await reader.readexactly(int(length[1]))


async def trickled_until_closed(stream: Stream) -> bytes:
    """Send a header line every 0.5 s (30 s at most) on a connection whose request head has
    begun, until the server closes it (within 20 s): what the server sent."""
    _, writer = stream

    async def trickle() -> None:
        for n in range(60):
            if writer.is_closing():
                return
            writer.write(f"X-{n}: y\r\n".encode())
            await asyncio.sleep(0.5)

    trickling = asyncio.create_task(trickle())
    try:
        return await closed_by_server(stream, within=20)
    finally:
        trickling.cancel()


async def test_a_later_requests_trickled_headers_are_cut_off_at_the_header_timeout(
    servers: list[Server], tmp_path: Path
) -> None:
    """A kept-alive connection's next request: its headers trickled after a first request was
    answered are cut off at the header timeout too, not the keep-alive timeout (aiohttp alone
    waited 75 s for them)."""
    server = await start(
        servers, tmp_path, LIVEHUB_HEADER_TIMEOUT="1", LIVEHUB_KEEPALIVE_TIMEOUT="75"
    )
    reader, writer = await connect(server)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await read_response(reader)).startswith(b"HTTP/1.1 200 ")
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    assert b"200 OK" not in await trickled_until_closed((reader, writer))
    assert await closed_early(server, "header_timeout") == 1
    assert await healthz(server, "127.0.0.1") == 200


async def test_a_body_sent_after_its_response_does_not_lift_the_next_heads_timeout(
    servers: list[Server], tmp_path: Path
) -> None:
    """A request answered before its body came (the handler never read it; aiohttp reads the
    rest after the response): the head that follows the body is cut off at the header
    timeout too (it had the 75 s keep-alive timeout: a way around the deadline)."""
    server = await start(
        servers, tmp_path, LIVEHUB_HEADER_TIMEOUT="1", LIVEHUB_KEEPALIVE_TIMEOUT="75"
    )
    reader, writer = await connect(server)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n")
    assert (await read_response(reader)).startswith(b"HTTP/1.1 200 ")
    writer.write(b"x" + b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # the body, the next head
    assert b"200 OK" not in await trickled_until_closed((reader, writer))
    assert await closed_early(server, "header_timeout") == 1


def ws_frame(opcode: int, payload: bytes = b"") -> bytes:
    """A client's (masked) WebSocket frame of under 126 bytes."""
    mask = os.urandom(4)
    masked = bytes(byte ^ mask[n % 4] for n, byte in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked


async def test_the_header_timeout_spares_idle_connections_bodies_and_websockets(
    servers: list[Server], tmp_path: Path
) -> None:
    """Only a head is timed: an idle kept-alive connection (nothing sent since a response), a
    body that takes longer than the header timeout (sent alone or pipelined behind another
    request), and a WebSocket opened after a first request on its connection stay open."""
    server = await start(servers, tmp_path, LIVEHUB_HEADER_TIMEOUT="0.5")
    reader, writer = await connect(server)
    body = b'{"title": "slow body"}'
    post = (
        b"POST /api/rooms HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    )

    async def trickled_body() -> None:
        for n in range(0, len(body), 6):  # 4 pieces, 0.3 s apart: past the header timeout
            await asyncio.sleep(0.3)
            writer.write(body[n : n + 6])

    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await read_response(reader)).startswith(b"HTTP/1.1 200 ")
        await asyncio.sleep(1)  # idle, past the header timeout
        writer.write(post)  # a whole head at once, then its body, slowly
        await trickled_body()
        assert (await read_response(reader)).startswith(b"HTTP/1.1 201 ")
        # pipelined: a second request's head behind the first, its body slowly
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" + post)
        await trickled_body()
        assert (await read_response(reader)).startswith(b"HTTP/1.1 200 ")
        assert (await read_response(reader)).startswith(b"HTTP/1.1 201 ")
        # a WebSocket upgrade on the same connection: its frames are no head
        writer.write(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101 ")
        for n in range(3):
            await asyncio.sleep(0.4)
            writer.write(ws_frame(0x9, b"p%d" % n))  # ping: aiohttp answers pong
            assert await reader.readexactly(4) == bytes([0x8A, 2]) + b"p%d" % n
    finally:
        writer.close()
    assert await closed_early(server, "header_timeout") == 0


# -- connections per address -------------------------------------------------------------------


async def test_connections_per_address_are_capped(servers: list[Server], tmp_path: Path) -> None:
    """One address opens more connections than LIVEHUB_MAX_SOCKETS_PER_ADDRESS and sends
    nothing: the ones over the cap get 429 ``too_many_connections`` at once and are closed;
    another address is served meanwhile; once the flood closes, its address is served again."""
    server = await start(
        servers,
        tmp_path,
        LIVEHUB_MAX_SOCKETS_PER_ADDRESS="20",
        LIVEHUB_MAX_CONNECTIONS_PER_ADDRESS="10",
    )
    held = [await connect(server) for _ in range(20)]
    over = [await connect(server) for _ in range(10)]
    answers = await asyncio.gather(*(closed_by_server(s, within=10) for s in over))
    for answer in answers:
        assert answer.startswith(b"HTTP/1.1 429 "), answer
        assert b'"code":"too_many_connections"' in answer
        assert b"Retry-After:" in answer
    assert await healthz(server) == 200
    assert await closed_early(server, "address_limit") == len(over)
    await close_all(held)
    assert await eventually(lambda: healthz(server, "127.0.0.1")) == 200


async def test_trusted_proxies_are_not_capped(servers: list[Server], tmp_path: Path) -> None:
    """Behind a proxy every client's connection comes from the proxy's address: a trusted
    proxy's connections are not counted (the proxy limits its clients itself)."""
    server = await start(
        servers,
        tmp_path,
        LIVEHUB_MAX_SOCKETS_PER_ADDRESS="3",
        LIVEHUB_MAX_CONNECTIONS_PER_ADDRESS="2",
        LIVEHUB_TRUSTED_PROXIES="127.0.0.1/32",
    )
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def get(n: int) -> int:
            headers = {"X-Forwarded-For": f"203.0.113.{n}"}
            async with session.get(server.url + "/healthz", headers=headers) as resp:
                await asyncio.sleep(0.2)  # held open together
                return resp.status

        assert await asyncio.gather(*(get(n) for n in range(10))) == [200] * 10


def test_the_socket_cap_follows_the_websocket_cap() -> None:
    assert Config.from_env({}).sockets_per_address == 200
    assert (
        Config.from_env({"LIVEHUB_MAX_CONNECTIONS_PER_ADDRESS": "5000"}).sockets_per_address == 5100
    )
    assert Config.from_env({"LIVEHUB_MAX_CONNECTIONS_PER_ADDRESS": "0"}).sockets_per_address == 0
    assert Config.from_env({"LIVEHUB_MAX_SOCKETS_PER_ADDRESS": "7"}).sockets_per_address == 7


# -- out of file descriptors -------------------------------------------------------------------


async def test_the_server_recovers_from_running_out_of_descriptors(
    servers: list[Server], tmp_path: Path
) -> None:
    """More connections than the process may open descriptors (from many addresses, under no
    cap): accept() fails while the flood holds them; once it lets go, /healthz is served again
    and the descriptors are back down."""
    server = await start(
        servers, tmp_path, LIVEHUB_MAX_SOCKETS_PER_ADDRESS="0", LIVEHUB_HEADER_TIMEOUT="60"
    )
    assert server.proc is not None
    resource.prlimit(server.proc.pid, resource.RLIMIT_NOFILE, (128, 128))
    before = open_fds(server)
    streams = [await connect(server, f"127.0.2.{n % 200 + 1}") for n in range(300)]
    await eventually(lambda: open_fds(server) >= 120, within=10)
    await close_all(streams)
    assert await eventually(lambda: _served(server), within=20)
    await eventually(lambda: open_fds(server) <= before + 2, within=20)
    assert await healthz(server, "127.0.0.1") == 200


async def _served(server: Server) -> bool:
    try:
        async with asyncio.timeout(2):
            return await healthz(server) == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


# -- many tiny requests ------------------------------------------------------------------------


async def test_a_flood_of_tiny_requests_does_not_starve_another_address(
    servers: list[Server], tmp_path: Path
) -> None:
    """One address sends requests as fast as its connections allow (keep-alive, 40 at once):
    requests take turns in arrival order, and one address holds at most its connections' worth
    of them, so another address's requests are served while the flood goes on."""
    server = await start(servers, tmp_path)
    stop = asyncio.Event()

    async def flood(session: aiohttp.ClientSession) -> int:
        done = 0
        while not stop.is_set() and done < 2000:  # bounded
            async with session.get(server.url + "/api/rooms?limit=1") as resp:
                await resp.read()
            done += 1
        return done

    connector = aiohttp.TCPConnector(limit=40)
    async with aiohttp.ClientSession(connector=connector) as session:
        flooding = [asyncio.create_task(flood(session)) for _ in range(40)]
        try:
            await asyncio.sleep(0.5)
            statuses = [await healthz(server) for _ in range(10)]
        finally:
            stop.set()
            counts = await asyncio.gather(*flooding)
    assert statuses == [200] * 10
    assert sum(counts) > 0


# -- oversized requests ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_head", "status"),
    [
        (b"GET /healthz?" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", b"400"),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", b"400"),
        (
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
            + b"".join(b"X-%d: y\r\n" % n for n in range(200))
            + b"\r\n",
            b"400",
        ),
    ],
    ids=["long-url", "long-header", "many-headers"],
)
async def test_oversized_request_heads_are_refused_and_closed(
    servers: list[Server], tmp_path: Path, request_head: bytes, status: bytes
) -> None:
    """A request line or header over 8190 bytes, or more than 128 headers: aiohttp answers 400
    (plain text, before the app) and closes; the server goes on serving."""
    server = await start(servers, tmp_path)
    stream = await connect(server)
    stream[1].write(request_head)
    answer = await closed_by_server(stream, within=10)
    assert answer.split(b" ", 2)[1] == status, answer[:200]
    assert await healthz(server, "127.0.0.1") == 200
