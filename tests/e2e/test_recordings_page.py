"""The console's page of an ended room lists its recordings and plays them (Chromium loads the
MP4's metadata and seeks: range requests). Real livehub process, real MP4s made by ffmpeg; the
on_dvr hooks are posted as SRS posts them."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import hook_fixture
from tests.e2e.browser import CHROMIUM, HERE, NODE, require_browser
from tests.processes import Server

pytestmark = pytest.mark.e2e

FFMPEG = shutil.which("ffmpeg")

require_browser(ffmpeg=True)


def make_mp4(path: Path, seconds: int) -> None:
    assert FFMPEG is not None
    subprocess.run(
        [FFMPEG, "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=10",
         "-t", str(seconds), "-c:v", "libx264", "-pix_fmt", "yuv420p", str(path)],
        check=True,
    )  # fmt: skip


async def close_room(http: aiohttp.ClientSession, server: Server, room: dict[str, Any]) -> None:
    resp = await http.post(
        f"{server.url}/api/rooms/{room['id']}/close",
        headers={"Authorization": f"Bearer {room['ownerToken']}"},
    )
    assert resp.status == 200


async def open_page(server: Server, room_id: str, **env: str) -> dict[str, Any]:
    """recordings.e2e.mjs on the room's page in Chromium: its report."""
    assert NODE is not None
    result = await asyncio.to_thread(
        subprocess.run,
        [NODE, str(HERE / "recordings.e2e.mjs")],
        env={**os.environ, "LIVEHUB_URL": server.url, "ROOM_ID": room_id, "CHROMIUM": CHROMIUM}
        | env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


async def test_an_ended_room_page_plays_its_recordings(tmp_path: Path) -> None:
    if not (HERE / "node_modules" / "playwright-core").is_dir():
        await asyncio.to_thread(
            subprocess.run,
            ["npm", "ci", "--no-audit", "--no-fund", "--silent"],
            cwd=HERE,
            check=True,
        )
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    server = Server(tmp_path, tmp_path / "livehub.db", LIVEHUB_RECORDINGS_DIR=str(recordings))
    await server.start()
    try:
        async with aiohttp.ClientSession() as http:
            resp = await http.post(f"{server.url}/api/rooms", json={"title": "Rec", "record": True})
            room = await resp.json()
            for part, seconds in ((1, 4), (2, 3)):
                await asyncio.to_thread(
                    make_mp4, recordings / f"{room['streamKey']}.{part}.mp4", seconds
                )
                body = hook_fixture("on_dvr.json")
                body.update(
                    stream=room["streamKey"],
                    stream_url=f"/live/{room['streamKey']}",
                    cwd=str(recordings),
                    file=f"./{room['streamKey']}.{part}.mp4",
                )
                resp = await http.post(
                    f"{server.url}/api/hooks/srs?secret={server.env['LIVEHUB_HOOK_SECRET']}",
                    data=json.dumps(body),
                )
                assert await resp.json() == {"code": 0}
            await close_room(http, server, room)
        report = await open_page(server, room["id"])
        assert report["count"] == 2 and report["errors"] == []
        assert report["captions"][0].startswith("Part 1 ·") and "0:04" in report["captions"][0]
        assert 3.5 <= report["duration"] <= 4.5
        assert abs(report["seeked"] - 2) < 0.5
    finally:
        await server.kill()


async def test_an_ended_room_page_says_when_its_recordings_cannot_be_listed(
    tmp_path: Path,
) -> None:
    """The list of an ended room's recordings answers an error (503, as with the database
    unreachable): the page shows it in the error banner, it does not just show no recordings."""
    server = Server(tmp_path, tmp_path / "livehub.db")
    await server.start()
    try:
        async with aiohttp.ClientSession() as http:
            resp = await http.post(f"{server.url}/api/rooms", json={"title": "Rec", "record": True})
            room = await resp.json()
            await close_room(http, server, room)
        report = await open_page(server, room["id"], RECORDINGS_FAIL="503")
        assert report["errors"] == []
        assert any(
            "recordings" in message and "database_unavailable" in message and "503" in message
            for message in report["messages"]
        ), report["messages"]
    finally:
        await server.kill()
