"""``livehub migrate-db``: moving up from one embedded node to a cluster through the real entry
point. A database the embedded livehub wrote (rooms in every status, a publisher's origin, the
webhook outbox) is copied into PostgreSQL; owners then use their old tokens against an app on
PostgreSQL, and pending deliveries are still pending."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
from aiohttp import web
from pytest_aiohttp import AiohttpClient

from livehub import keys
from livehub.adapters.memory.players import MemoryPlayers
from livehub.adapters.postgres.store import PostgresStore
from livehub.adapters.sqlite.store import SQLiteStore
from livehub.app import create_app
from livehub.domain.room import RoomStatus
from livehub.domain.service import RoomService
from livehub.domain.srs_params import HookEvent
from tests.conftest import make_config

ENDPOINT = "http://hooks.example/livehub"


async def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """``python -m livehub <args>`` (what the ``livehub`` script runs), bounded in time."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LIVEHUB_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "livehub",
        *args,
        env={**environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def embedded_database(path: Path) -> dict[str, Any]:
    """What an embedded livehub leaves behind: a preparing, a live and an ended room (owner
    tokens known only to their owners), with webhook deliveries staged for each change."""
    store = SQLiteStore(str(path), webhook_endpoints=(ENDPOINT,))
    rooms = RoomService(store, reconnect_window=0, players=MemoryPlayers())
    try:
        preparing, preparing_owner = await rooms.create("preparing")
        live, live_owner = await rooms.create("live")
        ended, ended_owner = await rooms.create("ended")
        for room, client_id in ((live, "pub0live"), (ended, "pub0ende")):
            await rooms.handle_hook(
                HookEvent(
                    action="on_publish",
                    client_id=client_id,
                    app="live",
                    stream=room.stream_key,
                    param=f"?secret={room.publish_token}",
                    service_id="svc00001",
                    server_id="vid-orig001",
                )
            )
        await rooms.close(ended.id)
        return {
            "owners": {
                preparing.id: preparing_owner,
                live.id: live_owner,
                ended.id: ended_owner,
            },
            "statuses": {
                preparing.id: RoomStatus.PREPARING,
                live.id: RoomStatus.LIVE,
                ended.id: RoomStatus.ENDED,
            },
            "live": live.id,
            "preparing": preparing.id,
        }
    finally:
        await store.close()


def on_postgres(pg_url: str) -> web.Application:
    """The app as it runs in cluster mode, its rooms in PostgreSQL (``LIVEHUB_DATABASE_URL``:
    the engines open the PostgreSQL store)."""
    return create_app(make_config(database_url=pg_url))


async def test_migrate_db_moves_rooms_owner_tokens_and_pending_deliveries(
    tmp_path: Path, pg_url: str, aiohttp_client: AiohttpClient
) -> None:
    source = tmp_path / "livehub.db"
    before = await embedded_database(source)

    # --to defaults to LIVEHUB_DATABASE_URL, the setting the cluster nodes use
    code, out, err = await run_cli(
        "migrate-db", "--from", str(source), env={"LIVEHUB_DATABASE_URL": pg_url}
    )
    assert (code, err.count("ERROR")) == (0, 0), err
    # one delivery per change: 3 created, 2 live, 1 ended
    assert "copied 3 rooms and 6 webhook deliveries" in out
    password = urlsplit(pg_url).password
    assert not password or password not in out + err

    conn = await asyncpg.connect(pg_url)
    try:
        pending = await conn.fetch(
            "SELECT room_id, type, state FROM webhook_deliveries WHERE endpoint = $1 ORDER BY id",
            ENDPOINT,
        )
        live = await conn.fetchrow(
            "SELECT publisher_server_id, publisher_client_id FROM rooms WHERE id = $1",
            before["live"],
        )
    finally:
        await conn.close()
    assert len(pending) == 6 and {row["state"] for row in pending} == {"pending"}
    assert [row["type"] for row in pending if row["room_id"] == before["live"]] == [
        "room.created",
        "room.live",
    ]
    assert live is not None and tuple(live) == ("vid-orig001", "pub0live")

    client = await aiohttp_client(on_postgres(pg_url))
    assert isinstance(client.app[keys.store], PostgresStore)
    for room_id, owner_token in before["owners"].items():
        resp = await client.get(
            f"/api/rooms/{room_id}", headers={"Authorization": f"Bearer {owner_token}"}
        )
        body = await resp.json()
        assert resp.status == 200
        assert body["status"] == before["statuses"][room_id].value
        assert "publish" in body  # the owner view: the old owner token is still the owner's
    stranger = await client.get(
        f"/api/rooms/{before['preparing']}", headers={"Authorization": "Bearer not-the-owner"}
    )
    assert "publish" not in await stranger.json()
    # the owner acts on the migrated room: closing is a conditional write in PostgreSQL
    resp = await client.post(
        f"/api/rooms/{before['preparing']}/close",
        headers={"Authorization": f"Bearer {before['owners'][before['preparing']]}"},
    )
    assert resp.status == 200 and (await resp.json())["room"]["status"] == "ended"


async def test_migrate_db_refuses_a_target_that_already_holds_rooms(
    tmp_path: Path, pg_url: str
) -> None:
    first, second = tmp_path / "first.db", tmp_path / "second.db"
    await embedded_database(first)
    await embedded_database(second)
    assert (await run_cli("migrate-db", "--from", str(first), "--to", pg_url))[0] == 0
    code, out, err = await run_cli("migrate-db", "--from", str(second), "--to", pg_url)
    assert code == 2
    assert out == ""
    assert "the PostgreSQL database already holds rooms: copy into an empty one" in err
    store = await PostgresStore.open(pg_url)
    try:
        assert await store.count() == 3  # nothing of the second copy landed
    finally:
        await store.close()


async def test_migrate_db_without_a_target_says_what_to_give() -> None:
    code, out, err = await run_cli("migrate-db", "--from", "livehub.db")
    assert (code, out) == (2, "")
    assert "livehub migrate-db: give --to or set LIVEHUB_DATABASE_URL" in err


async def test_the_main_help_names_the_subcommand() -> None:
    code, out, _ = await run_cli("--help")
    assert code == 0
    assert "livehub migrate-db --from livehub.db" in " ".join(out.split())


async def test_migrate_db_has_its_own_help() -> None:
    code, out, _ = await run_cli("migrate-db", "--help")
    assert code == 0
    assert "usage: livehub migrate-db" in out and "--from" in out and "--to" in out
