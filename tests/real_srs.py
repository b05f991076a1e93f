"""A real SRS (``../shared/srs/srs-5.0`` or ``srs-6.0``, upstream builds) for the tests that
need one, and ffmpeg publishing and playing through it. Self-contained: tests that use it skip
with the reason when SRS or ffmpeg is missing.

SRS runs in the foreground with a config of its own (free loopback ports, absolute paths in the
test's temporary folder) whose HTTP hooks point at a livehub listening on ``hook_port``; it is
stopped with SIGTERM (then killed) when the test is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import shutil
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

import aiohttp
import pytest
from pytest_aiohttp import AiohttpClient

from livehub.app import create_app
from tests.conftest import HOOK_SECRET, SHARED, Client, make_config
from tests.engines import free_port

SRS_DIR = SHARED / "srs"
VERSIONS = ("srs-6.0", "srs-5.0")


def srs_binary(version: str) -> Path:
    """The SRS executable of ``version``, or skip the test saying why."""
    path = SRS_DIR / version
    if not path.is_file():
        pytest.skip(f"real SRS not found at {path} (see shared/srs/README.md)")
    return path


def need_ffmpeg() -> None:
    for tool in ("ffmpeg", "ffprobe"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (Debian package ffmpeg)")


async def srs_up(proc: asyncio.subprocess.Process, api_port: int, within: float = 15.0) -> bool:
    """Whether the SRS ``proc`` came up (False: it exited first; TimeoutError after
    ``within`` s). Up once its API answers with this process's pid: whoever else holds a port
    given to SRS may answer on it."""
    url = f"http://127.0.0.1:{api_port}/api/v1/summaries"
    async with asyncio.timeout(within), aiohttp.ClientSession() as session:
        while proc.returncode is None:
            with contextlib.suppress(aiohttp.ClientError, ValueError, KeyError, TypeError):
                async with session.get(url) as resp:
                    body = await resp.json(content_type=None)
                    if body["data"]["self"]["pid"] == proc.pid:
                        return True
            await asyncio.sleep(0.05)
    return False


class SRSExited(RuntimeError):
    """SRS exited while starting: most often a port it was given was taken meanwhile."""


class RealSRS:
    """One SRS process: RTMP, HTTP API and HTTP-FLV on free loopback ports, hooks to livehub."""

    def __init__(self, binary: Path, workdir: Path, hook_port: int) -> None:
        self.binary = binary
        self.workdir = workdir
        self.hook_port = hook_port
        self.rtmp_port = free_port()
        self.api_port = free_port()
        self.http_port = free_port()
        self.rtc_port = free_port()  # UDP; a free TCP port is almost always a free UDP one
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.proc: asyncio.subprocess.Process | None = None
        self.log = workdir / "srs.log"
        #: HLS on (one-second segments), for tests of HLS players
        self.hls = False

    def config(self) -> str:
        hook = f"http://127.0.0.1:{self.hook_port}/api/hooks/srs?secret={HOOK_SECRET}"
        html = self.workdir / "html"
        html.mkdir(exist_ok=True)
        return f"""
