"""Rooms REST API over real HTTP."""

from __future__ import annotations

from typing import Any

import pytest
from yarl import URL

from tests.conftest import ADMIN_TOKEN, Client, CreateRoom, PostHook, hook_for

PUBLIC_KEYS = {
    "id",
    "title",
    "streamKey",
    "status",
    "startTime",
    "endTime",
    "createdAt",
    "viewerCount",
    "playerCount",
    "reconnecting",
    "playUrls",
    "visibility",
    "stage",
}


def assert_no_secrets(body: Any, room: dict[str, Any]) -> None:
    text = repr(body)
    assert room["publish"]["token"] not in text
    assert room["ownerToken"] not in text


async def test_create_returns_room_with_credentials(client: Client) -> None:
    resp = await client.post("/api/rooms", json={"title": "  测试直播间  "})
    assert resp.status == 201
    room = await resp.json()
    assert set(room) == PUBLIC_KEYS | {"publish", "record", "ownerToken"}
    assert room["record"] is False  # LIVEHUB_RECORD_DEFAULT is off
    assert room["title"] == "测试直播间"
    assert room["status"] == "preparing"
    assert room["streamKey"] == f"stream-{room['id']}"
    assert room["startTime"] is None and room["endTime"] is None
    assert room["viewerCount"] == 0 and room["playerCount"] == 0
    token = room["publish"]["token"]
    assert len(token) >= 22 and len(room["ownerToken"]) >= 22  # ≥ 128 bits, url-safe
    key = room["streamKey"]
    assert room["publish"] == {
        "token": token,
        "rtmpUrl": f"rtmp://localhost:1935/live/{key}?secret={token}",
        "obsServer": "rtmp://localhost:1935/live",
        "obsStreamKey": f"{key}?secret={token}",
        "whipUrl": f"http://localhost:1985/rtc/v1/whip/?app=live&stream={key}&secret={token}",
        "srtUrl": f"srt://localhost:10080?streamid=#!::r=live/{key},secret={token},m=publish",
    }
    assert room["playUrls"] == {
        "webrtc": f"webrtc://localhost/live/{key}",
        "whep": f"http://localhost:1985/rtc/v1/whep/?app=live&stream={key}",
        "flv": f"http://localhost:8080/live/{key}.flv",
        "hls": f"http://localhost:8080/live/{key}.m3u8",
    }


async def test_list_is_bare_array_newest_first_without_secrets(
    client: Client, create_room: CreateRoom
) -> None:
    first = await create_room("first")
    second = await create_room("second")
    resp = await client.get("/api/rooms")
    assert resp.status == 200
    rooms = await resp.json()
    assert [room["id"] for room in rooms] == [second["id"], first["id"]]
    for room in rooms:
        assert set(room) == PUBLIC_KEYS
    assert_no_secrets(rooms, first)
    assert_no_secrets(rooms, second)


async def test_list_filter_and_pagination(
    client: Client, create_room: CreateRoom, post_hook: PostHook
) -> None:
    rooms = [await create_room(f"room {i}") for i in range(4)]
    status, reply = await post_hook(hook_for(rooms[1], "on_publish.json"))
    assert (status, reply) == (200, {"code": 0})
    live = await (await client.get("/api/rooms?status=live")).json()
    assert [room["id"] for room in live] == [rooms[1]["id"]]
    preparing = await (await client.get("/api/rooms?status=preparing")).json()
    assert [room["id"] for room in preparing] == [rooms[3]["id"], rooms[2]["id"], rooms[0]["id"]]
    first = await client.get("/api/rooms?limit=3")
    assert [room["id"] for room in await first.json()] == [r["id"] for r in rooms[:0:-1]]
    second = await client.get(URL(first.links["next"]["url"]).path_qs)
    assert [room["id"] for room in await second.json()] == [rooms[0]["id"]]
    assert "Link" not in second.headers


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=paused", "status"),
        ("limit=0", "limit"),
        ("limit=abc", "limit"),
        ("offset=1", "offset"),
        ("cursor=", "cursor"),
        ("cursor=bm9wZQ", "cursor"),
        ("color=red", "color"),
    ],
)
async def test_list_bad_query(client: Client, query: str, field: str) -> None:
    resp = await client.get(f"/api/rooms?{query}")
    assert resp.status == 400
    body = await resp.json()
    assert body["code"] == "validation_error"
    assert field in body["details"]


async def test_get_room_and_owner_view(client: Client, create_room: CreateRoom) -> None:
    room = await create_room()
    public = await (await client.get(f"/api/rooms/{room['id']}")).json()
    assert set(public) == PUBLIC_KEYS
    assert_no_secrets(public, room)
    headers = {"Authorization": f"Bearer {room['ownerToken']}"}
    owner = await (await client.get(f"/api/rooms/{room['id']}", headers=headers)).json()
    assert owner["publish"] == room["publish"]
    assert "ownerToken" not in owner


async def test_get_missing_room(client: Client) -> None:
    resp = await client.get("/api/rooms/nope")
    assert resp.status == 404
    assert await resp.json() == {
        "error": "Room not found",
        "code": "room_not_found",
        "details": {"roomId": "nope"},
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "title"),
        ({"title": ""}, "title"),
        ({"title": "   "}, "title"),
        ({"title": "x" * 101}, "title"),
        ({"title": 42}, "title"),
        ({"title": None}, "title"),
        ({"title": "ok", "owner": "me"}, "owner"),
        ([], "_schema"),
        ("title", "_schema"),
    ],
)
async def test_create_validation(client: Client, body: Any, field: str) -> None:
    resp = await client.post("/api/rooms", json=body)
    assert resp.status == 400
    data = await resp.json()
    assert data["code"] == "validation_error"
    assert field in data["details"]
    assert await (await client.get("/api/rooms")).json() == []


