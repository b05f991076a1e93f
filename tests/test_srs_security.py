"""SRS's side of secure by default, against the real SRS 5 and 6 of ``shared/srs/``, started from
the repository's own ``srs.conf`` (only its ports and paths rewritten for loopback) with the
environment ``docker-compose.yml`` gives it, and a whole livehub process behind it:

- SRS's HTTP API refuses its client list without credentials, answers with them;
- livehub, given the credentials in LIVEHUB_SRS_API_URL, reconciles and kicks through it;
- SRS posts its hooks and its signed heartbeat to livehub's internal port;
- after a real RTMP publish (ffmpeg) and a kick, SRS's log at the shipped level holds neither
  the hook secret, nor the publish token, nor the API password.

Skipped with a reason where SRS or ffmpeg is missing.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import shutil
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import unused_port
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import HOOK_SECRET, SHARED
from tests.deploy_files import HOOKS, REPO, SHELL, parse_srs_conf, service_env
from tests.processes import Server

SRS_VERSIONS = ("srs-5.0", "srs-6.0")
API_USER = SHELL["SRS_API_USERNAME"]
API_PASSWORD = SHELL["SRS_API_PASSWORD"]
FFMPEG = shutil.which("ffmpeg")


def srs_binary(version: str) -> Path:
    binary = SHARED / "srs" / version
    if not (binary.exists() and os.access(binary, os.X_OK)):
        pytest.skip(f"real SRS {binary} is not available")
    return binary


def rewrite(text: str, old: str, new: str) -> str:
    """Replace ``old`` (a regex) exactly once: srs.conf changing shape fails here, loudly."""
    result, count = re.subn(old, new, text, flags=re.M)
    assert count == 1, f"srs.conf: {old!r} found {count} times"
    return result


@dataclass(frozen=True)
class Ports:
    rtmp: int
    api: int
    http: int
    rtc: int
    srt: int


def loopback_conf(tmp: Path, ports: Ports) -> str:
    """The repository's srs.conf on loopback ports, logging to a file of ``tmp``; everything
    else, the log level and the API auth included, as shipped."""
    text = (REPO / "srs.conf").read_text()
    text = rewrite(text, r"^listen\s+1935;", f"listen 127.0.0.1:{ports.rtmp};")
    text = rewrite(
        text,
        r"^srs_log_tank\s+console;",
        f"srs_log_tank file;\nsrs_log_file {tmp}/srs.log;\npid {tmp}/srs.pid;\n"
        "query_latest_version off;",
    )
    text = rewrite(text, r"^(\s+)listen\s+1985;", rf"\g<1>listen 127.0.0.1:{ports.api};")
    text = rewrite(text, r"^(\s+)listen\s+8080;", rf"\g<1>listen 127.0.0.1:{ports.http};")
    text = rewrite(text, r"^(\s+)dir\s+\./objs/nginx/html;", rf"\g<1>dir {tmp}/html;")
    text = rewrite(text, r"^(\s+)listen\s+8000;", rf"\g<1>listen {ports.rtc};")
    text = rewrite(text, r"^(\s+)listen\s+10080;", rf"\g<1>listen {ports.srt};")
    (tmp / "recordings").mkdir(exist_ok=True)  # DVR writes here (srs.conf: /recordings)
    text = rewrite(text, r"^(\s+dvr_path\s+)/recordings/", rf"\g<1>{tmp}/recordings/")
    return rewrite(text, r"^(\s+)interval\s+10;", r"\g<1>interval 1;")  # heartbeat: every second


def srs_environment(internal: int) -> dict[str, str]:
    """What compose gives SRS (docker-compose.yml), pointed at livehub's internal port here."""
    compose = service_env("srs")
    env = {"CANDIDATE": "127.0.0.1"}
    for name in [f"SRS_VHOST_HTTP_HOOKS_{hook.upper()}" for hook in HOOKS] + ["SRS_HEARTBEAT_URL"]:
        env[name] = compose[name].replace("http://livehub:8089/", f"http://127.0.0.1:{internal}/")
    env["SRS_HTTP_API_AUTH_USERNAME"] = compose["SRS_HTTP_API_AUTH_USERNAME"]
    env["SRS_HTTP_API_AUTH_PASSWORD"] = compose["SRS_HTTP_API_AUTH_PASSWORD"]
    assert HOOK_SECRET not in compose["SRS_HEARTBEAT_URL"]  # the test's own secret, below
    for name, value in env.items():
        env[name] = value.replace(SHELL["LIVEHUB_HOOK_SECRET"], HOOK_SECRET)
    return env


