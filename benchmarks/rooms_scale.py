"""Rooms at platform scale (issue 11): a store holding N rooms, most of them ended.

    .venv/bin/python benchmarks/rooms_scale.py                 # N = 1,000,000
    .venv/bin/python benchmarks/rooms_scale.py --rooms 100000  # a quicker check

Two databases are built straight through SQL (the history a year of streams leaves: every
room but a few hundred ended), one with N rooms and one empty, in a scratch directory. For
each, a livehub process is started on a free 127.0.0.1 port and measured:

- start-up: from the process start to the first ``/healthz`` 200, median of ``--starts``
  (9), the two stores taking turns;
- RSS after start-up and after the list runs (``/proc/<pid>/status`` VmRSS);
- create rate: ``--creates`` rooms by 8 concurrent clients with the admin token (the
  anonymous rate limit does not apply to it), rooms per second;
- list latency p50/p99 of the first page (default limit 100), a deep page (a cursor in the
  middle of the history), the first page of ``status=ended``, and first and deep pages of
  1,000, with the longest event-loop stall meanwhile, seen from outside (the slowest answer
  to ``GET /healthz`` probes sent while the lists run), in two runs (``measure_lists``):
  ``paced`` (wrk, a C client, fetches each page back to back for ``--wrk-seconds``; a probe
  every ``--probe-every`` seconds) and ``flood`` (``--lists`` fetches by the aiohttp client
  while the probes go back to back: a second client saturating the server on the same
  cores). wrk is Debian's package ``wrk``; without it the paced run uses the aiohttp client.

Targets (issue 11): start-up and RSS within 10 % of the empty store's; every list page p99 under
20 ms; no stall over 50 ms. Everything runs on loopback and is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
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

ROOT = Path(__file__).resolve().parent.parent
ADMIN_TOKEN = "bench-admin-token-0123456789"
T0 = 1_700_000_000_000  # the first room's creation time (epoch ms)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def build_database(path: Path, rooms: int, live: int, preparing: int) -> float:
    """N rooms through SQL, in batches; returns the seconds it took."""
    started = time.perf_counter()
    sys.path.insert(0, str(ROOT))
    from livehub.adapters.sqlite.store import SQLiteStore  # the schema, at its current version

    store = SQLiteStore(str(path))
    store._db.close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    ended = rooms - live - preparing
    batch = 20_000
    for start in range(0, rooms, batch):
        rows = []
        for i in range(start, min(start + batch, rooms)):
            created = T0 + i * 30_000  # one room every 30 s over the history
            if i < ended:
                status, begun, end = "ended", created + 60_000, created + 3_600_000
            elif i < ended + live:
                status, begun, end = "live", created + 60_000, None
            else:
                status, begun, end = "preparing", None, None
            rows.append(
                (
                    f"r{i:011d}",
                    f"room {i}",
                    f"stream-r{i:011d}",
                    status,
                    created,
                    begun,
                    end,
                    secrets.token_urlsafe(32),
                    secrets.token_hex(32),
                    f"c{i:08x}" if status != "preparing" else None,
                    "bench000" if status != "preparing" else None,
                    begun,
                )
            )
        db.executemany(
            "INSERT INTO rooms (id, title, stream_key, status, created_at, start_time, end_time, "
            "publish_token, owner_token_hash, publisher_client_id, publisher_service_id, "
            "published_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        db.commit()
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return time.perf_counter() - started


def cursor_for(created_at: int, room_id: str) -> str:
    """The API's cursor (livehub.api.rooms.encode_cursor) for a keyset position."""
    return f"{created_at}.{room_id}"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class Server:
    def __init__(self, db: Path, log: Path) -> None:
        self.db = db
        self.log = log
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> float:
        env = {
            **os.environ,
            "LIVEHUB_HOOK_SECRET": "bench-hook-secret-0123456789",
            "LIVEHUB_ADMIN_TOKEN": ADMIN_TOKEN,
            "LIVEHUB_SRS_API_URL": "http://127.0.0.1:9",  # no SRS: reconciliation skips
            "LIVEHUB_RECONCILE_INTERVAL": "0",
            "LIVEHUB_LOG_LEVEL": "WARNING",
        }
        started = time.perf_counter()
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "livehub", "--host", "127.0.0.1", "--port",
                 str(self.port), "--db", str(self.db)],
                cwd=ROOT, env=env, stdout=log, stderr=log,
            )  # fmt: skip
        deadline = started + 120
        async with aiohttp.ClientSession() as session:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"livehub exited: {self.log.read_text()[-2000:]}")
                try:
                    async with session.get(self.url + "/healthz") as resp:
                        if resp.status == 200:
                            return time.perf_counter() - started
                except aiohttp.ClientError:
                    pass
                if time.perf_counter() > deadline:
                    raise RuntimeError("livehub did not start within 120 s")
                await asyncio.sleep(0.005)

    def rss(self) -> int:
        assert self.proc is not None
        return rss_kib(self.proc.pid)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def quantiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p99_ms": round(p99 * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2),
    }


