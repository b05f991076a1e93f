"""Outbound frames written straight to ``request.transport``: built by :func:`text_frame` (one
header per broadcast), read back by aiohttp's own client reader over real connections, and
never split by aiohttp's own writes (heartbeat pings, pongs, the close frame)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import WSMsgType, web
from pytest_aiohttp import AiohttpClient

from livehub.api.websocket import encode, text_frame
from livehub.app import create_app
from tests.conftest import make_config

#: every boundary of the three length forms (7-bit, 16-bit, 64-bit), and either side of them
SIZES = [0, 1, 125, 126, 127, 1000, 65535, 65536, 65537, 300_000]


def payload(size: int, seed: int) -> bytes:
    """``size`` bytes of UTF-8 text that differ from one frame to the next."""
    unit = f"{seed:06d}é"  # 2-byte character: a frame boundary off by one would break UTF-8
    text = (unit * (size // len(unit.encode()) + 1)).encode()[:size]
    return text.decode(errors="ignore").encode().ljust(size, b"x")


def test_the_three_length_forms_and_their_boundaries() -> None:
    for size in SIZES:
        frame = text_frame(b"a" * size)
        assert frame[0] == 0x81  # FIN, text, no RSV bits
        assert frame[1] & 0x80 == 0  # servers do not mask
        if size < 126:
            assert (frame[1], len(frame)) == (size, 2 + size)
        elif size < 65536:
            assert frame[1] == 126 and int.from_bytes(frame[2:4], "big") == size
            assert len(frame) == 4 + size
        else:
            assert frame[1] == 127 and int.from_bytes(frame[2:10], "big") == size
            assert len(frame) == 10 + size


async def test_aiohttp_reads_every_length_form_written_to_the_transport(
    aiohttp_client: AiohttpClient,
) -> None:
    """A handler writes the frames, several in one ``transport.write``, as the hub does."""

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        assert request.transport is not None
        frames = [text_frame(payload(size, index)) for index, size in enumerate(SIZES)]
        request.transport.write(b"".join(frames[:4]))
        for frame in frames[4:]:
            request.transport.write(frame)
        await ws.receive()  # until the client closes
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    client = await aiohttp_client(app)
    async with client.ws_connect("/", max_msg_size=0) as ws:
        for index, size in enumerate(SIZES):
            msg = await ws.receive(timeout=10)
            assert msg.type is WSMsgType.TEXT, msg
            assert msg.data.encode() == payload(size, index)


def test_encode_is_the_json_text_of_one_frame() -> None:
    message: dict[str, Any] = {"type": "chat", "text": "直播 ✓", "n": [1, 2]}
    frame = encode(message)
    assert frame[:2] == bytes((0x81, len(frame) - 2))
    assert frame[2:] == '{"type":"chat","text":"直播 ✓","n":[1,2]}'.encode()


def test_encode_frames_a_message_as_text_frame_does_in_every_length_form() -> None:
    """``encode`` builds the frame itself (one call less per message): the same bytes."""
    for size in SIZES:
        text = "a" * max(size - 2, 0)  # the JSON string's two quotes make it ``size`` bytes
        frame = encode(text)  # type: ignore[arg-type]  # any JSON value encodes alike
        assert frame == text_frame(f'"{text}"'.encode())


@pytest.mark.parametrize("heartbeat", [0.3])
async def test_heartbeat_pings_during_a_flood_never_land_inside_a_frame(
    aiohttp_client: AiohttpClient, heartbeat: float
) -> None:
    """Pings every 0.3 s while 2,000 relays (some of them large) fan out to two receivers:
    both read every frame whole and in order (aiohttp's reader closes with 1002 on a frame
    that a ping cut in two), answer the pings, and stay connected."""
    client = await aiohttp_client(
        create_app(
            make_config(
                heartbeat=heartbeat,
                rate_per_s=100_000.0,
                rate_burst=100_000,
                max_msg_size=1024 * 1024,
                send_queue_bytes=64 * 1024 * 1024,
                max_relay_bytes=0,  # 70 KB relays, and no byte budget: the flood is the point
                relay_bytes_per_s=0,
            )
        )
    )
    room = await (await client.post("/api/rooms", json={"title": "flood"})).json()
    rid = room["id"]
    sockets = [await client.ws_connect("/ws", max_msg_size=0) for _ in range(3)]
    for ws in sockets:  # every member joined before the flood starts
        await ws.send_json({"type": "join", "roomId": rid})
        while (await ws.receive_json(timeout=10))["type"] != "joined":
            pass
    sender, receivers = sockets[0], sockets[1:]
    sizes = [10, 200, 70_000, 3_000]

    async def read_all(ws: Any) -> list[int]:
        seen: list[int] = []
        async with asyncio.timeout(60):
            while len(seen) < 2000:
                msg = await ws.receive()
                assert msg.type is WSMsgType.TEXT, (msg, len(seen))
                event = msg.json()
                if event["type"] == "candidate":
                    seq, filler = event["payload"]
                    assert len(filler) == sizes[seq % len(sizes)]
                    seen.append(seq)
        return seen

    readers = [asyncio.create_task(read_all(ws)) for ws in receivers]
    for seq in range(2000):
        filler = "p" * sizes[seq % len(sizes)]
        await sender.send_json({"type": "candidate", "roomId": rid, "payload": [seq, filler]})
        if seq % 50 == 0:
            await asyncio.sleep(0.05)  # the flood spans several heartbeats
    for seen in await asyncio.gather(*readers):
        assert seen == list(range(2000))
    for ws in sockets:
        assert not ws.closed
        await ws.close()
