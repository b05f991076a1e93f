"""Recordings with a real SRS (shared/srs) and ffmpeg: the DVR block of the shipped srs.conf
(paths rewritten into the test's directory) records a 5 s RTMP publish; livehub, a real process,
gets SRS's on_dvr and keeps the file of a room that records (ffprobe reads about 5 s; served
with 206 for a range) and deletes the file of a room that does not. Skipped with the reason
where SRS or ffmpeg is missing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import unused_port

from tests.conftest import HOOK_SECRET, SHARED
from tests.processes import ROOT, Server
from tests.real_srs import srs_up

SRS = next(
    (path for path in (SHARED / "srs" / "srs-6.0", SHARED / "srs" / "srs-5.0") if path.is_file()),
    None,
)
FFMPEG, FFPROBE = shutil.which("ffmpeg"), shutil.which("ffprobe")

pytestmark = [
    pytest.mark.skipif(SRS is None, reason=f"no SRS executable in {SHARED / 'srs'}"),
    pytest.mark.skipif(
        FFMPEG is None or FFPROBE is None, reason="ffmpeg/ffprobe not installed (apt ffmpeg)"
    ),
]


def shipped_dvr_block(recordings: Path) -> str:
    """The ``dvr { ... }`` block of the repository's srs.conf, writing into ``recordings``."""
    text = (ROOT / "srs.conf").read_text()
    match = re.search(r"^\s*dvr\s*\{[^}]*\}", text, re.M)
    assert match, "srs.conf has no dvr block"
    return match.group(0).replace("/recordings/", f"{recordings}/")


