"""SRS's hooks as a real SRS (``../shared/srs``, 5.0 and 6.0) sends them for what encoders
really send, with ffmpeg publishing: a publish token in the RTMP tcUrl (OBS's server field)
rather than the stream's query, and a stream name with a play extension. Skips with the reason
where SRS or ffmpeg is missing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pytest_aiohttp import AiohttpClient

from livehub import keys
from livehub.domain.room import Room, RoomStatus
from tests import real_srs
from tests.helpers import eventually
from tests.real_srs import VERSIONS, Publisher, start_with_srs, whep_offer


class Live(real_srs.Live):
    """A real SRS and livehub, with the rooms the hook tests read."""

    async def room(self) -> dict[str, Any]:
        resp = await self.client.post("/api/rooms", json={"title": "Real hooks"})
        assert resp.status == 201
        room: dict[str, Any] = await resp.json()
        return room

    async def stored(self, room_id: str) -> Room:
        return await self.client.app[keys.rooms].get(room_id)


@pytest.fixture(params=VERSIONS)
async def live(
    request: pytest.FixtureRequest, tmp_path: Path, aiohttp_client: AiohttpClient
) -> AsyncIterator[Live]:
    state = await start_with_srs(request.param, tmp_path, aiohttp_client, Live)
    try:
        yield state
    finally:
        await state.stop()


async def until_live(live: Live, room_id: str, publisher: Publisher) -> Room:
    async def check() -> Room | None:
        assert publisher.proc is not None and publisher.proc.returncode is None, (
            "SRS refused the publisher: " + publisher.log.read_text(errors="replace")[-300:]
        )
        room = await live.stored(room_id)
        return room if room.status is RoomStatus.LIVE else None

    room: Room = await eventually(check, within=20)
    return room


async def test_a_publish_token_in_the_tcurl_is_accepted(live: Live) -> None:
    """OBS with the token in its server field (``rtmp://host/live?secret=T``, stream key
    ``KEY``): SRS hands on_publish ``param`` ``?secret=T?secret=T`` (the tcUrl's query twice,
    and before the stream's own: ``?secret=B?secret=A?secret=A``)."""
    room = await live.room()
    token, key = room["publish"]["token"], room["streamKey"]
    port = live.srs.rtmp_port
    url = f"rtmp://127.0.0.1:{port}/live?secret={token}/{key}"
    publisher = await live.publish(url, "tcurl")
    await until_live(live, room["id"], publisher)
    # a wrong token in the tcUrl is still refused
    other = await live.room()
    wrong = await live.publish(
        f"rtmp://127.0.0.1:{port}/live?secret=not-the-token/{other['streamKey']}", "wrong"
    )
    assert await wrong.exited(15) not in (None, 0)
    assert (await live.stored(other["id"])).status is RoomStatus.PREPARING


async def test_a_stream_published_with_a_play_extension_stays_live(live: Live) -> None:
    """ffmpeg to ``rtmp://host/live/KEY.flv?secret=T``: SRS publishes the source
    ``/live/KEY`` (players of ``KEY`` see it) and lists the stream by the name ``KEY.flv``.
    The hook took it for the room ``KEY``; reconciliation must too, or it ends the room."""
    room = await live.room()
    token, key = room["publish"]["token"], room["streamKey"]
    publisher = await live.publish(live.srs.rtmp_url(f"{key}.flv", f"?secret={token}"), "ext")
    await until_live(live, room["id"], publisher)
    rooms = live.client.app[keys.rooms]
    rooms.publish_grace_ms = 0  # the publish is not "just now" any more
    reconciler = live.client.app[keys.reconciler]

    async def listed() -> bool:  # SRS lists it once it has acquired the stream
        return bool(await reconciler._origins.primary.publishing())

    await eventually(listed, within=10)
    assert await reconciler.run_once()
    stored = await live.stored(room["id"])
    assert (stored.status, stored.reconnecting) == (RoomStatus.LIVE, False)


async def test_every_kind_of_player_is_counted_as_srs_lists_it(live: Live) -> None:
    """HTTP-FLV, RTMP, WHEP and HLS players: reconciliation finds each in SRS's client list
    under the client id its on_play carried (HLS: its hls_ctx), so none is forgotten; once SRS
    restarted (SIGTERM: no on_stop), none is counted any more."""
    live.srs.hls = True
    await live.srs.stop()
    await live.srs.start()
    room = await live.room()
    token, key = room["publish"]["token"], room["streamKey"]
    publisher = await live.publish(live.srs.rtmp_url(key, f"?secret={token}"), "main")
    await until_live(live, room["id"], publisher)
    reconciler = live.client.app[keys.reconciler]

    async def players() -> int:
        count: int = (await (await live.client.get(f"/api/rooms/{room['id']}")).json())[
            "playerCount"
        ]
        return count

    async def listed() -> bool:  # SRS lists the stream once it has acquired it
        return bool(await reconciler._origins.primary.publishing())

    await eventually(listed, within=10)
    for url in (live.srs.flv_url(key), live.srs.rtmp_url(key)):
        await live.play(url)
    status, _ = await whep_offer(
        f"http://127.0.0.1:{live.srs.api_port}/rtc/v1/whep/?app=live&stream={key}"
    )
    assert status == 201

    async def hls_playing() -> bool:  # the first segment takes a second or two
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{live.srs.http_port}/live/{key}.m3u8"
            async with session.get(url) as resp:
                return resp.status == 200

    await eventually(hls_playing, within=15)

    async def all_counted() -> bool:
        return await players() == 4

    await eventually(all_counted, within=15)
    live.client.app[keys.rooms].publish_grace_ms = 0  # SRS has had time to list them
    for _ in range(2):
        assert await reconciler.run_once()
    assert await players() == 4
    assert reconciler.players_forgotten == 0

    await live.srs.stop()  # SIGTERM: SRS quits fast, no on_stop, no on_unpublish
    await live.srs.start()
    assert await reconciler.run_once()
    assert await players() == 0
    assert reconciler.players_forgotten == 4


class _Camera:
    """A synthetic camera for aiortc (imported lazily: aiortc is a test extra)."""

    @staticmethod
    def track() -> Any:
        from aiortc import VideoStreamTrack
        from av import VideoFrame

        class Camera(VideoStreamTrack):
            async def recv(self) -> VideoFrame:
                pts, time_base = await self.next_timestamp()
                frame = VideoFrame(width=160, height=120, format="yuv420p")
                for plane in frame.planes:
                    plane.update(bytes([100]) * plane.buffer_size)
                frame.pts, frame.time_base = pts, time_base
                return frame

        return Camera()


async def test_a_whip_publisher_slower_than_the_grace_keeps_its_room_live(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SRS lists a WHIP publisher inactive until ICE and DTLS are done (seen: ``publish:
    {active: false}`` at its on_publish). A pass in between opens the window; once SRS lists it
    active, under the client id of its on_publish, a pass makes the room live again: no hook
    would, and the window would end a broadcast that is on."""
    aioice = pytest.importorskip("aioice")
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])
    room = await live.room()
    rooms, reconciler = live.client.app[keys.rooms], live.client.app[keys.reconciler]
    whip = room["publish"]["whipUrl"]
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        pc.addTransceiver(_Camera.track(), direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        async with aiohttp.ClientSession() as session:
            headers = {"Content-Type": "application/sdp"}
            async with session.post(whip, data=pc.localDescription.sdp, headers=headers) as resp:
                assert resp.status == 201
                answer = await resp.text()
        assert (await live.stored(room["id"])).status is RoomStatus.LIVE
        rooms.publish_grace_ms = 0  # ICE "takes longer" than the grace: a pass comes first
        assert await reconciler.run_once()
        assert (await live.stored(room["id"])).reconnecting
        await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))

        async def active() -> bool:
            return room["streamKey"] in await reconciler._origins.primary.publishing()

        await eventually(active, within=15)
        assert await reconciler.run_once()
        stored = await live.stored(room["id"])
        assert (stored.status, stored.reconnecting) == (RoomStatus.LIVE, False)
    finally:
        await pc.close()
