"""What an adversarial audit of the REST API found (each test failed before its fix): log lines
an attacker could forge through the access log, status codes the handlers answer that the
OpenAPI document did not list, and the durability a 2xx promises."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pytest_aiohttp import AiohttpClient

from livehub.__main__ import AccessLogger
from livehub.app import create_app
from livehub.reconcile import Reconciler
from tests.conftest import HOOK_SECRET, Client, CreateRoom, hook_for, make_config

# -- the access log ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        # a decoded newline would start a line of the attacker's own
        "/api/rooms/x%0A2026-12-07 14:00:00,000 ERROR livehub: forged",
        "/api/rooms?a%0D%0A2026-12-07 14:00:00,000 ERROR livehub: forged=1",
        "/api/nope%1b%5b31mred%00",  # terminal escapes, a NUL
        "/api/rooms/x%E2%80%A8y",  # U+2028, a line break to many log viewers
    ],
)
async def test_the_access_log_cannot_be_forged_through_the_path_or_query(
    aiohttp_client: AiohttpClient, caplog: pytest.LogCaptureFixture, target: str
) -> None:
    """The access log wrote the decoded path and query as they were: a request's ``%0A`` began
    a new log line that looked like the server's own (an ERROR of livehub, say)."""
    server = TestServer(create_app(make_config()))
    await server.start_server(access_log_class=AccessLogger)  # what run_app serves with
    client: TestClient[web.Request, None] = await aiohttp_client(server)
    with caplog.at_level(logging.INFO, logger="aiohttp.access"):
        resp = await client.get(target)
        assert resp.status in (400, 404)
        await resp.read()
    lines = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.isprintable(), line  # no newline, carriage return, escape, NUL, U+2028
    assert "forged" in line or "red" in line or "x" in line  # escaped, not dropped


async def test_the_access_log_builds_no_line_when_info_is_off(
    aiohttp_client: AiohttpClient, caplog: pytest.LogCaptureFixture
) -> None:
    """At ``LIVEHUB_LOG_LEVEL=WARNING`` aiohttp asks the logger whether it is enabled and does
    not call it (every WebSocket's upgrade is a request: its line cost a join CPU for nothing)."""
    built: list[str] = []

    class Counting(AccessLogger):
        def log(self, request: Any, response: Any, time: float) -> None:
            built.append(request.path)
            super().log(request, response, time)

    server = TestServer(create_app(make_config()))
    await server.start_server(access_log_class=Counting)
    client: TestClient[web.Request, None] = await aiohttp_client(server)
    # (aiohttp asks once per connection: each request here has one of its own)
    with caplog.at_level(logging.WARNING, logger="aiohttp.access"):
        async with client.get("/api/rooms", headers={"Connection": "close"}) as resp:
            assert resp.status == 200
    assert built == []
    with caplog.at_level(logging.INFO, logger="aiohttp.access"):
        async with client.get("/api/rooms", headers={"Connection": "close"}) as resp:
            assert resp.status == 200
    assert built == ["/api/rooms"]


