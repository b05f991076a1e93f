"""What a WebSocket join costs livehub, end to end in one process: ``K`` clients connect to
livehub served as ``python -m livehub`` serves its public port (the connection guard, the access
logger at WARNING, the benchmarks' settings), each joins one room and waits for ``joined``, then
all close. Made to be counted in instructions (``benchmarks/instructions.sh join``): run with
``K`` and with 0, and the difference over ``K`` is one connection, join and leave, the
client's own share included (the same for any version of livehub, so two versions compare).

    .venv/bin/python benchmarks/join_cost.py 300
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys

import aiohttp  # noqa: TID251 - the clients of the benchmark
import uvloop
from aiohttp import web  # noqa: TID251 - a benchmark of the app, not livehub.domain

from livehub import keys
from livehub.__main__ import LISTEN_BACKLOG, AccessLogger, load_config
from livehub.app import create_app
from livehub.guard import GuardedSite

ENV = {
    # as benchmarks/run.sh runs livehub, with no reconciliation (no SRS here)
    "LIVEHUB_RATE_PER_S": "0",
    "LIVEHUB_CREATE_RATE_PER_MIN": "0",
    "LIVEHUB_MAX_CONNECTIONS_PER_ADDRESS": "0",
    "LIVEHUB_RELAY_BYTES_PER_S": "0",
    "LIVEHUB_HOOK_SECRET": "some-long-secret-value",
    "LIVEHUB_LOG_LEVEL": "WARNING",
    "LIVEHUB_RECONCILE_INTERVAL": "0",
}


async def main(clients: int, port: int) -> None:
    logging.basicConfig(level=logging.WARNING)
    config = load_config(["--db", ":memory:", "--host", "127.0.0.1", "--port", str(port)], ENV)
    app = create_app(config)
    runner = web.AppRunner(
        app, access_log_class=AccessLogger, keepalive_timeout=config.keepalive_timeout
    )
    await runner.setup()
    site = GuardedSite(runner, app[keys.guard], "127.0.0.1", port, backlog=LISTEN_BACKLOG)
    await site.start()
    base = f"http://127.0.0.1:{port}"
    try:
        # no cap on the clients' connections (aiohttp's default is 100 at once)
        connector = aiohttp.TCPConnector(limit=0)
        timeout = aiohttp.ClientTimeout(total=60)  # a client that hangs fails the count
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            async with session.post(f"{base}/api/rooms", json={"title": "join cost"}) as resp:
                room_id = (await resp.json())["id"]
            sockets = []
            for _ in range(clients):
                ws = await session.ws_connect(f"{base}/ws")
                await ws.send_json({"type": "join", "roomId": room_id})
                while (await ws.receive_json())["type"] != "joined":
                    pass
                sockets.append(ws)
            for ws in sockets:
                await ws.close()
            await asyncio.sleep(0.3)  # the leaves are handled
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]), int(os.environ.get("JOIN_COST_PORT", "18555"))))
