"""The web console: ``/`` serves its page (and the seed's clients their WebSocket), ``/static``
its files (:func:`static_file`).

The page is served with a Content-Security-Policy: scripts, styles and connections from this
origin only, plus the SRS origins its players and publishers talk to (WHIP/WHEP on SRS's API
port, FLV/HLS on its HTTP port); no framing (clickjacking), no plugins, no inline code. Every
response says ``nosniff``, sends no referrer (SRS and other origins never see room URLs) and
refuses to be framed; every HTML response gets the page's policy, wherever it is served from
(``/static/index.html`` is the same page as ``/``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from livehub import keys
from livehub.api.middlewares import is_upgrade
from livehub.api.websocket import websocket
from livehub.config import Config

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


def srs_origins(config: Config) -> tuple[str, ...]:
    """The origins of the play and publish URLs livehub hands out, as CSP sources."""
    host = config.public_host
    if ":" in host and not host.startswith("["):  # an IPv6 address
        host = f"[{host}]"
    return (f"http://{host}:{config.srs_api_port}", f"http://{host}:{config.srs_http_port}")


def content_security_policy(config: Config) -> str:
    srs = " ".join(srs_origins(config))
    return "; ".join(
        (
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            f"connect-src 'self' {srs}",
            f"media-src 'self' blob: {srs}",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
            # Trusted Types: a string given to innerHTML, insertAdjacentHTML, document.write or
            # a script's src throws. The console builds its DOM with createElement and
            # textContent only (ui.js `h`); this keeps it so, should a change slip one in.
            "require-trusted-types-for 'script'",
            "trusted-types 'none'",
        )
    )


async def index(request: web.Request) -> web.StreamResponse:
    """``/``: the seed's clients open their WebSocket here; browsers get the console. (A plain
    function that returned the WebSocket handler's coroutine would save a frame per message,
    but aiohttp wraps a handler that is not ``async def`` in one of its own.)"""
    if is_upgrade(request):
        return await websocket(request)
    return web.FileResponse(STATIC / "index.html")


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: headers every response with a body carries. Not a WebSocket's
    101 (no body to sniff or refer from): its headers stay with the connection as long as it
    is open, 0.4 kB each of 10,000 sockets."""
    if response.status == 101:
        return
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "no-referrer")
    headers.setdefault("X-Frame-Options", "DENY")  # frame-ancestors, for older browsers
    # the console's page is served at / and, as a file, at /static/index.html: it ran framed
    # and without its policy there. Any HTML gets it; scripts do not (a module worker made
    # from the SDK would run under a policy meant for the page).
    if response.content_type == "text/html":
        headers.setdefault(
            "Content-Security-Policy", content_security_policy(request.app[keys.config])
        )
        # a page of another origin that opened this one (or that it opens) gets no handle on
        # its window: no `window.opener` navigation to a look-alike page
        headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")


async def sdk(request: web.Request) -> web.StreamResponse:
    """``/sdk/livehub-client.js``: the SDK a frontend imports (an ES module)."""
    if not SDK_FILE.is_file():
        raise web.HTTPNotFound()
    return web.FileResponse(
        SDK_FILE,
        headers={"Content-Type": "text/javascript", "Access-Control-Allow-Origin": "*"},
    )


async def static_file(request: web.Request) -> web.StreamResponse:
    """``/static/{filename}``: a console file. Not ``router.add_static``: its 404 for a file
    that is not there was decided while the answer was sent, past the error middleware, and went
    out empty; here it is raised before, in the one JSON error shape (``not_found``). The file
    system is asked off the event loop, as ``add_static`` did."""
    name = request.match_info["filename"]
    path = await asyncio.get_running_loop().run_in_executor(None, static_path, STATIC, name)
    if path is None:
        raise web.HTTPNotFound()
    return web.FileResponse(path)


def static_path(directory: Path, name: str) -> Path | None:
    """The regular file ``name`` (a URL's decoded path) names inside ``directory``, or None.
    Keeps ``add_static``'s guards: no absolute name (``//host/share``, ``C:\\`` on Windows),
    nothing outside ``directory`` once ``..`` and every symlink are resolved; a directory, a
    socket or a name the file system refuses (a NUL) is no file either."""
    if Path(name).is_absolute():
        return None
    try:
        path = (directory / name).resolve()
        path.relative_to(directory.resolve())
        return path if path.is_file() else None
    except (ValueError, OSError, RuntimeError):  # outside, unreadable, a symlink loop
        return None
