"""The stage over REST: the owner or the admin takes a guest off the stage."""

from __future__ import annotations

from aiohttp import web

from livehub import keys
from livehub.api.body import bearer_token


async def remove_guest(request: web.Request) -> web.Response:
    """``DELETE /api/rooms/{id}/stage/{peerId}``: 204; the guest's stream is kicked from SRS
    and its token revoked (404 ``not_on_stage`` when there is no such guest)."""
    app = request.app
    service = app[keys.rooms]
    room = await service.get(request.match_info["room_id"])
    service.authorize(room, bearer_token(request), app[keys.config].admin_token)
    await app[keys.stage].remove(room.id, request.match_info["peer_id"])
    return web.Response(status=204)
