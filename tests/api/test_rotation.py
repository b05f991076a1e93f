"""Rotating ``LIVEHUB_HOOK_SECRET`` and ``LIVEHUB_VIEWER_TOKEN_SECRET`` over real HTTP and
WebSocket connections: with ``new,old`` set, what SRS or a client still holds from the old
value keeps working, the new one works, and an unknown one is refused as before. The app is
built from the environment exactly as ``__main__`` builds it."""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
from pytest_aiohttp import AiohttpClient

from livehub.app import create_app
from livehub.config import Config
from tests.conftest import ADMIN_TOKEN, Client, hook_fixture, hook_for
from tests.signaling_client import join, receive

HOOK_NEW = "hook-secret-new-0123456789"
HOOK_OLD = "hook-secret-old-0123456789"
HOOK_UNKNOWN = "hook-secret-unknown-0123456789"
VIEWER_NEW = "viewer-token-secret-new-0123456789-abcdef"
VIEWER_OLD = "viewer-token-secret-old-0123456789-abcdef"
VIEWER_UNKNOWN = "viewer-token-secret-of-someone-else-0123456789"


async def start(aiohttp_client: AiohttpClient, **env: str) -> Client:
    base = {
        "LIVEHUB_DB": ":memory:",
        "LIVEHUB_ADMIN_TOKEN": ADMIN_TOKEN,
        "LIVEHUB_SRS_API_URL": "http://127.0.0.1:9",
        "LIVEHUB_RECONCILE_INTERVAL": "0",
        "LIVEHUB_RECONNECT_WINDOW": "0",
    }
    return await aiohttp_client(create_app(Config.from_env({**base, **env})))


async def create(client: Client, **body: Any) -> dict[str, Any]:
    resp = await client.post("/api/rooms", json={"title": "rotation", **body})
    assert resp.status == 201, await resp.text()
    room: dict[str, Any] = await resp.json()
    return room


async def hook(client: Client, secret: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    resp = await client.post(
        f"/api/hooks/srs?secret={secret}",
        data=json.dumps(body, separators=(",", ":")),
        headers={"Content-Type": "application/json"},
    )
    reply: dict[str, Any] = await resp.json()
    return resp.status, reply


async def test_a_hook_and_a_heartbeat_with_the_old_secret_are_accepted(
    aiohttp_client: AiohttpClient,
) -> None:
    """SRS still sends the old secret while livehub already has ``new,old``: nothing breaks.
    SRS switched to the new one: it works too. Any other secret: 403, as before."""
    client = await start(aiohttp_client, LIVEHUB_HOOK_SECRET=f"{HOOK_NEW},{HOOK_OLD}")
    refused = {"error": "Hook secret missing or wrong", "code": "bad_hook_secret", "details": None}
    for secret in (HOOK_UNKNOWN, f"{HOOK_NEW},{HOOK_OLD}", HOOK_OLD[:-1], ""):
        room = await create(client)
        assert await hook(client, secret, hook_for(room, "on_publish.json")) == (403, refused)
        resp = await client.post(
            f"/api/hooks/srs/heartbeat/{secret or 'x'}", json=hook_fixture("heartbeat.json")
        )
        assert (resp.status, await resp.json()) == (403, refused)
        assert (await (await client.get(f"/api/rooms/{room['id']}")).json())["status"] == (
            "preparing"
        )
    for secret in (HOOK_OLD, HOOK_NEW):
        room = await create(client)
        assert await hook(client, secret, hook_for(room, "on_publish.json")) == (200, {"code": 0})
        assert (await (await client.get(f"/api/rooms/{room['id']}")).json())["status"] == "live"
        resp = await client.post(
            f"/api/hooks/srs/heartbeat/{secret}", json=hook_fixture("heartbeat.json")
        )
        assert (resp.status, await resp.json()) == (200, {"code": 0})


async def test_with_one_hook_secret_the_old_one_is_refused(aiohttp_client: AiohttpClient) -> None:
    """The rotation's last step: the old secret dropped, SRS's old URLs are refused."""
    client = await start(aiohttp_client, LIVEHUB_HOOK_SECRET=HOOK_NEW)
    room = await create(client)
    status, reply = await hook(client, HOOK_OLD, hook_for(room, "on_publish.json"))
    assert (status, reply["code"]) == (403, "bad_hook_secret")
    assert await hook(client, HOOK_NEW, hook_for(room, "on_publish.json")) == (200, {"code": 0})


def viewer_token(room_id: str, secret: str) -> str:
    return jwt.encode({"room": room_id, "exp": int(time.time()) + 600}, secret, algorithm="HS256")


async def test_a_viewer_token_of_the_old_secret_still_opens_a_private_room(
    aiohttp_client: AiohttpClient,
) -> None:
    """Viewer links handed out before the rotation keep working until they expire: REST and a
    WebSocket join accept a token signed with the old secret. livehub signs new tokens with the
    first secret. A token of an unknown secret opens nothing."""
    client = await start(aiohttp_client, LIVEHUB_VIEWER_TOKEN_SECRET=f"{VIEWER_NEW},{VIEWER_OLD}")
    room = await create(client, visibility="private")
    rid = room["id"]
    old, new = viewer_token(rid, VIEWER_OLD), viewer_token(rid, VIEWER_NEW)
    unknown = viewer_token(rid, VIEWER_UNKNOWN)
    resp = await client.post(
        f"/api/rooms/{rid}/viewer-tokens",
        json={},
        headers={"Authorization": f"Bearer {room['ownerToken']}"},
    )
    minted = (await resp.json())["token"]
    assert jwt.decode(minted, VIEWER_NEW, algorithms=["HS256"])["room"] == rid
    for token in (old, new, minted):
        by_query = await client.get(f"/api/rooms/{rid}?token={token}")
        by_header = await client.get(
            f"/api/rooms/{rid}", headers={"Authorization": f"Bearer {token}"}
        )
        assert (by_query.status, by_header.status) == (200, 200)
        assert (await by_query.json())["id"] == rid
    for bad in (unknown, viewer_token("another-room", VIEWER_OLD)):
        assert (await client.get(f"/api/rooms/{rid}?token={bad}")).status == 404
    ws = await client.ws_connect("/ws")
    await ws.send_json({"type": "join", "roomId": rid, "token": unknown})
    event = await receive(ws)
    assert (event["type"], event["code"]) == ("error", "room_not_found"), event
    joined = await join(ws, rid, token=old, name="Old link")
    assert joined["room"]["id"] == rid
    other = await client.ws_connect("/ws")
    assert (await join(other, rid, token=new))["room"]["id"] == rid
    await ws.close()
    await other.close()


async def test_with_one_viewer_token_secret_an_old_token_opens_nothing(
    aiohttp_client: AiohttpClient,
) -> None:
    client = await start(aiohttp_client, LIVEHUB_VIEWER_TOKEN_SECRET=VIEWER_NEW)
    rid = (await create(client, visibility="private"))["id"]
    assert (await client.get(f"/api/rooms/{rid}?token={viewer_token(rid, VIEWER_OLD)}")).status == (
        404
    )
    assert (await client.get(f"/api/rooms/{rid}?token={viewer_token(rid, VIEWER_NEW)}")).status == (
        200
    )