@pytest.mark.parametrize("raw", [b"", b"{bad", b"\xff\xfe", b'{"title": "a"'])
async def test_create_malformed_json(client: Client, raw: bytes) -> None:
    resp = await client.post("/api/rooms", data=raw, headers={"Content-Type": "application/json"})
    assert resp.status == 400
    assert (await resp.json())["code"] == "invalid_json"
    assert await (await client.get("/api/rooms")).json() == []


async def test_create_oversized_body(client: Client) -> None:
    resp = await client.post("/api/rooms", json={"title": "x" * 100_000})
    assert resp.status == 413
    assert (await resp.json())["code"] == "body_too_large"


@pytest.mark.parametrize("title", ["\u200b", "\ufeff", "\u2060\u200d", " \u200b\u3164 "])
async def test_a_title_of_invisible_characters_is_refused(client: Client, title: str) -> None:
    """Format characters (zero-width spaces and joiners, the BOM) and other invisible ones are
    no "visible character": such a title was stored, and showed blank."""
    resp = await client.post("/api/rooms", json={"title": title})
    assert resp.status == 400
    assert await resp.json() == {
        "error": "Invalid input: title",
        "code": "validation_error",
        "details": {"title": ["Must contain a visible character and no control characters."]},
    }
    assert await (await client.get("/api/rooms")).json() == []


@pytest.mark.parametrize(
    "title",
    [
        "\ufeffPasted title",  # a BOM from a file, before visible text
        "\u200bA",
        "\U0001f469\u200d\U0001f4bb coding",  # an emoji ZWJ sequence
        "\u05e2\u05d1\u05e8\u05d9\u05ea\u200f",  # Hebrew and a right-to-left mark
    ],
)
async def test_invisible_characters_beside_visible_ones_are_kept(
    client: Client, title: str
) -> None:
    resp = await client.post("/api/rooms", json={"title": title})
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["title"] == title


async def test_title_of_100_characters_is_accepted(client: Client) -> None:
    resp = await client.post("/api/rooms", json={"title": "长" * 100})
    assert resp.status == 201


async def test_close_requires_token(client: Client, create_room: CreateRoom) -> None:
    room = await create_room()
    url = f"/api/rooms/{room['id']}/close"
    resp = await client.post(url)
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == "Bearer"
    assert (await resp.json())["code"] == "unauthorized"
    resp = await client.post(url, headers={"Authorization": "Bearer wrong-token"})
    assert resp.status == 403
    assert (await resp.json())["code"] == "forbidden"
    other = await create_room("other")
    resp = await client.post(url, headers={"Authorization": f"Bearer {other['ownerToken']}"})
    assert resp.status == 403
    got = await (await client.get(f"/api/rooms/{room['id']}")).json()
    assert got["status"] == "preparing"


async def test_close_with_owner_token_is_idempotent(
    client: Client, create_room: CreateRoom, post_hook: PostHook
) -> None:
    room = await create_room()
    url = f"/api/rooms/{room['id']}/close"
    headers = {"Authorization": f"Bearer {room['ownerToken']}"}
    resp = await client.post(url, headers=headers)
    assert resp.status == 200
    body = await resp.json()
    assert body["success"] is True
    assert body["room"]["status"] == "ended"
    end_time = body["room"]["endTime"]
    assert isinstance(end_time, int)
    again = await (await client.post(url, headers=headers)).json()
    assert again["success"] is True and again["room"]["endTime"] == end_time
    # no later publish is accepted
    status, reply = await post_hook(hook_for(room, "on_publish.json"))
    assert status == 200 and reply["code"] != 0


async def test_close_with_admin_token(client: Client, create_room: CreateRoom) -> None:
    room = await create_room()
    resp = await client.post(
        f"/api/rooms/{room['id']}/close", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert resp.status == 200
    assert (await resp.json())["room"]["status"] == "ended"


async def test_close_missing_room(client: Client) -> None:
    resp = await client.post("/api/rooms/nope/close", headers={"Authorization": "Bearer x"})
    assert resp.status == 404


async def test_unknown_route_and_method_use_error_shape(client: Client) -> None:
    resp = await client.get("/api/nothing")
    assert resp.status == 404
    assert (await resp.json())["code"] == "not_found"
    resp = await client.delete("/api/rooms")
    assert resp.status == 405
    assert (await resp.json())["code"] == "method_not_allowed"


async def test_cors_preflight_and_headers(client: Client) -> None:
    resp = await client.options(
        "/api/rooms",
        headers={
            "Origin": "https://app.example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Content-Type",
        },
    )
    assert resp.status == 200
    assert resp.headers["Access-Control-Allow-Origin"] in ("*", "https://app.example.com")
    resp = await client.get("/api/rooms", headers={"Origin": "https://app.example.com"})
    assert resp.headers["Access-Control-Allow-Origin"] in ("*", "https://app.example.com")


async def test_openapi_document(client: Client) -> None:
    resp = await client.get("/api/openapi.json")
    assert resp.status == 200
    spec = await resp.json()
    assert spec["openapi"].startswith("3.")
    assert {"/api/rooms", "/api/rooms/{roomId}", "/api/rooms/{roomId}/close"} <= set(spec["paths"])
    room = spec["components"]["schemas"]["Room"]
    assert {"streamKey", "viewerCount", "startTime", "playUrls"} <= set(room["properties"])
    assert "publish" not in room["properties"]
    create = spec["components"]["schemas"]["RoomCreate"]
    assert create["required"] == ["title"]
    assert create["properties"]["title"]["maxLength"] == 100
    # the rule the pattern cannot say to every client, said in words
    assert "format characters" in create["properties"]["title"]["description"]