async def test_the_log_of_an_unexpected_error_masks_the_heartbeats_secret(
    client: Client, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The signed heartbeat carries the hook secret as its path's last segment. The access log
    masks it (``heartbeat/***``); the error middleware's line for an unexpected failure (a
    logged 500) wrote the path as it was, secret and all."""

    def broken(self: Reconciler, server_id: str | None, service_id: str | None) -> bool:
        raise RuntimeError("a bug")

    monkeypatch.setattr(Reconciler, "heartbeat", broken)
    with caplog.at_level(logging.DEBUG, logger="livehub"):
        resp = await client.post(
            f"/api/hooks/srs/heartbeat/{HOOK_SECRET}", json={"server": "s", "service": "t"}
        )
        assert resp.status == 500
        assert (await resp.json())["code"] == "internal_error"
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("livehub")]
    assert "unhandled error in POST /api/hooks/srs/heartbeat/***" in lines
    assert not [line for line in lines if HOOK_SECRET in line]


# -- the OpenAPI document lists what the handlers answer ----------------------------------------


def documented(spec: dict[str, Any], method: str, path: str) -> set[str]:
    """The status codes the document lists for ``method path`` (a path template)."""
    return set(spec["paths"][path][method]["responses"])


async def _body_never_arrives(client: Any, target: str, headers: str = "") -> int:
    """Headers announcing a body, one byte of it, then nothing: the status of the answer."""
    server = client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(
            f"POST {target} HTTP/1.1\r\nHost: livehub\r\nContent-Type: application/json\r\n"
            f"{headers}Content-Length: 100\r\n\r\n{{".encode()
        )
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    return int(answer.split(b" ", 2)[1])


async def test_every_body_timeout_is_documented(aiohttp_client: AiohttpClient) -> None:
    """Each operation with a body answers 408 ``body_timeout`` to a body that does not arrive
    in time; the document listed 408 for none of them."""
    client = await aiohttp_client(create_app(make_config(body_timeout=0.2)))
    spec = await (await client.get("/api/openapi.json")).json()
    room = await (await client.post("/api/rooms", json={"title": "t"})).json()
    owner = f"Authorization: Bearer {room['ownerToken']}\r\n"
    cases = [
        ("/api/rooms", "", "/api/rooms"),
        (f"/api/rooms/{room['id']}/viewer-tokens", owner, "/api/rooms/{roomId}/viewer-tokens"),
        (f"/api/hooks/srs?secret={HOOK_SECRET}", "", "/api/hooks/srs"),
        (f"/api/hooks/srs/heartbeat/{HOOK_SECRET}", "", "/api/hooks/srs/heartbeat/{secret}"),
    ]
    for target, headers, template in cases:
        assert await _body_never_arrives(client, target, headers) == 408, target
        assert "408" in documented(spec, "post", template), template


async def test_every_database_outage_answer_is_documented(
    tmp_path: Path, aiohttp_client: AiohttpClient
) -> None:
    """A write while the database is unavailable answers 503 ``database_unavailable``; the
    document listed it only for deleting a recording."""
    path = tmp_path / "livehub.db"
    client = await aiohttp_client(create_app(make_config(db_path=str(path))))
    spec = await (await client.get("/api/openapi.json")).json()
    room = await (await client.post("/api/rooms", json={"title": "before"})).json()
    owner = {"Authorization": f"Bearer {room['ownerToken']}"}
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # the write lock, held: every write fails
    try:
        answers = {
            ("post", "/api/rooms"): await client.post("/api/rooms", json={"title": "t"}),
            ("post", "/api/rooms/{roomId}/close"): await client.post(
                f"/api/rooms/{room['id']}/close", headers=owner
            ),
            ("post", "/api/hooks/srs"): await client.post(
                f"/api/hooks/srs?secret={HOOK_SECRET}", json=hook_for(room, "on_publish.json")
            ),
        }
    finally:
        other.execute("ROLLBACK")
        other.close()
    for (method, template), resp in answers.items():
        assert resp.status == 503, template
        assert (await resp.json())["code"] == "database_unavailable"
        assert "503" in documented(spec, method, template), template


# -- pagination bounds ---------------------------------------------------------------------------


@pytest.mark.parametrize("offset", ["9223372036854775807", "99999999999999999999"])
async def test_a_members_offset_past_any_bound_is_a_400_naming_it(
    client: Client, create_room: CreateRoom, offset: str
) -> None:
    """``offset`` had no upper bound: past ``sys.maxsize`` (or near it, with the limit added)
    the page's slice raised, and the owner got a 500 ``internal_error``."""
    room = await create_room()
    ws = await client.ws_connect("/ws")
    await ws.send_json({"type": "join", "roomId": room["id"]})
    assert (await ws.receive_json(timeout=5))["type"] == "joined"
    owner = {"Authorization": f"Bearer {room['ownerToken']}"}
    resp = await client.get(f"/api/rooms/{room['id']}/members?offset={offset}", headers=owner)
    assert resp.status == 400
    body = await resp.json()
    assert (body["code"], list(body["details"])) == ("validation_error", ["offset"])
    # a far offset within the bound is an empty page
    resp = await client.get(
        f"/api/rooms/{room['id']}/members?offset={2**53 - 1}&limit=1000", headers=owner
    )
    assert resp.status == 200 and (await resp.json())["members"] == []


# -- bodies nobody reads -------------------------------------------------------------------------

BIG = 10**9  # a declared Content-Length far over the app's limit (16 KiB)


async def _answer_then_eof(client: Client, head: str, *, body: bytes = b"") -> tuple[bytes, int]:
    """Send ``head`` (and ``body``, part of what it declares); the first answer's status line
    and how many bytes arrived after it before the server closed the connection."""
    server = client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(head.encode() + body)
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), 5)
        # the server closes once it has answered: to the end of the stream, not a lingering
        # read of the 1 GB it was told is coming
        rest = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    return status.rstrip(), len(rest)


@pytest.mark.parametrize(
    "request_line",
    [
        "POST /api/rooms HTTP/1.1",  # refused (413) from its Content-Length
        "GET /api/rooms HTTP/1.1",  # a GET with a body: answered, the body never read
        "POST /api/rooms/nope/close HTTP/1.1",  # refused (404) without reading the body
    ],
)
async def test_an_unread_body_over_the_limit_is_not_drained_after_the_answer(
    client: Client, request_line: str
) -> None:
    """After answering, aiohttp read and dropped a body the handler left unread, for up to
    10 s (lingering), as fast as the client sent it: one request with ``Content-Length: 1e9``
    made the server swallow a gigabyte (1 GB in 2 s on loopback). A body over the app's limit,
    or of unknown length, now closes the connection with the answer."""
    head = (
        f"{request_line}\r\nHost: livehub\r\nContent-Type: application/json\r\n"
        f"Content-Length: {BIG}\r\n\r\n"
    )
    status, _ = await _answer_then_eof(client, head, body=b"x" * 65536)
    assert status.split(b" ")[1] in (b"200", b"404", b"413"), status


async def test_a_chunked_body_nobody_reads_is_not_drained_either(client: Client) -> None:
    head = "GET /api/rooms HTTP/1.1\r\nHost: livehub\r\nTransfer-Encoding: chunked\r\n\r\n10000\r\n"
    status, _ = await _answer_then_eof(client, head, body=b"x" * 65536 + b"\r\n")
    assert status == b"HTTP/1.1 200 OK"


async def test_expect_100_continue_is_refused_before_an_oversized_body(client: Client) -> None:
    """``Expect: 100-continue`` lets a client ask before it sends a body: livehub answered
    ``100 Continue`` to any, then 413 once the body it had invited was on its way."""
    head = (
        "POST /api/rooms HTTP/1.1\r\nHost: livehub\r\nContent-Type: application/json\r\n"
        f"Expect: 100-continue\r\nContent-Length: {BIG}\r\n\r\n"
    )
    status, _ = await _answer_then_eof(client, head)
    assert status == b"HTTP/1.1 413 Request Entity Too Large"
    # a body within the limit is still invited
    server = client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        body = b'{"title": "asked first"}'
        writer.write(
            (
                "POST /api/rooms HTTP/1.1\r\nHost: livehub\r\nContent-Type: application/json\r\n"
                f"Expect: 100-continue\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode()
        )
        assert await asyncio.wait_for(reader.readline(), 5) == b"HTTP/1.1 100 Continue\r\n"
        writer.write(body)
        await reader.readline()  # the blank line after 100 Continue
        assert await asyncio.wait_for(reader.readline(), 5) == b"HTTP/1.1 201 Created\r\n"
    finally:
        writer.close()


async def test_an_unknown_expectation_is_a_417_in_the_error_shape(client: Client) -> None:
    resp = await client.post("/api/rooms", json={"title": "t"}, headers={"Expect": "teapot"})
    assert resp.status == 417
    assert (await resp.json())["code"] == "http_417"
    assert (await (await client.get("/api/rooms")).json()) == []  # nothing was created
