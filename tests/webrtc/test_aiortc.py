"""Real WebRTC peers (aiortc) that find each other only through livehub's ``/ws``.

Facts this relies on (``shared/webrtc-testing.md``): ``RTCConfiguration(iceServers=[])`` keeps
aiortc off public STUN servers, and aioice gathers no loopback address unless
``aioice.ice.get_host_addresses`` is replaced. aiortc puts every candidate in its SDP
(``a=end-of-candidates``), so these peers exchange offers and answers and never a
``candidate`` message. Each connection's signaling messages are handled strictly in order by
one task: a message is handled to the end before the next is read.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from fractions import Fraction
from typing import Any

import aioice.ice
import pytest
from aiohttp import ClientWebSocketResponse, WSMsgType
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCDataChannel,
    RTCPeerConnection,
    RTCSessionDescription,
    VideoStreamTrack,
)
from av import VideoFrame

from tests.conftest import Client, CreateRoom

TIMEOUT = 15.0
WIDTH, HEIGHT = 320, 240


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """ICE on 127.0.0.1 only: aioice skips loopback addresses by default."""

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return ["127.0.0.1"]

    monkeypatch.setattr(aioice.ice, "get_host_addresses", get_host_addresses)


class PatternCamera(VideoStreamTrack):
    """A synthetic camera: small frames whose brightness changes every frame."""

    def __init__(self) -> None:
        super().__init__()
        self.sent = 0

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = VideoFrame(width=WIDTH, height=HEIGHT, format="yuv420p")
        luma = 16 + (self.sent * 7) % 220
        for index, plane in enumerate(frame.planes):
            plane.update(bytes([luma if index == 0 else 128]) * plane.buffer_size)
        frame.pts = pts
        frame.time_base = time_base if isinstance(time_base, Fraction) else Fraction(time_base)
        self.sent += 1
        return frame


def loopback_candidates(sdp: str) -> bool:
    """Every candidate in the SDP is on 127.0.0.1 (and there is at least one)."""
    candidates = [line for line in sdp.splitlines() if line.startswith("a=candidate:")]
    return bool(candidates) and all(line.split()[4] == "127.0.0.1" for line in candidates)


Handler = Callable[[dict[str, Any]], Awaitable[None]]


class Peer:
    """One signaling connection and the peer connections it negotiates, one per remote peer."""

    def __init__(self, ws: ClientWebSocketResponse, joined: dict[str, Any]) -> None:
        self.ws = ws
        self.id: str = joined["peerId"]
        self.room_id: str = joined["roomId"]
        self.members = [member["peerId"] for member in joined["members"]]
        self.pcs: dict[str, RTCPeerConnection] = {}
        self.connected: dict[str, asyncio.Event] = {}
        self.handlers: dict[str, Handler] = {}
        self.relayed: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def join(cls, client: Client, room_id: str, **fields: Any) -> Peer:
        ws = await client.ws_connect("/ws")
        await ws.send_json({"type": "join", "roomId": room_id, **fields})
        async with asyncio.timeout(TIMEOUT):
            while True:
                event = json.loads((await ws.receive()).data)
                if event["type"] == "joined":
                    return cls(ws, event)
                assert event["type"] == "viewer-count", event

    def pc(self, remote: str) -> RTCPeerConnection:
        """The peer connection to ``remote``, created on first use."""
        if remote not in self.pcs:
            pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            connected = self.connected.setdefault(remote, asyncio.Event())

            @pc.on("connectionstatechange")
            def on_state() -> None:
                if pc.connectionState == "connected":
                    connected.set()

            self.pcs[remote] = pc
        return self.pcs[remote]

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send_json({"roomId": self.room_id, **message})

    async def offer(self, remote: str) -> None:
        pc = self.pc(remote)
        await pc.setLocalDescription(await pc.createOffer())  # gathers every candidate
        description = {"type": pc.localDescription.type, "sdp": pc.localDescription.sdp}
        await self.send({"type": "offer", "payload": description, "to": remote})

    async def answer_offer(self, message: dict[str, Any]) -> None:
        pc = self.pc(message["from"])
        await pc.setRemoteDescription(RTCSessionDescription(**message["payload"]))
        await pc.setLocalDescription(await pc.createAnswer())
        answer = {"type": pc.localDescription.type, "sdp": pc.localDescription.sdp}
        await self.send({"type": "answer", "payload": answer, "to": message["from"]})

    async def _on_answer(self, message: dict[str, Any]) -> None:
        await self.pcs[message["from"]].setRemoteDescription(
            RTCSessionDescription(**message["payload"])
        )

    def start(self) -> None:
        """Handle this connection's messages, strictly in order, until it closes."""
        self._task = asyncio.create_task(self._run(), name=f"signaling-{self.id}")

    async def _run(self) -> None:
        handlers: dict[str, Handler] = {
            "offer": self.answer_offer,
            "answer": self._on_answer,
            **self.handlers,
        }
        async for msg in self.ws:
            assert msg.type is WSMsgType.TEXT, msg
            message = json.loads(msg.data)
            assert message["type"] != "error", message
            if message["type"] in ("offer", "answer", "candidate"):
                assert message["to"] == self.id  # `to` reached only its peer
                assert loopback_candidates(message["payload"]["sdp"])
                self.relayed.append(message)
            handler = handlers.get(message["type"])
            if handler is not None:
                await handler(message)

    async def wait_connected(self, remote: str) -> None:
        # the event may exist before the peer connection does (its offer is still on the way)
        async with asyncio.timeout(TIMEOUT):
            await self.connected.setdefault(remote, asyncio.Event()).wait()

    async def close(self) -> None:
        """Close every peer connection and the socket; then re-raise what the task hit."""
        for pc in self.pcs.values():
            await pc.close()
        await self.ws.close()
        if self._task is not None:
            async with asyncio.timeout(TIMEOUT):
                await self._task


