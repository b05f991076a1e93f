"""Rooms REST handlers: parse → one domain call → dump → respond."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from aiohttp import web

from livehub import keys
from livehub.api.body import bearer_token, query_params, read_json
from livehub.api.jsonio import json_response
from livehub.api.schemas import RoomCreateSchema, RoomListQuerySchema
from livehub.domain.rooms import Room

log = logging.getLogger(__name__)

_CREATE = RoomCreateSchema()
_LIST_QUERY = RoomListQuerySchema()


async def create_room(request: web.Request) -> web.Response:
    data = _CREATE.load(await read_json(request))
    room, owner_token = request.app[keys.rooms].create(data["title"])
    log.info("room %s created", room.id)
    return json_response(request.app[keys.views].created(room, owner_token), status=201)


async def list_rooms(request: web.Request) -> web.Response:
    query = _LIST_QUERY.load(query_params(request))
    rooms = request.app[keys.rooms].rooms(
        status=query.get("status"), limit=query.get("limit"), offset=query["offset"]
    )
    views = request.app[keys.views]
    return json_response([views.public(room) for room in rooms])


async def get_room(request: web.Request) -> web.Response:
    service = request.app[keys.rooms]
    room = service.get(request.match_info["room_id"])
    views = request.app[keys.views]
    token = bearer_token(request)
    if token and service.is_owner(room, token):
        return json_response(views.owner(room))
    return json_response(views.public(room))


async def close_room(request: web.Request) -> web.Response:
    app = request.app
    service = app[keys.rooms]
    room = service.get(request.match_info["room_id"])
    service.authorize(room, bearer_token(request), app[keys.config].admin_token)
    room = end_room(app, room.id)
    return json_response({"success": True, "room": app[keys.views].public(room)})


def end_room(app: web.Application, room_id: str) -> Room:
    """Close a room for good and kick its publisher from SRS in the background."""
    room, kick = app[keys.rooms].close(room_id)
    if kick is not None:
        log.info("room %s closed: kicking its publisher", room.id)
        spawn(app, app[keys.srs].kick(kick))
    return room


def spawn(app: web.Application, coro: Coroutine[Any, Any, Any]) -> None:
    """Run a fire-and-forget coroutine that the app awaits or cancels at shutdown."""
    task: asyncio.Task[Any] = asyncio.ensure_future(coro)
    tasks = app[keys.background]
    tasks.add(task)
    task.add_done_callback(tasks.discard)