class RealSRS:
    def __init__(self, tmp_path: Path, livehub_url: str, recordings: Path) -> None:
        self.dir = tmp_path / "srs"
        self.dir.mkdir()
        self.hook = f"{livehub_url}/api/hooks/srs?secret={HOOK_SECRET}"
        self.recordings = recordings
        self.conf = self.dir / "srs.conf"
        self.rtmp_port = self.api_port = 0
        self.proc: asyncio.subprocess.Process | None = None

    def _configure(self) -> None:
        """Fresh ports, and the config that listens on them."""
        self.rtmp_port, self.api_port = unused_port(), unused_port()
        hook = self.hook
        self.conf.write_text(
            f"""
listen 127.0.0.1:{self.rtmp_port};
daemon off;
srs_log_tank file;
srs_log_file {self.dir}/srs.log;
pid {self.dir}/srs.pid;
query_latest_version off;
http_api {{ enabled on; listen 127.0.0.1:{self.api_port}; }}
vhost __defaultVhost__ {{
{shipped_dvr_block(self.recordings)}
    http_hooks {{
        enabled on;
        on_publish {hook};
        on_unpublish {hook};
        on_dvr {hook};
    }}
}}
"""
        )

    async def start(self) -> None:
        """SRS on free ports. A port another process took between its choice and SRS's bind
        makes SRS exit: then again on other ports (three tries). Ready once SRS's API answers
        with this process's pid: a connection to the RTMP port alone may reach whoever holds
        it."""
        assert SRS is not None
        for attempt in range(3):
            self._configure()
            self.proc = await asyncio.create_subprocess_exec(
                str(SRS),
                "-c",
                str(self.conf),
                cwd=self.dir,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            if await srs_up(self.proc, self.api_port):
                return
            assert attempt < 2, f"SRS did not start: {self.log()}"

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return (self.dir / "srs.log").read_text(errors="replace")[-3000:]
        return "(no log)"

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(10):
                    await self.proc.wait()
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


@pytest.fixture
async def stack(
    tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[Server, RealSRS, Path]]:
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    livehub = Server(
        tmp_path,
        tmp_path / "livehub.db",
        LIVEHUB_RECORDINGS_DIR=str(recordings),
        # by default the unpublish ends the room; a test may give a window (indirect param)
        LIVEHUB_RECONNECT_WINDOW=str(getattr(request, "param", 0)),
    )
    srs = RealSRS(tmp_path, livehub.url, recordings)
    await livehub.start()
    try:
        await srs.start()
        yield livehub, srs, recordings
    finally:
        await srs.stop()
        await livehub.kill()


async def publish(srs: RealSRS, room: dict[str, Any], seconds: float) -> None:
    """ffmpeg publishes a test pattern with sound to the room for ``seconds``, in real time."""
    assert FFMPEG is not None
    url = (
        f"rtmp://127.0.0.1:{srs.rtmp_port}/live/{room['streamKey']}"
        f"?secret={room['publish']['token']}"
    )
    proc = await asyncio.create_subprocess_exec(
        FFMPEG,
        "-loglevel", "error", "-re",
        "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
        "-t", str(seconds),
        "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "25",
        "-c:a", "aac", "-b:a", "64k",
        "-f", "flv", url,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(seconds + 30):
        _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode(errors="replace") + srs.log()


def probe_seconds(path: Path) -> float:
    assert FFPROBE is not None
    out = subprocess.run(
        [FFPROBE, "-v", "error", "-show_entries", "format=duration", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(json.loads(out)["format"]["duration"])


async def hooks_counted(session: aiohttp.ClientSession, base: str, result: str) -> float:
    text = await (await session.get(f"{base}/metrics")).text()
    pattern = rf'livehub_srs_hooks_total{{action="on_dvr",result="{result}"}} ([0-9.e+]+)'
    found = re.search(pattern, text)
    return float(found.group(1)) if found else 0.0


async def test_srs_records_a_recording_room_and_livehub_serves_it(
    stack: tuple[Server, RealSRS, Path],
) -> None:
    livehub, srs, recordings = stack
    async with aiohttp.ClientSession() as http:
        resp = await http.post(
            f"{livehub.url}/api/rooms", json={"title": "Recorded", "record": True}
        )
        room = await resp.json()
        await publish(srs, room, 5)

        listed: list[dict[str, Any]] = []

        async def one_recording() -> bool:
            nonlocal listed
            listed = await (
                await http.get(f"{livehub.url}/api/rooms/{room['id']}/recordings")
            ).json()
            return len(listed) == 1

        for _ in range(300):  # SRS posts on_dvr once the file is closed, after the unpublish
            if await one_recording():
                break
            await asyncio.sleep(0.05)
        assert len(listed) == 1, livehub.text() + srs.log()
        (recording,) = listed
        (file,) = list(recordings.glob("*.mp4"))
        assert file.name.startswith(room["streamKey"] + ".")
        assert 4.0 <= probe_seconds(file) <= 6.5
        assert 4000 <= recording["durationMs"] <= 6500
        assert recording["sizeBytes"] == file.stat().st_size

        resp = await http.get(livehub.url + recording["url"], headers={"Range": "bytes=0-99"})
        assert resp.status == 206
        assert resp.headers["Content-Range"] == f"bytes 0-99/{file.stat().st_size}"
        assert await resp.read() == file.read_bytes()[:100]
        room_now = await (await http.get(f"{livehub.url}/api/rooms/{room['id']}")).json()
        assert room_now["status"] == "ended"


async def test_srs_files_of_a_room_that_does_not_record_are_deleted(
    stack: tuple[Server, RealSRS, Path],
) -> None:
    livehub, srs, recordings = stack
    async with aiohttp.ClientSession() as http:
        room = await (
            await http.post(f"{livehub.url}/api/rooms", json={"title": "Live only"})
        ).json()
        await publish(srs, room, 2)
        deadline = time.monotonic() + 15
        while await hooks_counted(http, livehub.url, "deleted") < 1:
            assert time.monotonic() < deadline, livehub.text() + srs.log()
            await asyncio.sleep(0.05)
        assert list(recordings.iterdir()) == []
        assert (
            await (await http.get(f"{livehub.url}/api/rooms/{room['id']}/recordings")).json() == []
        )


@pytest.mark.parametrize("stack", [60], indirect=True)
async def test_an_encoder_that_reconnects_inside_the_window_leaves_its_files_in_order(
    stack: tuple[Server, RealSRS, Path],
) -> None:
    livehub, srs, recordings = stack
    async with aiohttp.ClientSession() as http:
        resp = await http.post(f"{livehub.url}/api/rooms", json={"title": "Two", "record": True})
        room = await resp.json()
        listed: list[dict[str, Any]] = []
        for seconds, files in ((3, 1), (2, 2)):  # a publish, a drop, the encoder back
            await publish(srs, room, seconds)
            deadline = time.monotonic() + 15
            while len(listed) < files:
                assert time.monotonic() < deadline, livehub.text() + srs.log()
                await asyncio.sleep(0.05)
                url = f"{livehub.url}/api/rooms/{room['id']}/recordings"
                listed = await (await http.get(url)).json()
        assert len(listed) == 2
        assert len(list(recordings.glob(f"{room['streamKey']}.*.mp4"))) == 2
        assert [round(r["durationMs"] / 1000) for r in listed] == [3, 2]  # oldest first
        assert listed[0]["endedAt"] <= listed[1]["startedAt"] + 500
        room_now = await (await http.get(f"{livehub.url}/api/rooms/{room['id']}")).json()
        assert (room_now["status"], room_now["reconnecting"]) == ("live", True)  # one session


async def test_a_private_rooms_recording_from_srs_needs_its_token(
    stack: tuple[Server, RealSRS, Path],
) -> None:
    livehub, srs, recordings = stack
    async with aiohttp.ClientSession() as http:
        resp = await http.post(
            f"{livehub.url}/api/rooms",
            json={"title": "Private class", "record": True, "visibility": "private"},
        )
        room = await resp.json()
        owner = {"Authorization": f"Bearer {room['ownerToken']}"}
        await publish(srs, room, 3)
        listed: list[dict[str, Any]] = []
        path = f"{livehub.url}/api/rooms/{room['id']}/recordings"
        deadline = time.monotonic() + 15
        while not listed:  # SRS posts on_dvr once the file is closed, after the unpublish
            assert time.monotonic() < deadline, livehub.text() + srs.log()
            listed = await (await http.get(path, headers=owner)).json()
            await asyncio.sleep(0.05)
        (recording,) = listed
        (file,) = list(recordings.glob("*.mp4"))
        bare = recording["url"].split("?")[0]

        # nobody without a token sees the list or the file
        assert (await http.get(path)).status == 404
        assert (await http.get(livehub.url + bare, headers={"Range": "bytes=0-99"})).status == 404
        # a viewer token plays it, seekable: the listed url carries it (a <video src> works)
        resp = await http.post(
            f"{livehub.url}/api/rooms/{room['id']}/viewer-tokens", headers=owner, json={}
        )
        token = (await resp.json())["token"]
        (seen,) = await (await http.get(f"{path}?token={token}")).json()
        assert seen["url"] == f"{bare}?token={token}"
        resp = await http.get(livehub.url + seen["url"], headers={"Range": "bytes=0-99"})
        assert resp.status == 206 and await resp.read() == file.read_bytes()[:100]
