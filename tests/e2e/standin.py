"""A tiny stand-in for the livehub server contracts the console is written to before they land.

It serves the real console (``livehub/static``) and speaks, in a few lines each, the contracts
that parallel branches are building, so the browser tests can drive the console against them
now (``console.e2e.mjs``, scenarios ``standin_*``):

- issue 11, who may create rooms: ``POST /api/rooms`` with ``mode=keys`` answers 401
  ``{"error","code":"unauthorized","details"}`` without ``Authorization: Bearer <key>``, 403
  with a wrong key, 201 with the right one; with ``mode=limited`` (anonymous creation, rate
  limited) the second create answers 429 with ``Retry-After``;
- issue 11, lists that stay cheap: ``GET /api/rooms`` answers a bare JSON array of at most
  ``limit`` (default 100) rooms, newest first, ``status`` filters, ``X-Total-Count`` holds the
  total and ``Link: <url>; rel="next"`` the next page through an opaque ``cursor``;
- issue 8 item 2, presence above the limit: ``joined`` says ``"presence": "full" | "counted"``
  and lists only hosts (plus this connection) in counted mode, with the exact ``viewerCount``;
- issue 8 item 6: chat in an ended room is refused with an ``error`` event ``room_ended``.

The test steers it over ``/_standin/*``: change a room without telling anyone
(``PATCH /_standin/rooms/{id}``), push a message to every socket (``POST /_standin/push``),
set the create mode (``POST /_standin/config``), read the REST requests it got
(``GET /_standin/requests``).

Run: ``python tests/e2e/standin.py --port P``.
"""

from __future__ import annotations

import argparse
import base64
import json
import secrets
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

STATIC = Path(__file__).resolve().parents[2] / "livehub" / "static"
#: the JavaScript SDK the console imports from /sdk/livehub-client.js
SDK_FILE = Path(__file__).resolve().parents[2] / "sdk" / "livehub-client.js"
API_KEY = "e2e-api-key"
RETRY_AFTER = 17
PAGE_DEFAULT = 100
NOW = 1_780_000_000_000  # epoch ms of the newest seeded room


def room(index: int, status: str, **extra: Any) -> dict[str, Any]:
    room_id = extra.pop("id", f"seed{index:04d}")
    return {
        "id": room_id,
        "title": extra.pop("title", f"Seeded room {index}"),
        "streamKey": f"key{index:04d}",
        "status": status,
        "startTime": None,
        "endTime": None,
        "createdAt": NOW - index * 60_000,
        "viewerCount": 0,
        "playerCount": 0,
        "reconnecting": False,
        "playUrls": {},
        **extra,
    }


def seed() -> list[dict[str, Any]]:
    """250 rooms, newest first: two live, one preparing, the rest ended; 'big' is crowded."""
    rooms = [
        room(0, "preparing", id="big", title="Big room", viewerCount=250),
        room(1, "live", title="Live one", viewerCount=3),
        room(2, "live", title="Live two", viewerCount=1),
    ]
    rooms += [room(i, "ended") for i in range(3, 250)]
    return rooms


# who is in every room before the test's page joins: one host and, in full presence, two
# viewers; above the presence limit (100) the viewers are counted, not listed
HOSTS = [{"peerId": "host-ann", "name": "ann", "role": "host"}]
VIEWERS = [
    {"peerId": "viewer-vic", "name": "vic", "role": "viewer"},
    {"peerId": "viewer-val", "name": "val", "role": "viewer"},
]
PRESENCE_LIMIT = 100


def error(status: int, code: str, message: str, **headers: str) -> web.Response:
    body = {"error": message, "code": code, "details": None}
    return web.json_response(body, status=status, headers=headers)


