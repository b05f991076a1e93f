"""The real entry point: ``python -m livehub`` as an operator runs it, and what it logs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import make_mocked_request, unused_port

from livehub.__main__ import _malformed_requests_at_info, load_config, loggable_target
from livehub.config import Config, ConfigError, redact_url
from tests.conftest import hook_fixture

SECRET = "cli-hook-secret-abcdefghijklmnop"


def test_config_from_env_and_flags() -> None:
    config = load_config(
        ["--port", "9001", "--db", ":memory:"],
        env={
            "LIVEHUB_PORT": "9000",
            "LIVEHUB_RECONNECT_WINDOW": "5",
            "LIVEHUB_HOOK_SECRET": SECRET,
        },
    )
    assert config.port == 9001
    assert config.db_path == ":memory:"
    assert config.reconnect_window == 5.0
    assert config.hook_secret == SECRET and config.hook_secret_set


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LIVEHUB_PORT", "eighty"),
        ("LIVEHUB_PORT", "70000"),
        ("LIVEHUB_RECONNECT_WINDOW", "-1"),
        ("LIVEHUB_SRS_API_URL", "srs:1985"),
        ("LIVEHUB_HOOK_SECRET", "short"),
        ("LIVEHUB_LOG_LEVEL", "LOUD"),
        ("LIVEHUB_CORS_ORIGINS", " , "),
        ("LIVEHUB_RATE_PER_S", "-1"),
        ("LIVEHUB_CHAT_RATE_PER_S", "fast"),
        ("LIVEHUB_CHAT_RATE_BURST", "0"),
        ("LIVEHUB_PRESENCE_LIMIT", "0"),
        # a duration or rate that never ends overflows the timers that use it
        ("LIVEHUB_RECONNECT_WINDOW", "inf"),
        ("LIVEHUB_HEARTBEAT", "Infinity"),
        ("LIVEHUB_RATE_PER_S", "nan"),
        # the examples' keys (.env.example): anyone could sign with them
        ("LIVEHUB_VIEWER_TOKEN_SECRET", "change-me-viewer-token-secret-of-32-bytes-or-more"),
        ("LIVEHUB_CLUSTER_KEY", "change-me-cluster-key-of-32-characters-or-more"),
        ("LIVEHUB_DB_SYNC", "off"),
        ("LIVEHUB_DB_SYNC", "extra"),
    ],
)
def test_bad_config_names_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Config.from_env({name: value})


def test_rate_limits_default_and_turn_off() -> None:
    defaults = Config.from_env({})
    assert (defaults.rate_per_s, defaults.rate_burst) == (50.0, 200)
    assert (defaults.chat_rate_per_s, defaults.chat_rate_burst) == (2.0, 5)
    assert defaults.presence_limit == 100
    off = Config.from_env({"LIVEHUB_RATE_PER_S": "0", "LIVEHUB_CHAT_RATE_PER_S": "0"})
    assert (off.rate_per_s, off.chat_rate_per_s) == (0.0, 0.0)


def test_db_sync_is_full_unless_normal_is_asked_for() -> None:
    """Embedded mode fsyncs every accepted change by default (it survives a power loss);
    ``normal`` is the operator's explicit choice of throughput over that."""
    assert Config.from_env({}).db_sync == "full"
    assert Config.from_env({"LIVEHUB_DB_SYNC": "normal"}).db_sync == "normal"
    assert Config.from_env({"LIVEHUB_DB_SYNC": " FULL "}).db_sync == "full"


def test_unset_hook_secret_is_random_and_unset() -> None:
    one, two = Config.from_env({}), Config.from_env({})
    assert not one.hook_secret_set
    assert one.hook_secret != two.hook_secret and len(one.hook_secret) >= 32


