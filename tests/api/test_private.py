"""Private rooms over real HTTP and WebSocket connections: never listed anonymously, 404
without a valid viewer token, viewer tokens are standard HS256 JWTs (minted by livehub or by any
JWT library with the secret), joins need one, SRS on_play (exact bodies) needs ``token=``, and
token holders' play URLs carry it. Public rooms behave as before."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import jwt
import pytest
from pytest_aiohttp import AiohttpClient

from livehub.app import create_app
from livehub.domain.tokens import hash_token
from tests.conftest import ADMIN_TOKEN, Client, hook_fixture, make_config, send_hook
from tests.helpers import raw_request
from tests.signaling_client import expect, join, receive

SECRET = "viewer-token-secret-for-the-tests-0123456789"
API_KEY = "an-api-key-of-the-tests-0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
async def client(aiohttp_client: AiohttpClient) -> Client:
    return await aiohttp_client(create_app(make_config(viewer_token_secret=SECRET)))


def room_routes(rid: str) -> list[tuple[str, str]]:
    """Every route of a room that takes a token."""
    return [
        ("GET", f"/api/rooms/{rid}"),
        ("GET", f"/api/rooms/{rid}/members"),
        ("POST", f"/api/rooms/{rid}/close"),
        ("POST", f"/api/rooms/{rid}/viewer-tokens"),
        ("DELETE", f"/api/rooms/{rid}/stage/somebody"),
        ("GET", f"/api/rooms/{rid}/recordings"),
    ]


async def create(client: Client, visibility: str | None = "private") -> dict[str, Any]:
    body: dict[str, Any] = {"title": f"{visibility} room"}
    if visibility is not None:
        body["visibility"] = visibility
    resp = await client.post("/api/rooms", json=body)
    assert resp.status == 201, await resp.text()
    room: dict[str, Any] = await resp.json()
    return room


async def mint(client: Client, room: dict[str, Any], **body: Any) -> dict[str, Any]:
    resp = await client.post(
        f"/api/rooms/{room['id']}/viewer-tokens",
        json=body,
        headers={"Authorization": f"Bearer {room['ownerToken']}"},
    )
    assert resp.status == 201, await resp.text()
    data: dict[str, Any] = await resp.json()
    return data


def token_of(url: str) -> str | None:
    values = parse_qs(urlsplit(url.replace("webrtc://", "http://")).query).get("token")
    return values[0] if values else None


async def test_private_rooms_are_listed_only_for_the_admin_or_an_api_key(
    aiohttp_client: AiohttpClient,
) -> None:
    config = make_config(
        viewer_token_secret=SECRET, api_key_hashes=frozenset({hash_token(API_KEY)})
    )
    client = await aiohttp_client(create_app(config))
    headers = {"Authorization": f"Bearer {API_KEY}"}
    public = await (await client.post("/api/rooms", json={"title": "p"}, headers=headers)).json()
    private = await (
        await client.post(
            "/api/rooms", json={"title": "s", "visibility": "private"}, headers=headers
        )
    ).json()
    assert public["visibility"] == "public" and private["visibility"] == "private"
    anonymous = await client.get("/api/rooms")
    assert [room["id"] for room in await anonymous.json()] == [public["id"]]
    assert anonymous.headers["X-Total-Count"] == "1"
    for who in (headers, ADMIN):
        listed = await client.get("/api/rooms?visibility=private", headers=who)
        assert [room["id"] for room in await listed.json()] == [private["id"]]
        assert listed.headers["X-Total-Count"] == "1"
        listed = await client.get("/api/rooms?visibility=all&status=preparing", headers=who)
        assert [room["id"] for room in await listed.json()] == [private["id"], public["id"]]
        assert listed.headers["X-Total-Count"] == "2"
    # a listed private room's play URLs carry no token: the admin mints one when needed
    listed = await (await client.get("/api/rooms?visibility=private", headers=ADMIN)).json()
    assert token_of(listed[0]["playUrls"]["flv"]) is None
    resp = await client.get("/api/rooms?visibility=private")
    assert resp.status == 401 and (await resp.json())["code"] == "unauthorized"
    resp = await client.get(
        "/api/rooms?visibility=all", headers={"Authorization": f"Bearer {private['ownerToken']}"}
    )
    assert resp.status == 403 and (await resp.json())["code"] == "forbidden"
    resp = await client.get("/api/rooms?visibility=secret", headers=ADMIN)
    assert resp.status == 400
    assert (await resp.json())["details"] == {
        "visibility": ["Must be one of: public, private, all."]
    }
    resp = await client.post(
        "/api/rooms", json={"title": "x", "visibility": "hidden"}, headers=headers
    )
    assert resp.status == 400 and "visibility" in (await resp.json())["details"]


async def test_a_private_room_is_404_without_a_valid_token(client: Client) -> None:
    room = await create(client)
    rid = room["id"]
    # the owner's creation reply carries a viewer token in its play URLs, never the owner token
    owner_play = token_of(room["playUrls"]["flv"])
    assert owner_play is not None and owner_play != room["ownerToken"]
    resp = await client.get(f"/api/rooms/{rid}")
    assert resp.status == 404
    assert await resp.json() == {
        "error": "Room not found",
        "code": "room_not_found",
        "details": {"roomId": rid},
    }
    other = await create(client)
    foreign = (await mint(client, other))["token"]
    expired = jwt.encode({"room": rid, "exp": int(time.time()) - 5}, SECRET)
    forged = jwt.encode(
        {"room": rid, "exp": int(time.time()) + 60}, "another-secret-of-someone-else-0123456789"
    )
    for bad in (foreign, expired, forged, "garbage"):
        assert (await client.get(f"/api/rooms/{rid}?token={bad}")).status == 404
        headers = {"Authorization": f"Bearer {bad}"}
        assert (await client.get(f"/api/rooms/{rid}", headers=headers)).status == 404
    minted = await mint(client, room, ttl=120, sub="user-7", name="Ada")
    claims = jwt.decode(minted["token"], SECRET, algorithms=["HS256"])
    assert claims == {
        "room": rid,
        "exp": minted["expiresAt"] // 1000,
        "sub": "user-7",
        "name": "Ada",
    }
    assert abs(minted["expiresAt"] - (time.time() + 120) * 1000) < 5000
    # an application mints its own with any JWT library and the secret
    own = jwt.encode(
        {"room": rid, "exp": int(time.time()) + 60}, SECRET.encode(), algorithm="HS256"
    )
    for token in (minted["token"], own):
        by_query = await client.get(f"/api/rooms/{rid}?token={token}")
        by_header = await client.get(
            f"/api/rooms/{rid}", headers={"Authorization": f"Bearer {token}"}
        )
        for resp in (by_query, by_header):
            assert resp.status == 200
            view = await resp.json()
            assert "publish" not in view and "ownerToken" not in view
            assert {token_of(url) for url in view["playUrls"].values()} == {token}
    owner = await client.get(
        f"/api/rooms/{rid}", headers={"Authorization": f"Bearer {room['ownerToken']}"}
    )
    assert owner.status == 200 and "publish" in await owner.json()
    admin = await (await client.get(f"/api/rooms/{rid}", headers=ADMIN)).json()
    assert token_of(admin["playUrls"]["whep"]) is not None


async def test_a_private_room_is_an_unknown_id_to_strangers_on_every_route(
    client: Client,
) -> None:
    """Every route of a room answers a caller without the owner or the admin token on a private
    room as on an id no room has: GET hid it, but members, close, viewer-tokens and the stage
    answered 401/403 (and an unknown id 404), telling that the private room exists."""
    private, public, other = (
        await create(client),
        await create(client, "public"),
        await create(client),
    )
    viewer = (await mint(client, private))["token"]

    strangers = [None, "not-a-token", other["ownerToken"], private["publish"]["token"]]
    for (method, path), (_, unknown) in zip(
        room_routes(private["id"]), room_routes("nosuchroom12"), strict=True
    ):
        # a viewer token opens the room's GETs (there it is no stranger's), not the owner's routes
        for token in strangers if method == "GET" else [*strangers, viewer]:
            headers = {} if token is None else {"Authorization": f"Bearer {token}"}
            resp = await client.request(method, path, headers=headers)
            body = await resp.json()
            missing = await client.request(method, unknown, headers=headers)
            assert (resp.status, body["code"]) == (missing.status, (await missing.json())["code"])
            assert (resp.status, body) == (
                404,
                {
                    "error": "Room not found",
                    "code": "room_not_found",
                    "details": {"roomId": private["id"]},
                },
            ), (method, path, token)
    # a public room's owner routes still tell a missing token from a wrong one
    for method, path in room_routes(public["id"])[1:5]:
        resp = await client.request(method, path)
        assert (resp.status, (await resp.json())["code"]) == (401, "unauthorized"), path
        resp = await client.request(method, path, headers={"Authorization": "Bearer nope"})
        assert (resp.status, (await resp.json())["code"]) == (403, "forbidden"), path
    # and the private room's owner and the admin are answered as before
    for bearer in (private["ownerToken"], ADMIN_TOKEN):
        headers = {"Authorization": f"Bearer {bearer}"}
        resp = await client.get(f"/api/rooms/{private['id']}/members", headers=headers)
        assert resp.status == 200
        resp = await client.post(f"/api/rooms/{private['id']}/viewer-tokens", headers=headers)
        assert resp.status == 201
        resp = await client.delete(f"/api/rooms/{private['id']}/stage/somebody", headers=headers)
        assert (resp.status, (await resp.json())["code"]) == (404, "not_on_stage")
    resp = await client.get(
        f"/api/rooms/{private['id']}", headers={"Authorization": f"Bearer {private['ownerToken']}"}
    )
    assert (await resp.json())["status"] == "preparing"  # no stranger closed it


#: tokens as clients may send them that are no ASCII: UTF-8 text (in a query, in a header),
#: and header bytes that are no UTF-8 at all (aiohttp reads them as surrogates)
ODD_QUERY_TOKENS = ["é", "ключ", "\U0001f511", "\u00b2\u200b"]
ODD_HEADER_TOKENS = [token.encode() for token in ODD_QUERY_TOKENS] + [b"\xff\xfe", b"\xed\xa0\x80"]


async def test_a_token_that_is_no_ascii_is_a_wrong_token_never_a_500(client: Client) -> None:
    """Every route that reads a token answers a token that is no ASCII (or no UTF-8) exactly as
    a wrong ASCII one: compare_digest on a str that is not ASCII, or encode() of a surrogate,
    raised (500)."""
    private, public = await create(client), await create(client, visibility="public")
    routes = [("GET", "/api/rooms?visibility=all"), ("GET", "/api/webhooks/deliveries")]
    routes += [("POST", "/api/webhooks/deliveries/1/retry"), ("POST", "/api/rooms")]
    for room in (private, public):
        rid = room["id"]
        routes += room_routes(rid)
    for method, path in routes:
        wrong = await raw_request(client, method, path, b"Bearer not-the-token")
        assert wrong[0] < 500, (method, path, wrong)
        for header in ODD_HEADER_TOKENS:
            answer = await raw_request(client, method, path, b"Bearer " + header)
            assert answer == wrong, (method, path, header)
        if method == "GET":  # the routes that read ?token=
            join = "&" if "?" in path else "?"
            wrong = await raw_request(client, method, f"{path}{join}token=not-the-token")
            for token in ODD_QUERY_TOKENS:
                target = f"{path}{join}token={quote(token)}"
                assert await raw_request(client, method, target) == wrong, (method, target)
    # nothing was closed by any of it
    for room in (private, public):
        headers = {"Authorization": f"Bearer {room['ownerToken']}"}
        resp = await client.get(f"/api/rooms/{room['id']}", headers=headers)
        assert (await resp.json())["status"] == "preparing"


async def test_a_token_whose_exp_is_not_a_whole_second_opens_the_room_until_then(
    client: Client,
) -> None:
    """``exp`` is a JWT NumericDate, which may have a fraction (RFC 7519, section 2): an
    application writing ``"exp": time.time() + 3600`` (PyJWT leaves the float as it is, as do
    JavaScript libraries with ``Date.now() / 1000 + 3600``) has a token that opens the room and
    plays it until then. Past it, or with an exp that is no time at all, nothing opens."""
    room = await create(client)
    rid = room["id"]
    now = time.time()

    def token(exp: object) -> str:
        return jwt.encode({"room": rid, "exp": exp}, SECRET.encode(), algorithm="HS256")

    async def opens(token: str) -> bool:
        resp = await client.get(f"/api/rooms/{rid}?token={quote(token)}")
        assert resp.status in (200, 404), await resp.text()
        play = hook_fixture("on_play.json")
        play.update(stream=room["streamKey"], stream_url=f"/live/{room['streamKey']}")
        play.update(param=f"?token={token}", client_id=f"p-{len(token)}-{resp.status}")
        played: bool = (await send_hook(client, play))["code"] == 0
        assert played == (resp.status == 200), token
        return played

    assert await opens(token(now + 3600.25))
    assert not await opens(token(now - 0.5))  # expired
    for nonsense in (float("nan"), float("inf"), True, "2000000000", -(10**400)):
        assert not await opens(token(nonsense)), nonsense
    assert await opens(token(10**400))  # whole seconds of any size, as before (never a 500)


async def test_viewer_token_minting_rules(client: Client) -> None:
    room = await create(client, visibility=None)
    path = f"/api/rooms/{room['id']}/viewer-tokens"
    resp = await client.post(path)
    assert resp.status == 401
    resp = await client.post(path, headers={"Authorization": "Bearer someone-else-0123456789"})
    assert resp.status == 403
    owner = {"Authorization": f"Bearer {room['ownerToken']}"}
    resp = await client.post(path, headers=owner)  # no body: the defaults
    assert resp.status == 201
    body = await resp.json()
    assert set(body) == {"token", "expiresAt"}
    assert abs(body["expiresAt"] - (time.time() + 3600) * 1000) < 5000
    assert (await client.post(path, headers=ADMIN, json={"ttl": 604800})).status == 201
    for bad in ({"ttl": 0}, {"ttl": 604801}, {"ttl": "1h"}, {"room": "x"}):
        resp = await client.post(path, headers=owner, json=bad)
        assert resp.status == 400, bad
        assert (await resp.json())["code"] == "validation_error"
    resp = await client.post("/api/rooms/nope/viewer-tokens", headers=ADMIN)
    assert resp.status == 404


@pytest.mark.parametrize("claim", ["sub", "name"])
@pytest.mark.parametrize("value", ["a\u0000b", "line\nbreak", "\u001b[31m", "x\u0085", "\u007f"])
async def test_token_claims_take_no_control_characters(
    client: Client, claim: str, value: str
) -> None:
    """``sub`` and ``name`` are text a frontend may show: a control character is refused, and
    no token is made."""
    room = await create(client)
    resp = await client.post(
        f"/api/rooms/{room['id']}/viewer-tokens",
        json={claim: value},
        headers={"Authorization": f"Bearer {room['ownerToken']}"},
    )
    assert (resp.status, await resp.json()) == (
        400,
        {
            "error": f"Invalid input: {claim}",
            "code": "validation_error",
            "details": {claim: ["Must not contain control characters."]},
        },
    )
    ok = await client.post(
        f"/api/rooms/{room['id']}/viewer-tokens",
        json={claim: "Zoë \u263a"},
        headers={"Authorization": f"Bearer {room['ownerToken']}"},
    )
    assert ok.status == 201


@pytest.mark.parametrize("ttl", [1.5, 60.0, "60", "\uff11\uff10", True, None], ids=repr)
async def test_a_ttl_is_a_json_integer(client: Client, ttl: Any) -> None:
    """Not a number marshmallow could make an integer of: 1.5 was read as 1, "60" as 60."""
    room = await create(client)
    resp = await client.post(
        f"/api/rooms/{room['id']}/viewer-tokens",
        json={"ttl": ttl},
        headers={"Authorization": f"Bearer {room['ownerToken']}"},
    )
    message = "Field may not be null." if ttl is None else "Not a valid integer."
    assert (resp.status, await resp.json()) == (
        400,
        {
            "error": "Invalid input: ttl",
            "code": "validation_error",
            "details": {"ttl": [message]},
        },
    )


async def test_joining_a_private_room_needs_a_token(client: Client) -> None:
    room = await create(client)
    rid = room["id"]
    token = (await mint(client, room))["token"]
    ws = await client.ws_connect("/ws")
    for fields in (
        {},
        {"token": "nope"},
        {"token": jwt.encode({"room": "x", "exp": 2**40}, SECRET)},
    ):
        await ws.send_json({"type": "join", "roomId": rid, **fields})
        event = await receive(ws)
        assert (event["type"], event["code"]) == ("error", "room_not_found"), event
    joined = await join(ws, rid, token=token, name="Vi")
    assert {token_of(url) for url in joined["room"]["playUrls"].values()} == {token}
    host = await client.ws_connect("/ws")
    joined = await join(host, rid, role="host", token=room["ownerToken"])
    host_token = token_of(joined["room"]["playUrls"]["flv"])
    assert host_token not in (None, room["ownerToken"])
    await expect(ws, "peer-joined")
    # the owner token also admits a viewer connection
    other = await client.ws_connect("/ws")
    await join(other, rid, token=room["ownerToken"])


async def play_hook(
    room: dict[str, Any], name: str, token: str | None, client_id: str
) -> dict[str, Any]:
    body = hook_fixture(name)
    body.update(
        stream=room["streamKey"], stream_url=f"/live/{room['streamKey']}", client_id=client_id
    )
    if name == "on_play.whep.json":
        body["param"] = f"app=live&stream={room['streamKey']}" + (
            f"&token={token}" if token else ""
        )
    else:
        body["param"] = f"?token={token}" if token else ""
    return body


async def test_srs_plays_a_private_room_only_with_a_token(client: Client) -> None:
    room = await create(client)
    token = (await mint(client, room))["token"]
    for name in ("on_play.json", "on_play.whep.json", "on_play.rtmp.json"):
        refused = await send_hook(client, await play_hook(room, name, None, "p0"))
        assert refused == {"code": 1, "msg": "viewer token missing or wrong"}, name
        wrong = await send_hook(client, await play_hook(room, name, "x.y.z", "p0"))
        assert wrong["code"] == 1
        assert await send_hook(client, await play_hook(room, name, token, f"p-{name}")) == {
            "code": 0
        }
    # a public room plays as before, token or not
    public = await create(client, visibility="public")
    assert await send_hook(client, await play_hook(public, "on_play.json", None, "p9")) == {
        "code": 0
    }