class Standin:
    def __init__(self) -> None:
        self.rooms = seed()
        self.mode = "keys"
        self.created_anonymously = 0
        self.requests: list[str] = []
        self.sockets: set[web.WebSocketResponse] = set()

    def find(self, room_id: str) -> dict[str, Any]:
        for candidate in self.rooms:
            if candidate["id"] == room_id:
                return candidate
        raise web.HTTPNotFound(
            text=json.dumps({"error": "Room not found", "code": "room_not_found", "details": None}),
            content_type="application/json",
        )

    @web.middleware
    async def record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith("/api/"):
            self.requests.append(f"{request.method} {request.path_qs}")
        response: web.StreamResponse = await handler(request)
        return response

    async def index(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self.ws(request)
        return web.FileResponse(STATIC / "index.html")

    async def list_rooms(self, request: web.Request) -> web.Response:
        status = request.query.get("status")
        limit = int(request.query.get("limit", PAGE_DEFAULT))
        start = 0
        if "cursor" in request.query:
            start = int(base64.urlsafe_b64decode(request.query["cursor"]).decode())
        chosen = [r for r in self.rooms if status is None or r["status"] == status]
        page = chosen[start : start + limit]
        headers = {"X-Total-Count": str(len(chosen))}
        if start + limit < len(chosen):
            cursor = base64.urlsafe_b64encode(str(start + limit).encode()).decode()
            query = {
                "limit": str(limit),
                "cursor": cursor,
                **({"status": status} if status else {}),
            }
            url = request.url.with_query(query)
            headers["Link"] = f'<{url.path_qs}>; rel="next"'
        return web.json_response(page, headers=headers)

    async def create_room(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        if self.mode == "keys":
            if not auth.startswith("Bearer "):
                return error(401, "unauthorized", "An API key is required to create rooms")
            if auth.removeprefix("Bearer ") != API_KEY:
                return error(403, "forbidden", "The API key is not valid")
        elif self.created_anonymously >= 1:
            return error(
                429, "rate_limited", "Too many rooms created", **{"Retry-After": str(RETRY_AFTER)}
            )
        else:
            self.created_anonymously += 1
        title = (await request.json())["title"]
        new = room(len(self.rooms), "preparing", id=secrets.token_hex(6), title=title)
        new["createdAt"] = NOW + len(self.rooms)
        self.rooms.insert(0, new)
        owner = {**new, "ownerToken": secrets.token_hex(16), "publish": {"token": "t"}}
        return web.json_response(owner, status=201)

    async def get_room(self, request: web.Request) -> web.Response:
        return web.json_response(self.find(request.match_info["room_id"]))

    async def ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.sockets.add(ws)
        peer_id = secrets.token_hex(4)
        try:
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                data = json.loads(msg.data)
                # request ids as livehub echoes them (docs/protocol.md, "Request ids")
                reply_id = {"id": data["id"]} if data.get("id") is not None else {}
                if data.get("type") == "join":
                    joined = self.find(data["roomId"])
                    me = {"peerId": peer_id, "name": data.get("name", ""), "role": "viewer"}
                    counted = joined["viewerCount"] > PRESENCE_LIMIT
                    await ws.send_json(
                        {
                            "type": "joined",
                            "roomId": joined["id"],
                            "peerId": peer_id,
                            "role": "viewer",
                            "presence": "counted" if counted else "full",
                            "members": [*HOSTS, *([] if counted else VIEWERS), me],
                            "viewerCount": joined["viewerCount"],
                            "room": joined,
                            **reply_id,
                        }
                    )
                elif data.get("type") == "chat":
                    if self.find(data["roomId"])["status"] == "ended":
                        await ws.send_json(
                            {
                                "type": "error",
                                "code": "room_ended",
                                "message": "Room has ended",
                                "inReplyTo": "chat",
                                **reply_id,
                            }
                        )
                    else:
                        line = {k: v for k, v in data.items() if k != "id"}
                        await ws.send_json(
                            {
                                **line,
                                "id": secrets.token_urlsafe(9),
                                **({"requestId": data["id"]} if reply_id else {}),
                                "from": peer_id,
                                "name": "me",
                                "ts": NOW,
                            }
                        )
        finally:
            self.sockets.discard(ws)
        return ws

    async def sdk(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(SDK_FILE, headers={"Content-Type": "text/javascript"})

    async def patch_room(self, request: web.Request) -> web.Response:
        target = self.find(request.match_info["room_id"])
        target.update(await request.json())
        return web.json_response(target)

    async def push(self, request: web.Request) -> web.Response:
        message = await request.json()
        for ws in list(self.sockets):
            await ws.send_json(message)
        return web.json_response({"sent": len(self.sockets)})

    async def config(self, request: web.Request) -> web.Response:
        self.mode = (await request.json())["mode"]
        return web.json_response({"mode": self.mode})

    async def get_requests(self, request: web.Request) -> web.Response:
        return web.json_response(self.requests)


def create_app() -> web.Application:
    standin = Standin()
    app = web.Application(middlewares=[standin.record])
    app.router.add_get("/", standin.index)
    app.router.add_get("/ws", standin.ws)
    app.router.add_static("/static", STATIC)
    app.router.add_get("/sdk/livehub-client.js", standin.sdk)
    app.router.add_get("/api/rooms", standin.list_rooms)
    app.router.add_post("/api/rooms", standin.create_room)
    app.router.add_get("/api/rooms/{room_id}", standin.get_room)
    app.router.add_patch("/_standin/rooms/{room_id}", standin.patch_room)
    app.router.add_post("/_standin/push", standin.push)
    app.router.add_post("/_standin/config", standin.config)
    app.router.add_get("/_standin/requests", standin.get_requests)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    web.run_app(create_app(), host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