def test_bad_config_exits_2_with_message() -> None:
    env = {**os.environ, "LIVEHUB_PORT": "nope"}
    proc = subprocess.run(
        [sys.executable, "-m", "livehub"], env=env, capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 2
    assert "LIVEHUB_PORT" in proc.stderr


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[tuple[str, Path]]:
    async with serving(tmp_path) as started:
        yield started


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, **settings: str) -> AsyncIterator[tuple[str, Path]]:
    """``python -m livehub`` at DEBUG with ``settings`` over the tests' ones: its base URL and
    its log file."""
    port = unused_port()
    log_path = tmp_path / "livehub.log"
    env = {
        **os.environ,
        "LIVEHUB_HOOK_SECRET": SECRET,
        "LIVEHUB_DB": str(tmp_path / "livehub.db"),
        "LIVEHUB_SRS_API_URL": "http://127.0.0.1:9",
        "LIVEHUB_RECONNECT_WINDOW": "0",
        "LIVEHUB_LOG_LEVEL": "DEBUG",
        **settings,
    }
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "livehub", "--host", "127.0.0.1", "--port", str(port)),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            async with aiohttp.ClientSession() as session:
                for _ in range(100):
                    try:
                        async with session.get(f"{base}/healthz") as resp:
                            if resp.status == 200:
                                break
                    except aiohttp.ClientConnectionError:
                        await asyncio.sleep(0.1)
                else:
                    raise AssertionError(log_path.read_text())
            yield base, log_path
        finally:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), timeout=15)


async def published_room(
    session: aiohttp.ClientSession, base: str, hook_secret: str
) -> dict[str, Any]:
    """A new room whose stream SRS's on_publish (sent with ``hook_secret``) made live."""
    async with session.post(f"{base}/api/rooms", json={"title": "cli"}) as resp:
        assert resp.status == 201
        room: dict[str, Any] = await resp.json()
    body = hook_fixture("on_publish.json")
    body.update(
        stream=room["streamKey"],
        stream_url=f"/live/{room['streamKey']}",
        param=f"?secret={room['publish']['token']}",
    )
    async with session.post(f"{base}/api/hooks/srs?secret={hook_secret}", json=body) as resp:
        assert await resp.json() == {"code": 0}
    return room


async def test_full_flow_keeps_secrets_out_of_logs(server: tuple[str, Path]) -> None:
    base, log_path = server
    async with aiohttp.ClientSession() as session:
        room = await published_room(session, base, SECRET)
        token, owner = room["publish"]["token"], room["ownerToken"]
        async with session.ws_connect(f"{base}/ws") as ws:
            await ws.send_json(
                {"type": "join", "roomId": room["id"], "role": "host", "token": owner}
            )
            joined = json.loads((await ws.receive(timeout=5)).data)
            assert joined["type"] == "joined" and joined["role"] == "host"
            assert token not in json.dumps(joined) and owner not in json.dumps(joined)
        headers = {"Authorization": f"Bearer {owner}"}
        async with session.get(f"{base}/api/rooms/{room['id']}", headers=headers) as resp:
            assert (await resp.json())["publish"]["token"] == token
        # a guest on stage (its publish token) and a private room's viewer token
        async with session.ws_connect(f"{base}/ws") as host, session.ws_connect(f"{base}/ws") as ws:
            await host.send_json(
                {"type": "join", "roomId": room["id"], "role": "host", "token": owner}
            )
            await ws.send_json({"type": "join", "roomId": room["id"], "name": "gus"})
            guest_id = ""
            async for msg in ws:
                event = json.loads(msg.data)
                if event["type"] == "joined":
                    guest_id = event["peerId"]
                    await host.send_json(
                        {"type": "stage-invite", "roomId": room["id"], "to": guest_id}
                    )
                elif event["type"] == "stage-invite":
                    await ws.send_json({"type": "stage-accept", "roomId": room["id"]})
                elif event["type"] == "stage-credentials":
                    guest_token = event["publish"]["token"]
                    break
        async with session.post(
            f"{base}/api/rooms", json={"title": "private", "visibility": "private"}
        ) as resp:
            private = await resp.json()
        private_owner = {"Authorization": f"Bearer {private['ownerToken']}"}
        async with session.post(
            f"{base}/api/rooms/{private['id']}/viewer-tokens", headers=private_owner
        ) as resp:
            viewer_token = (await resp.json())["token"]
        async with session.get(f"{base}/api/rooms/{private['id']}?token={viewer_token}") as resp:
            assert resp.status == 200
        async with session.post(f"{base}/api/rooms/{room['id']}/close", headers=headers) as resp:
            assert (await resp.json())["room"]["status"] == "ended"
    await asyncio.sleep(0.2)  # let the access log line of the last request be written
    logged = log_path.read_text()
    assert "POST /api/hooks/srs" in logged  # the access log is on…
    assert "/api/rooms" in logged and "on_publish" in logged
    assert "LIVEHUB_VIEWER_TOKEN_SECRET is not set" in logged  # a random key: said once
    for secret in (SECRET, token, owner, guest_token, viewer_token, private["ownerToken"]):
        assert secret not in logged  # …but no secret is in it


