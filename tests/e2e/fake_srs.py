"""A stand-in for SRS's WebRTC endpoints, so the browser tests can publish and play for real.

It speaks SRS's WHIP/WHEP HTTP contract (shared/srs-contract.md §9) and posts SRS's hooks:

- ``POST /rtc/v1/whip/?app=A&stream=S&secret=T`` with an SDP offer (``application/sdp``): posts
  ``on_publish`` (``param`` = the raw query, as SRS does for WHIP) to livehub and, if allowed,
  answers **201** ``application/sdp`` with a ``Location`` to DELETE;
- ``POST /rtc/v1/whep/?app=A&stream=S``: posts ``on_play`` and answers with the published
  tracks relayed (aiortc re-encodes them), or 404 when nothing is published;
- ``DELETE <Location>``: ends the session and posts ``on_unpublish`` or ``on_stop``;
- CORS like SRS (any origin, ``Location`` exposed), since the console runs on another origin.

Media stays on loopback: aioice is told that 127.0.0.1 is its only host address, and the
browser's candidates for other interfaces are dropped from its offer.
Run: ``python tests/e2e/fake_srs.py --port P --hook-url http://127.0.0.1:L/api/hooks/srs?secret=X``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import secrets
from typing import Any

import aioice.ice
from aiohttp import ClientSession, ClientTimeout, web
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRelay

log = logging.getLogger("fake_srs")


def _loopback_only(use_ipv4: bool = True, use_ipv6: bool = False) -> list[str]:
    return ["127.0.0.1"]


aioice.ice.get_host_addresses = _loopback_only


def loopback_candidates(sdp: str) -> str:
    """The offer without candidates on addresses other than 127.0.0.1."""
    lines = sdp.splitlines()
    kept = [ln for ln in lines if not ln.startswith("a=candidate:") or " 127.0.0.1 " in ln]
    return "\r\n".join(kept) + "\r\n"


@dataclasses.dataclass
class Session:
    id: str
    kind: str  # "publish" | "play"
    app: str
    stream: str
    param: str
    client_id: str
    pc: Any
    tracks: list[Any] = dataclasses.field(default_factory=list)
    ended: bool = False


class FakeSrs:
    def __init__(self, hook_url: str) -> None:
        self.hook_url = hook_url
        self.sessions: dict[str, Session] = {}
        self.publishers: dict[str, Session] = {}  # "app/stream" -> publishing session
        self.relay = MediaRelay()
        self.http: ClientSession | None = None

    async def hook(self, action: str, session: Session) -> bool:
        """Post a hook as SRS would; True when livehub answers 0 or {"code": 0} with HTTP 200."""
        body = {
            # the ids of shared/srs-hooks, so livehub sees one SRS (not a restarted one)
            "server_id": "vid-k8d2f1a",
            "service_id": "t3q9z0bm",
            "action": action,
            "client_id": session.client_id,
            "ip": "127.0.0.1",
            "vhost": "__defaultVhost__",
            "app": session.app,
            "tcUrl": "",
            "stream": session.stream,
            "param": session.param,
            "stream_url": f"/{session.app}/{session.stream}",
        }
        assert self.http is not None
        async with self.http.post(self.hook_url, json=body) as response:
            text = await response.text()
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        allowed = response.status == 200 and (
            parsed == 0 or (isinstance(parsed, dict) and parsed.get("code") == 0)
        )
        log.info("%s %s/%s -> %s %s", action, session.app, session.stream, response.status, text)
        return allowed

    def new_session(self, request: web.Request, kind: str) -> Session:
        query = request.rel_url.query
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        session = Session(
            id=secrets.token_hex(6),
            kind=kind,
            app=query.get("app", ""),
            stream=query.get("stream", ""),
            param=request.rel_url.query_string,
            client_id=secrets.token_hex(4),
            pc=pc,
        )

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await self.end(session)

        return session

    def answer(self, session: Session) -> web.Response:
        self.sessions[session.id] = session
        location = (
            f"/rtc/v1/{'whip' if session.kind == 'publish' else 'whep'}/?action=delete"
            f"&token={session.id}&app={session.app}&stream={session.stream}&session={session.id}"
        )
        return web.Response(
            status=201,
            text=session.pc.localDescription.sdp,
            content_type="application/sdp",
            headers={"Location": location},
        )

    async def whip(self, request: web.Request) -> web.Response:
        session = self.new_session(request, "publish")
        offer = loopback_candidates(await request.text())
        key = f"{session.app}/{session.stream}"
        if key in self.publishers:
            await session.pc.close()
            raise web.HTTPConflict(text="stream busy")
        if not await self.hook("on_publish", session):
            await session.pc.close()
            raise web.HTTPForbidden(text="on_publish refused")

        @session.pc.on("track")  # type: ignore[untyped-decorator]
        def on_track(track: Any) -> None:
            session.tracks.append(track)

        await session.pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        await session.pc.setLocalDescription(await session.pc.createAnswer())
        self.publishers[key] = session
        return self.answer(session)

    async def whep(self, request: web.Request) -> web.Response:
        session = self.new_session(request, "play")
        offer = loopback_candidates(await request.text())
        source = self.publishers.get(f"{session.app}/{session.stream}")
        if source is None or not source.tracks:
            await session.pc.close()
            raise web.HTTPNotFound(text="no such stream")
        if not await self.hook("on_play", session):
            await session.pc.close()
            raise web.HTTPForbidden(text="on_play refused")
        await session.pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        for track in source.tracks:
            session.pc.addTrack(self.relay.subscribe(track, buffered=False))
        await session.pc.setLocalDescription(await session.pc.createAnswer())
        return self.answer(session)

    async def delete(self, request: web.Request) -> web.Response:
        session = self.sessions.get(request.rel_url.query.get("session", ""))
        if session is None or request.rel_url.query.get("token") != session.id:
            raise web.HTTPNotFound(text="no such session")
        await self.end(session)
        return web.Response(text="")

    async def end(self, session: Session) -> None:
        if session.ended:
            return
        session.ended = True
        self.sessions.pop(session.id, None)
        await session.pc.close()
        if session.kind == "publish":
            self.publishers.pop(f"{session.app}/{session.stream}", None)
            await self.hook("on_unpublish", session)
        else:
            await self.hook("on_stop", session)

    async def close(self) -> None:
        for session in list(self.sessions.values()):
            session.ended = True
            await session.pc.close()
        if self.http is not None:
            await self.http.close()


@web.middleware
async def cors(request: web.Request, handler: Any) -> web.StreamResponse:
    if request.method == "OPTIONS":
        response: web.StreamResponse = web.Response()
    else:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            response = exc
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Access-Control-Allow-Methods"] = "GET, POST, DELETE, OPTIONS"
    response.headers["Access-Control-Allow-Headers"] = "Content-Type, Authorization"
    response.headers["Access-Control-Expose-Headers"] = "Location"
    return response


def create_app(hook_url: str) -> web.Application:
    srs = FakeSrs(hook_url)

    async def lifecycle(app: web.Application) -> Any:
        srs.http = ClientSession(timeout=ClientTimeout(total=5))
        yield
        await srs.close()

    async def index(request: web.Request) -> web.Response:
        return web.Response(text="fake SRS for the livehub browser tests\n")

    app = web.Application(middlewares=[cors])
    app.cleanup_ctx.append(lifecycle)
    app.router.add_get("/", index)
    for prefix in ("/rtc/v1/whip/", "/rtc/v1/whep/"):
        handler = srs.whip if "whip" in prefix else srs.whep
        app.router.add_post(prefix, handler)
        app.router.add_delete(prefix, srs.delete)
        app.router.add_route("OPTIONS", prefix, index)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--hook-url", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="fake_srs %(levelname)s %(message)s")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    web.run_app(create_app(args.hook_url), host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
