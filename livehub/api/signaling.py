"""The signaling WebSocket: upgrade, read frames, hand each message to the protocol, clean up.

:class:`WebSocket` is one upgraded connection. It cuts the incoming bytes into frames and
handles every complete message synchronously, in arrival order; aiohttp's reader would queue
each message and wake a handler task per message, which costs more than the message itself.
Control frames (ping, pong, close), fragmentation, size and UTF-8 rules follow RFC 6455 as
aiohttp applies them (same close codes: 1002, 1007, 1009). Outbound, the hub encodes a message
once into a complete frame and :meth:`WebSocket.write` writes each peer's batch with one
``transport.write``. Heartbeat: a ping after ``heartbeat`` seconds without a frame from the
client; no answer within half that and the TCP connection is dropped (the peer leaves its
rooms).

A connection gets there through aiohttp: the ``/ws`` (or ``/``) route's handler
:func:`websocket` checks ``Origin`` and the opening handshake, sends the ``101`` and installs the
:class:`WebSocket` as the connection's payload parser (``RequestHandler.set_parser``, the hook
aiohttp's own ``WebSocketResponse`` uses); the handler then waits for the connection to end.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import hashlib
import logging
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import orjson
from aiohttp import WSCloseCode, web
from aiohttp.http import WS_KEY

from livehub import keys
from livehub.api.middlewares import error_response
from livehub.domain.hub import Peer
from livehub.domain.signaling import Signaling

log = logging.getLogger(__name__)

OP_CONTINUATION: Final = 0x0
OP_TEXT: Final = 0x1
OP_BINARY: Final = 0x2
OP_CLOSE: Final = 0x8
OP_PING: Final = 0x9
OP_PONG: Final = 0xA
_OPCODES: Final = frozenset((OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG))
#: close codes a client may send (RFC 6455 7.4; 3000-4999 are free for applications)
_CLIENT_CLOSE_CODES: Final = frozenset(int(code) for code in WSCloseCode)
#: seconds a closing peer has to answer our close frame before the TCP connection is cut
CLOSE_TIMEOUT: Final = 2.0
_NOTHING: Final = (False, b"")


def frame(opcode: int, payload: bytes) -> bytes:
    """An unmasked, final WebSocket frame (server to client)."""
    length = len(payload)
    if length < 126:
        return bytes((0x80 | opcode, length)) + payload
    if length < 65536:
        return struct.pack("!BBH", 0x80 | opcode, 126, length) + payload
    return struct.pack("!BBQ", 0x80 | opcode, 127, length) + payload


def text_frame(payload: bytes) -> bytes:
    return frame(OP_TEXT, payload)


def encode(message: dict[str, Any]) -> bytes:
    return text_frame(orjson.dumps(message))


def close_frame(code: int, reason: str = "") -> bytes:
    return frame(OP_CLOSE, struct.pack("!H", code) + reason.encode())


def _load_mask() -> Callable[[bytes, bytearray], None] | None:
    """aiohttp's C (Cython) XOR, which unmasks a bytearray in place: 25x faster than Python
    on a 64 KiB frame. Not public API, hence the fallback."""
    try:
        from aiohttp._websocket.helpers import websocket_mask
    except ImportError:  # pragma: no cover - an aiohttp that moved it
        return None
    return websocket_mask


_MASK = _load_mask()


def unmask(payload: bytes, mask: bytes) -> bytes:
    if _MASK is not None:
        data = bytearray(payload)
        _MASK(mask, data)
        return bytes(data)
    n = len(payload)  # pragma: no cover
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "little")  # pragma: no cover
    return (int.from_bytes(payload, "little") ^ key).to_bytes(n, "little")  # pragma: no cover


class _ProtocolError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class WebSocket:
    """One upgraded signaling connection: the hub's sink, and what reads the socket as
    aiohttp's payload parser (``feed_data``/``feed_eof``)."""

    __slots__ = (
        "_buffer",
        "_closing",
        "_done",
        "_draining",
        "_finished",
        "_fragments",
        "_fragments_opcode",
        "_fragments_size",
        "_heartbeat",
        "_inbox",
        "_last_frame",
        "_loop",
        "_max_msg_size",
        "_pinged_at",
        "_signaling",
        "_timer",
        "_transport",
        "peer",
    )

    def __init__(
        self,
        transport: asyncio.Transport,
        signaling: Signaling,
        *,
        max_msg_size: int,
        heartbeat: float,
    ) -> None:
        self._transport = transport
        self._signaling = signaling
        self._max_msg_size = max_msg_size
        self._heartbeat = heartbeat
        self._loop = asyncio.get_running_loop()
        self._buffer = b""
        self._fragments: list[bytes] = []
        self._fragments_opcode = 0
        self._fragments_size = 0
        self._closing = False  # our close frame is out (or the peer's came in)
        self._finished = False
        self._last_frame = self._loop.time()
        self._pinged_at = 0.0
        self._timer: asyncio.TimerHandle | None = None
        if heartbeat:
            self._timer = self._loop.call_later(heartbeat, self._check_alive)
        self._done: asyncio.Future[None] | None = None
        #: messages waiting for the one handling task (handling awaits the room store)
        self._inbox: collections.deque[Any] = collections.deque()
        self._draining: asyncio.Task[None] | None = None
        self.peer: Peer = signaling.open(self)

    async def wait_closed(self) -> None:
        if self._finished:
            return
        if self._done is None:
            self._done = self._loop.create_future()
        await self._done

    # -- the hub's Sink ------------------------------------------------------------------------

    def write(self, frames: list[bytes]) -> None:
        if self._closing or self._transport.is_closing():
            return
        self._transport.write(frames[0] if len(frames) == 1 else b"".join(frames))

    def buffered(self) -> int:
        return self._transport.get_write_buffer_size()

    def abort(self, code: int, reason: str) -> None:
        """Close with ``code`` after what is already written; cut the TCP connection if the
        peer has not answered within :data:`CLOSE_TIMEOUT` (it may not be reading at all)."""
        self.close(code, reason)

    def close(self, code: int, reason: str = "") -> None:
        if self._closing or self._finished:
            return
        self._closing = True
        self._send(close_frame(code, reason))
        self._set_timer(CLOSE_TIMEOUT, self._transport.abort)

    def _hang_up(self) -> None:
        """The close handshake is done: send FIN and let the peer close its side. Closing the
        socket outright would answer anything still in flight from the peer (a pong to a late
        ping) with a TCP reset, which the peer sees as an error."""
        if self._transport.is_closing():
            return
        if self._transport.can_write_eof():
            self._transport.write_eof()
            self._set_timer(CLOSE_TIMEOUT, self._transport.abort)
        else:  # pragma: no cover - TCP transports can
            self._transport.close()

    def _send(self, data: bytes) -> None:
        if not self._transport.is_closing():
            self._transport.write(data)

    # -- aiohttp's payload parser interface ------------------------------------------------------

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self._last_frame = self._loop.time()
        buffer = self._buffer + data if self._buffer else data
        end = len(buffer)
        position = 0
        try:
            while end - position >= 2 and not self._finished:
                first, second = buffer[position], buffer[position + 1]
                length = second & 0x7F
                header = 2
                if length == 126:
                    if end - position < 4:
                        break
                    length = int.from_bytes(buffer[position + 2 : position + 4])
                    header = 4
                elif length == 127:
                    if end - position < 10:
                        break
                    length = int.from_bytes(buffer[position + 2 : position + 10])
                    header = 10
                opcode = first & 0x0F
                self._check_header(first, opcode, length)
                masked = second & 0x80
                start = position + header + (4 if masked else 0)
                if start + length > end:
                    break
                payload = buffer[start : start + length]
                if masked:
                    payload = unmask(payload, buffer[start - 4 : start])
                position = start + length
                self._on_frame(first & 0x80, opcode, payload)
        except _ProtocolError as exc:
            log.debug("peer %s: %s", self.peer.id, exc)
            self._buffer = b""
            self.close(exc.code)
            return _NOTHING
        except Exception:
            log.exception("peer %s: error handling a frame", self.peer.id)
            self._buffer = b""
            self._transport.abort()
            return _NOTHING
        self._buffer = buffer[position:] if position < end else b""
        return _NOTHING

    def feed_eof(self) -> None:
        """The connection is gone (cleanly or not): leave every room, wake the handler."""
        if self._finished:
            return
        self._finished = True
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._buffer = b""
        self._fragments = []
        self._signaling.close(self.peer)
        if self._done is not None and not self._done.done():
            self._done.set_result(None)

    # -- frames ----------------------------------------------------------------------------------

    def _check_header(self, first: int, opcode: int, length: int) -> None:
        """RFC 6455 5.2, as aiohttp checks it; before the payload is even buffered."""
        if first & 0x70:
            raise _ProtocolError(WSCloseCode.PROTOCOL_ERROR, "non-zero reserved bits")
        if opcode not in _OPCODES:
            raise _ProtocolError(WSCloseCode.PROTOCOL_ERROR, f"unexpected opcode {opcode}")
        if opcode >= OP_CLOSE:
            if not first & 0x80:
                raise _ProtocolError(WSCloseCode.PROTOCOL_ERROR, "fragmented control frame")
            if length > 125:
                raise _ProtocolError(WSCloseCode.PROTOCOL_ERROR, "control frame over 125 bytes")
        elif self._max_msg_size and self._fragments_size + length >= self._max_msg_size:
            raise _ProtocolError(WSCloseCode.MESSAGE_TOO_BIG, "message over the size limit")

    def _on_frame(self, fin: int, opcode: int, payload: bytes) -> None:
        if opcode >= OP_CLOSE:
            self._on_control(opcode, payload)
            return
        if opcode == OP_CONTINUATION:
            if not self._fragments_opcode:
                raise _ProtocolError(WSCloseCode.PROTOCOL_ERROR, "continuation of nothing")
        elif self._fragments_opcode:
            raise _ProtocolError(WSCloseCode.PROTOCOL_ERROR, "new message inside a fragmented one")
        if not fin:
            self._fragments_opcode = self._fragments_opcode or opcode
            self._fragments.append(payload)
            self._fragments_size += len(payload)
            return
        if self._fragments_opcode:
            opcode = self._fragments_opcode
            self._fragments.append(payload)
            payload = b"".join(self._fragments)
            self._fragments = []
            self._fragments_opcode = 0
            self._fragments_size = 0
        if not self._closing:
            self._on_message(opcode, payload)

    def _on_control(self, opcode: int, payload: bytes) -> None:
        if opcode == OP_PING:
            if not self._closing:
                self._send(frame(OP_PONG, payload))
        elif opcode == OP_CLOSE:
            if len(payload) == 1:
                raise _ProtocolError(WSCloseCode.PROTOCOL_ERROR, "invalid close frame")
            if len(payload) >= 2:
                code = int.from_bytes(payload[:2])
                if code < 3000 and code not in _CLIENT_CLOSE_CODES:
                    raise _ProtocolError(WSCloseCode.PROTOCOL_ERROR, f"invalid close code {code}")
                try:
                    payload[2:].decode()
                except UnicodeDecodeError:
                    raise _ProtocolError(WSCloseCode.INVALID_TEXT, "invalid close reason") from None
            if not self._closing:  # the peer closes: answer
                self._closing = True
                self._send(close_frame(WSCloseCode.OK))
            self._hang_up()
        # a pong only proves the peer is alive, which any frame does

    def _on_message(self, opcode: int, payload: bytes) -> None:
        peer, signaling = self.peer, self._signaling
        if opcode == OP_BINARY:
            signaling.bad_frame(peer, "binary_not_supported", "Send JSON text frames")
            return
        try:
            message = orjson.loads(payload)
        except orjson.JSONDecodeError:
            try:
                payload.decode()
            except UnicodeDecodeError:
                raise _ProtocolError(WSCloseCode.INVALID_TEXT, "text is not UTF-8") from None
            signaling.bad_frame(peer, "invalid_json", "Message is not valid JSON")
            return
        self._inbox.append(message)
        if self._draining is None:
            self._draining = self._loop.create_task(self._drain())

    async def _drain(self) -> None:
        """Handle queued messages one at a time, in arrival order."""
        try:
            while self._inbox and not self._finished:
                await self._signaling.handle(self.peer, self._inbox.popleft())
        except Exception:
            log.exception("peer %s: error handling a message", self.peer.id)
            self._transport.abort()
        finally:
            self._draining = None

    # -- heartbeat -------------------------------------------------------------------------------

    def _set_timer(self, delay: float, callback: Callable[[], None]) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_later(delay, callback)

    def _check_alive(self) -> None:
        self._timer = None
        if self._closing:
            return
        now = self._loop.time()
        quiet = now - self._last_frame
        if quiet < self._heartbeat:
            self._set_timer(self._heartbeat - quiet, self._check_alive)
            return
        self._pinged_at = now
        self._send(frame(OP_PING, b""))
        self._set_timer(self._heartbeat / 2, self._check_pong)

    def _check_pong(self) -> None:
        self._timer = None
        if self._closing:
            return
        if self._last_frame >= self._pinged_at:  # it answered (or sent something else)
            self._check_alive()
            return
        log.info("peer %s: no pong within %.1f s, dropping it", self.peer.id, self._heartbeat / 2)
        self._transport.close()