async def timed_get(session: aiohttp.ClientSession, url: str) -> tuple[float, bytes]:
    started = time.perf_counter()
    async with session.get(url) as resp:
        body = await resp.read()
        assert resp.status == 200, (url, resp.status, body[:200])
    return time.perf_counter() - started, body


WRK_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def wrk_latency(url: str, seconds: float) -> dict[str, Any] | None:
    """p50/p99 of back-to-back GETs of ``url`` on one connection, measured by wrk (C, Debian
    package ``wrk``; its HdrHistogram), or None when wrk is not installed."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return None
    out = subprocess.run(
        [wrk, "-t1", "-c1", f"-d{seconds:g}s", "--latency", url],
        capture_output=True, text=True, check=True, timeout=seconds + 30,
    ).stdout  # fmt: skip
    found: dict[str, Any] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in ("50%", "99%"):
            value = parts[1]
            unit = next(u for u in ("us", "ms", "s") if value.endswith(u))
            found[f"p{parts[0][:-1]}_ms"] = round(float(value[: -len(unit)]) * WRK_UNITS[unit], 2)
        elif "requests in" in line:
            found["requests"] = int(parts[0])
        elif line.strip().startswith("Non-2xx"):
            raise RuntimeError(f"wrk saw errors on {url}: {line.strip()}")
    return found


async def probe_stalls(url: str, stop: asyncio.Event, pace: float) -> list[float]:
    """``GET /healthz`` until ``stop``, each answer's time: back to back when ``pace`` is 0 (a
    second client saturating the server), else one every ``pace`` seconds."""
    took: list[float] = []
    async with aiohttp.ClientSession() as probe:
        while not stop.is_set():
            took.append((await timed_get(probe, url))[0])
            if pace:
                await asyncio.sleep(pace)
    return took


async def measure_lists(
    server: Server, rooms: int, lists: int, wrk_seconds: float, pace: float
) -> dict[str, Any]:
    """Two runs over the same pages:

    - ``paced``: each page fetched back to back for ``wrk_seconds`` by wrk (a C client on one
      connection) while a prober asks for ``/healthz`` every ``pace`` seconds; its slowest
      answer bounds the loop's longest stall (without wrk, the aiohttp client below);
    - ``flood``: ``lists`` fetches of each page by the aiohttp client (its time includes
      reading the body in Python) while the prober asks back to back, a second client
      saturating the server and sharing the two cores with it (this benchmark's first method).
    """
    middle = rooms // 2
    deep = cursor_for(T0 + middle * 30_000, f"r{middle:011d}")
    pages = {
        "first_page_100": "/api/rooms",
        "deep_page_100": f"/api/rooms?cursor={deep}",
        "first_ended_page_100": "/api/rooms?status=ended",
        "first_page_1000": "/api/rooms?limit=1000",
        "deep_page_1000": f"/api/rooms?limit=1000&cursor={deep}",
    }
    results: dict[str, Any] = {}
    for run, prober_pace in (("paced", pace), ("flood", 0.0)):
        found: dict[str, Any] = {}
        stop = asyncio.Event()
        connector = aiohttp.TCPConnector(limit=4)
        async with aiohttp.ClientSession(connector=connector) as session:
            probing = asyncio.create_task(probe_stalls(server.url + "/healthz", stop, prober_pace))
            try:
                for name, path in pages.items():
                    await timed_get(session, server.url + path)  # warm
                    by_wrk = None
                    if run == "paced":
                        url = server.url + path
                        by_wrk = await asyncio.to_thread(wrk_latency, url, wrk_seconds)
                    if by_wrk is not None:
                        found[name] = {"client": "wrk", **by_wrk}
                    else:
                        samples = [
                            (await timed_get(session, server.url + path))[0] for _ in range(lists)
                        ]
                        found[name] = {"client": "aiohttp", **quantiles(samples)}
            finally:
                stop.set()
                stalls = await probing
        found["longest_stall_ms"] = round(max(stalls) * 1000, 2) if stalls else None
        found["healthz_probes"] = len(stalls)
        results[run] = found
    return results


async def measure_creates(server: Server, creates: int) -> float:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        per_worker = creates // 8

        async def worker() -> None:
            for i in range(per_worker):
                async with session.post(server.url + "/api/rooms", json={"title": f"b{i}"}) as r:
                    assert r.status == 201, await r.text()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(8)))
        return per_worker * 8 / (time.perf_counter() - started)


async def measure_startups(stores: dict[str, Path], logs: Path, starts: int) -> dict[str, Any]:
    """Start-up time and RSS after start-up of each store, ``starts`` times, the stores taking
    turns (a start-up is ~0.5 s, mostly imports, and the host's noise is of that order: one
    store's start-ups all at one moment and the other's at another compare the moments)."""
    startup: dict[str, list[float]] = {name: [] for name in stores}
    rss: dict[str, list[int]] = {name: [] for name in stores}
    for _ in range(starts):
        for name, db in stores.items():
            server = Server(db, logs / f"{name}.log")
            try:
                startup[name].append(await server.start())
                await asyncio.sleep(0.5)  # let start-up work settle
                rss[name].append(server.rss())
            finally:
                server.stop()
    return {
        name: {
            "startup_s_median": round(statistics.median(startup[name]), 3),
            "startup_s": [round(s, 3) for s in startup[name]],
            "rss_after_start_kib": int(statistics.median(rss[name])),
        }
        for name in stores
    }


async def measure(
    db: Path,
    log: Path,
    rooms: int,
    *,
    lists: int,
    creates: int,
    wrk_seconds: float,
    pace: float,
) -> dict[str, Any]:
    """Lists (when the store has rooms), then creates, on one server."""
    server = Server(db, log)
    try:
        await server.start()
        result: dict[str, Any] = {"rooms": rooms}
        if rooms:
            result["lists"] = await measure_lists(server, rooms, lists, wrk_seconds, pace)
        result["rss_after_lists_kib"] = server.rss()
        result["creates_per_s"] = round(await measure_creates(server, creates), 1)
        result["rss_after_creates_kib"] = server.rss()
    finally:
        server.stop()
    return result


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rooms", type=int, default=1_000_000)
    parser.add_argument("--live", type=int, default=200)
    parser.add_argument("--preparing", type=int, default=300)
    parser.add_argument("--starts", type=int, default=9, help="start-ups per store (median)")
    parser.add_argument("--lists", type=int, default=200, help="requests per list kind")
    parser.add_argument("--creates", type=int, default=2000)
    parser.add_argument(
        "--wrk-seconds", type=float, default=10.0, help="wrk's run per list kind (if installed)"
    )
    parser.add_argument(
        "--probe-every", type=float, default=0.01, help="the paced run's /healthz interval (s)"
    )
    parser.add_argument("--scratch", type=Path, default=None, help="where the databases go")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON result here")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep full.db/empty.db already in --scratch (built by an earlier run, same --rooms)",
    )
    args = parser.parse_args()

    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="livehub-rooms-scale-"))
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        full, empty = scratch / "full.db", scratch / "empty.db"
        if args.reuse and full.exists() and empty.exists():
            print(f"reusing {full} ({full.stat().st_size >> 20} MiB)")
        else:
            for path in (full, empty):
                for stale in scratch.glob(path.name + "*"):
                    stale.unlink()
            built = build_database(full, args.rooms, args.live, args.preparing)
            build_database(empty, 0, 0, 0)
            print(f"built {args.rooms} rooms in {built:.1f} s ({full.stat().st_size >> 20} MiB)")
        report: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "python": sys.version}}
        stores = {"empty": empty, "full": full}
        startups = await measure_startups(stores, scratch, args.starts)
        for name, path, rooms in (("empty", empty, 0), ("full", full, args.rooms)):
            report[name] = startups[name] | await measure(
                path,
                scratch / f"{name}.log",
                rooms,
                lists=args.lists,
                creates=args.creates,
                wrk_seconds=args.wrk_seconds,
                pace=args.probe_every,
            )
            print(name, json.dumps(report[name], indent=2))
        e, f = report["empty"], report["full"]
        report["ratios"] = {
            "startup_full_over_empty": round(f["startup_s_median"] / e["startup_s_median"], 3),
            "rss_full_over_empty": round(f["rss_after_start_kib"] / e["rss_after_start_kib"], 3),
        }
        print("ratios", json.dumps(report["ratios"]))
        if args.out:
            args.out.write_text(json.dumps(report, indent=2) + "\n")
    finally:
        if args.scratch is None:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