listen 127.0.0.1:{self.rtmp_port};
daemon off;
srs_log_tank file;
srs_log_file {self.log};
pid {self.workdir / "srs.pid"};
query_latest_version off;
http_api {{ enabled on; listen 127.0.0.1:{self.api_port}; crossdomain on; }}
http_server {{ enabled on; listen 127.0.0.1:{self.http_port}; dir {html}; }}
rtc_server {{ enabled on; listen {self.rtc_port}; candidate 127.0.0.1; }}
vhost __defaultVhost__ {{
    {f"hls {{ enabled on; hls_fragment 1; hls_window 3; hls_path {html}; }}" if self.hls else ""}
    http_remux {{ enabled on; mount [vhost]/[app]/[stream].flv; }}
    rtc {{ enabled on; rtmp_to_rtc on; rtc_to_rtmp on; }}
    http_hooks {{
        enabled on;
        on_publish {hook};
        on_unpublish {hook};
        on_play {hook};
        on_stop {hook};
    }}
}}
"""

    async def start(self) -> None:
        conf = self.workdir / "srs.conf"
        conf.write_text(self.config())
        self.proc = await asyncio.create_subprocess_exec(
            str(self.binary),
            "-c",
            str(conf),
            cwd=self.workdir,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        if not await srs_up(self.proc, self.api_port):
            raise SRSExited(f"SRS exited at start: see {self.log}")

    async def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.returncode is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()

    def rtmp_url(self, stream_key: str, query: str = "") -> str:
        return f"rtmp://127.0.0.1:{self.rtmp_port}/live/{stream_key}{query}"

    def flv_url(self, stream_key: str, query: str = "") -> str:
        return f"http://127.0.0.1:{self.http_port}/live/{stream_key}.flv{query}"


async def whep_offer(url: str) -> tuple[int, str]:
    """POST a receive-only WebRTC offer (aiortc) to a WHEP URL: SRS's status and body (201 and
    an SDP answer once on_play allowed it; anything else when refused). No media flows: what
    is tested is who may start playing."""
    from aiortc import RTCConfiguration, RTCPeerConnection

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        pc.addTransceiver("audio", direction="recvonly")
        pc.addTransceiver("video", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
            try:
                async with session.post(
                    url,
                    data=pc.localDescription.sdp,
                    headers={"Content-Type": "application/sdp"},
                ) as resp:
                    return resp.status, await resp.text()
            except aiohttp.ClientError as exc:  # SRS aborts a refused WHEP request
                return 0, f"{type(exc).__name__}: {exc}"
    finally:
        await pc.close()


class Publisher:
    """ffmpeg publishing a test pattern (video and audio) over RTMP until stopped."""

    def __init__(self, url: str, log: Path) -> None:
        self.url = url
        self.log = log
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        args: Sequence[str] = (
            "ffmpeg", "-hide_banner", "-loglevel", "warning", "-nostdin", "-re",
            "-f", "lavfi", "-i", "testsrc=size=320x240:rate=15",
            "-f", "lavfi", "-i", "sine=frequency=440",
            "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "15",
            "-c:a", "aac", "-t", "60", "-f", "flv", self.url,
        )  # fmt: skip
        with self.log.open("wb") as out:
            self.proc = await asyncio.create_subprocess_exec(
                *args, stdout=asyncio.subprocess.DEVNULL, stderr=out
            )

    async def exited(self, within: float) -> int | None:
        """ffmpeg's exit code if it ends within ``within`` seconds (SRS refused it), else None."""
        assert self.proc is not None
        try:
            return await asyncio.wait_for(self.proc.wait(), within)
        except TimeoutError:
            return None

    async def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def probe(url: str, within: float = 20.0) -> tuple[int, str]:
    """ffprobe ``url`` (an FLV play): its exit code and what it printed (the streams as JSON)."""
    proc = await asyncio.create_subprocess_exec(
        "ffprobe", "-v", "error", "-rw_timeout", "8000000", "-show_entries",
        "stream=codec_type", "-of", "json", url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), within)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return -1, "timeout"
    return proc.returncode or 0, out.decode(errors="replace")


@dataclasses.dataclass
class Live:
    """livehub (a test client of the app) and a real SRS calling its hooks, with the ffmpeg
    publishers and players a test starts: :meth:`stop` ends them all."""

    client: Client
    srs: RealSRS
    tmp: Path
    publishers: list[Publisher] = dataclasses.field(default_factory=list)
    players: list[asyncio.subprocess.Process] = dataclasses.field(default_factory=list)

    async def publish(self, url: str, name: str) -> Publisher:
        publisher = Publisher(url, self.tmp / f"ffmpeg-{name}.log")
        self.publishers.append(publisher)
        await publisher.start()
        return publisher

    async def play(self, url: str) -> None:
        """ffmpeg playing ``url`` (HTTP-FLV or RTMP) until the test ends."""
        proc = await asyncio.create_subprocess_exec(
            "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-i", url,
            "-t", "60", "-f", "null", "-",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        self.players.append(proc)

    async def stop(self) -> None:
        for publisher in self.publishers:
            await publisher.stop()
        for player in self.players:
            with contextlib.suppress(ProcessLookupError):
                player.kill()
            await player.wait()
        await self.srs.stop()


L = TypeVar("L", bound=Live)


async def start_with_srs(
    version: str,
    tmp_path: Path,
    aiohttp_client: AiohttpClient,
    kind: type[L],
    **config: object,
) -> L:
    """livehub (the app as ``make_config`` builds it, with ``config`` on top) on a loopback
    port, and a real SRS of ``version`` calling its hooks there, both started (skips without
    SRS or ffmpeg), as a ``kind`` of :class:`Live`; the caller stops it."""
    binary = srs_binary(version)
    need_ffmpeg()
    for attempt in range(3):
        # the ports are chosen before either starts (SRS calls the hooks on livehub's, livehub
        # asks SRS's API on its): when another process takes one of them meanwhile, both start
        # again on fresh ones
        port = free_port()
        srs = RealSRS(binary, tmp_path, port)
        settings: dict[str, object] = {
            "srs_api_url": srs.api_url,
            "public_host": "127.0.0.1",
            "rtmp_port": srs.rtmp_port,
            "srs_http_port": srs.http_port,
            "srs_api_port": srs.api_port,
            "reconnect_window": 30.0,
        }
        settings.update(config)
        try:
            client = await aiohttp_client(
                create_app(make_config(**settings)),
                server_kwargs={"host": "127.0.0.1", "port": port},
            )
        except OSError:  # livehub's port was taken
            if attempt == 2:
                raise
            continue
        try:
            await srs.start()
        except SRSExited:
            await srs.stop()
            await client.close()
            if attempt == 2:
                raise
            continue
        return kind(client, srs, tmp_path)
    raise AssertionError("unreachable")
