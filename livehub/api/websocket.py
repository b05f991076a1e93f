"""The signaling WebSocket endpoint: aiohttp's own ``WebSocketResponse`` does the handshake,
frame parsing, control frames, heartbeat and the close handshake; this module checks ``Origin``,
hands each message to the protocol (:class:`~livehub.domain.signaling.Signaling`) and adapts the
socket to the hub's :class:`~livehub.domain.peer.Sink`.

Inbound: the handler task is the only reader. It runs ``async for`` over the socket inside
``try/finally`` that always leaves the hub, and handles each message before reading the next,
so a connection's messages are handled in order. Text arrives as bytes (``decode_text=False``)
and goes straight to ``orjson``; a text message that is not UTF-8 closes with 1007. aiohttp
answers fragments, pings, bad frames (1002), oversized messages (1009) and heartbeats.

Outbound: the hub encodes each message once (:func:`encode`: the whole WebSocket frame, header
and JSON text, built once however many members get it) and hands every recipient its frames of
one loop iteration in one :meth:`Connection.write`, which puts them on the connection's
``request.transport`` in **one** ``write`` (public API; the frames are unmasked server frames,
RFC 6455 §5.2, so one header per broadcast serves every recipient). No task per recipient: the
transport sends at once what the kernel takes and buffers the rest, in order; aiohttp's own
writes (pongs, heartbeat pings, the close frame) are synchronous whole frames on the same
transport, so they land between ours, never inside one. ``write`` returns the transport's write
buffer; the hub closes a connection above ``LIVEHUB_SEND_QUEUE_BYTES`` with 1013, so a peer that
reads nothing holds at most that much. A close asked for by the hub goes after everything
already written (same transport, first in, first out).
"""

from __future__ import annotations

import asyncio
import logging
import struct
from typing import Any, Final, Literal

import orjson
from aiohttp import WSCloseCode, WSMsgType, web

from livehub import keys
from livehub.api.client_address import client_address
from livehub.api.middlewares import render_error
from livehub.domain.addresses import address_key
from livehub.domain.errors import Forbidden, TooManyConnections

log = logging.getLogger(__name__)

#: seconds a closing connection has to take its last frames and the close frame before the TCP
#: connection is cut (it may not be reading at all)
CLOSE_TIMEOUT: Final = 2.0
#: ``Retry-After`` of an upgrade refused for too many connections from its address
CONNECTIONS_RETRY_AFTER: Final = 10


#: FIN + text opcode: every frame livehub sends is one whole text message
_FIN_TEXT: Final = 0x81
#: the header's three forms: a 7-bit length, 126 and a 16-bit length, 127 and a 64-bit length
_HEADER_7: Final = struct.Struct("!BB").pack
_HEADER_16: Final = struct.Struct("!BBH").pack
_HEADER_64: Final = struct.Struct("!BBQ").pack


def text_frame(payload: bytes) -> bytes:
    """``payload`` as one unmasked, unfragmented server text frame (RFC 6455 §5.2): the 7-bit
    length, or 126 and a 16-bit length, or 127 and a 64-bit length."""
    size = len(payload)
    if size < 126:
        return _HEADER_7(_FIN_TEXT, size) + payload
    if size < 1 << 16:
        return _HEADER_16(_FIN_TEXT, 126, size) + payload
    return _HEADER_64(_FIN_TEXT, 127, size) + payload


def encode(message: dict[str, Any]) -> bytes:
    """The hub's encoder: a message as one whole text frame (:func:`text_frame`), built once
    for all recipients."""
    # text_frame's body, without a second call per message
    payload = orjson.dumps(message)
    size = len(payload)
    if size < 126:
        return _HEADER_7(_FIN_TEXT, size) + payload
    if size < 1 << 16:
        return _HEADER_16(_FIN_TEXT, 126, size) + payload
    return _HEADER_64(_FIN_TEXT, 127, size) + payload


