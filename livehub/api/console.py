"""The web console: ``/`` serves its page (and the seed's clients their WebSocket), ``/static``
its files."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from livehub.api.websocket import websocket

STATIC = Path(__file__).resolve().parent.parent / "static"


async def index(request: web.Request) -> web.StreamResponse:
    """``/``: the seed's clients open their WebSocket here; browsers get the console."""
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return await websocket(request)
    return web.FileResponse(STATIC / "index.html")
