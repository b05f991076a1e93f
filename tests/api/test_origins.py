"""Several SRS origins: a room remembers which SRS accepted its publisher (the hook's
``server_id``, matched to the origin whose API reports it), kicks go to that origin, and
reconciliation asks every origin but ends only rooms whose origin answered. Two fake SRS HTTP
APIs on loopback (:mod:`tests.fake_srs`) stand for two origins."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import unused_port
from pytest_aiohttp import AiohttpClient

from livehub import keys
from livehub.app import create_app
from livehub.config import DEFAULT_ORIGIN, Config, ConfigError
from livehub.domain.room import Room, RoomStatus
from tests.conftest import Client, hook_for, make_config, send_hook
from tests.fake_srs import FakeSRS
from tests.helpers import eventually, until_room

SERVER_A = "vid-aaaaaa1"
SERVER_B = "vid-bbbbbb2"


@pytest.fixture
async def origins() -> AsyncIterator[tuple[FakeSRS, FakeSRS]]:
    """Two SRS origins with their own server and service ids."""
    a = FakeSRS(server=SERVER_A, service="svcaaaa1")
    b = FakeSRS(server=SERVER_B, service="svcbbbb2")
    await a.start()
    await b.start()
    yield a, b
    await a.stop()
    await b.stop()


def two_origins(a: FakeSRS, b: FakeSRS, **overrides: Any) -> Config:
    return make_config(srs_api_urls=(("srs-a", a.url), ("srs-b", b.url)), **overrides)


async def start(aiohttp_client: AiohttpClient, config: Config) -> Client:
    app = create_app(config)
    app[keys.rooms].publish_grace_ms = 0  # these tests take streams away right after publishing
    client = await aiohttp_client(app)
    # the first reconciliation asks every origin (that answers) for its server id
    await eventually(lambda: app[keys.reconciler].last_ok is not None)
    return client


async def create_room(client: Client) -> dict[str, Any]:
    room: dict[str, Any] = await (await client.post("/api/rooms", json={"title": "t"})).json()
    return room


async def publish_on(client: Client, srs: FakeSRS, room: dict[str, Any], cid: str) -> None:
    """``room``'s encoder publishes to the origin ``srs`` (listed there, then its hook)."""
    srs.publish(room["streamKey"], cid)
    body = srs.hook(hook_for(room, "on_publish.json", client_id=cid))
    assert await send_hook(client, body) == {"code": 0}


async def stored(client: Client, room_id: str) -> Room:
    room = await client.app[keys.rooms].get(room_id)
    assert room is not None
    return room


async def close(client: Client, room: dict[str, Any]) -> None:
    resp = await client.post(
        f"/api/rooms/{room['id']}/close", headers={"Authorization": f"Bearer {room['ownerToken']}"}
    )
    assert resp.status == 200


def ended(room: Room) -> bool:
    return room.status is RoomStatus.ENDED


# -- configuration ---------------------------------------------------------------------------


def test_one_srs_api_url_is_one_origin_as_before() -> None:
    config = Config.from_env({"LIVEHUB_SRS_API_URL": "http://srs:1985/"})
    assert config.srs_origins == ((DEFAULT_ORIGIN, "http://srs:1985"),)
    assert Config.from_env({}).srs_origins == ((DEFAULT_ORIGIN, "http://127.0.0.1:1985"),)


