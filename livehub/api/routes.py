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
    # the REST API: CORS for every route under /api/ (:func:`_allow_cross_origin`)
    get("/api/rooms", rooms.list_rooms, name="rooms")
    post("/api/rooms", rooms.create_room, name="create_room")
    get("/api/rooms/{room_id}", rooms.get_room, name="room")
    post("/api/rooms/{room_id}/close", rooms.close_room, name="close_room")
    get("/api/rooms/{room_id}/members", members.list_members, name="members")
    post("/api/rooms/{room_id}/viewer-tokens", rooms.create_viewer_token, name="viewer_tokens")
    delete("/api/rooms/{room_id}/stage/{peer_id}", stage.remove_guest, name="stage_guest")
    get("/api/openapi.json", openapi.openapi_json, name="openapi")
    get("/api/rooms/{room_id}/recordings", recordings.list_recordings, name="recordings")
    get("/api/recordings/{recording_id}/file", recordings.recording_file, name="recording_file")
    delete("/api/recordings/{recording_id}", recordings.delete_recording, name="recording")
    # webhook admin (admin token; webhooks_disabled without LIVEHUB_WEBHOOK_URLS)
    get("/api/webhooks/deliveries", webhooks.list_deliveries, name="webhook_deliveries")
    post(
        "/api/webhooks/deliveries/{delivery_id}/retry",
        webhooks.retry_delivery,
        name="webhook_delivery_retry",
    )
    # the JavaScript SDK (sdk/livehub-client.js), the file itself: importable from any origin,
    # so it answers `Access-Control-Allow-Origin: *` itself; under aiohttp_cors too, a request
    # with an Origin (a browser's module import, the console's own) failed with a 500
    get("/sdk/livehub-client.js", console.sdk, name="sdk")
    post("/api/hooks/srs", srs_hooks.srs_hook, name="srs_hooks")
    # SRS drops the heartbeat URL's query: its secret is the last path segment. The bare path
    # answers 403 (an srs.conf from before the heartbeat was signed), never 404
    post("/api/hooks/srs/heartbeat", srs_hooks.unsigned_heartbeat, name="srs_heartbeat")
    post("/api/hooks/srs/heartbeat/{secret}", srs_hooks.srs_heartbeat, name="srs_heartbeat_signed")
    get("/ws", websocket.websocket, name="ws")
    get("/", console.index, name="index")
    get("/healthz", health.healthz, name="healthz")
    get("/readyz", health.readyz, name="readyz")
    get("/metrics", health.metrics, name="metrics")
    # not add_static: its 404s were empty (console.static_file)
    get("/static/{filename:.+}", console.static_file, name="static")

    _allow_cross_origin(app, cors_origins)


#: path prefixes of routes that are not the REST API a browser calls: SRS's hooks (server to
#: server, authenticated by a secret a page must never hold)
NO_CORS_PREFIXES = ("/api/hooks/",)


def _allow_cross_origin(app: web.Application, cors_origins: tuple[str, ...]) -> None:
    """CORS (``LIVEHUB_CORS_ORIGINS``) for every REST resource, taken from the router rather
    than listed by hand: a route added to a list but not another (the webhook admin routes)
    answered no preflight and no ``Access-Control-Allow-Origin``, and a frontend on another
    origin could not call it. Each resource allows exactly its own methods, with the headers
    the SDK and the console send (``Authorization``, ``Content-Type``); ``/ws`` checks origins
    itself (``LIVEHUB_WS_ORIGINS``), ``/sdk/livehub-client.js`` answers ``*`` itself, the
    console, probes and metrics need no CORS."""
    cors = aiohttp_cors.setup(app)
    # the methods of a path: routes of one path under different names are different resources
    # (GET and POST /api/rooms), and the first one answers the path's preflights for them all
    methods: dict[str, set[str]] = {}
    resources = []
    for resource in app.router.resources():
        path = resource.canonical
        if path.startswith("/api/") and not path.startswith(NO_CORS_PREFIXES):
            resources.append(resource)
            methods.setdefault(path, set()).update(route.method for route in resource)
    for resource in resources:
        options = aiohttp_cors.ResourceOptions(  # type: ignore[no-untyped-call]
            allow_credentials=False,
            expose_headers="*",
            allow_headers=("Authorization", "Content-Type"),
            allow_methods=sorted(methods[resource.canonical] - {"HEAD", "OPTIONS"}),
            max_age=3600,
        )
        cors.add(resource, {origin: options for origin in cors_origins})
