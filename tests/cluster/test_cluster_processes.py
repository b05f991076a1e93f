"""Whole processes in cluster mode: PostgreSQL lost and back under a running node, a database
newer than the code, and ``livehub --workers N`` (N processes on one port)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from livehub.adapters.postgres.store import PostgresStore
from tests.cluster.nodes import ROOT, StartNode, create_room, get_json, hook, room_on
from tests.conftest import HOOK_SECRET, hook_for
from tests.engines import PostgresEngine, free_port
from tests.helpers import eventually
from tests.processes import LivehubProcess


async def post(
    session: aiohttp.ClientSession, url: str, **kwargs: Any
) -> tuple[int, dict[str, Any]]:
    async with session.post(url, **kwargs) as resp:
        body: dict[str, Any] = await resp.json(content_type=None)
        return resp.status, body


# -- PostgreSQL lost and back ---------------------------------------------------------------

SWEEP_SKIPPED = "room sweep skipped until the database is back"
SWEEP_BACK = "room sweep: the database is back"


def logged(node: LivehubProcess, line: str, times: int) -> Callable[[], Awaitable[bool]]:
    """For ``until``: whether the node has logged ``line`` ``times`` times."""

    async def check() -> bool:
        return bool(node.text().count(line) == times)

    return check


async def test_postgres_lost_fails_closed_and_comes_back_without_a_restart(
    make_node: StartNode, postgres: PostgresEngine
) -> None:
    node = make_node("a", LIVEHUB_SWEEP_INTERVAL="0.2")
    await node.start()
    async with aiohttp.ClientSession() as session:
        kept = await create_room(session, node, "acknowledged")
        waiting = await create_room(session, node, "publishes while the database is away")
        assert (await room_on(session, node, kept["id"]))["status"] == "preparing"

        for number, outage in enumerate((postgres.stop, postgres.kill), start=1):
            outage()
            status, body = await post(session, f"{node.url}/api/rooms", json={"title": "lost"})
            assert (status, body["code"], set(body)) == (
                503,
                "database_unavailable",
                {"error", "code", "details"},
            ), body
            status, body = await get_json(session, f"{node.url}/api/rooms/{kept['id']}")
            assert (status, body["code"]) == (503, "database_unavailable")
            status, body = await get_json(session, f"{node.url}/api/rooms")
            assert (status, body["code"]) == (503, "database_unavailable")
            # on_publish fails closed: SRS refuses a publisher on any non-200 answer
            status, body = await hook(session, node, hook_for(waiting, "on_publish.json"))
            assert (status, body["code"]) == (503, "database_unavailable")

            async def failing() -> bool:  # readiness is checked at most once a second
                status, ready = await get_json(session, f"{node.url}/readyz")
                return (status, ready["checks"]["database"]) == (503, "failing")

            await eventually(failing, 10, every=0.1)
            status, _ = await get_json(session, f"{node.url}/healthz")
            assert status == 200  # alive: the orchestrator must not restart it for this

            # the leader's sweep (every 0.2 s) says so once per outage, however long it lasts
            await eventually(logged(node, SWEEP_SKIPPED, number), 10, every=0.1)
            postgres.start()

            async def back() -> bool:
                _, ready = await get_json(session, f"{node.url}/readyz")
                return bool(ready["checks"]["database"] == "ok")

            await eventually(back, 10, every=0.1)
            # nothing acknowledged is lost; nothing refused was stored
            assert (await room_on(session, node, kept["id"]))["title"] == "acknowledged"
            status, rooms = await get_json(session, f"{node.url}/api/rooms")
            assert status == 200
            assert sorted(r["title"] for r in rooms) == sorted(
                ["acknowledged", "publishes while the database is away"]
                + (["live again"] if outage is postgres.kill else [])
            )
            # and writes work again, without a restart
            assert (await room_on(session, node, waiting["id"]))["status"] == "preparing"
            if outage is postgres.stop:
                await create_room(session, node, "live again")
            await eventually(logged(node, SWEEP_BACK, number), 10, every=0.1)
        status, reply = await hook(session, node, hook_for(waiting, "on_publish.json"))
        assert (status, reply) == (200, {"code": 0})
        assert (await room_on(session, node, waiting["id"]))["status"] == "live"
    assert node.proc is not None and node.proc.returncode is None  # never restarted

    # once per outage, without a traceback every 0.2 s
    log = node.text()
    assert (log.count(SWEEP_SKIPPED), log.count(SWEEP_BACK)) == (2, 2)
    assert "room sweep failed" not in log and "leader job" not in log


async def test_a_newer_postgres_schema_is_refused_at_start_with_one_line(
    make_node: StartNode, pg_url: str
) -> None:
    store = await PostgresStore.open(pg_url)
    await store.close()
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute("INSERT INTO schema_migrations (version) VALUES (99)")
    finally:
        await conn.close()
    node = make_node("new")
    await node.start(wait=False)
    assert await node.exit_code() == 2
    log = node.text()
    assert "Traceback" not in log
    assert "database has schema version 99, newer than this livehub supports" in log


def test_postgres_unreachable_at_start_is_one_line_and_exit_1(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    done = subprocess.run(
        [sys.executable, "-m", "livehub", "--host", "127.0.0.1", "--port", str(free_port())],
        cwd=tmp_path,
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(ROOT),
            "LIVEHUB_DATABASE_URL": f"postgresql://livehub:hunter22@127.0.0.1:{port}/livehub",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "ERROR livehub: cannot start: PostgreSQL unreachable: " in done.stderr
    assert "Traceback" not in done.stderr and "hunter22" not in done.stderr


# -- livehub --workers N --------------------------------------------------------------------


def test_more_than_one_worker_without_cluster_mode_is_a_clear_error(tmp_path: Path) -> None:
    for args, env in (
        (["--workers", "2"], {}),
        ([], {"LIVEHUB_WORKERS": "3", "LIVEHUB_DATABASE_URL": "postgresql://db/livehub"}),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "livehub", "--port", "9", *args],
            cwd=tmp_path,
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), **env},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 2
        workers = args[1] if args else env["LIVEHUB_WORKERS"]
        assert done.stderr == (
            f"livehub: configuration error: LIVEHUB_WORKERS={workers} needs cluster mode: set "
            "LIVEHUB_DATABASE_URL and LIVEHUB_REDIS_URL (one process serves embedded mode: "
            "SQLite and the in-process hub cannot be shared)\n"
        )
    assert not list(tmp_path.iterdir())  # no database file was created


def children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(child) for child in text.split()]


def running(pid: int) -> bool:
    """Whether ``pid`` is a process that has not exited (a zombie has exited)."""
    try:
        return " (zombie)" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


async def test_two_workers_share_one_port_and_stop_together(make_node: StartNode) -> None:
    node = make_node("workers", "--workers", "2")
    await node.start()
    assert node.proc is not None
    workers = children(node.proc.pid)
    assert len(workers) == 2
    # each new connection goes to either worker; exactly one of them holds the leader lock
    # and so ran the start-up reconciliation (skipped: no SRS here), the other never did
    seen: set[str] = set()
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        room = await create_room(session, node, "served by both")

        async def both_answered() -> bool:
            for _ in range(10):
                status, ready = await get_json(session, f"{node.url}/readyz")
                assert status == 503  # the SRS API is unreachable in this test
                seen.add(ready["checks"]["reconcile"])
                assert (await room_on(session, node, room["id"]))["title"] == "served by both"
            return seen == {"skipped", "pending"}

        await eventually(both_answered, 10, every=0)
        status, reply = await hook(session, node, hook_for(room, "on_publish.json"))
        assert (status, reply) == (200, {"code": 0})
    node.send(signal.SIGTERM)
    assert await node.exit_code() == 0, node.text()
    log = node.text()
    assert "every worker shut down cleanly" in log and "Traceback" not in log
    assert log.count("livehub shut down cleanly") == 2
    assert not any(running(pid) for pid in workers)


async def test_a_worker_that_dies_stops_the_others(make_node: StartNode) -> None:
    node = make_node("workers", "--workers", "2")
    await node.start()
    assert node.proc is not None
    first, second = children(node.proc.pid)
    os.kill(first, signal.SIGKILL)  # a crash: the orchestrator restarts the whole
    assert await node.exit_code() == 1
    assert f"worker {first} exited with -9: stopping the others" in node.text()
    assert not running(second)


async def test_workers_whose_supervisor_is_killed_9_shut_down(make_node: StartNode) -> None:
    node = make_node("workers", "--workers", "2")
    await node.start()
    assert node.proc is not None
    workers = children(node.proc.pid)
    node.proc.kill()  # the supervisor alone
    await node.proc.wait()

    async def gone() -> bool:
        return not any(running(pid) for pid in workers)

    await eventually(gone, 10, every=0.1)
    assert node.text().count("the supervisor (pid") == 2


async def test_workers_each_serve_the_internal_port(make_node: StartNode) -> None:
    """``--workers 2`` with LIVEHUB_INTERNAL_PORT: every worker listens on both ports (each its
    own SO_REUSEPORT socket), hooks answer on the internal port only."""
    internal = free_port()
    node = make_node("workers", "--workers", "2", LIVEHUB_INTERNAL_PORT=str(internal))
    await node.start()
    assert node.proc is not None and len(children(node.proc.pid)) == 2
    connector = aiohttp.TCPConnector(force_close=True)  # each request a new connection
    async with aiohttp.ClientSession(connector=connector) as session:
        room = await create_room(session, node, "internal port")
        status, reply = await hook(session, node, hook_for(room, "on_publish.json"))
        assert (status, reply["code"]) == (404, "not_found")  # the public port
        for n in range(10):  # spread over both workers by the kernel
            name = "on_publish.json" if n == 0 else "on_play.json"
            body = json.dumps(hook_for(room, name, client_id=f"client{n:02d}"))
            status, reply = await post(
                session,
                f"http://127.0.0.1:{internal}/api/hooks/srs?secret={HOOK_SECRET}",
                data=body,
                headers={"Content-Type": "application/json"},
            )
            assert (status, reply) == (200, {"code": 0})
            status, _ = await get_json(session, f"{node.url}/metrics")
            assert status == 404
    node.send(signal.SIGTERM)
    assert await node.exit_code() == 0, node.text()
    assert node.text().count(f"/metrics on http://127.0.0.1:{internal} only") == 2