def _origin_allowed(request: web.Request) -> bool:
    allowed = request.app[keys.config].ws_origins
    if "*" in allowed:
        return True
    origin = request.headers.get("Origin")
    return origin is None or origin in allowed


def _accept_key(request: web.Request) -> str:
    """Check the opening handshake (RFC 6455 4.2.1) as aiohttp does; the Sec-WebSocket-Accept
    value for it."""
    headers = request.headers
    if headers.get("Upgrade", "").lower().strip() != "websocket":
        raise web.HTTPBadRequest(
            text=f'No WebSocket UPGRADE hdr: {headers.get("Upgrade")}\n Can "Upgrade" only to '
            '"WebSocket".'
        )
    if "upgrade" not in headers.get("Connection", "").lower():
        raise web.HTTPBadRequest(text=f"No CONNECTION upgrade hdr: {headers.get('Connection')}")
    version = headers.get("Sec-WebSocket-Version", "")
    if version not in ("13", "8", "7"):
        raise web.HTTPBadRequest(text=f"Unsupported version: {version}")
    key = headers.get("Sec-WebSocket-Key", "")
    try:
        valid = len(base64.b64decode(key, validate=True)) == 16
    except binascii.Error:
        valid = False
    if not valid:
        raise web.HTTPBadRequest(text=f"Handshake error: {key!r}")
    return base64.b64encode(hashlib.sha1(key.encode() + WS_KEY).digest()).decode()


