"""Rooms REST handlers: parse → one domain call → dump → respond.

Lists are pages: at most ``limit`` rooms (default 100), newest first, as a bare array (the
seed's clients read that shape); ``X-Total-Count`` carries how many rooms match and
``Link: <...>; rel="next"`` the next page. Clients copy the cursor from the link: it is the
keyset position ``<createdAt>.<id>`` of the page's last room, so any page costs O(page size).
Big pages are rendered in chunks that give the event loop back in between.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from livehub import keys
from livehub.api.body import bearer_token, query_params, read_json
from livehub.api.client_address import client_address
from livehub.api.jsonio import json_response
from livehub.api.schemas import RoomCreateSchema, RoomListQuerySchema
from livehub.domain.room import Room, RoomPresenter
from livehub.domain.store import Cursor

log = logging.getLogger(__name__)

_CREATE = RoomCreateSchema()
_LIST_QUERY = RoomListQuerySchema()
#: rooms rendered between two yields to the event loop while a page is built
RENDER_CHUNK = 100


def encode_cursor(room: Room) -> str:
    """``<createdAt>.<id>`` of a page's last room (``CURSOR_PATTERN``; clients copy it)."""
    return f"{room.created_at}.{room.id}"


def decode_cursor(text: str) -> Cursor:
    """The keyset position of a cursor the schema accepted (any such text is a position)."""
    created, _, room_id = text.partition(".")
    return int(created), room_id


async def render_public(views: RoomPresenter, rooms: list[Room]) -> list[dict[str, Any]]:
    """Public views of ``rooms``, :data:`RENDER_CHUNK` at a time with the loop given back in
    between: a page of 1,000 never holds it for the whole page."""
    body: list[dict[str, Any]] = []
    for start in range(0, len(rooms), RENDER_CHUNK):
        if start:
            await asyncio.sleep(0)
        body.extend(views.public(room) for room in rooms[start : start + RENDER_CHUNK])
    return body


async def create_room(request: web.Request) -> web.Response:
    app = request.app
    policy = app[keys.create_policy]
    anonymous = policy.authenticate(bearer_token(request))  # 401/403 before anything else
    data = _CREATE.load(await read_json(request))
    if anonymous:  # only a creation that would happen counts against the address
        policy.take(client_address(request, app[keys.config].trusted_proxies))
    room, owner_token = await app[keys.rooms].create(data["title"])
    log.info("room %s created", room.id)
    return json_response(app[keys.views].created(room, owner_token), status=201)


async def list_rooms(request: web.Request) -> web.Response:
    query = _LIST_QUERY.load(query_params(request))
    after = decode_cursor(query["cursor"]) if "cursor" in query else None
    status, limit = query.get("status"), query["limit"]
    service = request.app[keys.rooms]
    rooms = await service.page(status, limit + 1, after)
    total = await service.count(status)
    await request.app[keys.hub].prefetch([room.id for room in rooms[:limit]])
    response = json_response(await render_public(request.app[keys.views], rooms[:limit]))
    response.headers["X-Total-Count"] = str(total)
    if len(rooms) > limit:
        params = {"limit": str(limit), "cursor": encode_cursor(rooms[limit - 1])}
        if status is not None:
            params["status"] = status.value
        next_url = request.rel_url.with_query(params)
        response.headers["Link"] = f'<{next_url}>; rel="next"'
    return response


async def get_room(request: web.Request) -> web.Response:
    service = request.app[keys.rooms]
    room = await service.get(request.match_info["room_id"])
    views = request.app[keys.views]
    await request.app[keys.hub].prefetch([room.id])
    token = bearer_token(request)
    if token and service.is_owner(room, token):
        return json_response(views.owner(room))
    return json_response(views.public(room))


async def close_room(request: web.Request) -> web.Response:
    app = request.app
    service = app[keys.rooms]
    room = await service.get(request.match_info["room_id"])
    service.authorize(room, bearer_token(request), app[keys.config].admin_token)
    room = await service.close(room.id)
    await app[keys.hub].prefetch([room.id])
    return json_response({"success": True, "room": app[keys.views].public(room)})