def test_srs_api_urls_take_a_list_or_named_origins() -> None:
    listed = Config.from_env({"LIVEHUB_SRS_API_URLS": "http://srs-a:1985, http://srs-b:1985/"})
    assert listed.srs_origins == (
        ("srs-a:1985", "http://srs-a:1985"),
        ("srs-b:1985", "http://srs-b:1985"),
    )
    named = Config.from_env(
        {"LIVEHUB_SRS_API_URLS": "east=http://u:p@10.0.0.1:1985,west=https://srs.example"}
    )
    assert named.srs_origins == (
        ("east", "http://u:p@10.0.0.1:1985"),
        ("west", "https://srs.example"),
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"LIVEHUB_SRS_API_URLS": "a=http://x:1985,a=http://y:1985"},
            "LIVEHUB_SRS_API_URLS: origin 'a' is given twice",
        ),
        (
            {"LIVEHUB_SRS_API_URLS": "http://x:1985,http://x:1985"},
            "LIVEHUB_SRS_API_URLS: origin 'x:1985' is given twice",
        ),
        (
            {"LIVEHUB_SRS_API_URLS": "a=ftp://u:secret@x"},
            "LIVEHUB_SRS_API_URLS: 'ftp://u:***@x' is not an http(s) URL",
        ),
        (
            {"LIVEHUB_SRS_API_URLS": " , "},
            "LIVEHUB_SRS_API_URLS must list at least one SRS API URL",
        ),
        (
            {"LIVEHUB_SRS_API_URLS": "a b=http://x:1985"},
            "LIVEHUB_SRS_API_URLS: origin name 'a b' must be letters, digits, '_', '.', ':' or '-'",
        ),
        (
            {"LIVEHUB_SRS_API_URL": "http://x:1985", "LIVEHUB_SRS_API_URLS": "http://y:1985"},
            "LIVEHUB_SRS_API_URL and LIVEHUB_SRS_API_URLS are both set: give one SRS in the first "
            "or every SRS in the second",
        ),
    ],
)
def test_bad_srs_api_urls_are_refused_naming_the_variable(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        Config.from_env(env)
    assert str(caught.value) == message


# -- which origin accepted the publisher -----------------------------------------------------


async def test_a_room_remembers_the_origin_that_accepted_its_publisher(
    origins: tuple[FakeSRS, FakeSRS], aiohttp_client: AiohttpClient
) -> None:
    a, b = origins
    client = await start(aiohttp_client, two_origins(a, b))
    on_a, on_b = await create_room(client), await create_room(client)
    await publish_on(client, a, on_a, "pub0000a")
    await publish_on(client, b, on_b, "pub0000b")
    room_a, room_b = await stored(client, on_a["id"]), await stored(client, on_b["id"])
    assert (room_a.publisher_server_id, room_a.publisher_origin) == (SERVER_A, "srs-a")
    assert (room_b.publisher_server_id, room_b.publisher_origin) == (SERVER_B, "srs-b")
    assert (room_a.publisher_service_id, room_b.publisher_service_id) == ("svcaaaa1", "svcbbbb2")
    # where the publisher came from is no one's business but the operator's
    public = await (await client.get(f"/api/rooms/{on_b['id']}")).json()
    assert SERVER_B not in str(public) and "srs-b" not in str(public)


async def test_closing_a_room_kicks_its_publisher_on_its_own_origin(
    origins: tuple[FakeSRS, FakeSRS], aiohttp_client: AiohttpClient
) -> None:
    a, b = origins
    client = await start(aiohttp_client, two_origins(a, b))
    on_a, on_b = await create_room(client), await create_room(client)
    await publish_on(client, a, on_a, "pub0000a")
    await publish_on(client, b, on_b, "pub0000b")
    await close(client, on_b)
    await eventually(lambda: b.kicks == ["pub0000b"])
    await close(client, on_a)
    await eventually(lambda: a.kicks == ["pub0000a"])
    await asyncio.sleep(0.05)
    assert (a.kicks, b.kicks) == (["pub0000a"], ["pub0000b"])


async def test_an_origin_learned_after_the_publish_still_gets_the_kick(
    origins: tuple[FakeSRS, FakeSRS], aiohttp_client: AiohttpClient
) -> None:
    """B is down when livehub starts, so its server id is unknown when its hook arrives: the
    room keeps the server id, and the kick asks the origins who they are first."""
    a, b = origins
    await b.stop()
    client = await start(aiohttp_client, two_origins(a, b))
    await b.start()
    room = await create_room(client)
    await publish_on(client, b, room, "latepub1")
    assert (await stored(client, room["id"])).publisher_server_id == SERVER_B
    await close(client, room)
    await eventually(lambda: b.kicks == ["latepub1"])
    assert ("GET", "/api/v1/versions") in b.requests
    assert a.kicks == []


async def test_a_publisher_of_unknown_origin_is_kicked_everywhere(
    origins: tuple[FakeSRS, FakeSRS], aiohttp_client: AiohttpClient
) -> None:
    """An SRS older than 4.0.185 sends no server_id: with several origins the kick goes to
    each (client ids are random per SRS; elsewhere it answers "client not found")."""
    a, b = origins
    client = await start(aiohttp_client, two_origins(a, b))
    room = await create_room(client)
    b.publish(room["streamKey"], "anon0001")
    body = hook_for(room, "on_publish.json", client_id="anon0001")
    del body["server_id"]
    assert await send_hook(client, body) == {"code": 0}
    assert (await stored(client, room["id"])).publisher_origin is None
    await close(client, room)
    await eventually(lambda: a.kicks == ["anon0001"] and b.kicks == ["anon0001"])


async def test_one_origin_s_publisher_cannot_take_over_a_room_live_on_another(
    origins: tuple[FakeSRS, FakeSRS], aiohttp_client: AiohttpClient
) -> None:
    """A different service id from a different SRS is not a restart of the room's SRS."""
    a, b = origins
    client = await start(aiohttp_client, two_origins(a, b))
    room = await create_room(client)
    await publish_on(client, a, room, "first001")
    second = b.hook(hook_for(room, "on_publish.json", client_id="second02"))
    assert await send_hook(client, second) == {
        "code": 1,
        "msg": "room already has a live publisher",
    }
    kept = await stored(client, room["id"])
    assert (kept.publisher_client_id, kept.publisher_origin) == ("first001", "srs-a")
    # while a restart of the room's own origin (new service id, same server id) takes it back
    a.restart("svcaaaa9")
    again = a.hook(hook_for(room, "on_publish.json", client_id="again003"))
    assert await send_hook(client, again) == {"code": 0}
    assert (await stored(client, room["id"])).publisher_client_id == "again003"


async def test_an_encoder_moves_to_another_origin_when_its_own_is_down(
    origins: tuple[FakeSRS, FakeSRS], aiohttp_client: AiohttpClient
) -> None:
    """Origin A crashes (no on_unpublish) and the encoder publishes to B: A cannot be asked,
    so its room would stay live for ever; once livehub has seen A down, B's publisher takes
    the room over, and the room's kicks go to B from then on."""
    a, b = origins
    client = await start(aiohttp_client, two_origins(a, b))
    room = await create_room(client)
    await publish_on(client, a, room, "first001")
    await a.stop()
    assert await client.app[keys.reconciler].run_once() is False  # A did not answer
    await publish_on(client, b, room, "moved002")
    moved = await stored(client, room["id"])
    assert (moved.status, moved.publisher_client_id) == (RoomStatus.LIVE, "moved002")
    assert (moved.publisher_server_id, moved.publisher_origin) == (SERVER_B, "srs-b")
    await close(client, room)
    await eventually(lambda: b.kicks == ["moved002"])
    assert a.kicks == []


async def test_hooks_from_two_origins_are_not_taken_for_restarts(
    origins: tuple[FakeSRS, FakeSRS],
    aiohttp_client: AiohttpClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    a, b = origins
    client = await start(aiohttp_client, two_origins(a, b))
    room = await create_room(client)
    reads = a.stream_reads, b.stream_reads
    with caplog.at_level(logging.WARNING, logger="livehub"):
        for n, srs in enumerate((a, b, a, b)):
            play = srs.hook(hook_for(room, "on_play.json", client_id=f"player{n:02d}"))
            assert await send_hook(client, play) == {"code": 0}
    await asyncio.sleep(0.05)
    assert "SRS restarted" not in caplog.text
    assert (a.stream_reads, b.stream_reads) == reads
    # one origin's real restart still triggers a pass over every origin
    a.restart("svcaaaa9")
    play = a.hook(hook_for(room, "on_play.json", client_id="player09"))
    assert await send_hook(client, play) == {"code": 0}
    await eventually(lambda: a.stream_reads > reads[0] and b.stream_reads > reads[1])


# -- reconciliation per origin ---------------------------------------------------------------


async def test_reconciliation_asks_every_origin_and_ends_by_origin(
    origins: tuple[FakeSRS, FakeSRS], aiohttp_client: AiohttpClient
) -> None:
    a, b = origins
    client = await start(aiohttp_client, two_origins(a, b))
    on_a, on_b = await create_room(client), await create_room(client)
    await publish_on(client, a, on_a, "pub0000a")
    await publish_on(client, b, on_b, "pub0000b")
    reconciler = client.app[keys.reconciler]
    assert await reconciler.run_once() is True
    assert (await stored(client, on_a["id"])).status is RoomStatus.LIVE
    assert (await stored(client, on_b["id"])).status is RoomStatus.LIVE
    b.unpublish(on_b["streamKey"])  # its on_unpublish was lost
    assert await reconciler.run_once() is True
    assert (await stored(client, on_b["id"])).status is RoomStatus.ENDED
    assert (await stored(client, on_a["id"])).status is RoomStatus.LIVE


async def test_an_origin_that_is_down_ends_none_of_its_rooms(
    origins: tuple[FakeSRS, FakeSRS], aiohttp_client: AiohttpClient
) -> None:
    a, b = origins
    client = await start(aiohttp_client, two_origins(a, b))
    on_a, on_b = await create_room(client), await create_room(client)
    await publish_on(client, a, on_a, "pub0000a")
    await publish_on(client, b, on_b, "pub0000b")
    await b.stop()
    a.unpublish(on_a["streamKey"])
    reconciler = client.app[keys.reconciler]
    assert await reconciler.run_once() is False  # not every origin answered
    assert set(reconciler.unanswered) == {"srs-b"}
    # the answering origin's rooms are reconciled; the silent origin's are left alone
    assert (await stored(client, on_a["id"])).status is RoomStatus.ENDED
    assert (await stored(client, on_b["id"])).status is RoomStatus.LIVE
    # and once B answers without the stream, its room ends too
    await b.start()
    b.unpublish(on_b["streamKey"])
    assert await reconciler.run_once() is True
    assert reconciler.unanswered == ()
    await until_room(client.app[keys.rooms], on_b["id"], ended)


async def test_a_room_of_unknown_origin_waits_until_every_origin_answers(
    origins: tuple[FakeSRS, FakeSRS], aiohttp_client: AiohttpClient
) -> None:
    a, b = origins
    client = await start(aiohttp_client, two_origins(a, b))
    room = await create_room(client)
    body = hook_for(room, "on_publish.json", client_id="anon0001")
    del body["server_id"]
    assert await send_hook(client, body) == {"code": 0}
    reconciler = client.app[keys.reconciler]
    await b.stop()
    assert await reconciler.run_once() is False
    assert (await stored(client, room["id"])).status is RoomStatus.LIVE  # maybe on B
    await b.start()
    assert await reconciler.run_once() is True
    assert (await stored(client, room["id"])).status is RoomStatus.ENDED


async def test_a_stream_listed_on_any_origin_keeps_its_room(
    origins: tuple[FakeSRS, FakeSRS], aiohttp_client: AiohttpClient
) -> None:
    """However the room's origin was recorded, a stream some origin publishes is on air."""
    a, b = origins
    client = await start(aiohttp_client, two_origins(a, b))
    room = await create_room(client)
    await publish_on(client, a, room, "pub0000a")
    a.unpublish(room["streamKey"])
    b.publish(room["streamKey"], "pub0000a")
    assert await client.app[keys.reconciler].run_once() is True
    assert (await stored(client, room["id"])).status is RoomStatus.LIVE


async def test_all_origins_down_skips_the_pass(
    origins: tuple[FakeSRS, FakeSRS], aiohttp_client: AiohttpClient
) -> None:
    a, b = origins
    client = await start(aiohttp_client, two_origins(a, b))
    room = await create_room(client)
    await publish_on(client, a, room, "pub0000a")
    await a.stop()
    await b.stop()
    reconciler = client.app[keys.reconciler]
    skipped = reconciler.skipped
    assert await reconciler.run_once() is False
    assert reconciler.skipped == skipped + 1
    assert reconciler.unanswered == ("srs-a", "srs-b")
    assert (await stored(client, room["id"])).status is RoomStatus.LIVE


async def test_origin_credentials_never_reach_the_log(
    origins: tuple[FakeSRS, FakeSRS], tmp_path: Path
) -> None:
    """The whole process at DEBUG (which logs its settings) with a password in an origin URL."""
    a, b = origins
    port = unused_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("LIVEHUB_")}
    env.update(
        LIVEHUB_HOST="127.0.0.1",
        LIVEHUB_PORT=str(port),
        LIVEHUB_DB=str(tmp_path / "livehub.db"),
        LIVEHUB_LOG_LEVEL="DEBUG",
        LIVEHUB_SRS_API_URLS=f"srs-a={a.url},srs-b=http://admin:hunter2-origin@127.0.0.1:{b.port}",
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "livehub",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        # both origins are asked at start-up (the first reconciliation)
        await eventually(lambda: a.stream_reads > 0 and b.stream_reads > 0, within=20)
    finally:
        proc.terminate()
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=20)
    log = out.decode()
    assert "srs-b" in log and "admin:***@" in log
    assert "hunter2-origin" not in log


async def readyz_until(client: Client, origin: str, state: str) -> tuple[int, dict[str, Any]]:
    """/readyz once it says ``origin`` is ``state`` (its checks are a second old at most)."""

    async def answer() -> tuple[int, dict[str, Any]] | None:
        resp = await client.get("/readyz")
        body: dict[str, Any] = await resp.json()
        return (resp.status, body) if body["checks"]["srs_origins"][origin] == state else None

    found: tuple[int, dict[str, Any]] = await eventually(answer)
    return found


async def test_readyz_probes_every_origin_and_stays_ready_while_one_answers(
    origins: tuple[FakeSRS, FakeSRS], aiohttp_client: AiohttpClient
) -> None:
    a, b = origins
    client = await start(aiohttp_client, two_origins(a, b))
    await eventually(lambda: client.app[keys.reconciler].last_ok is True)
    resp = await client.get("/readyz")
    assert resp.status == 200
    assert await resp.json() == {
        "status": "ready",
        "checks": {
            "database": "ok",
            "srs_api": "ok",
            "reconcile": "ok",
            "srs_origins": {"srs-a": "ok", "srs-b": "ok"},
        },
    }
    assert ("GET", "/api/v1/versions") in a.requests and ("GET", "/api/v1/versions") in b.requests

    # the second origin down: degraded, still ready, its error named by origin
    b.mode = "http500"
    status, body = await readyz_until(client, "srs-b", "unreachable")
    assert status == 200
    assert body["status"] == "ready"
    assert body["checks"]["srs_api"] == "degraded"
    assert body["checks"]["srs_origins"] == {"srs-a": "ok", "srs-b": "unreachable"}
    assert body["checks"]["srs_api_errors"] == {"srs-b": "GET /api/v1/versions: HTTP 500"}

    # the first one (the one probed before) down instead: the same, by name
    b.mode = "up"
    await a.stop()
    status, body = await readyz_until(client, "srs-a", "unreachable")
    assert status == 200
    assert body["checks"]["srs_api"] == "degraded"
    assert body["checks"]["srs_origins"] == {"srs-a": "unreachable", "srs-b": "ok"}
    assert list(body["checks"]["srs_api_errors"]) == ["srs-a"]
    assert a.url not in json.dumps(body)  # the origin's address (maybe with credentials) is not

    # none answers: not ready
    await b.stop()
    status, body = await readyz_until(client, "srs-b", "unreachable")
    assert status == 503
    assert body["status"] == "not_ready"
    assert body["checks"]["srs_api"] == "unreachable"
    assert body["checks"]["srs_origins"] == {"srs-a": "unreachable", "srs-b": "unreachable"}
    assert sorted(body["checks"]["srs_api_errors"]) == ["srs-a", "srs-b"]

    # both back: ready again without a restart
    await a.start()
    await b.start()
    status, body = await readyz_until(client, "srs-a", "ok")
    await readyz_until(client, "srs-b", "ok")
    resp = await client.get("/readyz")
    assert resp.status == 200
    assert (await resp.json())["checks"]["srs_api"] == "ok"
