"""The signaling WebSocket: accept, read frames, hand each to the protocol, always clean up.

Outbound frames bypass aiohttp's per-message writer: the hub encodes a message once into a
complete WebSocket frame and :class:`TransportSink` writes each peer's batch with one
``transport.write``. Only this handler reads the socket.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from pathlib import Path
from typing import Any

import orjson
from aiohttp import WSCloseCode, WSMsgType, web

from livehub import keys
from livehub.api.middlewares import error_response

log = logging.getLogger(__name__)


def text_frame(payload: bytes) -> bytes:
    """An unmasked, final WebSocket text frame (server to client)."""
    length = len(payload)
    if length < 126:
        return bytes((0x81, length)) + payload
    if length < 65536:
        return struct.pack("!BBH", 0x81, 126, length) + payload
    return struct.pack("!BBQ", 0x81, 127, length) + payload


def encode(message: dict[str, Any]) -> bytes:
    return text_frame(orjson.dumps(message))


class TransportSink:
    """Adapts an aiohttp WebSocket to the hub's :class:`~livehub.domain.hub.Sink`."""

    __slots__ = ("_closing", "_transport", "_ws")

    def __init__(self, ws: web.WebSocketResponse, transport: asyncio.Transport) -> None:
        self._ws = ws
        self._transport = transport
        self._closing: asyncio.Task[bool] | None = None

    def write(self, frames: list[bytes]) -> None:
        if self._ws.closed or self._transport.is_closing():
            return
        self._transport.write(frames[0] if len(frames) == 1 else b"".join(frames))

    def buffered(self) -> int:
        return self._transport.get_write_buffer_size()

    def abort(self, code: int, reason: str) -> None:
        if self._ws.closed or self._closing is not None:
            return
        transport = self._transport
        self._closing = asyncio.ensure_future(self._ws.close(code=code, message=reason.encode()))
        # a peer that does not read will never answer the close: cut it off
        asyncio.get_running_loop().call_later(2.0, transport.abort)


def _origin_allowed(request: web.Request) -> bool:
    allowed = request.app[keys.config].ws_origins
    if "*" in allowed:
        return True
    origin = request.headers.get("Origin")
    return origin is None or origin in allowed


async def websocket(request: web.Request) -> web.StreamResponse:
    config = request.app[keys.config]
    if not _origin_allowed(request):
        return error_response(403, "origin_not_allowed", "WebSocket Origin is not allowed")
    ws = web.WebSocketResponse(
        heartbeat=config.heartbeat or None,
        max_msg_size=config.max_msg_size,
        compress=False,
    )
    await ws.prepare(request)
    transport = request.transport
    if transport is None:  # pragma: no cover - the client vanished during the upgrade
        return ws
    signaling = request.app[keys.signaling]
    sockets = request.app[keys.websockets]
    peer = signaling.open(TransportSink(ws, transport))
    sockets.add(ws)
    try:
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                try:
                    data = orjson.loads(msg.data)
                except orjson.JSONDecodeError:
                    signaling.reject(peer, "invalid_json", "Message is not valid JSON")
                    continue
                signaling.handle(peer, data)
            elif msg.type is WSMsgType.BINARY:
                signaling.reject(peer, "binary_not_supported", "Send JSON text frames")
    finally:
        sockets.discard(ws)
        signaling.close(peer)
    return ws


STATIC = Path(__file__).resolve().parent.parent / "static"


async def root(request: web.Request) -> web.StreamResponse:
    """``/``: the seed's clients open their WebSocket here; browsers get the console."""
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return await websocket(request)
    return web.FileResponse(STATIC / "index.html")


async def close_all(app: web.Application) -> None:
    """on_shutdown: close every WebSocket with 1001 Going Away, all at once, bounded."""
    open_sockets = app[keys.websockets]
    sockets = list(open_sockets)
    if not sockets:
        return
    closing = [ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown") for ws in sockets]
    timeout = app[keys.config].shutdown_timeout / 2 or None
    try:
        await asyncio.wait_for(asyncio.gather(*closing, return_exceptions=True), timeout)
    except TimeoutError:
        log.warning("some WebSockets did not close in time")
