"""Reconciliation with SRS and the SRS API client, against the fake SRS HTTP API on loopback
(:mod:`tests.fake_srs`)."""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import time
from typing import Any

import aiohttp
import pytest
from pytest_aiohttp import AiohttpClient

from livehub import keys
from livehub.adapters.srs.api import SRSClient, SRSUnavailable
from livehub.app import create_app
from livehub.config import DEFAULT_ORIGIN, Config
from livehub.domain.room import Room, RoomStatus
from livehub.reconcile import MAX_HEARTBEAT_SERVERS
from tests.conftest import HOOK_SECRET, HOOKS_DIR, Client, hook_for, make_config, send_hook
from tests.fake_srs import CAPTURED_STREAMS, SERVICE, STREAMS_FIXTURE, FakeSRS
from tests.helpers import eventually, room_json, scrape, until_room

HEARTBEAT = f"/api/hooks/srs/heartbeat/{HOOK_SECRET}"


async def start(aiohttp_client: AiohttpClient, config: Config, *, grace: float = 0.0) -> Client:
    app = create_app(config)
    # reconciliation leaves a publish younger than the grace period alone (see PUBLISH_GRACE);
    # these tests publish and then take the stream away at once
    app[keys.rooms].publish_grace_ms = int(grace * 1000)
    return await aiohttp_client(app)


async def live_room(client: Client, srs: FakeSRS, cid: str = "2o5x91ed") -> dict[str, Any]:
    """A room whose publisher SRS lists (listed first: a reconcile may run during the hook)."""
    room: dict[str, Any] = await (await client.post("/api/rooms", json={"title": "t"})).json()
    srs.publish(room["streamKey"], cid)
    assert await send_hook(client, hook_for(room, "on_publish.json", client_id=cid)) == {"code": 0}
    return room


# -- the client against SRS's quirks -------------------------------------------------------


async def test_streams_listing_reads_the_fixture_bodies(srs: FakeSRS) -> None:
    async with aiohttp.ClientSession() as session:
        client = SRSClient(session, srs.url + "/", "live")
        srs.streams = copy.deepcopy(STREAMS_FIXTURE["streams"])
        # room7 is listed but its publish is not active: it does not count
        assert await client.publishing() == {"room42": "2o5x91ed"}
        srs.streams = copy.deepcopy(CAPTURED_STREAMS["streams"])
        assert await client.publishing() == {"teststream": "4249m414"}
        assert client.service_id == SERVICE and client.reachable is True
        other = SRSClient(session, srs.url, "other-app")
        assert await other.publishing() == {}
    # the slashed path directly (no 302 round trip) and an explicit count
    assert srs.requests[0] == ("GET", "/api/v1/streams/?start=0&count=500")


async def test_streams_listing_pages_through_every_stream(srs: FakeSRS) -> None:
    for i in range(25):
        srs.publish(f"s{i:02d}", f"cid{i:05d}", active=i != 3)
    async with aiohttp.ClientSession() as session:
        client = SRSClient(session, srs.url, "live")
        publishing = await client.publishing(count=10)
    assert publishing == {f"s{i:02d}": f"cid{i:05d}" for i in range(25) if i != 3}
    assert srs.requests == [
        ("GET", "/api/v1/streams/?start=0&count=10"),
        ("GET", "/api/v1/streams/?start=10&count=10"),
        ("GET", "/api/v1/streams/?start=20&count=10"),
    ]


