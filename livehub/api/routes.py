"""The route table: every URL livehub serves, named, in one place."""

from __future__ import annotations

import functools

import aiohttp_cors
from aiohttp import web

from livehub.api import (
    console,
    health,
    members,
    openapi,
    recordings,
    rooms,
    srs_hooks,
    stage,
    webhooks,
    websocket,
)
from livehub.api.middlewares import expect_continue


def setup_routes(app: web.Application, cors_origins: tuple[str, ...]) -> None:
    router = app.router
    # every route refuses a body announced over the size limit before it is sent (Expect)
    get = functools.partial(router.add_get, expect_handler=expect_continue)
    post = functools.partial(router.add_post, expect_handler=expect_continue)
    delete = functools.partial(router.add_delete, expect_handler=expect_continue)
    rest = [
        get("/api/rooms", rooms.list_rooms, name="rooms"),
        post("/api/rooms", rooms.create_room, name="create_room"),
        get("/api/rooms/{room_id}", rooms.get_room, name="room"),
        post("/api/rooms/{room_id}/close", rooms.close_room, name="close_room"),
        get("/api/rooms/{room_id}/members", members.list_members, name="members"),
        post(
            "/api/rooms/{room_id}/viewer-tokens",
            rooms.create_viewer_token,
            name="viewer_tokens",
        ),
        delete("/api/rooms/{room_id}/stage/{peer_id}", stage.remove_guest, name="stage_guest"),
        get("/api/openapi.json", openapi.openapi_json, name="openapi"),
        get("/api/rooms/{room_id}/recordings", recordings.list_recordings, name="recordings"),
        get(
            "/api/recordings/{recording_id}/file", recordings.recording_file, name="recording_file"
        ),
    ]
    # the JavaScript SDK (sdk/livehub-client.js), the file itself: importable from any origin,
    # so it answers `Access-Control-Allow-Origin: *` itself; under aiohttp_cors too, a request
    # with an Origin (a browser's module import, the console's own) failed with a 500
    get("/sdk/livehub-client.js", console.sdk, name="sdk")
    # the one DELETE: its own CORS options (the other routes' preflights refuse DELETE)
    delete_recording = delete(
        "/api/recordings/{recording_id}", recordings.delete_recording, name="recording"
    )
    post("/api/hooks/srs", srs_hooks.srs_hook, name="srs_hooks")
    # SRS drops the heartbeat URL's query: its secret is the last path segment. The bare path
    # answers 403 (an srs.conf from before the heartbeat was signed), never 404
    post("/api/hooks/srs/heartbeat", srs_hooks.unsigned_heartbeat, name="srs_heartbeat")
    post("/api/hooks/srs/heartbeat/{secret}", srs_hooks.srs_heartbeat, name="srs_heartbeat_signed")
    # webhook admin (admin token; webhooks_disabled without LIVEHUB_WEBHOOK_URLS)
    get("/api/webhooks/deliveries", webhooks.list_deliveries, name="webhook_deliveries")
    post(
        "/api/webhooks/deliveries/{delivery_id}/retry",
        webhooks.retry_delivery,
        name="webhook_delivery_retry",
    )
    get("/ws", websocket.websocket, name="ws")
    get("/", console.index, name="index")
    get("/healthz", health.healthz, name="healthz")
    get("/readyz", health.readyz, name="readyz")
    get("/metrics", health.metrics, name="metrics")
    router.add_static("/static", console.STATIC, name="static")

    options = aiohttp_cors.ResourceOptions(  # type: ignore[no-untyped-call]
        allow_credentials=False,
        expose_headers="*",
        allow_headers=("Content-Type", "Authorization"),
        allow_methods=("GET", "POST", "DELETE"),
        max_age=3600,
    )
    cors = aiohttp_cors.setup(app, defaults={origin: options for origin in cors_origins})
    for route in rest:
        cors.add(route)
    deletes = aiohttp_cors.ResourceOptions(  # type: ignore[no-untyped-call]
        allow_credentials=False,
        expose_headers="*",
        allow_headers=("Authorization",),
        allow_methods=("DELETE",),
        max_age=3600,
    )
    cors.add(delete_recording, {origin: deletes for origin in cors_origins})