async def test_rotated_secrets_work_and_stay_out_of_the_logs(tmp_path: Path) -> None:
    """``new,old``: start-up says how many values a setting has (never which), a hook with the
    old secret is accepted, and none of the values is ever logged (the DEBUG config dump too)."""
    old_hook, viewer_new, viewer_old = "old-hook-secret-0123456789", "v" * 40, "w" * 40
    rotated = {
        "LIVEHUB_HOOK_SECRET": f"{SECRET},{old_hook}",
        "LIVEHUB_VIEWER_TOKEN_SECRET": f"{viewer_new},{viewer_old}",
    }
    async with serving(tmp_path, **rotated) as (base, log_path):
        async with aiohttp.ClientSession() as session:
            await published_room(session, base, old_hook)
        await asyncio.sleep(0.2)  # let the access log line of the last request be written
    logged = log_path.read_text()
    assert "LIVEHUB_HOOK_SECRET: 2 values (a rotation)" in logged
    assert "LIVEHUB_VIEWER_TOKEN_SECRET: 2 values (a rotation)" in logged
    assert "config: {" in logged and "POST /api/hooks/srs?secret=***" in logged
    for secret in (SECRET, old_hook, viewer_new, viewer_old):
        assert secret not in logged


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://srs:1985", "http://srs:1985"),
        ("http://livehub:s3cret@srs:1985/", "http://livehub:***@srs:1985/"),
        ("https://u:p@example.com", "https://u:***@example.com"),
    ],
)
def test_srs_api_password_is_redacted_for_logs(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_malformed_requests_are_logged_at_info() -> None:
    from aiohttp.http_exceptions import BadHttpMessage

    try:
        raise BadHttpMessage("Invalid header value char")
    except BadHttpMessage:
        bad = logging.LogRecord("aiohttp.server", logging.ERROR, "", 0, "Error", (), sys.exc_info())
    try:
        raise RuntimeError("a real bug")
    except RuntimeError:
        bug = logging.LogRecord("aiohttp.server", logging.ERROR, "", 0, "Error", (), sys.exc_info())
    assert _malformed_requests_at_info(bad) and _malformed_requests_at_info(bug)
    assert (bad.levelno, bad.exc_info) == (logging.INFO, None)
    assert bug.levelno == logging.ERROR and bug.exc_info is not None


async def test_listening_is_logged_once_the_port_answers(server: tuple[str, Path]) -> None:
    """Issue 20 item 3: "listening on" is logged after the port is bound, once."""
    base, log_path = server
    logged = log_path.read_text()
    assert logged.count(f"listening on {base}") == 1, logged
    assert "Traceback" not in logged


def test_a_taken_port_is_one_line_and_a_failed_exit(tmp_path: Path) -> None:
    """Issue 20 item 3: the port is busy: one line naming host:port, no traceback, no
    "listening on" (logged only once bound), exit code 1."""
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {
            **os.environ,
            "LIVEHUB_HOOK_SECRET": SECRET,
            "LIVEHUB_DB": str(tmp_path / "livehub.db"),
            "LIVEHUB_SRS_API_URL": "http://127.0.0.1:9",
            "LIVEHUB_RECONCILE_INTERVAL": "0",
        }
        proc = subprocess.run(
            [sys.executable, "-m", "livehub", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 1, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1, proc.stderr
    assert f"127.0.0.1:{port} is taken by another process" in errors[0]
    assert "Traceback" not in proc.stderr and "listening on" not in proc.stderr
    # the last line is the one an operator reads
    assert proc.stderr.strip().splitlines()[-1] == errors[0]


def test_the_collector_is_settled_for_a_server() -> None:
    """After start-up ``serve`` freezes what start-up made and sets the server's thresholds."""
    import gc

    from livehub.__main__ import (
        FULL_COLLECTION_EVERY,
        MIDDLE_COLLECTION_EVERY,
        YOUNG_COLLECTION_EVERY,
        settle_garbage_collection,
    )

    before = gc.get_threshold()
    try:
        settle_garbage_collection()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (
            YOUNG_COLLECTION_EVERY,
            MIDDLE_COLLECTION_EVERY,
            FULL_COLLECTION_EVERY,
        )
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


#: ``python -m livehub`` as a non-root user opening a read-only (0444) database file: the
#: kernel's EACCES (the tests run as root, which no file mode stops)
_READ_ONLY_DB = """
import errno, os
real = os.open
def refuse(path, flags, *args, **kwargs):
    if str(path).endswith("read-only.db") and flags & (os.O_RDWR | os.O_WRONLY):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))
    return real(path, flags, *args, **kwargs)
os.open = refuse
from livehub.__main__ import main
main()
"""


def _start_fails(env: dict[str, str], code: str | None = None) -> str:
    """Start livehub with ``env`` (on a free port): it must exit 1 with one ERROR line, the
    last one, and no traceback. That line."""
    argv = [sys.executable, "-m", "livehub"] if code is None else [sys.executable, "-c", code]
    proc = subprocess.run(
        [*argv, "--port", str(unused_port())],
        env={
            **os.environ,
            "LIVEHUB_HOOK_SECRET": SECRET,
            "LIVEHUB_SRS_API_URL": "http://127.0.0.1:9",
            "LIVEHUB_RECONCILE_INTERVAL": "0",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and proc.stderr.strip().splitlines()[-1] == errors[0], proc.stderr
    return errors[0]


def test_a_database_that_cannot_be_opened_is_named_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "a-directory.db").mkdir()
    error = _start_fails({"LIVEHUB_DB": str(tmp_path / "a-directory.db")})
    assert "cannot open the database LIVEHUB_DB=" in error and "a-directory.db" in error


def test_a_read_only_database_file_is_not_taken_for_a_port_that_needs_privileges(
    tmp_path: Path,
) -> None:
    error = _start_fails({"LIVEHUB_DB": str(tmp_path / "read-only.db")}, code=_READ_ONLY_DB)
    assert "cannot open the database LIVEHUB_DB=" in error and "Permission denied" in error
    assert "port" not in error


def test_a_host_that_does_not_resolve_is_named(tmp_path: Path) -> None:
    error = _start_fails(
        {"LIVEHUB_DB": str(tmp_path / "livehub.db"), "LIVEHUB_HOST": "no-such-host.invalid"}
    )
    assert "no-such-host.invalid does not resolve (LIVEHUB_HOST, --host)" in error


@pytest.mark.parametrize(
    "path",
    [
        "/api/hooks/srs/heartbeat/{secret}",
        "//api/hooks/srs/heartbeat/{secret}",  # srs.conf's base URL ends in '/'
        "/livehub/api/hooks/srs/heartbeat/{secret}",  # a proxy prefix that is not stripped
        "/api/hooks/srs//heartbeat/{secret}",
        "/api/hooks/srs/heartbeat//{secret}/more",
    ],
)
def test_the_access_log_masks_the_heartbeat_secret_in_any_such_path(path: str) -> None:
    """The secret of a signed heartbeat is masked wherever the path puts it (a misconfigured
    SRS or proxy gets a 404, which is logged at INFO all the same)."""
    request = make_mocked_request("POST", path.format(secret=SECRET) + "?x=1")
    shown = loggable_target(request)
    assert SECRET not in shown and "heartbeat/" in shown and shown.endswith("***?x=1")
