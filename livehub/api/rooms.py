"""Rooms REST handlers: parse → one domain call → dump → respond.

Lists are pages: at most ``limit`` rooms (default 100), newest first, as a bare array (the
seed's clients read that shape); ``X-Total-Count`` carries how many rooms match and
``Link: <...>; rel="next"`` the next page. Clients copy the cursor from the link: it is the
keyset position ``<createdAt>.<id>`` of the page's last room, so any page costs O(page size).

A page's JSON body is built where the store reads it (SQLite: its reader thread), straight from
the rows (no ``Room``, no schema) in one ``orjson.dumps``; the loop only fills in the viewer and
player counts, its own state, and encodes again only when a room on the page has any.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from typing import Any

import orjson
from aiohttp import web

from livehub import keys
from livehub.api.body import bearer_token, query_params, read_json
from livehub.api.client_address import client_address
from livehub.api.jsonio import json_response
from livehub.api.schemas import (
    RoomCreateSchema,
    RoomListQuerySchema,
    ViewerTokenCreateSchema,
    ViewerTokenSchema,
)
from livehub.domain.errors import Forbidden, RoomNotFound, Unauthorized
from livehub.domain.room import ListedRoom, Room, RoomPresenter, Visibility
from livehub.domain.service import deny
from livehub.domain.store import Cursor
from livehub.domain.viewer_tokens import HOLDER_TTL

log = logging.getLogger(__name__)

_CREATE = RoomCreateSchema()
_LIST_QUERY = RoomListQuerySchema()
_TOKEN_CREATE = ViewerTokenCreateSchema()
_TOKEN = ViewerTokenSchema()


def encode_cursor(position: Cursor) -> str:
    """``<createdAt>.<id>`` of a page's last room (``CURSOR_PATTERN``; clients copy it)."""
    created_at, room_id = position
    return f"{created_at}.{room_id}"


def decode_cursor(text: str) -> Cursor:
    """The keyset position of a cursor the schema accepted (any such text is a position)."""
    created, _, room_id = text.partition(".")
    return int(created), room_id


@dataclasses.dataclass(frozen=True, slots=True)
class RenderedPage:
    """A list page as the store's thread leaves it."""

    #: the public views, viewer and player counts still 0
    views: list[dict[str, Any]]
    #: ``views`` as JSON: the body when no room on the page has a viewer or a player
    body: bytes
    #: the keyset position of the last room shown, when another page follows
    next_after: Cursor | None


def render_page(views: RoomPresenter, limit: int, rows: list[ListedRoom]) -> RenderedPage:
    """A page from ``limit + 1`` rows at most (one more tells whether another page follows).
    Runs off the event loop: builds the views and encodes them in one call."""
    shown = views.listed(rows[:limit])
    last = rows[limit - 1] if len(rows) > limit else None
    return RenderedPage(shown, orjson.dumps(shown), None if last is None else (last[4], last[0]))


async def create_room(request: web.Request) -> web.Response:
    app = request.app
    policy = app[keys.create_policy]
    anonymous = policy.authenticate(bearer_token(request))  # 401/403 before anything else
    data = _CREATE.load(await read_json(request))
    record = data.get("record", app[keys.config].record_default)
    # only a creation that happens counts against its address: one refused (the cap on open
    # rooms, the store failing) is given back
    client = client_address(request, app[keys.config].trusted_proxies) if anonymous else None
    async with policy.admission(client):
        room, owner_token = await app[keys.rooms].create(
            data["title"], data["visibility"], record=record
        )
    log.info("room %s created (%s)", room.id, room.visibility.value)
    token = _holder_token(request, room)
    return json_response(app[keys.views].created(room, owner_token, token), status=201)


def _holder_token(request: web.Request, room: Room) -> str | None:
    """A fresh viewer token for the owner's or admin's view of a private room (its play URLs
    carry it); None for a public room."""
    if not room.private:
        return None
    token, _ = request.app[keys.viewer_tokens].mint(room.id, HOLDER_TTL)
    return token


