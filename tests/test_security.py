"""Secure by default (issue 15): the attacks, replayed against a real livehub.

- a livehub configured with a placeholder secret does not start;
- with ``LIVEHUB_INTERNAL_PORT`` the SRS hooks, the heartbeat and ``/metrics`` are not on the
  public port (a whole ``python -m livehub`` process on two real ports);
- logs show no secret from a URL (access log, DEBUG config dump);
- the SQLite file and its journal are readable by their owner only;
- the console page carries a Content-Security-Policy and frame protection.

The SRS side (API auth, what SRS logs) is in tests/test_srs_security.py, against real SRS.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import unused_port

from livehub.config import Config, ConfigError, is_placeholder, redact_query, redact_url
from tests.conftest import HOOK_SECRET, Client, hook_fixture, make_config
from tests.processes import ROOT, Server

# -- placeholders: refused at start-up, naming the variable --------------------------------------

PLACEHOLDER_SECRETS = [
    "change-me-hook-secret",
    "CHANGE-ME-0123456789abcdef",
    "changeme-but-long-enough-0123",
]


@pytest.mark.parametrize("value", PLACEHOLDER_SECRETS)
@pytest.mark.parametrize("name", ["LIVEHUB_HOOK_SECRET", "LIVEHUB_ADMIN_TOKEN"])
def test_a_placeholder_secret_is_refused_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"^{name} is a placeholder") as refused:
        Config.from_env({name: value})
    assert value not in str(refused.value)


@pytest.mark.parametrize(
    ("name", "url"),
    [
        ("LIVEHUB_SRS_API_URL", "http://livehub:change-me-srs-api-password@srs:1985"),
        ("LIVEHUB_SRS_API_URLS", "a=http://u:password@srs-a:1985,b=http://srs-b:1985"),
        ("LIVEHUB_DATABASE_URL", "postgresql://livehub:PASSWORD@db:5432/livehub"),
        ("LIVEHUB_DATABASE_URL", "postgresql://livehub:pw@db:5432/livehub"),
        ("LIVEHUB_REDIS_URL", "redis://:change-me-redis-password@redis:6379/0"),
    ],
)
def test_a_placeholder_password_in_a_url_is_refused(name: str, url: str) -> None:
    with pytest.raises(ConfigError, match=f"^{name}'s password is a placeholder"):
        Config.from_env({name: url})


def test_a_placeholder_api_key_is_refused() -> None:
    with pytest.raises(ConfigError, match="LIVEHUB_API_KEYS: key 2 is a placeholder"):
        Config.from_env({"LIVEHUB_API_KEYS": "Real-api-key-0123456789,change-me-api-key-0000"})


def test_real_secrets_are_accepted() -> None:
    config = Config.from_env(
        {
            "LIVEHUB_HOOK_SECRET": "q0B8v-Zr2dLx_7Wm5Nk3",
            "LIVEHUB_SRS_API_URL": "http://livehub:q0B8vZr2dLx7Wm5Nk3@srs:1985",
        }
    )
    assert config.hook_secret == "q0B8v-Zr2dLx_7Wm5Nk3"
    assert not is_placeholder("q0B8v-Zr2dLx_7Wm5Nk3")


def test_the_hook_secret_must_be_url_safe() -> None:
    with pytest.raises(ConfigError, match="LIVEHUB_HOOK_SECRET must be URL-safe"):
        Config.from_env({"LIVEHUB_HOOK_SECRET": "sixteen chars/with?and&"})


def run_livehub(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "livehub", "--host", "127.0.0.1", "--port", str(unused_port())],
        env={**os.environ, "LIVEHUB_DB": ":memory:", **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"LIVEHUB_HOOK_SECRET": "change-me-hook-secret"}, "LIVEHUB_HOOK_SECRET"),
        (
            {"LIVEHUB_SRS_API_URL": "http://livehub:change-me-srs-api-password@127.0.0.1:1985"},
            "LIVEHUB_SRS_API_URL",
        ),
    ],
)
def test_livehub_does_not_start_with_a_placeholder(env: dict[str, str], variable: str) -> None:
    proc = run_livehub(env)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr  # one clear line
    assert lines[0].startswith(f"livehub: configuration error: {variable}")
    assert "change-me-srs-api-password" not in proc.stderr
    assert proc.stdout == ""


def test_internal_port_equal_to_the_public_port_is_refused() -> None:
    with pytest.raises(ConfigError, match="LIVEHUB_INTERNAL_PORT=8088 equals LIVEHUB_PORT"):
        Config.from_env({"LIVEHUB_INTERNAL_PORT": "8088"})
    with pytest.raises(ConfigError, match="LIVEHUB_INTERNAL_HOST needs LIVEHUB_INTERNAL_PORT"):
        Config.from_env({"LIVEHUB_INTERNAL_HOST": "127.0.0.1"})


# -- a whole livehub on two ports ----------------------------------------------------------------

API_KEY = "Security-test-api-key-0123456789"


@pytest.fixture
async def two_ports(tmp_path: Path) -> AsyncIterator[tuple[Server, str]]:
    """``python -m livehub`` with LIVEHUB_INTERNAL_PORT, at DEBUG; its internal URL."""
    internal = unused_port()
    umask = os.umask(0o022)  # what a shell gives: new files would be world-readable
    server = Server(
        tmp_path,
        tmp_path / "data" / "livehub.db",
        LIVEHUB_INTERNAL_PORT=str(internal),
        LIVEHUB_INTERNAL_HOST="127.0.0.1",
        LIVEHUB_LOG_LEVEL="DEBUG",
        LIVEHUB_API_KEYS=API_KEY,
    )
    try:
        await server.start()
    finally:
        os.umask(umask)
    try:
        yield server, f"http://127.0.0.1:{internal}"
    finally:
        if server.proc is not None and server.proc.returncode is None:
            server.send(signal.SIGTERM)
            try:
                await server.exit_code()
            finally:
                await server.kill()


#: the headers of a WebSocket upgrade, for a plain HTTP client
UPGRADE = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
}


async def post_json(
    session: aiohttp.ClientSession, url: str, body: dict[str, Any], **kwargs: Any
) -> tuple[int, Any]:
    async with session.post(url, json=body, **kwargs) as resp:
        return resp.status, await resp.json()


async def test_hooks_heartbeat_and_metrics_only_on_the_internal_port(
    two_ports: tuple[Server, str],
) -> None:
    server, internal = two_ports
    public = server.url
    auth = {"Authorization": f"Bearer {API_KEY}"}
    async with aiohttp.ClientSession() as session:
        status, room = await post_json(session, f"{public}/api/rooms", {"title": "t"}, headers=auth)
        assert status == 201
        publish = hook_fixture("on_publish.json")
        publish.update(
            stream=room["streamKey"],
            stream_url=f"/live/{room['streamKey']}",
            param=f"?secret={room['publish']['token']}",
        )
        hook = f"/api/hooks/srs?secret={HOOK_SECRET}"
        heartbeat = f"/api/hooks/srs/heartbeat/{HOOK_SECRET}"
        # the public port: a forged hook with the right secret still finds nothing
        for path, body in ((hook, publish), (heartbeat, hook_fixture("heartbeat.json"))):
            status, reply = await post_json(session, public + path, body)
            assert (status, reply) == (
                404,
                {"error": reply["error"], "code": "not_found", "details": None},
            ), path
        async with session.get(f"{public}/metrics") as resp:
            assert resp.status == 404
        async with session.get(f"{public}/api/rooms/{room['id']}") as resp:
            assert (await resp.json())["status"] == "preparing"  # the hook changed nothing
        # the internal port: SRS's hooks and heartbeat, the scraper
        assert await post_json(session, internal + hook, publish) == (200, {"code": 0})
        status, _ = await post_json(session, internal + heartbeat, hook_fixture("heartbeat.json"))
        assert status == 200
        async with session.get(f"{internal}/metrics") as resp:
            assert resp.status == 200 and "livehub_srs_hooks" in await resp.text()
        async with session.get(f"{public}/api/rooms/{room['id']}") as resp:
            assert (await resp.json())["status"] == "live"
        # and nothing else there
        async with session.get(f"{internal}/api/rooms") as resp:
            assert resp.status == 404
        async with session.get(f"{internal}/") as resp:
            assert resp.status == 404
        # nor a WebSocket: the upgrade is refused before its handshake, in the one error shape
        for path in ("/ws", "/"):
            async with session.get(f"{internal}{path}", headers=UPGRADE) as resp:
                assert (resp.status, (await resp.json())["code"]) == (404, "not_found"), path
        for base in (public, internal):
            async with session.get(f"{base}/healthz") as resp:
                assert resp.status == 200
        # readiness on both; why SRS cannot be reached (its internal address) only here
        async with session.get(f"{internal}/readyz") as resp:
            assert resp.status == 503
            error = (await resp.json())["checks"]["srs_api_error"]
            assert "127.0.0.1:9" in error
        async with session.get(f"{public}/readyz") as resp:
            assert resp.status == 503
            assert await resp.json() == {
                "status": "not_ready",
                "checks": {"database": "ok", "srs_api": "unreachable", "reconcile": "skipped"},
            }
        # an unsigned heartbeat is refused on the internal port too
        status, reply = await post_json(
            session, f"{internal}/api/hooks/srs/heartbeat", hook_fixture("heartbeat.json")
        )
        assert (status, reply["code"]) == (403, "bad_hook_secret")

    server.send(signal.SIGTERM)
    assert await server.exit_code() == 0
    logged = server.text()
    # the access log shows the requests, never the secrets in their URLs
    assert "/api/hooks/srs?secret=***" in logged
    assert "/api/hooks/srs/heartbeat/***" in logged
    for secret in (HOOK_SECRET, room["publish"]["token"], room["ownerToken"], API_KEY):
        assert secret not in logged
    # the DEBUG config dump is there, without the API keys' hashes
    assert "config: {" in logged
    assert hashlib.sha256(API_KEY.encode()).hexdigest() not in logged
    assert "api_key_hashes" not in logged and "webhook_secrets" not in logged
    # the database and its journal: the owner's only, although the umask allowed more
    data = server.db.parent
    files = [file for file in data.iterdir() if file.name.startswith("livehub.db")]
    assert server.db in files
    for file in files:
        assert stat.S_IMODE(file.stat().st_mode) == 0o600, file


async def test_an_existing_world_readable_database_is_made_private(tmp_path: Path) -> None:
    db = tmp_path / "livehub.db"
    db.touch(mode=0o644)
    db.chmod(0o644)
    server = Server(tmp_path, db)
    await server.start()
    try:
        assert stat.S_IMODE(db.stat().st_mode) == 0o600
        assert "was readable by others" in server.text()
    finally:
        server.send(signal.SIGTERM)
        assert await server.exit_code() == 0


# -- what logs show of a URL ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://srs:1985/api?start=0&count=10", "http://srs:1985/api?start=0&count=10"),
        (
            "http://u:p@h/x?password=a&secret=b&token=c&apiKey=d&count=1",
            "http://u:***@h/x?password=***&secret=***&token=***&apiKey=***&count=1",
        ),
        ("redis://:pw0123@redis:6379/0", "redis://:***@redis:6379/0"),
        ("rtmp://h/live/s?secret=tok&x", "rtmp://h/live/s?secret=***&x"),
    ],
)
def test_logged_urls_hide_passwords_and_secrets(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_query_redaction_keeps_order_and_other_values() -> None:
    assert redact_query("a=1&Secret=2&b=&pass%77ord=3") == "a=1&Secret=***&b=&pass%77ord=***"


# -- the console page ----------------------------------------------------------------------------


async def test_the_console_serves_csp_and_frame_protection(aiohttp_client: Any) -> None:
    config = make_config(public_host="media.example.org", srs_api_port=1985, srs_http_port=8080)
    from livehub.app import create_app

    client: Client = await aiohttp_client(create_app(config))
    resp = await client.get("/")
    assert resp.status == 200 and resp.content_type == "text/html"
    csp = {
        part.split()[0]: part.split()[1:]
        for part in resp.headers["Content-Security-Policy"].split("; ")
    }
    assert csp["default-src"] == ["'self'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["script-src"] == ["'self'"] and csp["object-src"] == ["'none'"]
    srs = ["http://media.example.org:1985", "http://media.example.org:8080"]
    assert set(srs) <= set(csp["connect-src"]) and set(srs) <= set(csp["media-src"])
    assert "'unsafe-inline'" not in resp.headers["Content-Security-Policy"]
    # no HTML from strings at all (the console has no innerHTML): Trusted Types, no policy
    assert csp["require-trusted-types-for"] == ["'script'"] and csp["trusted-types"] == ["'none'"]
    assert resp.headers["Cross-Origin-Opener-Policy"] == "same-origin"
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Referrer-Policy"] == "no-referrer"
    # the page has no inline script or style the policy would block
    page = await resp.text()
    assert "<script>" not in page and "<style" not in page and " style=" not in page
    for path in ("/static/app.js", "/api/rooms"):
        resp = await client.get(path)
        assert resp.status == 200
        assert resp.headers["X-Content-Type-Options"] == "nosniff", path
    # a WebSocket's upgrade has no body: its 101 goes without them (they would stay in memory
    # with every open socket)
    async with client.get("/ws", headers=UPGRADE) as resp:
        assert resp.status == 101
        assert "X-Content-Type-Options" not in resp.headers


async def test_the_console_page_under_static_is_as_protected_as_at_the_root(
    aiohttp_client: Any,
) -> None:
    """``/static/index.html`` is the same page as ``/`` (its scripts are absolute paths, so it
    runs whole there, rooms, owner tokens and all). It went out with neither the policy nor
    X-Frame-Options: any site could frame it and clickjack a room's owner into "Close room".
    Every response now refuses framing, and every HTML page gets the console's policy."""
    from livehub.app import create_app

    client: Client = await aiohttp_client(create_app(make_config()))
    root = await client.get("/")
    page = await client.get("/static/index.html")
    assert page.status == 200 and page.content_type == "text/html"
    assert page.headers.get("Content-Security-Policy") == root.headers["Content-Security-Policy"]
    assert page.headers.get("X-Frame-Options") == "DENY"
    for path in ("/static/app.js", "/sdk/livehub-client.js", "/api/rooms", "/static/nope"):
        resp = await client.get(path)
        assert resp.headers.get("X-Frame-Options") == "DENY", path
        assert resp.headers["X-Content-Type-Options"] == "nosniff", path
        assert resp.headers["Referrer-Policy"] == "no-referrer", path
    # a script keeps no page policy of its own: a module worker made from the SDK would run
    # under it (its fetch and WebSocket refused by a policy meant for the page)
    sdk = await client.get("/sdk/livehub-client.js")
    assert "Content-Security-Policy" not in sdk.headers


async def test_the_sdk_the_console_imports_is_served_to_module_imports(aiohttp_client: Any) -> None:
    """The console imports /sdk/livehub-client.js as a module: the browser sends an Origin
    (its own, or any frontend's); the file comes with `Access-Control-Allow-Origin: *`."""
    from livehub.app import create_app

    client: Client = await aiohttp_client(create_app(make_config()))
    for origin in (None, "http://127.0.0.1:8088", "https://app.example.com"):
        headers = {"Origin": origin} if origin else {}
        resp = await client.get("/sdk/livehub-client.js", headers=headers)
        assert resp.status == 200, origin
        assert resp.content_type == "text/javascript"
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        assert "export class Livehub" in await resp.text()


def test_the_documented_webhook_secret_is_refused() -> None:
    """docs/webhooks.md prints a valid signing secret for its example request."""
    example = re.search(r"`(whsec_[A-Za-z0-9+/=]+)`", (ROOT / "docs" / "webhooks.md").read_text())
    assert example is not None
    with pytest.raises(ConfigError, match="LIVEHUB_WEBHOOK_SECRET: secret 1 is a placeholder"):
        Config.from_env({"LIVEHUB_WEBHOOK_SECRET": example[1]})
