"""The OpenAPI document against the answers the app really gives, in the ordinary test run
(schemathesis does the same against a livehub process, but only under ``make fuzz``).

Every route of the router is an operation of the document and the other way round; then real
requests, reaching every operation's successes and refusals, are answered only with a status
code the operation lists, with a body of the media type it names for that status and valid for
its schema (or no body where it names none)."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from aiohttp import ClientResponse, web
from pytest_aiohttp import AiohttpClient

from livehub.app import create_app
from livehub.webhook_settings import parse_secrets
from tests.conftest import ADMIN_TOKEN, HOOK_SECRET, Client, hook_for, make_config, send_hook

WEBHOOK_SECRET = "whsec_bGl2ZWh1Yi10ZXN0LXdlYmhvb2stc2VjcmV0LTMyYnk="
#: routes that are no REST operations: the WebSocket (docs/protocol.md), the console
NOT_OPERATIONS = {"/ws", "/", "/static/{filename}"}
#: a GET route answers HEAD too (aiohttp adds it), as HTTP says a GET resource does
IMPLIED_METHODS = {"HEAD", "OPTIONS"}
#: the router's names of path parameters, and the document's
PATH_PARAMETERS = (
    ("room_id", "roomId"),
    ("peer_id", "peerId"),
    ("recording_id", "recordingId"),
    ("delivery_id", "deliveryId"),
)


def _json_schema(schema: Any) -> Any:
    """An OpenAPI 3.0 schema as JSON Schema: ``nullable: true`` becomes a ``null`` type."""
    if isinstance(schema, list):
        return [_json_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    converted = {key: _json_schema(value) for key, value in schema.items() if key != "nullable"}
    if schema.get("nullable") and "type" in schema:
        converted["type"] = [schema["type"], "null"]
    return converted


class Document:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.components = _json_schema(spec["components"])
        #: the statuses seen, per operation (method, path template)
        self.seen: dict[tuple[str, str], set[int]] = {}

    def operation(self, method: str, template: str) -> dict[str, Any]:
        operation: dict[str, Any] = self.spec["paths"][template][method.lower()]
        return operation

    async def check(self, method: str, template: str, resp: ClientResponse) -> None:
        """``resp`` is an answer the document gives ``method template``."""
        body = await resp.read()
        self.seen.setdefault((method.lower(), template), set()).add(resp.status)
        responses = self.operation(method, template)["responses"]
        what = f"{method} {template} answered {resp.status} ({body[:200]!r})"
        assert str(resp.status) in responses, f"{what}: not documented"
        content = responses[str(resp.status)].get("content")
        if not body:
            return
        assert content is not None, f"{what}: the document names no body"
        assert resp.content_type in content, f"{what}: {resp.content_type} not documented"
        if resp.content_type != "application/json":
            return
        schema = _json_schema(content[resp.content_type]["schema"])
        validator = jsonschema_rs.validator_for({**schema, "components": self.components})
        errors = [str(error) for error in validator.iter_errors(json.loads(body))]
        assert errors == [], f"{what}: {errors}"


def mp4(duration_ms: int) -> bytes:
    """A minimal MP4 (ftyp, mdat, moov/mvhd) of ``duration_ms``."""

    def box(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I4s", 8 + len(payload), kind) + payload

    mvhd = box(b"mvhd", bytes(4) + struct.pack(">IIII", 0, 0, 1000, duration_ms) + bytes(80))
    return box(b"ftyp", b"isom" + bytes(4)) + box(b"mdat", bytes(1024)) + box(b"moov", mvhd)


@pytest.fixture
def app(tmp_path: Path, recordings_dir: Path) -> web.Application:
    return create_app(
        make_config(
            db_path=str(tmp_path / "livehub.db"),
            recordings_dir=str(recordings_dir),
            webhook_urls=("http://127.0.0.1:9/hook",),
            webhook_secrets=parse_secrets("LIVEHUB_WEBHOOK_SECRET", WEBHOOK_SECRET),
        )
    )


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, app: web.Application) -> Client:
    return await aiohttp_client(app)


@pytest.fixture
async def document(client: Client) -> Document:
    resp = await client.get("/api/openapi.json")
    assert resp.status == 200
    return Document(await resp.json())


def _template(resource: web.AbstractResource) -> str:
    """A route's path as the document spells it: ``{room_id}`` is ``{roomId}``."""
    path = resource.canonical
    for name, wire in PATH_PARAMETERS:
        path = path.replace(f"{{{name}}}", f"{{{wire}}}")
    return path


