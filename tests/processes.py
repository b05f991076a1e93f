"""Whole livehub processes for tests: ``python -m livehub`` subprocesses on loopback ports,
logging to a file of the test's directory. :class:`Server` is one embedded (SQLite) server;
cluster nodes (:class:`tests.cluster.nodes.Node`) share the same process handling."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from pathlib import Path

import aiohttp
from aiohttp.test_utils import unused_port

from livehub.tasks import IGNORED
from tests.conftest import ADMIN_TOKEN, HOOK_SECRET

ROOT = Path(__file__).resolve().parents[1]


class LivehubProcess:
    """One ``python -m livehub`` process on a free loopback port, logging to
    ``log_dir/<name>.log`` (the name defaults to ``livehub-<port>``); ``args`` go on its command
    line after ``--host``/``--port`` (``--db``, ``--workers 2``), ``env`` over the defaults
    (no SRS to reach, no reconciliation, no create rate limit)."""

    #: how long :meth:`wait_ready` and :meth:`exit_code` wait by default, seconds
    ready_within = 30.0
    exit_within = 15.0

    def __init__(
        self, name: str | None, log_dir: Path, env: dict[str, str], *args: str, cwd: Path = ROOT
    ) -> None:
        self.port = unused_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.name = name or f"livehub-{self.port}"
        self.log = log_dir / f"{self.name}.log"
        self.cwd = cwd
        self.args = args
        self.env = {
            **os.environ,
            "LIVEHUB_HOOK_SECRET": HOOK_SECRET,
            "LIVEHUB_ADMIN_TOKEN": ADMIN_TOKEN,
            # required in cluster mode (private rooms' viewer tokens)
            "LIVEHUB_VIEWER_TOKEN_SECRET": "test-viewer-token-secret-0123456789",
            "LIVEHUB_SRS_API_URL": "http://127.0.0.1:9",
            "LIVEHUB_RECONCILE_INTERVAL": "0",
            "LIVEHUB_SHUTDOWN_TIMEOUT": "3",
            "LIVEHUB_CREATE_RATE_PER_MIN": "0",  # tests create far more than 30 a minute
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

    async def wait_ready(self, within: float | None = None) -> None:
        deadline = time.monotonic() + (self.ready_within if within is None else within)
        async with aiohttp.ClientSession() as session:
            while True:
                assert self.proc is not None and self.proc.returncode is None, self.text()
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(self.url + "/healthz") as resp:
                        if resp.status == 200:
                            return
                assert time.monotonic() < deadline, f"{self.name} did not start: {self.text()}"
                await asyncio.sleep(0.05)

    def check_cancellations(self) -> None:
        """Fail if the process logged a task that ignored its cancellation (livehub.tasks):
        the in-process check of tests/conftest.py, for a whole process's log."""
        lines = [line for line in self.text().splitlines() if IGNORED in line]
        assert not lines, f"{self.name}: a task ignored its cancellation: {lines}"

    def text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"

    def send(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def exit_code(self, within: float | None = None) -> int:
        assert self.proc is not None
        return await asyncio.wait_for(
            self.proc.wait(), self.exit_within if within is None else within
        )

    async def kill(self) -> None:
        """SIGKILL, as a crash would: no cleanup, no lock released."""
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            await self.proc.wait()


class Server(LivehubProcess):
    """One embedded livehub on the SQLite file ``db``, logging to ``tmp_path``."""

    ready_within = 20.0
    exit_within = 10.0

    def __init__(self, tmp_path: Path, db: Path, **env: str) -> None:
        settings = {"LIVEHUB_RECONNECT_WINDOW": "30", "LIVEHUB_SHUTDOWN_TIMEOUT": "5", **env}
        super().__init__(None, tmp_path, settings, "--db", str(db))
        self.db = db
