"""SRS's hooks as a real SRS (``../shared/srs``, 5.0 and 6.0) sends them for what encoders
really send, with ffmpeg publishing: a publish token in the RTMP tcUrl (OBS's server field)
rather than the stream's query, and a stream name with a play extension. Skips with the reason
where SRS or ffmpeg is missing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pytest_aiohttp import AiohttpClient

from livehub import keys
from livehub.app import create_app
from livehub.domain.room import Room, RoomStatus
from tests.conftest import Client, make_config
from tests.engines import free_port
from tests.helpers import eventually
from tests.real_srs import VERSIONS, Publisher, RealSRS, need_ffmpeg, srs_binary


@dataclass
class Live:
    client: Client
    srs: RealSRS
    tmp: Path
    publishers: list[Publisher]

    async def publish(self, url: str, name: str) -> Publisher:
        publisher = Publisher(url, self.tmp / f"ffmpeg-{name}.log")
        self.publishers.append(publisher)
        await publisher.start()
        return publisher

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
    binary = srs_binary(request.param)
    need_ffmpeg()
    port = free_port()
    srs = RealSRS(binary, tmp_path, port)
    config = make_config(
        srs_api_url=srs.api_url,
        public_host="127.0.0.1",
        rtmp_port=srs.rtmp_port,
        srs_http_port=srs.http_port,
        srs_api_port=srs.api_port,
        reconnect_window=30.0,
    )
    client = await aiohttp_client(
        create_app(config), server_kwargs={"host": "127.0.0.1", "port": port}
    )
    await srs.start()
    state = Live(client, srs, tmp_path, [])
    try:
        yield state
    finally:
        for publisher in state.publishers:
            await publisher.stop()
        await srs.stop()


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