async def test_every_route_is_an_operation_of_the_document(
    app: web.Application, document: Document
) -> None:
    served = {
        (route.method.lower(), _template(route.resource))
        for route in app.router.routes()
        if route.resource is not None
        and route.method not in IMPLIED_METHODS
        and route.resource.canonical not in NOT_OPERATIONS
    }
    documented = {
        (method, path)
        for path, operations in document.spec["paths"].items()
        for method in operations
    }
    assert served == documented


async def test_real_answers_are_the_documented_ones(
    client: Client, document: Document, recordings_dir: Path
) -> None:
    check = document.check
    owner_of: dict[str, dict[str, str]] = {}

    async def create(**body: Any) -> dict[str, Any]:
        resp = await client.post("/api/rooms", json={"title": "Conformance", **body})
        room: dict[str, Any] = await resp.json()
        await check("POST", "/api/rooms", resp)
        owner_of[room["id"]] = {"Authorization": f"Bearer {room['ownerToken']}"}
        return room

    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    wrong = {"Authorization": "Bearer not-a-token"}
    room = await create(record=True)
    private = await create(visibility="private")
    rid, owner = room["id"], owner_of[room["id"]]
    json_type = {"Content-Type": "application/json"}

    # rooms
    await check("POST", "/api/rooms", await client.post("/api/rooms", json={"title": ""}))
    resp = await client.post("/api/rooms", data=b"{", headers=json_type)
    await check("POST", "/api/rooms", resp)
    await check("POST", "/api/rooms", await client.post("/api/rooms", data=b"{}"))
    big = json.dumps({"title": "x" * 20_000})
    await check("POST", "/api/rooms", await client.post("/api/rooms", data=big, headers=json_type))
    for query in ("", "?limit=1", "?limit=0", "?visibility=all", "?status=live"):
        await check("GET", "/api/rooms", await client.get(f"/api/rooms{query}"))
    await check("GET", "/api/rooms", await client.get("/api/rooms?visibility=all", headers=wrong))
    await check("GET", "/api/rooms", await client.get("/api/rooms?visibility=all", headers=admin))
    for path, headers in (
        (rid, {}),
        (rid, owner),
        (private["id"], owner_of[private["id"]]),
        (private["id"], {}),
        ("nope", {}),
    ):
        resp = await client.get(f"/api/rooms/{path}", headers=headers)
        await check("GET", "/api/rooms/{roomId}", resp)
    for headers in ({}, wrong):
        resp = await client.get(f"/api/rooms/{rid}/members", headers=headers)
        await check("GET", "/api/rooms/{roomId}/members", resp)
    for query in ("", "?limit=0"):
        resp = await client.get(f"/api/rooms/{rid}/members{query}", headers=owner)
        await check("GET", "/api/rooms/{roomId}/members", resp)
    tokens = f"/api/rooms/{rid}/viewer-tokens"
    template = "/api/rooms/{roomId}/viewer-tokens"
    await check("POST", template, await client.post(tokens, headers=owner))
    await check("POST", template, await client.post(tokens, json={"ttl": 0}, headers=owner))
    await check("POST", template, await client.post(tokens, data=b"{}", headers=owner))
    await check("POST", template, await client.post(tokens))
    await check("POST", template, await client.post(tokens, headers=wrong))
    resp = await client.post("/api/rooms/nope/viewer-tokens", headers=owner)
    await check("POST", template, resp)
    stage = "/api/rooms/{roomId}/stage/{peerId}"
    for headers in ({}, wrong, owner):
        resp = await client.delete(f"/api/rooms/{rid}/stage/p1", headers=headers)
        await check("DELETE", stage, resp)

    # SRS
    hooks = f"/api/hooks/srs?secret={HOOK_SECRET}"
    publish = hook_for(room, "on_publish.json")
    await check("POST", "/api/hooks/srs", await client.post(hooks, json=publish))
    await check("POST", "/api/hooks/srs", await client.post(hooks, json={**publish, "param": ""}))
    await check("POST", "/api/hooks/srs", await client.post(hooks, json={"action": 1}))
    await check("POST", "/api/hooks/srs", await client.post("/api/hooks/srs", json=publish))
    heartbeat = "/api/hooks/srs/heartbeat/{secret}"
    beat = {"server": "vid-k8d2f1a", "service": "t3q9z0bm"}
    resp = await client.post(f"/api/hooks/srs/heartbeat/{HOOK_SECRET}", json=beat)
    await check("POST", heartbeat, resp)
    resp = await client.post(f"/api/hooks/srs/heartbeat/{HOOK_SECRET}", json={"server": 1})
    await check("POST", heartbeat, resp)
    await check("POST", heartbeat, await client.post("/api/hooks/srs/heartbeat/wrong", json=beat))
    resp = await client.post("/api/hooks/srs/heartbeat", json=beat)
    await check("POST", "/api/hooks/srs/heartbeat", resp)

    # recordings: one file SRS's DVR wrote, as its on_dvr names it
    name = f"{room['streamKey']}.1.mp4"
    (recordings_dir / "live" / name).write_bytes(mp4(3000))
    dvr = hook_for(room, "on_dvr.json", cwd=str(recordings_dir), file=f"./live/{name}")
    assert await send_hook(client, dvr) == {"code": 0}
    listing = "/api/rooms/{roomId}/recordings"
    resp = await client.get(f"/api/rooms/{rid}/recordings")
    (recording,) = await resp.json()
    await check("GET", listing, resp)
    await check("GET", listing, await client.get(f"/api/rooms/{private['id']}/recordings"))
    file, url = "/api/recordings/{recordingId}/file", recording["url"]
    whole = await client.get(url)
    await check("GET", file, whole)
    for headers in (
        {"Range": "bytes=0-9"},
        {"Range": "bytes=999999-"},
        {"If-None-Match": whole.headers["ETag"]},
        {"If-Modified-Since": whole.headers["Last-Modified"]},
        {"If-Match": '"another"'},
        {"If-Unmodified-Since": "Mon, 01 Jan 1990 00:00:00 GMT"},
    ):
        await check("GET", file, await client.get(url, headers=headers))
    await check("GET", file, await client.get("/api/recordings/nope/file"))
    delete = "/api/recordings/{recordingId}"
    for headers in ({}, wrong, owner):
        resp = await client.delete(f"/api/recordings/{recording['id']}", headers=headers)
        await check("DELETE", delete, resp)
    await check("DELETE", delete, await client.delete("/api/recordings/nope", headers=owner))

    # webhook admin: the room's events are in the outbox (their endpoint never answers)
    deliveries = "/api/webhooks/deliveries"
    for query, headers in (("", admin), ("?state=nope", admin), ("", {}), ("", wrong)):
        await check("GET", deliveries, await client.get(f"{deliveries}{query}", headers=headers))
    retry = "/api/webhooks/deliveries/{deliveryId}/retry"
    (pending, *_) = await (await client.get(deliveries, headers=admin)).json()
    for path, headers in (
        (pending["id"], admin),  # pending, not failed: 409
        ("x", admin),
        (2**62, admin),
        (1, {}),
        (1, wrong),
    ):
        resp = await client.post(f"{deliveries}/{path}/retry", headers=headers)
        await check("POST", retry, resp)

    # closing, last: the room ends
    close = "/api/rooms/{roomId}/close"
    for path, headers in ((rid, {}), (rid, wrong), ("nope", owner), (rid, owner), (rid, admin)):
        await check("POST", close, await client.post(f"/api/rooms/{path}/close", headers=headers))

    # the rest
    for path in ("/healthz", "/readyz", "/metrics", "/api/openapi.json", "/sdk/livehub-client.js"):
        await check("GET", path, await client.get(path))

    # every operation was reached, the file's conditional answers among them
    assert set(document.seen) == {
        (method, path)
        for path, operations in document.spec["paths"].items()
        for method in operations
    }
    assert {200, 206, 304, 404, 412, 416} <= document.seen[("get", file)]