class Connection:
    """One signaling WebSocket as the hub's sink: frames go straight to its transport."""

    __slots__ = ("_closer", "_closing", "_transport", "_ws")

    def __init__(self, ws: web.WebSocketResponse[Any], transport: asyncio.Transport | None) -> None:
        self._ws = ws
        self._transport = transport
        #: set once a close is asked for: nothing more is written after it
        self._closing = False
        self._closer: asyncio.Task[None] | None = None

    # -- the hub's Sink ------------------------------------------------------------------------

    def write(self, frames: list[bytes]) -> int:
        """Write the frames; returns what the peer has not taken yet: the transport's write
        buffer (0 once closing: nothing more is written)."""
        transport = self._transport
        if self._closing or transport is None or transport.is_closing() or self._ws.closed:
            return 0
        transport.write(frames[0] if len(frames) == 1 else b"".join(frames))
        return transport.get_write_buffer_size()

    def abort(self, code: int, reason: str) -> None:
        """Close with ``code`` after what is already written, within :data:`CLOSE_TIMEOUT`."""
        self.close(code, reason)

    # -- closing -------------------------------------------------------------------------------

    def close(self, code: int, reason: str = "") -> None:
        if self._closing or self._ws.closed:
            return
        self._closing = True
        self._closer = asyncio.create_task(self._send_close(code, reason))
        # a peer that reads nothing never takes what is buffered, nor the close frame: cut the
        # TCP connection then (the handler's read ends, and the peer leaves the hub)
        asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, self._cut)

    async def wait_closed(self) -> None:
        if self._closer is not None:
            await asyncio.shield(self._closer)

    def closed(self) -> None:
        """The handler is done with the socket: make sure the TCP connection goes even if the
        peer never reads what is still in its buffer."""
        self._closing = True
        transport = self._transport
        if transport is not None and not transport.is_closing():
            asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, transport.abort)

    async def _send_close(self, code: int, reason: str) -> None:
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self._ws.close(code=code, message=reason.encode(), drain=False)
        except TimeoutError:
            log.debug("connection did not take its close frame in time: cutting it")
            self._cut()
        except (ConnectionError, RuntimeError):
            pass  # the transport is gone or closing; the handler sees it and leaves the hub
        except Exception:
            log.exception("closing a WebSocket failed: cutting it")
            self._cut()
        finally:
            self._closer = None

    def _cut(self) -> None:
        """Drop the TCP connection (harmless once it is closed)."""
        if self._transport is not None:
            self._transport.abort()


class OriginNotAllowed(Forbidden):
    code = "origin_not_allowed"

    def __init__(self) -> None:
        super().__init__("WebSocket Origin is not allowed")


def _origin_allowed(request: web.Request) -> bool:
    allowed = request.app[keys.config].ws_origins
    if "*" in allowed:
        return True
    origin = request.headers.get("Origin")
    return origin is None or origin in allowed


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


async def websocket(request: web.Request) -> web.StreamResponse:
    """``/ws`` (and ``/`` with an upgrade): one signaling connection. An address at its
    connection limit gets 429 before the handshake; the slot is freed when the socket ends.

    One frame for the connection's whole life: each message resumes this coroutine and every
    frame around it, so the error middleware stays out (``UPGRADE_ROUTES``) and the errors up
    to the handshake are answered here, in the one error shape.
    """
    try:
        address = await _admit(request)
    except Exception as exc:
        return render_error(request, exc)
    connections = request.app[keys.connections]
    try:
        try:
            ws = await _handshake(request)
        except Exception as exc:
            return render_error(request, exc)
        signaling = request.app[keys.signaling]
        connection = Connection(ws, request.transport)
        peer = signaling.open(connection, address)
        close_code = 0
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    try:
                        message = orjson.loads(msg.data)
                    except orjson.JSONDecodeError:
                        if not _is_utf8(msg.data):
                            close_code = WSCloseCode.INVALID_TEXT
                            break
                        signaling.bad_frame(peer, "invalid_json", "Message is not valid JSON")
                        del msg
                        continue
                    pending = signaling.handle(peer, message)
                    if pending is not None:
                        await pending
                        # a finished coroutine keeps its frame's memory while it is referenced:
                        # held until the next message, that is 0.3-0.5 kB per idle connection
                        pending = None
                    # so are the last frame read and what it decoded to: an idle connection
                    # holds neither while it waits
                    del msg, message
                elif msg.type is WSMsgType.BINARY:
                    signaling.bad_frame(peer, "binary_not_supported", "Send JSON text frames")
                    del msg
                else:  # ERROR: aiohttp has closed it (bad frame, heartbeat timeout)
                    log.debug("peer %s: %s", peer.id, ws.exception())
                    break
        except Exception:
            log.exception("signaling connection of peer %s failed", peer.id)
            close_code = WSCloseCode.INTERNAL_ERROR
        finally:
            signaling.close(peer)
            connection.closed()
        # the room hears peer-left first, not after the close handshake
        if close_code == WSCloseCode.INVALID_TEXT:
            await ws.close(code=close_code, message=b"text is not UTF-8")
        elif close_code:
            await ws.close(code=close_code, message=b"internal error")
        return ws
    finally:
        connections.release(address)


async def _admit(request: web.Request) -> str:
    """The checks before the handshake: the ``Origin``, and a slot of the address's connection
    limit (taken: the caller releases it). Returns the address's key."""
    if not _origin_allowed(request):
        raise OriginNotAllowed()
    config = request.app[keys.config]
    address = address_key(client_address(request, config.trusted_proxies))
    connections = request.app[keys.connections]
    if not await connections.acquire(address):
        request.app[keys.metrics].ws_refused.labels("address_limit").inc()
        raise TooManyConnections(connections.limit, retry_after=CONNECTIONS_RETRY_AFTER)
    return address


async def _handshake(request: web.Request) -> web.WebSocketResponse[Literal[False]]:
    config = request.app[keys.config]
    ws: web.WebSocketResponse[Literal[False]] = web.WebSocketResponse(
        timeout=CLOSE_TIMEOUT,  # for the peer's answer to our close frame
        heartbeat=config.heartbeat or None,
        max_msg_size=config.max_msg_size,
        autoping=True,
        compress=False,  # each frame is encoded once for all its recipients
        decode_text=False,
    )
    await ws.prepare(request)
    return ws