async def poll(check: Callable[[], Awaitable[bool]], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, f"{what}: not within {within} s"
        await asyncio.sleep(0.1)


@dataclass
class Stack:
    srs: asyncio.subprocess.Process
    livehub: Server
    ports: Ports
    internal: str
    log: Path

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.ports.api}"

    def srs_log(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@pytest.fixture(params=SRS_VERSIONS)
async def stack(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stack]:
    binary = srs_binary(request.param)
    (tmp_path / "html").mkdir()
    ports = Ports(*(unused_port() for _ in range(5)))
    internal = unused_port()
    livehub = Server(
        tmp_path,
        tmp_path / "livehub.db",
        LIVEHUB_INTERNAL_PORT=str(internal),
        LIVEHUB_RECORDINGS_DIR=str(tmp_path / "recordings"),
        LIVEHUB_SRS_API_URL=f"http://{API_USER}:{API_PASSWORD}@127.0.0.1:{ports.api}",
        LIVEHUB_RECONCILE_INTERVAL="1",
        LIVEHUB_RECONNECT_WINDOW="0",
        LIVEHUB_PUBLIC_HOST="127.0.0.1",
        LIVEHUB_RTMP_PORT=str(ports.rtmp),
        LIVEHUB_SRS_API_PORT=str(ports.api),
        LIVEHUB_SRS_HTTP_PORT=str(ports.http),
    )
    await livehub.start()
    try:
        async with running_srs(binary, tmp_path, ports, srs_environment(internal)) as srs:
            yield Stack(srs, livehub, ports, f"http://127.0.0.1:{internal}", tmp_path / "srs.log")
    finally:
        livehub.send(signal.SIGTERM)
        try:
            await livehub.exit_code()
        finally:
            await livehub.kill()


@contextlib.asynccontextmanager
async def running_srs(
    binary: Path, tmp: Path, ports: Ports, env: dict[str, str]
) -> AsyncIterator[asyncio.subprocess.Process]:
    """SRS on the loopback srs.conf, with ``env`` over this process's environment (the
    ``SRS_*`` overrides); once its API answers (401: it asks for credentials)."""
    conf = tmp / "srs.conf"
    conf.write_text(loopback_conf(tmp, ports))
    clean = {key: value for key, value in os.environ.items() if not key.startswith("SRS_")}
    with (tmp / "srs.out").open("wb") as out:
        srs = await asyncio.create_subprocess_exec(
            str(binary), "-c", str(conf), cwd=tmp, env={**clean, **env}, stdout=out, stderr=out
        )

    async def api_up() -> bool:
        assert srs.returncode is None, (tmp / "srs.out").read_text()
        async with aiohttp.ClientSession() as session:
            try:
                async with session.get(f"http://127.0.0.1:{ports.api}/api/v1/versions") as resp:
                    return resp.status == 401
            except aiohttp.ClientConnectionError:
                return False

    try:
        await poll(api_up, 15, "SRS's HTTP API")
        yield srs
    finally:
        if srs.returncode is None:
            srs.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(srs.wait(), 10)
            except TimeoutError:
                srs.kill()
                await srs.wait()


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": aiohttp.encode_basic_auth(user, password)}


async def get_json(
    session: aiohttp.ClientSession, url: str, **kwargs: Any
) -> tuple[int, dict[str, Any]]:
    async with session.get(url, **kwargs) as resp:
        body = await resp.json(content_type=None) if resp.status == 200 else {}
        return resp.status, body


async def test_srs_api_refuses_the_client_list_without_credentials(stack: Stack) -> None:
    credentials = basic(API_USER, API_PASSWORD)
    async with aiohttp.ClientSession() as session:
        for path in ("/api/v1/clients/", "/api/v1/streams/", "/api/v1/versions"):
            status, _ = await get_json(session, stack.api + path)
            assert status == 401, path
            status, _ = await get_json(
                session, stack.api + path, headers=basic(API_USER, "wrong-password")
            )
            assert status == 401, path
            status, body = await get_json(session, stack.api + path, headers=credentials)
            assert status == 200 and body["code"] == 0, (path, body)
        # no DELETE of a client without them either
        async with session.delete(f"{stack.api}/api/v1/clients/anyone00") as resp:
            assert resp.status == 401


@pytest.mark.parametrize("version", SRS_VERSIONS)
async def test_srs_conf_alone_lets_nobody_into_the_api(version: str, tmp_path: Path) -> None:
    """Run without compose's SRS_HTTP_API_AUTH_* (someone using srs.conf by itself): the API
    stays shut. Its user name holds a ':', which no Basic credentials can carry."""
    binary = srs_binary(version)
    (tmp_path / "html").mkdir()
    ports = Ports(*(unused_port() for _ in range(5)))
    auth = parse_srs_conf((REPO / "srs.conf").read_text()).one("http_api").one("auth")
    conf_user, conf_password = auth.value("username"), auth.value("password")
    literal = base64.b64encode(f"{conf_user}:{conf_password}".encode()).decode()
    attempts: list[dict[str, str]] = [
        {},
        basic("", ""),
        basic("admin", "admin"),
        {"Authorization": f"Basic {literal}"},
    ]
    async with (
        running_srs(binary, tmp_path, ports, {"CANDIDATE": "127.0.0.1"}),
        aiohttp.ClientSession() as session,
    ):
        for headers in attempts:
            url = f"http://127.0.0.1:{ports.api}/api/v1/clients/"
            status, _ = await get_json(session, url, headers=headers)
            assert status == 401, headers


async def metric(session: aiohttp.ClientSession, base: str, name: str, **labels: str) -> float:
    async with session.get(f"{base}/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


@pytest.mark.skipif(FFMPEG is None, reason="ffmpeg is not installed (apt-get install ffmpeg)")
async def test_publish_reconcile_kick_through_the_authenticated_api_and_a_quiet_log(
    stack: Stack,
) -> None:
    assert FFMPEG is not None
    public = stack.livehub.url
    credentials = basic(API_USER, API_PASSWORD)
    async with aiohttp.ClientSession() as session:
        # SRS's signed heartbeat reaches livehub's internal port (SRS_HEARTBEAT_URL)
        async def heartbeats() -> bool:
            labels = {"action": "heartbeat", "result": "accepted"}
            return await metric(session, stack.internal, "livehub_srs_hooks_total", **labels) >= 1

        await poll(heartbeats, 10, "a signed heartbeat from SRS")

        # livehub asks SRS's API with the credentials of its URL: ready, reconciled
        async def ready() -> bool:
            status, body = await get_json(session, f"{public}/readyz")
            return status == 200 and body["checks"]["reconcile"] == "ok"

        await poll(ready, 10, "livehub ready and reconciled through SRS's API")

        async with session.post(f"{public}/api/rooms", json={"title": "srs"}) as resp:
            assert resp.status == 201
            room = await resp.json()
        token, owner = room["publish"]["token"], room["ownerToken"]
        rtmp = room["publish"]["rtmpUrl"]
        assert (
            rtmp == f"rtmp://127.0.0.1:{stack.ports.rtmp}/live/{room['streamKey']}?secret={token}"
        )
        ffmpeg = await asyncio.create_subprocess_exec(
            FFMPEG,
            *("-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi"),
            *("-i", "testsrc=size=160x120:rate=10", "-t", "60"),
            *("-c:v", "libx264", "-preset", "ultrafast", "-g", "10", "-f", "flv", rtmp),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:

            async def live() -> bool:
                assert ffmpeg.returncode is None, "ffmpeg stopped: the publish was refused"
                _, body = await get_json(session, f"{public}/api/rooms/{room['id']}")
                return bool(body["status"] == "live")

            await poll(live, 15, "the room live after an RTMP publish")

            async def publishing() -> bool:
                _, body = await get_json(
                    session, f"{stack.api}/api/v1/streams/", headers=credentials
                )
                return any(
                    s["name"] == room["streamKey"] and s["publish"]["active"]
                    for s in body["streams"]
                )

            await poll(publishing, 10, "SRS lists the publisher")
            # a reconciliation pass with the publisher listed keeps the room live
            reconciles = await metric(
                session, stack.internal, "livehub_srs_reconciles_total", result="ok"
            )

            async def reconciled_again() -> bool:
                now = await metric(
                    session, stack.internal, "livehub_srs_reconciles_total", result="ok"
                )
                return now > reconciles

            await poll(reconciled_again, 10, "a reconciliation pass while publishing")
            _, body = await get_json(session, f"{public}/api/rooms/{room['id']}")
            assert body["status"] == "live"

            # closing the room kicks the publisher through the authenticated API
            headers = {"Authorization": f"Bearer {owner}"}
            async with session.post(
                f"{public}/api/rooms/{room['id']}/close", headers=headers
            ) as resp:
                assert resp.status == 200
            await asyncio.wait_for(ffmpeg.wait(), 15)  # SRS dropped it

            async def gone() -> bool:
                return not await publishing()

            await poll(gone, 10, "SRS no longer lists the publisher")
        finally:
            if ffmpeg.returncode is None:
                ffmpeg.kill()
                await ffmpeg.wait()

    await asyncio.sleep(1.5)  # a heartbeat more, and SRS's last lines written
    srs_log = stack.srs_log()
    assert "[INFO]" not in srs_log  # the shipped level (warn): SRS's trace lines are off
    for secret in (HOOK_SECRET, token, owner, API_PASSWORD):
        assert secret not in srs_log, "SRS logged a secret at the shipped log level"
    livehub_log = stack.livehub.text()
    assert "kicked SRS client" in livehub_log
    for secret in (HOOK_SECRET, token, owner, API_PASSWORD):
        assert secret not in livehub_log
