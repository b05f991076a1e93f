"""Throwaway PostgreSQL and Redis servers for tests, on private ports of 127.0.0.1.

They come from Debian's packages (``postgresql``, ``redis-server``); never the system services on
5432/6379. Each engine can be stopped cleanly, killed with ``SIGKILL`` (the whole process group,
as a machine crash would) and started again on the same port and data directory, so fault tests
can take them away under a running livehub.

PostgreSQL refuses to run as root: when the tests run as root, its processes run as the
``postgres`` user (``subprocess.Popen(user=...)``) in a temporary directory owned by it. The data
directory has ``fsync=off`` (speed; durability across an OS crash is not what the tests check):
killing the server process is still survived, as PostgreSQL's WAL is written before commit.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg

PG_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


class EngineUnavailable(RuntimeError):
    """The binaries are not installed; the message says what to install."""


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_port(port: int, timeout: float, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}: {_tail(log)}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"server did not listen on 127.0.0.1:{port} in {timeout} s: {_tail(log)}")


def _tail(log: Path) -> str:
    try:
        return log.read_text(errors="replace")[-2000:]
    except OSError:
        return "(no log)"


def _kill_group(process: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)


class Engine:
    """One server process in its own process group, logging to ``log`` in ``dir``: ``start``,
    ``stop`` (``stop_signal``, then ``SIGKILL`` after ``stop_within`` s), ``kill``, ``restart``
    on the same port and data, ``pause`` and ``resume``, ``close`` (kill and remove ``dir``)."""

    stop_signal = signal.SIGTERM
    stop_within = 10.0
    dir: Path
    log: Path
    port: int
    process: subprocess.Popen[bytes] | None

    def start(self) -> None:
        raise NotImplementedError

    def _spawn(self, argv: list[str], timeout: float, **popen: Any) -> None:
        assert not self.running, "already running"
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                argv, stdout=log, stderr=log, start_new_session=True, **popen
            )
        _wait_port(self.port, timeout, self.process, self.log)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def ensure_running(self) -> None:
        """Start it again if a test stopped or killed it."""
        if not self.running:
            self.start()

    def stop(self) -> None:
        if not self.running:
            return
        assert self.process is not None
        self.process.send_signal(self.stop_signal)
        try:
            self.process.wait(self.stop_within)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.process is None:
            return
        _kill_group(self.process, signal.SIGKILL)
        self.process.wait(10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def pause(self) -> None:
        """Stall it (``SIGSTOP``): connections stay open, nothing is answered until
        :meth:`resume`, and then what was sent meanwhile runs."""
        assert self.process is not None and self.running
        _kill_group(self.process, signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None:
            _kill_group(self.process, signal.SIGCONT)

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class PostgresEngine(Engine):
    """One throwaway PostgreSQL cluster: ``start``, ``stop``, ``kill``, ``restart``.

    ``url`` connects as the ``postgres`` superuser (trust authentication, TCP on 127.0.0.1)."""

    #: fast shutdown: sessions are disconnected, data is kept
    stop_signal = signal.SIGINT
    stop_within = 30.0

    def __init__(self, base_dir: Path | None = None) -> None:
        bin_dir = next((d for d in PG_BIN_DIRS if (d / "postgres").exists()), None)
        if bin_dir is None:
            raise EngineUnavailable("PostgreSQL is not installed (apt-get install postgresql)")
        self.bin_dir = bin_dir
        self.as_root = os.geteuid() == 0
        self._user: str | None = None
        if self.as_root:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                raise EngineUnavailable("running as root and no `postgres` user exists") from None
            self._user = "postgres"
        self.dir = Path(base_dir or tempfile.mkdtemp(prefix="livehub-pg-"))
        self.data_dir = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._initdb()

    @property
    def url(self) -> str:
        return self.database_url("postgres")

    def database_url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    async def create_database(self) -> str:
        """A fresh, empty database; returns its URL."""
        name = f"t_{secrets.token_hex(6)}"
        admin = await asyncpg.connect(self.url)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        return self.database_url(name)

    async def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        admin = await asyncpg.connect(self.url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()

    def _run(self, *args: str) -> None:
        subprocess.run(
            args,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            user=self._user,
            group=self._user,
            extra_groups=[] if self._user else None,
            cwd=self.dir,
        )

    def _initdb(self) -> None:
        if self._user:
            shutil.chown(self.dir, self._user, self._user)
        self.dir.chmod(0o700)
        self._run(
            str(self.bin_dir / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "--encoding=UTF8",
            "--locale=C",
        )

    def start(self, timeout: float = 30.0) -> None:
        self._spawn(
            [
                str(self.bin_dir / "postgres"),
                "-D",
                str(self.data_dir),
                "-p",
                str(self.port),
                "-h",
                "127.0.0.1",
                "-k",
                str(self.dir),
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=on",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
                "-c",
                "shared_buffers=16MB",
            ],
            timeout,
            user=self._user,
            group=self._user,
            extra_groups=[] if self._user else None,
        )
        # the port opens before recovery ends: wait for the server to accept sessions
        deadline = time.monotonic() + timeout
        while True:
            ready = subprocess.run(
                [str(self.bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)],
                check=False,
            )
            if ready.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL not ready in {timeout} s: {_tail(self.log)}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL the postmaster and every backend, as a crash would."""
        if self.process is None:
            return
        super().kill()
        # backends die with the group; give the kernel a moment to release their sockets
        time.sleep(0.1)


class RedisEngine(Engine):
    """One throwaway Redis without persistence: a restart starts empty, as a lost Redis does."""

    def __init__(self, base_dir: Path | None = None) -> None:
        if not Path(REDIS_SERVER).exists():
            raise EngineUnavailable("redis-server is not installed (apt-get install redis-server)")
        self.dir = Path(base_dir or tempfile.mkdtemp(prefix="livehub-redis-"))
        self.log = self.dir / "redis.log"
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        self._spawn(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
                "--daemonize",
                "no",
                "--protected-mode",
                "yes",
            ],
            timeout,
        )
