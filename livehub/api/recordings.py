"""Recordings REST handlers (livehub/domain/recordings.py): a room's list, the MP4 file with
range requests (aiohttp's ``FileResponse`` answers ``Range`` with 206, ``If-Range``,
``HEAD``), and deleting one."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from aiohttp import web

from livehub import keys
from livehub.api.body import bearer_token
from livehub.api.jsonio import json_response
from livehub.api.schemas import RecordingSchema
from livehub.domain.errors import RoomNotFound
from livehub.domain.recordings import Recording, RecordingNotFound
from livehub.domain.viewer_tokens import HOLDER_TTL

_RECORDING = RecordingSchema()


def recording_view(recording: Recording) -> dict[str, Any]:
    """The public view of a recording (the API's and the ``recording.ready`` webhook's)."""
    view: dict[str, Any] = _RECORDING.dump(
        {**vars(recording), "url": f"/api/recordings/{recording.id}/file"}
    )
    return view


def _token(request: web.Request) -> str | None:
    """``Authorization: Bearer``, or ``?token=`` (a ``<video src>`` sends no header)."""
    return bearer_token(request) or request.query.get("token") or None


async def list_recordings(request: web.Request) -> web.Response:
    """A room's recordings. A private room's need a viewer, owner or admin token, and their
    ``url`` carries a viewer token (the one given, or one minted for the owner or admin: an
    owner token never goes into a URL)."""
    app = request.app
    token = _token(request)
    room = await app[keys.rooms].get(request.match_info["room_id"])
    recordings = await app[keys.recordings].of_room(room.id, token, app[keys.config].admin_token)
    views = [recording_view(recording) for recording in recordings]
    if room.private and views:
        viewer_tokens = app[keys.viewer_tokens]
        if token is None or not viewer_tokens.valid(token, room.id):
            token, _ = viewer_tokens.mint(room.id, HOLDER_TTL)
        for view in views:
            view["url"] += f"?token={quote(token, safe='')}"
    return json_response(views)


async def recording_file(request: web.Request) -> web.StreamResponse:
    app = request.app
    recording, file = await app[keys.recordings].readable(
        request.match_info["recording_id"], _token(request), app[keys.config].admin_token
    )
    response = web.FileResponse(file, headers={"Content-Type": "video/mp4"})
    response.headers["Content-Disposition"] = f'inline; filename="{recording.id}.mp4"'
    return response


async def delete_recording(request: web.Request) -> web.Response:
    app = request.app
    recording_id = request.match_info["recording_id"]
    try:
        await app[keys.recordings].delete(
            recording_id, bearer_token(request), app[keys.config].admin_token
        )
    except RoomNotFound:
        # a private room's recording, to a caller without its owner or the admin token: the
        # room is not there for them (RoomService.authorize), so neither is the recording
        raise RecordingNotFound(recording_id) from None
    return web.Response(status=204)