async def test_srs_api_basic_auth_from_the_url(
    srs: FakeSRS, aiohttp_client: AiohttpClient, caplog: pytest.LogCaptureFixture
) -> None:
    srs.auth = "livehub:s3cret-pass"
    srs.publish("stream-x", "cid00001")
    async with aiohttp.ClientSession() as session:
        anonymous = SRSClient(session, srs.url, "live")
        with pytest.raises(SRSUnavailable):
            await anonymous.publishing()
        assert anonymous.last_error == "GET /api/v1/streams/: HTTP 401"
        authed_url = srs.url.replace("http://", "http://livehub:s3cret-pass@")
        authed = SRSClient(session, authed_url, "live")
        assert await authed.publishing() == {"stream-x": "cid00001"}
        assert await authed.kick("cid00001") is True
    client = await start(aiohttp_client, make_config(srs_api_url=authed_url))
    assert (await client.get("/readyz")).status == 200
    # the password never reaches the logs or /readyz
    assert not any("s3cret-pass" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("mode", ["down", "http500", "code"])
async def test_streams_listing_raises_when_srs_cannot_tell(srs: FakeSRS, mode: str) -> None:
    if mode == "down":
        await srs.stop()
    srs.mode = mode
    async with aiohttp.ClientSession() as session:
        client = SRSClient(session, srs.url, "live")
        with pytest.raises(SRSUnavailable):
            await client.publishing()
        assert client.reachable is False and client.last_error
        assert not await client.ping()
    if mode == "http500":
        assert client.last_error == "GET /api/v1/versions: HTTP 500"
    if mode == "code":
        assert client.last_error == "GET /api/v1/versions: reply code 1000"


async def test_kick_outcomes_are_logged_never_raised(
    srs: FakeSRS, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="livehub.adapters.srs.api")
    async with aiohttp.ClientSession() as session:
        client = SRSClient(session, srs.url, "live")
        assert await client.kick("2o5x91ed") is True
        srs.kick_code = 2049
        assert await client.kick("gone0000") is False
        srs.kick_code = 400
        assert await client.kick("noconn00") is False
        srs.mode = "http500"
        assert await client.kick("err00000") is False
        await srs.stop()
        assert await client.kick("down0000") is False
    assert srs.kicks == ["2o5x91ed", "gone0000", "noconn00", "err00000"]
    messages = [record.getMessage() for record in caplog.records]
    assert "kicked SRS client 2o5x91ed" in messages
    assert "SRS client gone0000 already gone" in messages
    assert "SRS refused to kick client noconn00: code 400" in messages
    assert "could not kick SRS client err00000" in messages
    assert "could not kick SRS client down0000" in messages


# -- reconciliation in the app ---------------------------------------------------------------


def ended(room: Room) -> bool:
    return room.status is RoomStatus.ENDED


def now_ms() -> int:
    return int(time.time() * 1000)


async def test_startup_reconciles_rooms_left_live_by_a_previous_run(
    srs: FakeSRS, aiohttp_client: AiohttpClient, tmp_path: Any
) -> None:
    config = make_config(
        db_path=str(tmp_path / "livehub.db"), srs_api_url=srs.url, reconnect_window=0.3
    )
    first = await start(aiohttp_client, config)
    kept = await live_room(first, srs, "keptcid1")
    lost = await live_room(first, srs, "lostcid1")
    lost_before = await room_json(first, lost["id"])
    await first.close()

    srs.unpublish(lost["streamKey"])  # SRS lost it while livehub was down
    before = now_ms()
    second = await start(aiohttp_client, config)
    rooms = second.app[keys.rooms]
    await until_room(rooms, lost["id"], lambda room: room.reconnecting)
    found_gone = (await rooms.get(lost["id"])).reconnecting_since
    assert await room_json(second, lost["id"]) == {**lost_before, "reconnecting": True}
    kept_now = await room_json(second, kept["id"])
    assert (kept_now["status"], kept_now["reconnecting"]) == ("live", False)
    await until_room(rooms, lost["id"], lambda room: room.status is RoomStatus.ENDED)
    ended = await room_json(second, lost["id"])
    assert ended == {**lost_before, "status": "ended", "endTime": ended["endTime"]}
    # endTime is the moment reconciliation found the publisher gone, not the window's end
    assert before <= ended["endTime"] == found_gone
    assert (await room_json(second, kept["id"]))["status"] == "live"


async def test_periodic_reconcile_ends_a_room_whose_stream_went_away(
    srs: FakeSRS, aiohttp_client: AiohttpClient
) -> None:
    config = make_config(srs_api_url=srs.url, reconnect_window=0.2, reconcile_interval=0.05)
    client = await start(aiohttp_client, config)
    rooms = client.app[keys.rooms]
    room = await live_room(client, srs)
    reads = srs.stream_reads
    await eventually(lambda: srs.stream_reads >= reads + 2)
    assert (await room_json(client, room["id"]))["status"] == "live"  # SRS still has it
    srs.unpublish(room["streamKey"])  # on_unpublish was lost
    gone_after = now_ms()
    await until_room(rooms, room["id"], lambda room: room.reconnecting)
    found_gone = (await rooms.get(room["id"])).reconnecting_since
    assert (await room_json(client, room["id"]))["reconnecting"] is True
    await until_room(rooms, room["id"], lambda room: room.status is RoomStatus.ENDED)
    ended = await room_json(client, room["id"])
    assert gone_after <= ended["endTime"] == found_gone


async def test_an_inactive_publish_counts_as_gone(
    srs: FakeSRS, aiohttp_client: AiohttpClient
) -> None:
    config = make_config(srs_api_url=srs.url, reconnect_window=0.0, reconcile_interval=0.05)
    client = await start(aiohttp_client, config)
    room = await live_room(client, srs)
    srs.publish(room["streamKey"], active=False)  # listed, but "publish":{"active":false}
    await until_room(client.app[keys.rooms], room["id"], ended)


async def test_a_fresh_publish_is_not_taken_for_gone(
    srs: FakeSRS, aiohttp_client: AiohttpClient
) -> None:
    config = make_config(srs_api_url=srs.url, reconnect_window=0.0, reconcile_interval=0.02)
    client = await start(aiohttp_client, config, grace=10.0)
    room: dict[str, Any] = await (await client.post("/api/rooms", json={"title": "t"})).json()
    assert await send_hook(client, hook_for(room, "on_publish.json")) == {"code": 0}
    # SRS has not acquired the stream yet: several reconciliations see it absent
    reads = srs.stream_reads
    await eventually(lambda: srs.stream_reads >= reads + 3)
    assert (await room_json(client, room["id"]))["status"] == "live"


async def test_a_changed_service_id_in_a_hook_triggers_reconciliation(
    srs: FakeSRS, aiohttp_client: AiohttpClient
) -> None:
    # periodic reconciliation off: only start-up and the restart signal run it
    config = make_config(srs_api_url=srs.url, reconnect_window=0.0, reconcile_interval=0.0)
    client = await start(aiohttp_client, config)
    await eventually(lambda: srs.stream_reads == 1)  # at start-up
    room = await live_room(client, srs)
    other: dict[str, Any] = await (await client.post("/api/rooms", json={"title": "o"})).json()
    # a hook from the same SRS process changes nothing
    play = hook_for(other, "on_play.json")
    assert await send_hook(client, play) == {"code": 0}
    await asyncio.sleep(0.1)
    assert srs.stream_reads == 1
    # SRS restarts (SIGTERM: no on_unpublish); the next hook carries a new service_id
    srs.restart("n3wsrv01")
    restarted = hook_for(other, "on_play.json", service_id="n3wsrv01", client_id="p2")
    assert await send_hook(client, restarted) == {"code": 0}
    await eventually(lambda: srs.stream_reads == 2)
    rooms = client.app[keys.rooms]
    await until_room(rooms, room["id"], lambda room: room.status is RoomStatus.ENDED)
    assert (await rooms.get(other["id"])).status is RoomStatus.PREPARING


async def test_a_restart_first_seen_in_a_guest_stream_s_hook_triggers_reconciliation(
    srs: FakeSRS, aiohttp_client: AiohttpClient
) -> None:
    """The first hook with SRS's new service id is a player of a stage guest's stream: the
    stage answers it, and the reconciliation the restart calls for still runs."""
    config = make_config(srs_api_url=srs.url, reconnect_window=0.0, reconcile_interval=0.0)
    client = await start(aiohttp_client, config)
    await eventually(lambda: srs.stream_reads == 1)
    room = await live_room(client, srs)
    srs.restart("n3wsrv01")
    guest_play = hook_for(room, "on_play.json", service_id="n3wsrv01", client_id="p2")
    guest_play.update(
        stream=f"{room['streamKey']}-somepeer", stream_url=f"/live/{room['streamKey']}-somepeer"
    )
    await send_hook(client, guest_play)
    await eventually(lambda: srs.stream_reads == 2)
    await until_room(client.app[keys.rooms], room["id"], ended)


async def test_a_changed_service_in_the_heartbeat_triggers_reconciliation(
    srs: FakeSRS, aiohttp_client: AiohttpClient
) -> None:
    config = make_config(srs_api_url=srs.url, reconnect_window=0.0, reconcile_interval=0.0)
    client = await start(aiohttp_client, config)
    await eventually(lambda: srs.stream_reads == 1)
    room = await live_room(client, srs)
    heartbeat: dict[str, Any] = json.loads((HOOKS_DIR / "heartbeat.json").read_text())
    resp = await client.post(HEARTBEAT, json=heartbeat)
    assert resp.status == 200
    await asyncio.sleep(0.1)
    assert srs.stream_reads == 1  # same service
    srs.restart("n3wsrv02")
    resp = await client.post(HEARTBEAT, json={**heartbeat, "service": "n3wsrv02"})
    assert resp.status == 200
    await until_room(client.app[keys.rooms], room["id"], ended)


async def test_restart_signals_trigger_at_most_one_pass_per_origin_per_interval(
    srs: FakeSRS, aiohttp_client: AiohttpClient
) -> None:
    """Heartbeats and hooks whose ``service`` flaps, from whoever sends them, make livehub ask
    SRS once per TRIGGER_INTERVAL, not once per post; the heartbeat's service ids are kept
    apart from the hooks', so a heartbeat cannot turn each genuine hook into a restart."""
    config = make_config(srs_api_url=srs.url, reconcile_interval=0.0)
    client = await start(aiohttp_client, config)
    await eventually(lambda: srs.stream_reads == 1)
    room: dict[str, Any] = await (await client.post("/api/rooms", json={"title": "t"})).json()
    heartbeat: dict[str, Any] = json.loads((HOOKS_DIR / "heartbeat.json").read_text())
    heartbeat["server"] = srs.server  # SRS's real server id
    for i in range(20):
        body = {**heartbeat, "service": f"fl00d{i % 2:03d}"}
        assert (await client.post(HEARTBEAT, json=body)).status == 200
        # a genuine hook between two heartbeats: always SRS's own service id
        play = srs.hook(hook_for(room, "on_play.json", client_id=f"p{i:03d}"))
        assert await send_hook(client, play) == {"code": 0}
    await eventually(lambda: srs.stream_reads == 2)
    await asyncio.sleep(0.2)
    assert srs.stream_reads == 2  # the start-up pass and one triggered pass
    reconciler = client.app[keys.reconciler]
    # what came within the interval is not lost: one pass when it ends
    assert reconciler.deferred == (DEFAULT_ORIGIN,)


async def test_heartbeat_state_is_bounded(srs: FakeSRS, aiohttp_client: AiohttpClient) -> None:
    config = make_config(srs_api_url=srs.url, reconcile_interval=0.0)
    client = await start(aiohttp_client, config)
    heartbeat: dict[str, Any] = json.loads((HOOKS_DIR / "heartbeat.json").read_text())
    for i in range(MAX_HEARTBEAT_SERVERS * 3):
        body = {**heartbeat, "server": f"vid-{i:07d}", "service": "s3rv1ce0"}
        assert (await client.post(HEARTBEAT, json=body)).status == 200
    assert client.app[keys.reconciler].heartbeat_servers == MAX_HEARTBEAT_SERVERS


async def test_the_restarted_encoder_continues_the_broadcast(
    srs: FakeSRS, aiohttp_client: AiohttpClient
) -> None:
    """SRS restarted and the encoder came back first: same broadcast, new client id."""
    config = make_config(srs_api_url=srs.url, reconnect_window=0.0, reconcile_interval=0.0)
    client = await start(aiohttp_client, config, grace=10.0)
    room = await live_room(client, srs)
    before = await room_json(client, room["id"])
    srs.restart("n3wsrv03")
    again = hook_for(room, "on_publish.json", service_id="n3wsrv03", client_id="n3wc1i3n")
    assert await send_hook(client, again) == {"code": 0}
    # the reconciliation this triggers may not see the stream yet: the grace period covers it
    await eventually(lambda: srs.stream_reads == 2)
    await asyncio.sleep(0.05)
    assert await room_json(client, room["id"]) == before
    assert (await client.app[keys.rooms].get(room["id"])).publisher_client_id == "n3wc1i3n"


@pytest.mark.parametrize("mode", ["down", "http500", "code"])
async def test_nothing_is_ended_while_srs_cannot_be_asked(
    srs: FakeSRS, aiohttp_client: AiohttpClient, caplog: pytest.LogCaptureFixture, mode: str
) -> None:
    config = make_config(srs_api_url=srs.url, reconnect_window=0.0, reconcile_interval=0.05)
    client = await start(aiohttp_client, config)
    room = await live_room(client, srs)
    srs.unpublish(room["streamKey"])
    srs.mode = mode
    if mode == "down":
        await srs.stop()
    reconciler = client.app[keys.reconciler]
    await eventually(lambda: reconciler.last_ok is False)
    skipped = await scrape(client, "livehub_srs_reconciles_total", result="unreachable")
    await eventually(lambda: reconciler.skipped >= 3)
    assert await scrape(client, "livehub_srs_reconciles_total", result="unreachable") > skipped
    assert await scrape(client, "livehub_srs_api_up") == 0
    assert (await room_json(client, room["id"]))["status"] == "live"
    warnings = [
        record
        for record in caplog.records
        if record.getMessage().startswith("reconciliation skipped, SRS API unreachable: GET ")
        and record.levelno == logging.WARNING
    ]
    assert len(warnings) == 1  # once per outage, not once per skipped run

    async def unready() -> bool:  # readiness is checked at most once a second
        return (await client.get("/readyz")).status == 503

    await eventually(unready)
    body = await (await client.get("/readyz")).json()
    assert body["status"] == "not_ready"
    assert body["checks"]["srs_api"] == "unreachable"
    assert body["checks"]["reconcile"] == "skipped"
    assert body["checks"]["database"] == "ok"
    # SRS is back, without the stream: now the room ends
    srs.mode = "up"
    await srs.start()
    await until_room(client.app[keys.rooms], room["id"], ended)

    async def ready() -> bool:
        return (await client.get("/readyz")).status == 200

    await eventually(ready)


# -- closing kicks the publisher -------------------------------------------------------------


async def test_close_kicks_the_publisher_by_its_client_id(
    srs: FakeSRS, aiohttp_client: AiohttpClient
) -> None:
    client = await start(aiohttp_client, make_config(srs_api_url=srs.url))
    room = await live_room(client, srs, "k1ckm3e0")
    resp = await client.post(
        f"/api/rooms/{room['id']}/close", headers={"Authorization": f"Bearer {room['ownerToken']}"}
    )
    assert resp.status == 200
    await eventually(lambda: srs.kicks == ["k1ckm3e0"])
    assert ("DELETE", "/api/v1/clients/k1ckm3e0") in srs.requests
    # SRS then sends on_unpublish for the kicked client: acknowledged, nothing changes
    after = await room_json(client, room["id"])
    unpublish = hook_for(room, "on_unpublish.json", client_id="k1ckm3e0")
    assert await send_hook(client, unpublish) == {"code": 0}
    assert await room_json(client, room["id"]) == after


async def test_a_room_without_a_publisher_kicks_nobody(
    srs: FakeSRS, aiohttp_client: AiohttpClient
) -> None:
    client = await start(aiohttp_client, make_config(srs_api_url=srs.url))
    room: dict[str, Any] = await (await client.post("/api/rooms", json={"title": "t"})).json()
    resp = await client.post(
        f"/api/rooms/{room['id']}/close", headers={"Authorization": f"Bearer {room['ownerToken']}"}
    )
    assert resp.status == 200
    await asyncio.sleep(0.05)
    assert srs.kicks == []


@pytest.mark.parametrize("mode", ["down", "http500"])
async def test_a_failed_kick_is_logged_not_fatal(
    srs: FakeSRS, aiohttp_client: AiohttpClient, caplog: pytest.LogCaptureFixture, mode: str
) -> None:
    client = await start(aiohttp_client, make_config(srs_api_url=srs.url))
    room = await live_room(client, srs, "k1ckf41l")
    srs.mode = mode
    if mode == "down":
        await srs.stop()
    resp = await client.post(
        f"/api/rooms/{room['id']}/close", headers={"Authorization": f"Bearer {room['ownerToken']}"}
    )
    assert resp.status == 200
    assert (await resp.json())["room"]["status"] == "ended"
    await eventually(
        lambda: any(r.getMessage() == "could not kick SRS client k1ckf41l" for r in caplog.records)
    )
    assert (await room_json(client, room["id"]))["status"] == "ended"
    assert (await client.get("/healthz")).status == 200


async def test_a_hanging_kick_does_not_hold_up_shutdown(
    srs: FakeSRS, aiohttp_client: AiohttpClient, caplog: pytest.LogCaptureFixture
) -> None:
    client = await start(aiohttp_client, make_config(srs_api_url=srs.url, shutdown_timeout=0.8))
    room = await live_room(client, srs, "h4ng0000")
    srs.kick_delay = 30.0
    resp = await client.post(
        f"/api/rooms/{room['id']}/close", headers={"Authorization": f"Bearer {room['ownerToken']}"}
    )
    assert resp.status == 200
    await eventually(lambda: srs.kicks == ["h4ng0000"])
    started = time.monotonic()
    await client.close()
    assert time.monotonic() - started < 15  # bounded by the shutdown timeout, not the 30 s kick
    assert "1 publisher kicks cancelled at shutdown" in [r.getMessage() for r in caplog.records]


async def players_of(client: Client, room_id: str) -> int:
    count: int = (await room_json(client, room_id))["playerCount"]
    return count


async def test_players_whose_on_stop_was_lost_are_not_counted_for_ever(
    srs: FakeSRS, aiohttp_client: AiohttpClient
) -> None:
    """SRS sends no retries, and nothing when it stops: a player's on_stop lost (livehub could
    not be reached; SRS restarted) left it counted as long as the room lived. Reconciliation
    forgets the players SRS no longer lists, as it does publishers."""
    config = make_config(srs_api_url=srs.url, reconnect_window=0.0, reconcile_interval=0.0)
    client = await start(aiohttp_client, config)
    reconciler = client.app[keys.reconciler]
    room = await live_room(client, srs)
    for cid in ("ply00001", "ply00002", "ply00003"):
        srs.play(room["streamKey"], cid)
        assert await send_hook(client, hook_for(room, "on_play.json", client_id=cid)) == {"code": 0}
    assert await reconciler.run_once()
    assert await players_of(client, room["id"]) == 3  # SRS lists all three
    srs.stop_playing("ply00001")  # its on_stop was lost
    assert await reconciler.run_once()
    assert await players_of(client, room["id"]) == 2
    # SRS restarts (SIGTERM: no on_stop, no on_unpublish); the encoder is back at once
    srs.restart("n3wsrv04")
    srs.publish(room["streamKey"], "n3wc1i3n")
    again = hook_for(room, "on_publish.json", service_id="n3wsrv04", client_id="n3wc1i3n")
    assert await send_hook(client, again) == {"code": 0}
    srs.play(room["streamKey"], "ply00004")
    play = hook_for(room, "on_play.json", service_id="n3wsrv04", client_id="ply00004")
    assert await send_hook(client, play) == {"code": 0}
    assert await reconciler.run_once()
    assert await players_of(client, room["id"]) == 1
    # a late on_stop of a forgotten player changes nothing
    stop = hook_for(room, "on_stop.json", client_id="ply00002")
    assert await send_hook(client, stop) == {"code": 0}
    assert await players_of(client, room["id"]) == 1


async def test_a_player_srs_does_not_list_yet_is_not_forgotten_within_the_grace(
    srs: FakeSRS, aiohttp_client: AiohttpClient
) -> None:
    """SRS calls on_play before it lists the player (HTTP-FLV, WebRTC): a player counted just
    before a pass is not taken for gone."""
    config = make_config(srs_api_url=srs.url, reconnect_window=0.0, reconcile_interval=0.0)
    client = await start(aiohttp_client, config, grace=10.0)
    reconciler = client.app[keys.reconciler]
    room = await live_room(client, srs)
    assert await send_hook(client, hook_for(room, "on_play.json", client_id="ply00001")) == {
        "code": 0
    }
    for _ in range(3):
        assert await reconciler.run_once()
    assert await players_of(client, room["id"]) == 1


async def test_players_are_counted_again_after_livehub_restarts_embedded(
    srs: FakeSRS, aiohttp_client: AiohttpClient, tmp_path: Any
) -> None:
    """Embedded mode keeps player counts in memory: after a restart of livehub they are
    counted again from SRS's client list, as a cluster's are after Redis restarts empty."""
    config = make_config(
        db_path=str(tmp_path / "livehub.db"), srs_api_url=srs.url, reconcile_interval=0.0
    )
    first = await start(aiohttp_client, config)
    room = await live_room(first, srs)
    for cid in ("ply00001", "ply00002"):
        srs.play(room["streamKey"], cid)
        assert await send_hook(first, hook_for(room, "on_play.json", client_id=cid)) == {"code": 0}
    assert await players_of(first, room["id"]) == 2
    await first.close()

    second = await start(aiohttp_client, config)
    reconciler = second.app[keys.reconciler]
    await eventually(lambda: reconciler.last_ok is True)  # the start-up pass
    assert await players_of(second, room["id"]) == 2
    stop = hook_for(room, "on_stop.json", client_id="ply00001")
    assert await send_hook(second, stop) == {"code": 0}
    assert await players_of(second, room["id"]) == 1


async def test_a_stream_published_with_a_play_extension_is_the_room_s(
    srs: FakeSRS, aiohttp_client: AiohttpClient
) -> None:
    """A publish to ``KEY.flv`` (SRS's source ``/live/KEY``; its stream list names it
    ``KEY.flv``, checked on SRS 5.0.216 and 6.0.157): the hook took it for the room ``KEY``,
    and reconciliation does too."""
    config = make_config(srs_api_url=srs.url, reconnect_window=0.0, reconcile_interval=0.0)
    client = await start(aiohttp_client, config)
    room: dict[str, Any] = await (await client.post("/api/rooms", json={"title": "t"})).json()
    name = room["streamKey"] + ".flv"
    srs.publish(name, "2o5x91ed")
    srs.streams[-1]["url"] = f"/live/{room['streamKey']}"
    body = hook_for(room, "on_publish.json", stream=name)
    assert await send_hook(client, body) == {"code": 0}
    assert await client.app[keys.reconciler].run_once()
    assert (await room_json(client, room["id"]))["status"] == "live"


async def test_a_publisher_srs_lists_again_keeps_the_room_live(
    srs: FakeSRS, aiohttp_client: AiohttpClient
) -> None:
    """A pass found the stream missing (a WebRTC publisher is listed active only once ICE and
    DTLS are done, which can take longer than the grace; a paged list that shifted) and opened
    the window; SRS then lists it published by the same client: no hook will come (SRS sent
    its on_publish already), so a later pass takes the room out of the window, or the window
    would end a broadcast that is going on."""
    config = make_config(srs_api_url=srs.url, reconnect_window=60.0, reconcile_interval=0.0)
    client = await start(aiohttp_client, config)
    rooms, reconciler = client.app[keys.rooms], client.app[keys.reconciler]
    room = await live_room(client, srs)
    srs.unpublish(room["streamKey"])
    assert await reconciler.run_once()
    since = (await rooms.get(room["id"])).reconnecting_since
    assert since is not None
    await eventually(lambda: now_ms() > since)  # a listing asked after the window opened
    srs.publish(room["streamKey"], "2o5x91ed")
    assert await reconciler.run_once()
    stored = await rooms.get(room["id"])
    assert (stored.status, stored.reconnecting) == (RoomStatus.LIVE, False)
    view = await room_json(client, room["id"])
    assert (view["status"], view["reconnecting"]) == ("live", False)


async def test_a_listing_older_than_the_unpublish_does_not_bring_the_room_back(
    srs: FakeSRS, aiohttp_client: AiohttpClient
) -> None:
    """on_unpublish came while a pass was asking SRS: what SRS listed before it says
    nothing of the publisher now. Another client publishing the stream is not the room's."""
    config = make_config(srs_api_url=srs.url, reconnect_window=60.0, reconcile_interval=0.0)
    client = await start(aiohttp_client, config)
    rooms = client.app[keys.rooms]
    room = await live_room(client, srs)
    asked_at = now_ms() - 1
    unpublish = hook_for(room, "on_unpublish.json")
    assert await send_hook(client, unpublish) == {"code": 0}
    assert not await rooms.reconcile({room["streamKey"]: "2o5x91ed"}, asked_at)
    assert (await rooms.get(room["id"])).reconnecting
    assert not await rooms.reconcile({room["streamKey"]: "0th3rc1d"}, now_ms() + 1)
    assert (await rooms.get(room["id"])).reconnecting