def _list_visibility(request: web.Request, asked: str | None) -> Visibility | None:
    """Which rooms a list shows: public ones, unless the admin or an API key asks for private
    ones (``private``) or every one (``all``: None)."""
    if asked is None or asked == "public":
        return Visibility.PUBLIC
    bearer = bearer_token(request)
    if not bearer:
        raise Unauthorized(
            "Listing private rooms needs Authorization: Bearer <admin token or API key>"
        )
    if not request.app[keys.create_policy].privileged(bearer):
        raise Forbidden("Listing private rooms needs the admin token or an API key")
    return Visibility.PRIVATE if asked == "private" else None


async def list_rooms(request: web.Request) -> web.Response:
    query = _LIST_QUERY.load(query_params(request))
    after = decode_cursor(query["cursor"]) if "cursor" in query else None
    status, limit = query.get("status"), query["limit"]
    visibility = _list_visibility(request, query.get("visibility"))
    app = request.app
    service, views = app[keys.rooms], app[keys.views]
    render = functools.partial(render_page, views, limit)
    page = await service.render_page(status, limit + 1, after, render, visibility)
    total = await service.count(status, visibility)
    await app[keys.hub].prefetch([view["id"] for view in page.views])
    body = orjson.dumps(page.views) if views.count_into(page.views) else page.body
    response = web.Response(body=body, content_type="application/json")
    response.headers["X-Total-Count"] = str(total)
    if page.next_after is not None:
        params = {"limit": str(limit), "cursor": encode_cursor(page.next_after)}
        if status is not None:
            params["status"] = status.value
        if "visibility" in query:
            params["visibility"] = query["visibility"]
        next_url = request.rel_url.with_query(params)
        response.headers["Link"] = f'<{next_url}>; rel="next"'
    return response


async def get_room(request: web.Request) -> web.Response:
    """The room; its owner's view with the owner token. A private room is 404 without a
    viewer token (``?token=`` or ``Authorization: Bearer``), the owner token or the admin
    token; the view's play URLs carry the viewer token."""
    app = request.app
    service = app[keys.rooms]
    room = await service.get(request.match_info["room_id"])
    views = app[keys.views]
    token = bearer_token(request) or request.query.get("token")
    owner = bool(token) and service.is_owner(room, token)
    viewer_token: str | None = None
    if room.private and not owner:
        if token and app[keys.viewer_tokens].valid(token, room.id):
            viewer_token = token
        elif token and app[keys.create_policy].is_admin(token):
            viewer_token = _holder_token(request, room)
        else:
            raise RoomNotFound(room.id)  # a private room does not exist for others
    await app[keys.hub].prefetch([room.id])
    if owner:
        return json_response(views.owner(room, _holder_token(request, room)))
    return json_response(views.public(room, viewer_token))


async def create_viewer_token(request: web.Request) -> web.Response:
    """``POST /api/rooms/{id}/viewer-tokens``: a viewer token (owner, admin or API key; a
    private room is 404 to anyone else, as an unknown id)."""
    app = request.app
    service = app[keys.rooms]
    room = await service.get(request.match_info["room_id"])
    bearer = bearer_token(request)
    if not (
        bearer and (service.is_owner(room, bearer) or app[keys.create_policy].privileged(bearer))
    ):
        deny(room, bearer, "This action needs Authorization: Bearer <owner token or API key>")
    body = await read_json(request) if request.body_exists else {}
    data = _TOKEN_CREATE.load(body)
    token, expires_at = app[keys.viewer_tokens].mint(
        room.id, data["ttl"], sub=data.get("sub"), name=data.get("name")
    )
    return json_response(_TOKEN.dump({"token": token, "expires_at": expires_at}), status=201)


async def close_room(request: web.Request) -> web.Response:
    app = request.app
    service = app[keys.rooms]
    room = await service.get(request.match_info["room_id"])
    service.authorize(room, bearer_token(request), app[keys.config].admin_token)
    room = await service.close(room.id)
    await app[keys.hub].prefetch([room.id])
    return json_response({"success": True, "room": app[keys.views].public(room)})