async def websocket(request: web.Request) -> web.StreamResponse:
    config = request.app[keys.config]
    if not _origin_allowed(request):
        return error_response(403, "origin_not_allowed", "WebSocket Origin is not allowed")
    response = web.StreamResponse(
        status=101,
        headers={
            "Upgrade": "websocket",
            "Connection": "upgrade",
            "Sec-WebSocket-Accept": _accept_key(request),
        },
    )
    await response.prepare(request)
    transport = request.transport
    if transport is None or transport.is_closing():  # the client vanished during the upgrade
        return response
    ws = WebSocket(
        transport,
        request.app[keys.signaling],
        max_msg_size=config.max_msg_size,
        heartbeat=config.heartbeat,
    )
    protocol = request.protocol
    protocol.keep_alive(False)
    parser: Any = ws  # duck-typed as aiohttp's WebSocketReader: feed_data, feed_eof
    protocol.set_parser(parser)  # also feeds whatever arrived right behind the upgrade
    try:
        await ws.wait_closed()
    finally:  # cancelled (shutdown): close it, the connection is not ours any more
        ws.close(WSCloseCode.GOING_AWAY, "server shutdown")
    return response


STATIC = Path(__file__).resolve().parent.parent / "static"


async def root(request: web.Request) -> web.StreamResponse:
    """``/``: the seed's clients open their WebSocket here; browsers get the console."""
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return await websocket(request)
    return web.FileResponse(STATIC / "index.html")


async def close_all(app: web.Application) -> None:
    """on_shutdown: close every WebSocket with 1001 Going Away, all at once, bounded."""
    sockets = [peer.sink for peer in app[keys.hub].peers.values()]
    closing = [ws for ws in sockets if isinstance(ws, WebSocket)]
    if not closing:
        return
    app[keys.hub].flush()  # what is queued goes out before the close frames
    for ws in closing:
        ws.close(WSCloseCode.GOING_AWAY, "server shutdown")
    timeout = app[keys.config].shutdown_timeout / 2 or None
    waiting = [asyncio.ensure_future(ws.wait_closed()) for ws in closing]
    _, pending = await asyncio.wait(waiting, timeout=timeout)
    for task in pending:
        task.cancel()
    if pending:
        log.warning("%d WebSockets did not close in time", len(pending))
