"""The web console: ``/`` serves its page (and the seed's clients their WebSocket), ``/static``
its files."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from livehub.api.websocket import websocket

STATIC = Path(__file__).resolve().parent.parent / "static"
#: the JavaScript SDK: sdk/ of the checkout (the one file the SDK's package publishes); an
#: installed livehub (the image) carries it in static/ (the Dockerfile puts it there)
SDK_FILE = next(
    (
        path
        for path in (
            Path(__file__).resolve().parents[2] / "sdk" / "livehub-client.js",
            STATIC / "livehub-client.js",
        )
        if path.is_file()
    ),
    STATIC / "livehub-client.js",
)


async def index(request: web.Request) -> web.StreamResponse:
    """``/``: the seed's clients open their WebSocket here; browsers get the console."""
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return await websocket(request)
    return web.FileResponse(STATIC / "index.html")


async def sdk(request: web.Request) -> web.StreamResponse:
    """``/sdk/livehub-client.js``: the SDK a frontend imports (an ES module)."""
    if not SDK_FILE.is_file():
        raise web.HTTPNotFound()
    return web.FileResponse(
        SDK_FILE,
        headers={"Content-Type": "text/javascript", "Access-Control-Allow-Origin": "*"},
    )
