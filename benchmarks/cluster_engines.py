"""Throwaway PostgreSQL and Redis for ``benchmarks/cluster.sh``, from ``tests/engines.py``.

    python benchmarks/cluster_engines.py serve ENV_FILE   # start both; write their URLs and pids
                                                          # to ENV_FILE; stop both on SIGTERM/SIGINT
    python benchmarks/cluster_engines.py fresh PG_URL REDIS_URL
                                                          # a new empty database (its URL on stdout)
                                                          # and an empty Redis, for the next run

Both listen on private ports of 127.0.0.1 (never 5432/6379); PostgreSQL runs as the ``postgres``
user when started by root, with ``fsync=off`` as in the tests.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
import sys
import threading
from pathlib import Path

import asyncpg
import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.engines import PostgresEngine, RedisEngine


def serve(env_file: Path) -> None:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    postgres = PostgresEngine()
    redis = RedisEngine()
    try:
        postgres.start()
        redis.start()
        assert postgres.process is not None and redis.process is not None
        env_file.write_text(
            f"PG_URL={postgres.url}\n"
            f"PG_PID={postgres.process.pid}\n"
            f"PG_VERSION={postgres.bin_dir.parent.name}\n"
            f"REDIS_URL={redis.url}\n"
            f"REDIS_PID={redis.process.pid}\n"
        )
        print(
            f"postgres {postgres.url} (pid {postgres.process.pid}), "
            f"redis {redis.url} (pid {redis.process.pid})",
            file=sys.stderr,
        )
        stop.wait()
    finally:
        redis.close()
        postgres.close()


async def fresh(pg_url: str, redis_url: str) -> str:
    name = f"bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(pg_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    client = aioredis.Redis.from_url(redis_url)
    try:
        await client.flushall()
    finally:
        await client.aclose()
    return pg_url.rsplit("/", 1)[0] + "/" + name


def main(argv: list[str]) -> None:
    if len(argv) == 2 and argv[0] == "serve":
        serve(Path(argv[1]))
    elif len(argv) == 3 and argv[0] == "fresh":
        print(asyncio.run(fresh(argv[1], argv[2])))
    else:
        print(__doc__, file=sys.stderr)
        raise SystemExit(2)


if __name__ == "__main__":
    main(sys.argv[1:])
