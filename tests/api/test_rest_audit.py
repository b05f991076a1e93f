"""What an adversarial audit of the REST API found (each test failed before its fix): log lines
an attacker could forge through the access log, status codes the handlers answer that the
OpenAPI document did not list, and the durability a 2xx promises."""

from __future__ import annotations

import logging

import pytest
from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpClient

from livehub.__main__ import AccessLogger
from livehub.app import create_app
from tests.conftest import make_config

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
    client = await aiohttp_client(server)
    with caplog.at_level(logging.INFO, logger="aiohttp.access"):
        resp = await client.get(target)
        assert resp.status in (400, 404)
        await resp.read()
    lines = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.isprintable(), line  # no newline, carriage return, escape, NUL, U+2028
    assert "forged" in line or "red" in line or "x" in line  # escaped, not dropped
