"""Graceful shutdown of the signaling connections (``on_shutdown``)."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import WSCloseCode, web

from livehub import keys
from livehub.api.websocket import Connection
from livehub.tasks import cancel_and_wait

log = logging.getLogger(__name__)


async def close_websockets(app: web.Application) -> None:
    """``on_shutdown``: close every WebSocket with 1001 Going Away, all at once, bounded."""
    connections = [peer.sink for peer in app[keys.hub].peers.values()]
    closing = [sink for sink in connections if isinstance(sink, Connection)]
    if not closing:
        return
    app[keys.hub].flush()  # what is queued goes out before the close frames
    for connection in closing:
        connection.close(WSCloseCode.GOING_AWAY, "server shutdown")
    timeout = app[keys.config].shutdown_timeout / 2 or None
    waiting = [asyncio.ensure_future(connection.wait_closed()) for connection in closing]
    _, pending = await asyncio.wait(waiting, timeout=timeout)
    await cancel_and_wait(*pending)
    if pending:
        log.warning("%d WebSockets did not close in time", len(pending))
