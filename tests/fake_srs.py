"""A fake SRS HTTP API on loopback, for the API tests (one for all of them).

:class:`FakeSRS` answers like SRS 5/6 (``shared/srs-contract.md`` §7): ``/api/v1/streams/``
with the trailing slash (302 without it), ``count`` raised to at least 10, errors as HTTP 200
with a non-zero ``code``. It can be switched down (connection refused: nothing listens), to
HTTP 500, or to a non-zero code, and records every request and kick. Several of them stand
for several SRS origins: give each its own ``server`` id (every API reply carries it, like the
``server_id`` of the hooks that origin sends: :meth:`FakeSRS.hook`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import json
from typing import Any

from aiohttp import web
from aiohttp.test_utils import unused_port

from tests.conftest import HOOKS_DIR

STREAMS_FIXTURE: dict[str, Any] = json.loads((HOOKS_DIR / "api" / "streams.json").read_text())
CAPTURED_STREAMS: dict[str, Any] = json.loads(
    (HOOKS_DIR / "captured" / "api-streams.json").read_text()
)
SERVICE = "t3q9z0bm"  # the service_id of the hook fixtures
SERVER = "vid-k8d2f1a"  # the server_id of its API replies


class FakeSRS:
    """SRS's HTTP API, switchable: ``mode`` is ``up``, ``http500`` or ``code`` (code 1000)."""

    def __init__(self, server: str = SERVER, service: str = SERVICE) -> None:
        self.port = unused_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.mode = "up"
        self.server = server
        self.service = service
        self.streams: list[dict[str, Any]] = []
        #: ``/api/v1/clients/``: publishers and players (see :meth:`play`)
        self.clients: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str]] = []
        self.kicks: list[str] = []
        self.kick_code = 0
        self.kick_delay = 0.0
        self._stopping = asyncio.Event()
        self.stream_reads = 0
        self._runner: web.AppRunner | None = None
        #: ``user:password`` when SRS's HTTP API Basic auth is on (SRS >= 5.0.152 / 6.0.40)
        self.auth: str | None = None
        app = web.Application(middlewares=[self._basic_auth])
        app.router.add_get("/api/v1/streams/", self._streams)
        app.router.add_get("/api/v1/streams", self._redirect)
        app.router.add_get("/api/v1/versions", self._versions)
        app.router.add_get("/api/v1/clients/", self._clients)
        app.router.add_delete("/api/v1/clients/{id}", self._kick)
        self.app = app

    # -- switches ---------------------------------------------------------------------------

    async def start(self) -> None:
        if self._runner is None:
            self._runner = web.AppRunner(self.app, access_log=None)
            self._stopping.clear()
            await self._runner.setup()
            await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def stop(self) -> None:
        """Down: nothing listens on the port any more (connection refused)."""
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def publish(self, name: str, cid: str = "2o5x91ed", *, active: bool = True) -> None:
        stream = copy.deepcopy(STREAMS_FIXTURE["streams"][0])
        stream.update(id=f"vid-{len(self.streams):07d}", name=name, url=f"/live/{name}")
        stream["publish"] = {"active": True, "cid": cid} if active else {"active": False}
        self.unpublish(name)
        self.streams.append(stream)

    def play(self, name: str, cid: str, kind: str = "flv-play") -> None:
        """A player of the stream ``name`` in ``/api/v1/clients/`` (as SRS lists one)."""
        extension = {"flv-play": ".flv", "hls-play": ".m3u8"}.get(kind, "")
        self.clients.append(
            {
                "id": cid,
                "vhost": "vid-0l3x8c2",
                "stream": "vid-5y0w4ka",
                "ip": "203.0.113.25",
                "pageUrl": "",
                "swfUrl": "",
                "tcUrl": "http://srs.example.com/live",
                "url": f"/live/{name}",
                "name": name + extension,
                "type": kind,
                "publish": False,
                "alive": 1.0,
                "send_bytes": 0,
                "recv_bytes": 0,
                "kbps": {"recv_30s": 0, "send_30s": 0},
            }
        )

    def stop_playing(self, cid: str) -> None:
        self.clients = [client for client in self.clients if client["id"] != cid]

    def unpublish(self, name: str) -> None:
        self.streams = [stream for stream in self.streams if stream["name"] != name]

    def hook(self, body: dict[str, Any]) -> dict[str, Any]:
        """A hook body as this SRS sends it: its own ``server_id`` and ``service_id``."""
        return {**body, "server_id": self.server, "service_id": self.service}

    def restart(self, service: str) -> None:
        """SRS restarted: a new service id, and no stream or client survives."""
        self.service = service
        self.streams = []
        self.clients = []

    # -- handlers ---------------------------------------------------------------------------

    @web.middleware
    async def _basic_auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self.auth is not None:
            expected = "Basic " + base64.b64encode(self.auth.encode()).decode()
            if request.headers.get("Authorization") != expected:
                self.requests.append((request.method, "401 " + request.path_qs))
                return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="SRS"'})
        response: web.StreamResponse = await handler(request)
        return response

    def _head(self) -> dict[str, Any]:
        return {"code": 0, "server": self.server, "service": self.service, "pid": "1"}

    def _reply(self, body: dict[str, Any]) -> web.Response:
        if self.mode == "http500":
            return web.Response(status=500, text="Internal Server Error")
        if self.mode == "code":
            return web.json_response({"code": 1000})
        return web.json_response(body)

    async def _streams(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, request.path_qs))
        self.stream_reads += 1
        start = int(request.query.get("start", "0"))
        count = max(10, int(request.query.get("count", "10")))
        return self._reply({**self._head(), "streams": self.streams[start : start + count]})

    async def _clients(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, request.path_qs))
        start = int(request.query.get("start", "0"))
        count = max(10, int(request.query.get("count", "10")))
        return self._reply({**self._head(), "clients": self.clients[start : start + count]})

    async def _redirect(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, request.path_qs))
        raise web.HTTPFound("/api/v1/streams/")

    async def _versions(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, request.path_qs))
        data = {"major": 6, "minor": 0, "revision": 157, "version": "6.0.157"}
        return self._reply({**self._head(), "data": data})

    async def _kick(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, request.path_qs))
        client_id = request.match_info["id"]
        self.kicks.append(client_id)
        if self.kick_delay:  # a hanging SRS, until it is stopped
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.kick_delay)
        if self.kick_code:
            return self._reply({"code": self.kick_code})
        return self._reply(self._head())