@contextlib.asynccontextmanager
async def closing(peers: list[Peer]) -> AsyncIterator[list[Peer]]:
    """Close every peer at the end, even when one of them failed."""
    try:
        yield peers
    finally:
        results = await asyncio.gather(*(peer.close() for peer in peers), return_exceptions=True)
        failures = [result for result in results if isinstance(result, BaseException)]
        if failures:
            raise failures[0]


def centre_luma(frame: VideoFrame) -> int:
    plane = frame.planes[0]
    return bytes(plane)[plane.line_size * (frame.height // 2) + frame.width // 2]


async def frames_from(track: MediaStreamTrack, count: int) -> list[VideoFrame]:
    frames = []
    for _ in range(count):
        frame = await track.recv()
        assert isinstance(frame, VideoFrame)
        frames.append(frame)
    return frames


async def test_publisher_video_and_data_channel_reach_a_viewer(
    client: Client, create_room: CreateRoom
) -> None:
    room = await create_room("WebRTC")
    camera = PatternCamera()
    publisher = await Peer.join(
        client, room["id"], role="host", token=room["ownerToken"], name="Publisher"
    )
    loop = asyncio.get_running_loop()
    track_received: asyncio.Future[MediaStreamTrack] = loop.create_future()
    message_received: asyncio.Future[str] = loop.create_future()

    async def on_peer_joined(event: dict[str, Any]) -> None:
        viewer_id = event["peer"]["peerId"]
        pc = publisher.pc(viewer_id)
        pc.addTrack(camera)
        channel = pc.createDataChannel("chat")

        @channel.on("open")
        def on_open() -> None:
            channel.send("hello from the publisher")

        await publisher.offer(viewer_id)

    publisher.handlers["peer-joined"] = on_peer_joined
    publisher.start()
    async with closing([publisher]) as peers:
        viewer = await Peer.join(client, room["id"], name="Viewer")
        peers.append(viewer)
        assert viewer.members == [publisher.id, viewer.id]

        async def on_offer(message: dict[str, Any]) -> None:
            pc = viewer.pc(message["from"])

            @pc.on("track")
            def on_track(track: MediaStreamTrack) -> None:
                track_received.set_result(track)

            @pc.on("datachannel")
            def on_datachannel(channel: RTCDataChannel) -> None:
                @channel.on("message")
                def on_message(data: str) -> None:
                    message_received.set_result(data)

            await viewer.answer_offer(message)

        viewer.handlers["offer"] = on_offer
        viewer.start()

        async with asyncio.timeout(TIMEOUT):
            track = await track_received
            frames = await frames_from(track, 5)
            text = await message_received
        await viewer.wait_connected(publisher.id)
        await publisher.wait_connected(viewer.id)

        assert track.kind == "video"
        assert [(frame.width, frame.height) for frame in frames] == [(WIDTH, HEIGHT)] * 5
        lumas = [centre_luma(frame) for frame in frames]
        # decoded pictures of the pattern (7 brighter each frame), in order: not a still
        assert lumas == sorted(set(lumas)), lumas
        assert text == "hello from the publisher"
        assert [m["type"] for m in viewer.relayed] == ["offer"]
        assert [m["type"] for m in publisher.relayed] == ["answer"]
        assert viewer.relayed[0]["from"] == publisher.id
        assert publisher.relayed[0]["from"] == viewer.id
    camera.stop()
    assert all(pc.connectionState == "closed" for peer in peers for pc in peer.pcs.values())


async def test_three_peer_mesh_connects_every_pair_through_to(
    client: Client, create_room: CreateRoom
) -> None:
    room = await create_room("Mesh")
    peers: list[Peer] = []
    async with closing(peers):
        for name in ("A", "B", "C"):
            peer = await Peer.join(client, room["id"], name=name)

            async def on_peer_joined(event: dict[str, Any], peer: Peer = peer) -> None:
                # members already in the room offer to each newcomer: no glare
                newcomer = event["peer"]["peerId"]
                peer.pc(newcomer).createDataChannel(f"{peer.id}->{newcomer}")
                await peer.offer(newcomer)

            peer.handlers["peer-joined"] = on_peer_joined
            peer.start()
            peers.append(peer)

        for peer in peers:
            for other in peers:
                if other is not peer:
                    await peer.wait_connected(other.id)

        for peer in peers:
            assert sorted(peer.pcs) == sorted(other.id for other in peers if other is not peer)
            assert all(pc.connectionState == "connected" for pc in peer.pcs.values())
        a, b, c = peers
        # A offered to B and C; B offered to C; each answer went back to its offerer only
        assert sorted((m["type"], m["from"]) for m in a.relayed) == sorted(
            [("answer", b.id), ("answer", c.id)]
        )
        assert sorted((m["type"], m["from"]) for m in b.relayed) == sorted(
            [("offer", a.id), ("answer", c.id)]
        )
        assert sorted((m["type"], m["from"]) for m in c.relayed) == sorted(
            [("offer", a.id), ("offer", b.id)]
        )
    assert all(pc.connectionState == "closed" for peer in peers for pc in peer.pcs.values())
