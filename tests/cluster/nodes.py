"""Whole-process cluster nodes for tests: ``python -m livehub`` subprocesses on loopback ports,
all on one PostgreSQL database and one Redis, logging to files of the test's directory."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import unused_port

from tests.conftest import ADMIN_TOKEN, HOOK_SECRET

ROOT = Path(__file__).resolve().parents[2]


class Node:
    """One livehub process; ``args`` go on its command line (``--workers 2``)."""

    def __init__(self, name: str, tmp_path: Path, env: dict[str, str], *args: str) -> None:
        self.name = name
        self.port = unused_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp_path / f"{name}.log"
        self.cwd = tmp_path
        self.args = args
        self.env = {
            **os.environ,
            "LIVEHUB_HOOK_SECRET": HOOK_SECRET,
            "LIVEHUB_ADMIN_TOKEN": ADMIN_TOKEN,
            "LIVEHUB_SRS_API_URL": "http://127.0.0.1:9",
            "LIVEHUB_RECONCILE_INTERVAL": "0",
            "LIVEHUB_SHUTDOWN_TIMEOUT": "3",
            "LIVEHUB_CREATE_RATE_PER_MIN": "0",
            "PYTHONPATH": str(ROOT),
            **env,
        }
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, *, wait: bool = True) -> None:
        with self.log.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "livehub",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                *self.args,
                cwd=self.cwd,
                env=self.env,
                stdout=log,
                stderr=log,
                start_new_session=True,  # kill() takes its workers too
            )
        if wait:
            await self.wait_ready()

    async def wait_ready(self, within: float = 30.0) -> None:
        deadline = time.monotonic() + within
        async with aiohttp.ClientSession() as session:
            while True:
                assert self.proc is not None and self.proc.returncode is None, self.text()
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(self.url + "/healthz") as resp:
                        if resp.status == 200:
                            return
                assert time.monotonic() < deadline, f"{self.name} did not start: {self.text()}"
                await asyncio.sleep(0.05)

    def text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"

    def send(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def exit_code(self, within: float = 15.0) -> int:
        assert self.proc is not None
        return await asyncio.wait_for(self.proc.wait(), within)

    async def kill(self) -> None:
        """SIGKILL, as a crash would: no cleanup, no lock released."""
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            await self.proc.wait()

    @property
    def leads(self) -> bool:
        """Whether its log says it took the housekeeping leader lock (and not lost it)."""
        text = self.text()
        took = text.rfind("took leader lock livehub:leader:housekeeping")
        return took >= 0 and took > text.rfind("lost leader lock livehub:leader:housekeeping")


async def hook(
    session: aiohttp.ClientSession, node: Node, body: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    """Post an SRS hook to ``node`` as SRS does; the HTTP status and the JSON reply."""
    async with session.post(
        f"{node.url}/api/hooks/srs?secret={HOOK_SECRET}",
        data=json.dumps(body, separators=(",", ":")),
        headers={"Content-Type": "application/json"},
    ) as resp:
        reply: dict[str, Any] = await resp.json(content_type=None)
        return resp.status, reply


async def get_json(session: aiohttp.ClientSession, url: str, **kwargs: Any) -> tuple[int, Any]:
    async with session.get(url, **kwargs) as resp:
        return resp.status, await resp.json(content_type=None)


async def create_room(session: aiohttp.ClientSession, node: Node, title: str) -> dict[str, Any]:
    async with session.post(f"{node.url}/api/rooms", json={"title": title}) as resp:
        assert resp.status == 201, await resp.text()
        room: dict[str, Any] = await resp.json()
        return room


async def room_on(session: aiohttp.ClientSession, node: Node, room_id: str) -> dict[str, Any]:
    status, body = await get_json(session, f"{node.url}/api/rooms/{room_id}")
    assert status == 200, (node.name, body)
    room: dict[str, Any] = body
    return room


async def until(check: Any, within: float, every: float = 0.1) -> Any:
    """Poll the coroutine function ``check`` until it returns something truthy (bounded)."""
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, f"not reached within {within} s"
        await asyncio.sleep(every)
