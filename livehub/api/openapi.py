"""The OpenAPI 3 document, generated with apispec from the same marshmallow schemas."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin

from livehub import __version__, keys
from livehub.api.jsonio import json_response
from livehub.api.schemas import (
    CloseResultSchema,
    ErrorSchema,
    HealthSchema,
    MembersPageSchema,
    MembersQuerySchema,
    OwnerRoomSchema,
    RecordingSchema,
    RoomCreatedSchema,
    RoomCreateSchema,
    RoomListQuerySchema,
    RoomSchema,
    SRSHeartbeatSchema,
    SRSHookReplySchema,
    SRSHookSchema,
    ViewerTokenCreateSchema,
    ViewerTokenSchema,
)
from livehub.webhooks.schemas import DeliveryListQuerySchema, DeliverySchema


def _json(schema: Any, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _body(schema: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json("Error", description)


ROOM_ID = {
    "in": "path",
    "name": "roomId",
    "required": True,
    "schema": {"type": "string", "minLength": 1},
}
#: the 404 of an action for the room's owner or the admin: a private room is no different from
#: an unknown id to anyone else (401 and 403 are a public room's answers)
HIDDEN_ROOM = (
    "No such room; or a private one and the token does not grant this: to anyone else a "
    "private room is no different from an unknown id"
)
#: ``?token=``: a private room's viewer token (a ``<video src>`` or player sends no header)
VIEWER_TOKEN_QUERY: dict[str, Any] = {
    "in": "query",
    "name": "token",
    "required": False,
    "description": "A viewer token of a private room",
    "schema": {"type": "string"},
}
BEARER: list[dict[str, list[str]]] = [{"ownerToken": []}]
#: the SRS hook URL's query carries the shared secret (srs.conf keeps it when it posts)
HOOK_SECRET = {
    "in": "query",
    "name": "secret",
    "required": True,
    "description": "The shared hook secret (LIVEHUB_HOOK_SECRET)",
    "schema": {"type": "string"},
}
#: the heartbeat carries it as its path's last segment (SRS drops the heartbeat URL's query)
HOOK_SECRET_IN_PATH = {**HOOK_SECRET, "in": "path"}
#: follow a created room to its other operations (used by stateful testing, and by readers)
ROOM_LINKS = {
    "GetRoom": {
        "operationId": "getRoom",
        "parameters": {"roomId": "$response.body#/id"},
        "description": "The room just created",
    },
    "CloseRoom": {
        "operationId": "closeRoom",
        "parameters": {"roomId": "$response.body#/id"},
        "description": "Close it (with the ownerToken as bearer token)",
    },
}

PAGE_HEADERS = {
    "X-Total-Count": {
        "description": "How many rooms match (all pages)",
        "schema": {"type": "integer", "minimum": 0},
    },
    "Link": {
        "description": 'The next page, `<url>; rel="next"` (absent on the last page)',
        "schema": {"type": "string"},
    },
}

DESCRIPTION = """Live rooms, WebSocket signaling (see docs/protocol.md), SRS hooks.

