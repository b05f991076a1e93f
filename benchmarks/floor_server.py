"""The floor: the seed protocol's rooms and relays on aiohttp's public API and nothing more.

No validation, limits, store, presence or counts pushed: what any server on aiohttp, uvloop and
orjson spends on the same wsbench scenarios. ``benchmarks/run.sh`` runs it as the target
``floor`` (``TARGETS="seed floor livehub"``), so livehub is measured against the floor of its own
stack as well as against the seed's Node server. It is the relay the performance issue
describes: aiohttp reads (``async for``), answers pings and keeps a 30 s heartbeat as livehub
does; each relay is encoded once and written to each recipient's ``request.transport`` as one
pre-built frame (the frame header is livehub's own `text_frame`), and it sets Python's garbage
collector as livehub does (`settle_garbage_collection`): those two are the only livehub code it
runs. Without the collector's settings, young collections walking the connections' pending reads
cost it about a seventh of its CPU in ``pairs`` (``FLOOR_GC=0`` keeps Python's defaults).

    python benchmarks/floor_server.py PORT
    FLOOR_HEARTBEAT=0 python benchmarks/floor_server.py PORT   # without aiohttp's heartbeat
    FLOOR_GC=0 python benchmarks/floor_server.py PORT          # Python's collector defaults

aiohttp's heartbeat costs the reader a callback per connection per loop pass that brought it
data, which a relay of one message pays in full; the seed's server pings nobody.
"""

from __future__ import annotations

import os
import sys
import uuid
from typing import Any

import orjson
import uvloop
from aiohttp import WSMsgType, web  # noqa: TID251 - a server of its own, not livehub.domain

# what it takes from livehub: the collector's settings, and the server frame's header (RFC 6455
# 5.2), a pure function
from livehub.__main__ import settle_garbage_collection
from livehub.api.websocket import text_frame

RELAYED = {"offer", "answer", "candidate"}
#: seconds of silence before aiohttp pings (livehub's default, LIVEHUB_HEARTBEAT); 0: none
HEARTBEAT = float(os.environ.get("FLOOR_HEARTBEAT", "30"))
#: "0": Python's garbage collector defaults instead of livehub's settings
SETTLE_GC = os.environ.get("FLOOR_GC", "1") != "0"
rooms: dict[str, set[Any]] = {}


async def create_room(request: web.Request) -> web.Response:
    room_id = uuid.uuid4().hex[:12]
    rooms[room_id] = set()
    return web.json_response({"id": room_id, "status": "preparing", "viewerCount": 0}, status=201)


async def list_rooms(request: web.Request) -> web.Response:
    return web.json_response([{"id": r, "viewerCount": len(m)} for r, m in rooms.items()])


async def get_room(request: web.Request) -> web.Response:
    room_id = request.match_info["id"]
    return web.json_response({"id": room_id, "viewerCount": len(rooms.get(room_id, ()))})


def relay(me: Any, message: dict[str, Any], peer_id: str) -> None:
    """One relay (``benchmarks/relay_cost.py`` runs it too): ``from`` set, encoded once, the
    frame written to each other member of the room."""
    message["from"] = peer_id
    frame = text_frame(orjson.dumps(message))
    for other in rooms.get(message["roomId"], ()):
        if other is not me:
            other.write(frame)


async def signaling(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT or None, compress=False)
    await ws.prepare(request)
    me = request.transport
    if me is None:  # the client left during the handshake
        return ws
    peer_id = uuid.uuid4().hex[:12]
    joined: set[str] = set()
    try:
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                continue
            message = orjson.loads(msg.data)
            kind, room_id = message.get("type"), message.get("roomId")
            if kind == "join":
                rooms.setdefault(room_id, set()).add(me)
                joined.add(room_id)
                reply = {"type": "joined", "roomId": room_id, "peerId": peer_id}
                me.write(text_frame(orjson.dumps(reply)))
            elif kind == "leave":
                rooms.get(room_id, set()).discard(me)
                joined.discard(room_id)
            elif kind in RELAYED:
                relay(me, message, peer_id)
    finally:
        for room_id in joined:
            rooms.get(room_id, set()).discard(me)
    return ws


def main() -> None:
    app = web.Application()
    app.router.add_post("/api/rooms", create_room)
    app.router.add_get("/api/rooms", list_rooms)
    app.router.add_get("/api/rooms/{id}", get_room)
    app.router.add_get("/ws", signaling)
    uvloop.install()
    if SETTLE_GC:
        settle_garbage_collection()
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)


if __name__ == "__main__":
    main()
