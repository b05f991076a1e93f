"""Recordings REST handlers (livehub/domain/recordings.py): a room's list, the MP4 file with
range requests (aiohttp's ``FileResponse`` answers ``Range`` with 206, ``If-Range``,
``HEAD``), and deleting one."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from livehub import keys
from livehub.api.body import bearer_token
from livehub.api.jsonio import json_response
from livehub.api.schemas import RecordingSchema
from livehub.domain.recordings import Recording

_RECORDING = RecordingSchema()


def recording_view(recording: Recording) -> dict[str, Any]:
    """The public view of a recording (the API's and the ``recording.ready`` webhook's)."""
    view: dict[str, Any] = _RECORDING.dump(
        {**vars(recording), "url": f"/api/recordings/{recording.id}/file"}
    )
    return view


async def list_recordings(request: web.Request) -> web.Response:
    app = request.app
    recordings = await app[keys.recordings].of_room(
        request.match_info["room_id"], bearer_token(request), app[keys.config].admin_token
    )
    return json_response([recording_view(recording) for recording in recordings])


async def recording_file(request: web.Request) -> web.StreamResponse:
    app = request.app
    recording, file = await app[keys.recordings].readable(
        request.match_info["recording_id"], bearer_token(request), app[keys.config].admin_token
    )
    response = web.FileResponse(file, headers={"Content-Type": "video/mp4"})
    response.headers["Content-Disposition"] = f'inline; filename="{recording.id}.mp4"'
    return response


async def delete_recording(request: web.Request) -> web.Response:
    app = request.app
    await app[keys.recordings].delete(
        request.match_info["recording_id"], bearer_token(request), app[keys.config].admin_token
    )
    return web.Response(status=204)
