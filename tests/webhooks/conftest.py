"""Webhook fixtures: the outbox table (created by the store's own migrations), rows written as
the store writes them, and a real receiver that verifies every signature with the
``standardwebhooks`` package."""

from __future__ import annotations

import asyncio
import base64
import json
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpClient, AiohttpServer
from standardwebhooks.webhooks import Webhook

from livehub import keys
from livehub.adapters.rows import STAGED_COLUMNS, OutboxRow
from livehub.adapters.sqlite.store import apply_migrations
from livehub.app import create_app
from livehub.config import Config
from livehub.webhook_settings import WebhookSecret
from livehub.webhooks.dispatcher import Tuning
from livehub.webhooks.schedule import RetrySchedule
from tests.conftest import Client, make_config
from tests.helpers import eventually

SECRET = "whsec_" + base64.b64encode(b"livehub-test-webhook-secret-32by").decode()
OLD_SECRET = "whsec_" + base64.b64encode(b"an-older-webhook-secret-for-rotation").decode()


def secret(value: str = SECRET) -> WebhookSecret:
    return WebhookSecret(base64.b64decode(value.removeprefix("whsec_")))


class Outbox:
    """The table, written as the store writes it: one row per endpoint per event."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.db = sqlite3.connect(self.path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        apply_migrations(self.db, self.path)  # the store's own schema, outbox included
        self.seqs: dict[str, int] = {}

    def add(
        self,
        endpoints: list[str],
        room_id: str,
        type: str,
        *,
        extra: dict[str, Any] | None = None,
        delay_ms: int = 0,
    ) -> int:
        seq, rows = staged(self.seqs, endpoints, room_id, type, extra, delay_ms)
        self.db.execute("BEGIN")
        self.db.executemany(
            f"INSERT INTO webhook_deliveries ({', '.join(STAGED_COLUMNS)}) "
            f"VALUES ({', '.join('?' for _ in STAGED_COLUMNS)})",
            rows,
        )
        self.db.execute("COMMIT")
        return seq

    @staticmethod
    def body(room_id: str, type: str, seq: int, extra: dict[str, Any] | None = None) -> str:
        return json.dumps(
            {
                "type": type,
                "timestamp": "2026-11-30T13:00:00.000Z",
                "data": {"id": room_id, "status": "live", **(extra or {}), "seq": seq},
            },
            separators=(",", ":"),
        )

    def rows(self) -> list[dict[str, Any]]:
        cursor = self.db.execute("SELECT * FROM webhook_deliveries ORDER BY id")
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def states(self) -> list[str]:
        return [row["state"] for row in self.rows()]

    def close(self) -> None:
        self.db.close()


def staged(
    seqs: dict[str, int],
    endpoints: list[str],
    room_id: str,
    type: str,
    extra: dict[str, Any] | None = None,
    delay_ms: int = 0,
) -> tuple[int, list[OutboxRow]]:
    """The room's next seq (counted in ``seqs``) and its rows in ``STAGED_COLUMNS`` order, one
    per endpoint, due ``delay_ms`` from now, with :meth:`Outbox.body` bodies."""
    seq = seqs[room_id] = seqs.get(room_id, 0) + 1
    now = int(time.time() * 1000)
    body = Outbox.body(room_id, type, seq, extra)
    return seq, [
        (endpoint, room_id, seq, type, body, now, now + delay_ms) for endpoint in endpoints
    ]


@pytest.fixture
def outbox(tmp_path: Path) -> Any:
    box = Outbox(tmp_path / "livehub.db")
    yield box
    box.close()


Reply = tuple[int, dict[str, str]]


@dataclass
class Receiver:
    """An HTTP endpoint that verifies every request with ``standardwebhooks`` and records it.
    ``replies`` are answered first, in order; then ``default``."""

    secret: str = SECRET
    replies: list[Reply] = field(default_factory=list)
    default: Reply = (204, {})
    received: list[dict[str, Any]] = field(default_factory=list)
    attempts: list[tuple[float, str, str]] = field(default_factory=list)  # (time, id, type)
    rejected: list[str] = field(default_factory=list)
    #: seconds to sit on each request before answering (a stuck receiver)
    hang: float = 0.0
    server: TestServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("/hooks"))

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = dict(request.headers)
        try:
            payload = Webhook(self.secret).verify(body, headers)
        except Exception as exc:  # the test fails on any entry here
            self.rejected.append(f"{type(exc).__name__}: {exc}")
            return web.Response(status=400)
        self.attempts.append((time.monotonic(), headers["webhook-id"], payload["type"]))
        if self.hang:
            await asyncio.sleep(self.hang)
        status, reply_headers = self.replies.pop(0) if self.replies else self.default
        if 200 <= status < 300:
            self.received.append({"id": headers["webhook-id"], "headers": headers, **payload})
        return web.Response(status=status, headers=reply_headers)

    def types(self, room_id: str | None = None) -> list[str]:
        return [
            event["type"]
            for event in self.received
            if room_id is None or event["data"]["id"] == room_id
        ]

    def seqs(self, room_id: str) -> list[int]:
        return [event["data"]["seq"] for event in self.received if event["data"]["id"] == room_id]

    async def wait_for_types(self, types: list[str], within: float = 10.0) -> None:
        """Until these event types arrived, in this order (others may come between)."""

        def arrived() -> bool:
            got = iter(self.types())
            return all(wanted in got for wanted in types)

        await eventually(arrived, within)

    async def wait_for(self, count: int, within: float = 10.0) -> None:
        await eventually(lambda: len(self.received) >= count, within)
        assert len(self.received) == count, self.received


StartReceiver = Callable[..., Awaitable[Receiver]]


async def start_receiver(
    aiohttp_server: AiohttpServer, *, port: int | None = None, **options: Any
) -> Receiver:
    """A :class:`Receiver` serving ``/hooks`` (on ``port``, or a free one)."""
    receiver = Receiver(**options)
    app = web.Application()
    app.router.add_post("/hooks", receiver.handle)
    receiver.server = await aiohttp_server(app, port=port)
    return receiver


@pytest.fixture
def receiver_factory(aiohttp_server: AiohttpServer) -> StartReceiver:
    async def start(**options: Any) -> Receiver:
        return await start_receiver(aiohttp_server, **options)

    return start


@pytest.fixture
async def receiver(receiver_factory: StartReceiver) -> Receiver:
    return await receiver_factory()


class PostgresRows:
    """Rows written with the same bodies as :class:`Outbox`, in PostgreSQL (the table made by
    the store's migrations)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.seqs: dict[str, int] = {}

    async def add(
        self,
        endpoints: list[str],
        room_id: str,
        type: str,
        *,
        extra: dict[str, Any] | None = None,
        delay_ms: int = 0,
    ) -> int:
        seq, rows = staged(self.seqs, endpoints, room_id, type, extra, delay_ms)
        async with self.conn.transaction():
            await self.conn.executemany(
                f"INSERT INTO webhook_deliveries ({', '.join(STAGED_COLUMNS)}) "
                f"VALUES ({', '.join(f'${n}' for n in range(1, len(STAGED_COLUMNS) + 1))})",
                rows,
            )
        return seq

    async def rows(self) -> list[dict[str, Any]]:
        return [
            dict(row)
            for row in await self.conn.fetch("SELECT * FROM webhook_deliveries ORDER BY id")
        ]


def webhook_app(config: Config, schedule: RetrySchedule | None = None) -> web.Application:
    """The app as production builds it, with the dispatcher's timings shortened."""
    app = create_app(config)
    app[keys.webhook_tuning] = Tuning(
        schedule=schedule or RetrySchedule(), poll_interval=0.02, stats_interval=0.0
    )
    return app


async def start(
    aiohttp_client: AiohttpClient,
    tmp_path: Path,
    receiver: Receiver | None,
    schedule: RetrySchedule | None = None,
    **settings: Any,
) -> tuple[Client, Outbox]:
    db = tmp_path / "livehub.db"
    config = make_config(
        db_path=str(db),
        webhook_urls=(receiver.url,) if receiver else (),
        webhook_secrets=(secret(),) if receiver else (),
        **settings,
    )
    client = await aiohttp_client(webhook_app(config, schedule))
    # after the store's migrations (which will create the table themselves)
    return client, Outbox(db)