Every REST error has one shape, `Error`: `{"error": message, "code": snake_case, "details":
object or null}`; validation errors name the offending fields in `details`. This includes
the answers no operation below lists: 404 `not_found` for an unknown path or a console file
under `/static/` that does not exist, and 405 `method_not_allowed` (with an `Allow` header) for
a method a path does not support. Not in this shape: a request HTTP cannot parse (aiohttp
answers its own plain-text 400 before any route), and the 404 of a file found by its check but
deleted before its sending (a console file, a recording's file), which is empty."""


def build_spec() -> dict[str, Any]:
    spec = APISpec(
        title="livehub",
        version=__version__,
        openapi_version="3.0.3",
        plugins=[MarshmallowPlugin()],
        info={"description": DESCRIPTION},
    )
    spec.components.security_scheme(
        "ownerToken", {"type": "http", "scheme": "bearer", "description": "owner or admin token"}
    )
    spec.components.security_scheme(
        "viewerToken",
        {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "a viewer token of a private room (POST .../viewer-tokens)",
        },
    )
    spec.components.security_scheme(
        "apiKey",
        {
            "type": "http",
            "scheme": "bearer",
            "description": "an API key from LIVEHUB_API_KEYS, or the admin token. Needed to "
            "create rooms when LIVEHUB_API_KEYS is set; without it creation is anonymous and "
            "rate-limited per client address (LIVEHUB_CREATE_RATE_PER_MIN)",
        },
    )
    for name, schema in (
        ("Error", ErrorSchema),
        ("Room", RoomSchema),
        ("OwnerRoom", OwnerRoomSchema),
        ("RoomCreated", RoomCreatedSchema),
        ("RoomCreate", RoomCreateSchema),
        ("CloseResult", CloseResultSchema),
        ("SRSHook", SRSHookSchema),
        ("SRSHeartbeat", SRSHeartbeatSchema),
        ("SRSHookReply", SRSHookReplySchema),
        ("Health", HealthSchema),
        ("MembersPage", MembersPageSchema),
        ("ViewerTokenCreate", ViewerTokenCreateSchema),
        ("ViewerToken", ViewerTokenSchema),
    ):
        spec.components.schema(name, schema=schema)
    bad = _error("Invalid input; `details` names the fields")
    bad_body = _error(
        "Invalid body: not JSON (`invalid_json`), unreadable (`invalid_body`), or not valid "
        "for the schema (`validation_error`, `details` names the fields)"
    )
    too_large = _error("Body larger than the limit (`body_too_large`, `details.maxBytes`)")
    spec.path(
        path="/api/rooms",
        operations={
            "get": {
                "operationId": "listRooms",
                "summary": "One page of rooms, newest first (public rooms, unless the admin "
                "or an API key asks for `visibility=private` or `all`)",
                "parameters": [{"in": "query", "schema": RoomListQuerySchema}],
                "security": [{}, {"apiKey": []}],
                "responses": {
                    "200": {
                        **_json({"type": "array", "items": "Room"}, "One page of rooms"),
                        "headers": PAGE_HEADERS,
                    },
                    "400": bad,
                    "401": _error("`visibility=private` or `all` without a bearer token"),
                    "403": _error("`visibility=private` or `all`: neither API key nor admin"),
                },
            },
            "post": {
                "operationId": "createRoom",
                "summary": "Create a room; the reply alone carries the owner token",
                "requestBody": _body("RoomCreate"),
                "security": [{}, {"apiKey": []}],
                "responses": {
                    "201": {
                        **_json("RoomCreated", "The room with its secrets"),
                        "links": ROOM_LINKS,
                    },
                    "400": bad_body,
                    "401": _error("API keys are configured and no bearer token was given"),
                    "403": _error("The bearer token is neither an API key nor the admin token"),
                    "413": too_large,
                    "415": _error("Content-Type is not application/json"),
                    "429": {
                        **_error(
                            "Anonymous creation over the rate limit for this client address "
                            "(`rate_limited`, `details.retryAfter`)"
                        ),
                        "headers": {
                            "Retry-After": {
                                "description": "Seconds until a room may be created again",
                                "schema": {"type": "integer", "minimum": 1},
                            }
                        },
                    },
                    "503": {
                        **_error(
                            "The service holds `LIVEHUB_MAX_OPEN_ROOMS` rooms not ended "
                            "(`too_many_rooms`, `details.maxOpenRooms`, `details.retryAfter`): "
                            "nothing was created; rooms that end make room"
                        ),
                        "headers": {
                            "Retry-After": {
                                "description": "Seconds to wait before trying again",
                                "schema": {"type": "integer", "minimum": 1},
                            }
                        },
                    },
                },
            },
        },
    )
    spec.path(
        path="/api/rooms/{roomId}",
        operations={
            "get": {
                "operationId": "getRoom",
                "summary": "A room (with publish credentials for its owner's bearer token)",
                "description": "A private room answers 404 unless a viewer token (`?token=` "
                "or `Authorization: Bearer`), its owner token or the admin token is given; "
                "the view's play URLs then carry a viewer token (`token=`).",
                "parameters": [ROOM_ID, VIEWER_TOKEN_QUERY],
                "security": [{}, *BEARER, {"viewerToken": []}],
                "responses": {
                    "200": _json(
                        {"oneOf": ["OwnerRoom", "Room"]},
                        "The room: `OwnerRoom` for the owner's token, `Room` for anyone else",
                    ),
                    "404": _error("No such room (or a private one, without a valid token)"),
                },
            },
        },
    )
    spec.path(
        path="/api/rooms/{roomId}/close",
        operations={
            "post": {
                "operationId": "closeRoom",
                "summary": "End a room for good and kick its publisher",
                "parameters": [ROOM_ID],
                "security": BEARER,
                "responses": {
                    "200": _json("CloseResult", "Closed (idempotent)"),
                    "401": _error("No bearer token (a public room)"),
                    "403": _error("Wrong token (a public room)"),
                    "404": _error(HIDDEN_ROOM),
                },
            },
        },
    )
    spec.path(
        path="/api/rooms/{roomId}/viewer-tokens",
        operations={
            "post": {
                "operationId": "createViewerToken",
                "summary": "A viewer token of the room: an HS256 JWT (claims `room`, `exp`, "
                "optional `sub`/`name`) signed with LIVEHUB_VIEWER_TOKEN_SECRET",
                "parameters": [ROOM_ID],
                "requestBody": {
                    "required": False,
                    "content": {"application/json": {"schema": "ViewerTokenCreate"}},
                },
                "security": [*BEARER, {"apiKey": []}],
                "responses": {
                    "201": _json("ViewerToken", "The token and when it expires"),
                    "400": bad_body,
                    "401": _error("No bearer token (a public room)"),
                    "403": _error(
                        "Neither the owner token, an API key nor the admin token (a public room)"
                    ),
                    "404": _error(HIDDEN_ROOM),
                    "413": too_large,
                    "415": _error("Content-Type is not application/json"),
                },
            },
        },
    )
    spec.path(
        path="/api/rooms/{roomId}/stage/{peerId}",
        operations={
            "delete": {
                "operationId": "removeStageGuest",
                "summary": "Take a guest off the stage: its stream is kicked from SRS and its "
                "publish token revoked (a pending invitation is withdrawn)",
                "parameters": [
                    ROOM_ID,
                    {
                        "in": "path",
                        "name": "peerId",
                        "required": True,
                        "schema": {"type": "string", "minLength": 1},
                    },
                ],
                "security": BEARER,
                "responses": {
                    "204": {"description": "Off the stage"},
                    "401": _error("No bearer token (a public room)"),
                    "403": _error("Wrong token (a public room)"),
                    "404": _error(
                        f"{HIDDEN_ROOM} (`room_not_found`), or no such guest (`not_on_stage`)"
                    ),
                },
            },
        },
    )
    spec.path(
        path="/api/rooms/{roomId}/members",
        operations={
            "get": {
                "operationId": "listMembers",
                "summary": "A room's signaling members (peer id, name, role), in join order, paged",
                "parameters": [ROOM_ID, {"in": "query", "schema": MembersQuerySchema}],
                "security": BEARER,
                "responses": {
                    "200": _json("MembersPage", "One page of members, and how many there are"),
                    "400": bad,
                    "401": _error("No bearer token (a public room)"),
                    "403": _error("Wrong token (a public room)"),
                    "404": _error(HIDDEN_ROOM),
                },
            },
        },
    )
    spec.path(
        path="/api/hooks/srs",
        operations={
            "post": {
                "operationId": "srsHook",
                "summary": "SRS HTTP callbacks (on_publish, on_unpublish, on_play, on_stop)",
                "description": "Refusals are HTTP 200 with a non-zero `code` and the reason "
                "in `msg`. The body is parsed as JSON whatever its Content-Type.",
                "parameters": [HOOK_SECRET],
                "requestBody": _body("SRSHook"),
                "responses": {
                    "200": _json("SRSHookReply", "code 0 allows, non-zero refuses"),
                    "400": bad_body,
                    "403": _error("Hook secret missing or wrong"),
                    "413": too_large,
                },
            },
        },
    )
    spec.path(
        path="/api/hooks/srs/heartbeat/{secret}",
        operations={
            "post": {
                "operationId": "srsHeartbeat",
                "summary": "SRS heartbeat: a changed `service` id makes livehub reconcile",
                "description": "Signed by the hook secret as the path's last segment: SRS drops "
                "the heartbeat URL's query. A reconciliation runs at most once per SRS origin per "
                "10 s, whoever asks.",
                "parameters": [HOOK_SECRET_IN_PATH],
                "requestBody": _body("SRSHeartbeat"),
                "responses": {
                    "200": _json("SRSHookReply", "Acknowledged (always code 0)"),
                    "400": bad_body,
                    "403": _error("Hook secret wrong"),
                    "413": too_large,
                },
            },
        },
    )
    spec.path(
        path="/api/hooks/srs/heartbeat",
        operations={
            "post": {
                "operationId": "srsHeartbeatUnsigned",
                "summary": "The heartbeat without its secret: always refused",
                "description": "An srs.conf from before the heartbeat was signed posts here; "
                "its url must end in `/api/hooks/srs/heartbeat/<LIVEHUB_HOOK_SECRET>`.",
                "responses": {"403": _error("Hook secret missing")},
            },
        },
    )
    spec.path(
        path="/healthz",
        operations={
            "get": {
                "operationId": "healthz",
                "summary": "Liveness",
                "responses": {"200": _json("Health", "Alive")},
            }
        },
    )
    spec.path(
        path="/readyz",
        operations={
            "get": {
                "operationId": "readyz",
                "summary": "Readiness: database and SRS API",
                "responses": {
                    "200": _json("Health", "Ready"),
                    "503": _json("Health", "Not ready"),
                },
            }
        },
    )
    spec.path(
        path="/metrics",
        operations={
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics",
                "responses": {
                    "200": {
                        "description": "Prometheus text exposition format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
    )
    spec.path(
        path="/api/openapi.json",
        operations={
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "responses": {"200": _json({"type": "object"}, "OpenAPI 3 document")},
            }
        },
    )
    add_webhook_paths(spec)
    add_recording_paths(spec)
    document = spec.to_dict()
    _common_answers(document)
    return document


#: the operations that read or write the database: each answers 503 while it is unavailable
USES_DATABASE = frozenset(
    {
        "listRooms",
        "createRoom",
        "getRoom",
        "closeRoom",
        "createViewerToken",
        "removeStageGuest",
        "listMembers",
        "srsHook",
        "listWebhookDeliveries",
        "retryWebhookDelivery",
        "listRecordings",
        "getRecordingFile",
        "deleteRecording",
    }
)


def _common_answers(document: dict[str, Any]) -> None:
    """List on each operation the answers that come from what it shares with others, not from
    its own rules: 408 ``body_timeout`` on every one that reads a body (``read_json``), 503
    ``database_unavailable`` on every one that reads or writes the database. An operation that
    already lists the status (with words of its own) keeps them."""
    error = {"$ref": "#/components/schemas/Error"}
    timeout = {
        "description": "The body did not arrive within LIVEHUB_BODY_TIMEOUT seconds "
        "(`body_timeout`); the connection is closed",
        "content": {"application/json": {"schema": error}},
    }
    unavailable = {
        "description": "The database is unavailable (`database_unavailable`): nothing was "
        "changed, try again",
        "content": {"application/json": {"schema": error}},
    }
    for operations in document["paths"].values():
        for operation in operations.values():
            responses = operation["responses"]
            if "requestBody" in operation:
                responses.setdefault("408", timeout)
            if operation["operationId"] in USES_DATABASE:
                responses.setdefault("503", unavailable)


# -- webhooks (livehub/webhooks, docs/webhooks.md) -----------------------------------------------

DELIVERY_ID = {
    "in": "path",
    "name": "deliveryId",
    "required": True,
    "schema": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
}
ADMIN: list[dict[str, list[str]]] = [{"adminToken": []}]


def add_webhook_paths(spec: APISpec) -> None:
    spec.components.security_scheme(
        "adminToken", {"type": "http", "scheme": "bearer", "description": "LIVEHUB_ADMIN_TOKEN"}
    )
    spec.components.schema("WebhookDelivery", schema=DeliverySchema)
    disabled = _error("Webhooks are not configured (`webhooks_disabled`)")
    spec.path(
        path="/api/webhooks/deliveries",
        operations={
            "get": {
                "operationId": "listWebhookDeliveries",
                "summary": "Webhook deliveries, newest first, optionally of one state",
                "parameters": [{"in": "query", "schema": DeliveryListQuerySchema}],
                "security": ADMIN,
                "responses": {
                    "200": _json({"type": "array", "items": "WebhookDelivery"}, "Deliveries"),
                    "400": _error("Invalid input; `details` names the fields"),
                    "401": _error("No bearer token"),
                    "403": _error("Not the admin token"),
                    "404": disabled,
                },
            },
        },
    )
    spec.path(
        path="/api/webhooks/deliveries/{deliveryId}/retry",
        operations={
            "post": {
                "operationId": "retryWebhookDelivery",
                "summary": "Send a failed delivery again, now, with a fresh retry schedule",
                "parameters": [DELIVERY_ID],
                "security": ADMIN,
                "responses": {
                    "200": _json("WebhookDelivery", "The delivery, pending again"),
                    "400": _error("Invalid delivery id (`details.deliveryId`)"),
                    "401": _error("No bearer token"),
                    "403": _error("Not the admin token"),
                    "404": _error(
                        "No such delivery (`delivery_not_found`), or webhooks are not "
                        "configured (`webhooks_disabled`)"
                    ),
                    "409": _error("The delivery is not failed (`delivery_not_failed`)"),
                },
            },
        },
    )


# -- recordings (livehub/domain/recordings.py) and the JavaScript SDK ---------------------------

RECORDING_ID = {
    "in": "path",
    "name": "recordingId",
    "required": True,
    "schema": {"type": "string", "minLength": 1},
}


def add_recording_paths(spec: APISpec) -> None:
    spec.components.schema("Recording", schema=RecordingSchema)
    spec.path(
        path="/api/rooms/{roomId}/recordings",
        operations={
            "get": {
                "operationId": "listRecordings",
                "summary": "A room's recordings, oldest first (one per publish: an encoder "
                "that reconnected inside the window left several)",
                "description": "A private room's need its viewer token (`?token=` or "
                "`Authorization: Bearer`), the owner or the admin token (404 otherwise); their "
                "`url`s then carry a viewer token.",
                "parameters": [ROOM_ID, VIEWER_TOKEN_QUERY],
                "security": [{}, *BEARER, {"viewerToken": []}],
                "responses": {
                    "200": {
                        **_json({"type": "array", "items": "Recording"}, "The recordings"),
                        "links": {
                            "GetRecordingFile": {
                                "operationId": "getRecordingFile",
                                "parameters": {"recordingId": "$response.body#/0/id"},
                                "description": "The first recording's file",
                            },
                            "DeleteRecording": {
                                "operationId": "deleteRecording",
                                "parameters": {"recordingId": "$response.body#/0/id"},
                                "description": "Delete it (with the owner's token)",
                            },
                        },
                    },
                    "404": _error("No such room"),
                },
            },
        },
    )
    spec.path(
        path="/api/recordings/{recordingId}/file",
        operations={
            "get": {
                "operationId": "getRecordingFile",
                "summary": "The recording's MP4; `Range` requests are answered with 206",
                "parameters": [
                    RECORDING_ID,
                    VIEWER_TOKEN_QUERY,
                    {
                        "in": "header",
                        "name": "Range",
                        "required": False,
                        "schema": {"type": "string"},
                        "description": "e.g. `bytes=0-1023`",
                    },
                ],
                "security": [{}, *BEARER, {"viewerToken": []}],
                "responses": {
                    "200": {
                        "description": "The whole file",
                        "content": {"video/mp4": {"schema": {"type": "string"}}},
                    },
                    "206": {
                        "description": "The range asked for",
                        "content": {"video/mp4": {"schema": {"type": "string"}}},
                    },
                    "304": {
                        "description": "Not modified since the `If-None-Match` or "
                        "`If-Modified-Since` given (no body)"
                    },
                    "404": _error("No such recording (`recording_not_found`)"),
                    "412": {
                        "description": "The `If-Match` or `If-Unmodified-Since` given does not "
                        "hold (no body)"
                    },
                    "416": {"description": "The range is not satisfiable"},
                },
            },
        },
    )
    spec.path(
        path="/api/recordings/{recordingId}",
        operations={
            "delete": {
                "operationId": "deleteRecording",
                "summary": "Delete a recording, file and row (the room's owner or the admin)",
                "parameters": [RECORDING_ID],
                "security": BEARER,
                "responses": {
                    "204": {"description": "Deleted"},
                    "401": _error("No bearer token (a public room's recording)"),
                    "403": _error("Wrong token (a public room's recording)"),
                    "404": _error(
                        "No such recording, or a private room's and the token is neither its "
                        "owner's nor the admin's (`recording_not_found`)"
                    ),
                    "503": _error(
                        "The file could not be deleted (`recording_not_deleted`): the recording "
                        "is kept, and the retention sweep tries again; or the database is "
                        "unavailable (`database_unavailable`)"
                    ),
                },
            },
        },
    )
    spec.path(
        path="/sdk/livehub-client.js",
        operations={
            "get": {
                "operationId": "sdk",
                "summary": "The JavaScript SDK, an ES module (docs/frontend.md)",
                "responses": {
                    "200": {
                        "description": "sdk/livehub-client.js",
                        "content": {"text/javascript": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
    )


async def openapi_json(request: web.Request) -> web.Response:
    return json_response(request.app[keys.openapi])
