"""The stage and private playback against a real SRS (``../shared/srs``, 5.0 and 6.0) with
ffmpeg: a guest invited and accepted publishes over RTMP with its own credentials and every
member sees it live on stage; a wrong guest token, an uninvited key and a removed guest are
refused by SRS through livehub's hook; a private room's FLV plays only with ``?token=``.
Skips with the reason where SRS or ffmpeg is missing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pytest_aiohttp import AiohttpClient

from tests.real_srs import (
    VERSIONS,
    Live,
    probe,
    start_with_srs,
    whep_offer,
)
from tests.signaling_client import join, receive

SECRET = "viewer-token-secret-for-real-srs-0123456789"
#: seconds ffmpeg gets to be refused; an accepted publisher runs for a minute
REFUSED_WITHIN = 15.0


@pytest.fixture(params=VERSIONS)
async def live(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    aiohttp_client: AiohttpClient,
) -> AsyncIterator[Live]:
    state = await start_with_srs(
        request.param, tmp_path, aiohttp_client, Live, viewer_token_secret=SECRET
    )
    try:
        yield state
    finally:
        await state.stop()


async def until_stage(ws: Any, check: Any, within: float = 20.0) -> dict[str, Any]:
    while True:
        event = await receive(
            ws, skip=("viewer-count", "peer-joined", "room-status"), within=within
        )
        if event["type"] == "stage" and check(event["stage"]):
            return event


def streams_of(output: str) -> list[str]:
    return sorted(stream["codec_type"] for stream in json.loads(output).get("streams", []))


async def test_a_guest_publishes_with_its_credentials_and_is_on_stage(live: Live) -> None:
    client = live.client
    room = await (await client.post("/api/rooms", json={"title": "Real stage"})).json()
    rid = room["id"]
    host = await client.ws_connect("/ws")
    await join(host, rid, role="host", token=room["ownerToken"], name="Hana")
    guest = await client.ws_connect("/ws")
    guest_id = (await join(guest, rid, name="Gus"))["peerId"]
    viewer = await client.ws_connect("/ws")
    viewer_id = (await join(viewer, rid, name="Vi"))["peerId"]
    await host.send_json({"type": "stage-invite", "roomId": rid, "to": guest_id})
    invite = await receive(guest, skip=("viewer-count", "peer-joined"))
    assert invite["type"] == "stage-invite"
    await guest.send_json({"type": "stage-accept", "roomId": rid})
    credentials = await receive(guest, skip=("viewer-count", "peer-joined"))
    assert credentials["type"] == "stage-credentials"
    key, publish = credentials["streamKey"], credentials["publish"]

    # refused by SRS through the hook: a wrong guest token, and a key nobody was invited for
    wrong = await live.publish(live.srs.rtmp_url(key, "?secret=not-the-token"), "wrong")
    assert await wrong.exited(REFUSED_WITHIN) not in (None, 0)
    uninvited_key = f"{room['streamKey']}-{viewer_id}"
    uninvited = await live.publish(
        live.srs.rtmp_url(uninvited_key, f"?secret={publish['token']}"), "uninvited"
    )
    assert await uninvited.exited(REFUSED_WITHIN) not in (None, 0)

    # the guest publishes with its credentials (the main stream is not live): on stage, live
    accepted = await live.publish(publish["rtmpUrl"], "guest")
    for ws in (host, guest, viewer):
        stage = await until_stage(ws, lambda s: bool(s) and s[0]["live"])
        assert stage["stage"][0]["peerId"] == guest_id
    view = await (await client.get(f"/api/rooms/{rid}")).json()
    assert view["stage"][0]["live"] is True and view["status"] == "preparing"
    code, output = await probe(view["stage"][0]["playUrls"]["flv"])
    assert code == 0 and "video" in streams_of(output), output

    # removed by the host: SRS drops the stream, and the same credentials are refused again
    await host.send_json({"type": "stage-remove", "roomId": rid, "peerId": guest_id})
    await until_stage(viewer, lambda s: s == [])
    assert await accepted.exited(REFUSED_WITHIN) is not None  # kicked from SRS
    again = await live.publish(publish["rtmpUrl"], "removed")
    assert await again.exited(REFUSED_WITHIN) not in (None, 0)


async def test_a_private_rooms_flv_plays_only_with_a_viewer_token(live: Live) -> None:
    client = live.client
    resp = await client.post("/api/rooms", json={"title": "Private", "visibility": "private"})
    room = await resp.json()
    owner = {"Authorization": f"Bearer {room['ownerToken']}"}
    resp = await client.post(f"/api/rooms/{room['id']}/viewer-tokens", json={}, headers=owner)
    token = (await resp.json())["token"]
    await live.publish(room["publish"]["rtmpUrl"], "main")
    host = await client.ws_connect("/ws")
    await join(host, room["id"], role="host", token=room["ownerToken"])
    while (await receive(host, within=20.0))["type"] != "room-status":
        pass
    bare = live.srs.flv_url(room["streamKey"])
    code, output = await probe(bare)
    assert code != 0, output  # SRS refused the player through the hook
    code, output = await probe(f"{bare}?token=garbage")
    assert code != 0, output
    code, output = await probe(f"{bare}?token={token}")
    assert code == 0 and "video" in streams_of(output), output
    # the view a token holder gets has play URLs that carry it, and they play
    view = await (await client.get(f"/api/rooms/{room['id']}?token={token}")).json()
    code, output = await probe(view["playUrls"]["flv"])
    assert code == 0 and "video" in streams_of(output), output
    # WHEP (WebRTC play): refused without the token, answered with it
    whep = view["playUrls"]["whep"]
    assert whep.endswith(f"&token={token}")
    status, body = await whep_offer(whep.removesuffix(f"&token={token}"))
    assert status != 201, body
    status, body = await whep_offer(whep)
    assert status == 201 and body.startswith("v=0"), (status, body)
