"""The longest event-loop stall of an embedded livehub during a webhook burst, with SRS hooks
arriving (issue 16, item 5).

One embedded livehub (a SQLite file, webhooks on) is served in this process, with a probe task
that sleeps ``PROBE`` seconds in a loop and records how late it wakes: the loop's stalls. Two
child processes (so that their CPU is not the loop's): a webhook receiver answering 200 to every
delivery, and a load generator that creates rooms (each stages one ``room.created`` delivery)
until ``--events`` are staged, 50 at a time, while posting ``on_publish``/``on_unpublish`` hooks
for the rooms it created (as SRS would, every hook a store write). The dispatcher delivers the
burst meanwhile (claims and outcomes: outbox writes). The run ends when every delivery is
delivered.

    .venv/bin/python benchmarks/loop_stall.py --events 10000

prints the stall percentiles, the hook latencies and the delivery time as one JSON line; the
loop's largest stall while idle (3 s before the load: the host's own noise) comes first.
``--trace`` also prints the slowest callbacks with the CPU time they used (a stall with little
CPU is the host scheduling other work, not the loop blocked) and full garbage collections; it
runs asyncio's own loop (it times asyncio's ``Handle``), where a plain run uses uvloop, as
``python -m livehub`` does.

The two children stand for other machines (SRS, the webhook endpoint, clients): on a host with
more than one core they run on the last core at a lower priority (``nice 5``), so that what is
measured is livehub's loop and not the host handing its core to the load generator;
``--share-cores`` leaves them on every core at livehub's priority. The probe reads
``time.perf_counter`` (uvloop's ``loop.time()`` counts whole milliseconds).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import gc
import json
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
HOOKS = ROOT.parent / "shared" / "srs-hooks"
SECRET = "bench-hook-secret-0123456789"
PROBE = 0.002


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- the webhook receiver (child process) --------------------------------------------------------


def _aside() -> None:
    """Run this child on the last core, at a lower priority: the clients of a real deployment
    are other machines, and the loop measured here must not wait for a core they hold. Where
    there is only one core, or ``--share-cores``, nothing is changed."""
    if os.environ.get("LOOP_STALL_SHARE") == "1" or not hasattr(os, "sched_setaffinity"):
        return
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) > 1:
        os.sched_setaffinity(0, {cores[-1]})
        os.nice(5)


def receiver(port: int) -> None:
    _aside()

    async def ok(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hooks", ok)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


# -- the load generator (child process) ----------------------------------------------------------


def load(base: str, events: int, out: str) -> None:
    _aside()
    asyncio.run(_load(base, events, out))


async def _load(base: str, events: int, out: str) -> None:
    publish = json.loads((HOOKS / "on_publish.json").read_text())
    unpublish = json.loads((HOOKS / "on_unpublish.json").read_text())
    hook_latency: list[float] = []
    created: list[dict[str, Any]] = []
    statuses: dict[int, int] = {}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as session:

        async def create(n: int) -> None:
            async with session.post(f"{base}/api/rooms", json={"title": f"burst {n}"}) as resp:
                statuses[resp.status] = statuses.get(resp.status, 0) + 1
                if resp.status == 201:
                    created.append(await resp.json())

        async def hook(body: dict[str, Any]) -> None:
            started = time.perf_counter()
            async with session.post(f"{base}/api/hooks/srs?secret={SECRET}", json=body) as resp:
                await resp.read()
                statuses[resp.status] = statuses.get(resp.status, 0) + 1
            hook_latency.append(time.perf_counter() - started)

        def hook_body(room: dict[str, Any], template: dict[str, Any]) -> dict[str, Any]:
            body = dict(template)
            body["stream"] = room["streamKey"]
            body["stream_url"] = f"/live/{room['streamKey']}"
            body["client_id"] = f"c{room['id']}"
            body["param"] = f"?secret={room['publish']['token']}"
            return body

        done = 0
        while done < events:
            batch = min(50, events - done)
            jobs = [create(done + i) for i in range(batch)]
            # hooks arriving meanwhile: a publish and an unpublish for rooms created earlier
            for room in created[-10:]:
                jobs.append(hook(hook_body(room, publish)))
                jobs.append(hook(hook_body(room, unpublish)))
            await asyncio.gather(*jobs)
            done += batch
    Path(out).write_text(
        json.dumps(
            {
                "rooms": len(created),
                "hooks": len(hook_latency),
                "statuses": statuses,
                "hook_ms_p50": round(statistics.median(hook_latency) * 1000, 2),
                "hook_ms_max": round(max(hook_latency) * 1000, 2),
            }
        )
    )


# -- the server and its probe (this process) -----------------------------------------------------


def _count(db: Path, where: str) -> int:
    with contextlib.closing(sqlite3.connect(db)) as reader:
        (count,) = reader.execute(
            f"SELECT count(*) FROM webhook_deliveries WHERE {where}"
        ).fetchone()
        return int(count)


async def _serve(args: argparse.Namespace) -> dict[str, Any]:
    from livehub.__main__ import load_config, settle_garbage_collection
    from livehub.app import create_app

    work = Path(tempfile.mkdtemp(prefix="livehub-stall-"))
    db = work / "livehub.db"
    receiver_port, port = _free_port(), _free_port()
    secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()
    env = {
        "LIVEHUB_DB": str(db),
        "LIVEHUB_HOOK_SECRET": SECRET,
        "LIVEHUB_SRS_API_URL": "http://127.0.0.1:9",
        "LIVEHUB_RECONCILE_INTERVAL": "0",
        "LIVEHUB_CREATE_RATE_PER_MIN": "0",
        "LIVEHUB_WEBHOOK_URLS": f"http://127.0.0.1:{receiver_port}/hooks",
        "LIVEHUB_WEBHOOK_SECRET": secret,
        "LIVEHUB_LOG_LEVEL": "WARNING",
    }
    config = load_config([], env)
    me = [sys.executable, str(Path(__file__).resolve())]
    recv = subprocess.Popen([*me, "receiver", str(receiver_port)])
    app = create_app(config)
    if not args.no_freeze:  # as livehub.__main__.serve does before it runs the app
        settle_garbage_collection()
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stalls: list[float] = []
    running = True

    async def probe() -> None:
        clock = time.perf_counter  # not loop.time(): uvloop's counts whole milliseconds
        while running:
            started = clock()
            await asyncio.sleep(PROBE)
            stalls.append(clock() - started - PROBE)

    probing = asyncio.create_task(probe())
    await asyncio.sleep(3)  # the host's own noise first: the loop idle
    baseline = max(stalls)
    stalls.clear()
    slowest: list[tuple[float, str]] = []
    cpu_steps: list[float] = []  # CPU time of the steps that took over 10 ms of wall time
    if args.trace:  # the callbacks that ran longest (what stalls the loop), cheaply timed
        run = asyncio.events.Handle._run

        def timed(handle: asyncio.Handle) -> None:
            task = getattr(handle._callback, "__self__", None)  # type: ignore[attr-defined]
            frame = None
            if isinstance(task, asyncio.Task):
                frame = getattr(task.get_coro(), "cr_frame", None)
            where = (
                f"{task.get_name()} resumed at {frame.f_code.co_filename}:{frame.f_lineno}"
                if frame is not None and isinstance(task, asyncio.Task)
                else ""
            )
            began, cpu = time.perf_counter(), time.thread_time()
            run(handle)
            took = time.perf_counter() - began
            if took > 0.01:
                used = (time.thread_time() - cpu) * 1000
                cpu_steps.append(used)
                slowest.append((took, f"(cpu {used:.1f} ms) {where or repr(handle)[:300]}"))

        asyncio.events.Handle._run = timed  # type: ignore[method-assign,assignment]
        gc_began = [0.0]

        def gc_timer(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                gc_began[0] = time.perf_counter()
            elif (took := time.perf_counter() - gc_began[0]) > 0.005:
                slowest.append((took, f"garbage collection of generation {info['generation']}"))

        gc.callbacks.append(gc_timer)
    result_file = work / "load.json"
    started, loop_cpu = time.perf_counter(), time.thread_time()
    try:
        loader = await asyncio.create_subprocess_exec(
            *me, "load", f"http://127.0.0.1:{port}", str(args.events), str(result_file)
        )
        await loader.wait()
        loaded = time.perf_counter() - started
        loop_cpu = time.thread_time() - loop_cpu  # the loop thread's CPU during the load
        # until the dispatcher has delivered the whole burst (counted in a thread: the loop
        # measured here runs livehub's work only)
        while await asyncio.to_thread(_count, db, "state != 'delivered'"):
            await asyncio.sleep(0.2)
        delivered = await asyncio.to_thread(_count, db, "1")
        drained = time.perf_counter() - started
    finally:
        running = False
        await probing
        await runner.cleanup()
        recv.terminate()
        recv.wait()
    stalls.sort()
    for took, what in sorted(slowest, reverse=True)[:10]:
        print(f"{took * 1000:.1f} ms {what}", file=sys.stderr)
    traced = {"slow_steps": len(cpu_steps), "slow_step_cpu_ms_max": max(cpu_steps, default=0)}
    return {
        **(traced if args.trace else {}),
        "idle_stall_ms_max": round(baseline * 1000, 2),
        "events": args.events,
        "deliveries": delivered,
        "load_s": round(loaded, 2),
        "delivered_s": round(drained, 2),
        "loop_cpu_s": round(loop_cpu, 2),
        "stall_ms_p50": round(stalls[len(stalls) // 2] * 1000, 2),
        "stall_ms_p99": round(stalls[int(len(stalls) * 0.99)] * 1000, 2),
        "stall_ms_max": round(stalls[-1] * 1000, 2),
        **json.loads(result_file.read_text()),
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "receiver":
        receiver(int(sys.argv[2]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "load":
        load(sys.argv[2], int(sys.argv[3]), sys.argv[4])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--trace", action="store_true", help="print the slowest callbacks")
    parser.add_argument(
        "--no-freeze",
        action="store_true",
        help="skip the garbage collector's tuning that __main__ does (freeze, thresholds)",
    )
    parser.add_argument(
        "--share-cores",
        action="store_true",
        help="run the load generator and the receiver on livehub's cores at its priority",
    )
    args = parser.parse_args()
    if args.share_cores:
        os.environ["LOOP_STALL_SHARE"] = "1"  # the children read it
    if not args.trace:  # uvloop, as livehub.__main__ runs (--trace times asyncio's own Handle)
        import uvloop

        uvloop.install()
    print(json.dumps(asyncio.run(_serve(args))))


if __name__ == "__main__":
    main()
