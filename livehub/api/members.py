"""A room's members (signaling connections), paged, for its owner or the admin."""

from __future__ import annotations

from aiohttp import web

from livehub import keys
from livehub.api.body import bearer_token, query_params
from livehub.api.jsonio import json_response
from livehub.api.schemas import MembersPageSchema, MembersQuerySchema

_QUERY = MembersQuerySchema()
_PAGE = MembersPageSchema()


async def list_members(request: web.Request) -> web.Response:
    query = _QUERY.load(query_params(request))
    app = request.app
    service = app[keys.rooms]
    room = await service.get(request.match_info["room_id"])
    service.authorize(room, bearer_token(request), app[keys.config].admin_token)
    hub = app[keys.hub]
    await hub.load(room.id)  # members on every node
    members = hub.page_members(room.id, query["limit"], query["offset"])
    page = {
        "members": [
            {"peer_id": member["peerId"], "name": member["name"], "role": member["role"]}
            for member in members
        ],
        "total": hub.count(room.id),
        "limit": query["limit"],
        "offset": query["offset"],
    }
    return json_response(_PAGE.dump(page))
