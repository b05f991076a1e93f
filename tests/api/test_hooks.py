"""SRS callbacks: every body in shared/srs-hooks (hand-written and captured from SRS 5.0.216),
posted byte for byte as SRS posts them, against the real app over HTTP."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import (
    HOOK_SECRET,
    Client,
    CreateRoom,
    PostHook,
    captured_hooks,
    hook_fixture,
    hook_for,
)

PUBLISH_FIXTURES = [
    "on_publish.json",
    "on_publish.whip.json",
    "on_publish.rtc-legacy.json",
    "on_publish.srt.json",
]
END_FOR = {
    "on_publish.json": "on_unpublish.json",
    "on_publish.whip.json": "on_unpublish.whip.json",
    "on_publish.srt.json": "on_unpublish.srt.json",
}
PLAY_FIXTURES = [
    ("on_play.json", "on_stop.json"),
    ("on_play.hls.json", "on_stop.hls.json"),
    ("on_play.rtmp.json", None),
    ("on_play.whep.json", None),
]


async def get_room(client: Client, room_id: str) -> dict[str, Any]:
    resp = await client.get(f"/api/rooms/{room_id}")
    assert resp.status == 200
    data: dict[str, Any] = await resp.json()
    return data


@pytest.mark.parametrize("name", PUBLISH_FIXTURES)
async def test_publish_with_token_goes_live(
    client: Client, create_room: CreateRoom, post_hook: PostHook, name: str
) -> None:
    room = await create_room()
    status, reply = await post_hook(hook_for(room, name))
    assert (status, reply) == (200, {"code": 0})
    live = await get_room(client, room["id"])
    assert live["status"] == "live"
    assert isinstance(live["startTime"], int) and live["endTime"] is None


@pytest.mark.parametrize("name", PUBLISH_FIXTURES)
async def test_publish_with_wrong_or_missing_token_is_refused(
    client: Client, create_room: CreateRoom, post_hook: PostHook, name: str
) -> None:
    room = await create_room()
    wrong = hook_for(room, name)
    wrong["param"] = wrong["param"].replace(room["publish"]["token"], "abc")
    status, reply = await post_hook(wrong)
    assert status == 200
    assert isinstance(reply["code"], int) and reply["code"] != 0
    missing = hook_for(room, name, param="")
    status, reply = await post_hook(missing)
    assert status == 200 and reply["code"] != 0
    assert (await get_room(client, room["id"]))["status"] == "preparing"


async def test_publish_token_of_another_room_is_refused(
    client: Client, create_room: CreateRoom, post_hook: PostHook
) -> None:
    room, other = await create_room("a"), await create_room("b")
    body = hook_for(room, "on_publish.json", param=f"?secret={other['publish']['token']}")
    status, reply = await post_hook(body)
    assert status == 200 and reply["code"] != 0
    assert (await get_room(client, room["id"]))["status"] == "preparing"


async def test_publish_to_unknown_stream_or_other_app_is_refused(
    client: Client, create_room: CreateRoom, post_hook: PostHook
) -> None:
    room = await create_room()
    assert (await post_hook(hook_fixture("on_publish.json")))[1]["code"] != 0
    body = hook_for(room, "on_publish.json", app="other", stream_url="/other/x")
    assert (await post_hook(body))[1]["code"] != 0
    assert (await get_room(client, room["id"]))["status"] == "preparing"


async def test_token_also_accepted_as_token_param(
    client: Client, create_room: CreateRoom, post_hook: PostHook
) -> None:
    room = await create_room()
    body = hook_for(room, "on_publish.json", param=f"?token={room['publish']['token']}")
    assert await post_hook(body) == (200, {"code": 0})


@pytest.mark.parametrize(("publish", "unpublish"), list(END_FOR.items()))
async def test_unpublish_from_accepted_client_ends_room(
    client: Client, create_room: CreateRoom, post_hook: PostHook, publish: str, unpublish: str
) -> None:
    room = await create_room()
    assert await post_hook(hook_for(room, publish)) == (200, {"code": 0})
    assert await post_hook(hook_for(room, unpublish)) == (200, {"code": 0})
    ended = await get_room(client, room["id"])
    assert ended["status"] == "ended"
    assert ended["endTime"] >= ended["startTime"]
    # a duplicate end event is answered and changes nothing
    assert await post_hook(hook_for(room, unpublish)) == (200, {"code": 0})
    assert await get_room(client, room["id"]) == ended
    # and nothing can publish into the ended room again
    assert (await post_hook(hook_for(room, publish)))[1]["code"] != 0


async def test_unpublish_from_unknown_client_changes_nothing(
    client: Client, create_room: CreateRoom, post_hook: PostHook
) -> None:
    room = await create_room()
    assert await post_hook(hook_for(room, "on_publish.json")) == (200, {"code": 0})
    before = await get_room(client, room["id"])
    stranger = hook_for(room, "on_unpublish.json", client_id="zz9zz9zz")
    assert await post_hook(stranger) == (200, {"code": 0})
    assert await get_room(client, room["id"]) == before


async def test_second_publisher_is_refused_and_its_end_is_ignored(
    client: Client, create_room: CreateRoom, post_hook: PostHook
) -> None:
    """SRT sends on_publish + on_unpublish for a busy intruder; the room must stay live."""
    room = await create_room()
    assert await post_hook(hook_for(room, "on_publish.json")) == (200, {"code": 0})
    intruder = hook_for(room, "on_publish.srt.json", client_id="intrud3r")
    assert (await post_hook(intruder))[1]["code"] != 0
    assert await post_hook(hook_for(room, "on_unpublish.srt.json", client_id="intrud3r")) == (
        200,
        {"code": 0},
    )
    assert (await get_room(client, room["id"]))["status"] == "live"


async def test_rtmp_republish_on_same_connection_is_idempotent(
    client: Client, create_room: CreateRoom, post_hook: PostHook
) -> None:
    room = await create_room()
    assert await post_hook(hook_for(room, "on_publish.json")) == (200, {"code": 0})
    first = await get_room(client, room["id"])
    assert await post_hook(hook_for(room, "on_publish.json")) == (200, {"code": 0})
    assert await get_room(client, room["id"]) == first


@pytest.mark.parametrize(("play", "stop"), PLAY_FIXTURES)
async def test_players_are_counted_once_per_client(
    client: Client, create_room: CreateRoom, post_hook: PostHook, play: str, stop: str | None
) -> None:
    room = await create_room()
    assert await post_hook(hook_for(room, "on_publish.json")) == (200, {"code": 0})
    assert await post_hook(hook_for(room, play)) == (200, {"code": 0})
    assert await post_hook(hook_for(room, play)) == (200, {"code": 0})
    assert (await get_room(client, room["id"]))["playerCount"] == 1
    other = hook_for(room, play, client_id="second01")
    assert await post_hook(other) == (200, {"code": 0})
    assert (await get_room(client, room["id"]))["playerCount"] == 2
    stop_body = hook_for(room, stop) if stop else hook_for(room, play, action="on_stop")
    for _ in range(2):  # on_stop twice: counted once
        assert await post_hook(stop_body) == (200, {"code": 0})
    assert (await get_room(client, room["id"]))["playerCount"] == 1


async def test_play_of_unknown_or_ended_room_is_refused(
    client: Client, create_room: CreateRoom, post_hook: PostHook
) -> None:
    assert (await post_hook(hook_fixture("on_play.json")))[1]["code"] != 0
    room = await create_room()
    await client.post(
        f"/api/rooms/{room['id']}/close",
        headers={"Authorization": f"Bearer {room['ownerToken']}"},
    )
    assert (await post_hook(hook_for(room, "on_play.json")))[1]["code"] != 0
    assert (await get_room(client, room["id"]))["playerCount"] == 0


async def test_stop_of_unknown_player_is_acknowledged(post_hook: PostHook) -> None:
    assert await post_hook(hook_fixture("on_stop.json")) == (200, {"code": 0})


# on_dvr keeps or deletes recordings: tests/api/test_recordings.py
@pytest.mark.parametrize("name", ["on_connect.json", "on_close.json", "on_hls.json"])
async def test_other_callbacks_are_acknowledged_and_change_nothing(
    client: Client, create_room: CreateRoom, post_hook: PostHook, name: str
) -> None:
    room = await create_room()
    before = await get_room(client, room["id"])
    assert await post_hook(hook_for(room, name)) == (200, {"code": 0})
    assert await get_room(client, room["id"]) == before


@pytest.mark.parametrize("name", ["heartbeat.json", "heartbeat.ports.json"])
async def test_heartbeat_is_acknowledged(client: Client, name: str) -> None:
    resp = await client.post(f"/api/hooks/srs/heartbeat/{HOOK_SECRET}", json=hook_fixture(name))
    assert resp.status == 200
    assert await resp.json() == {"code": 0}


@pytest.mark.parametrize("path", ["", "/", "/wrong-secret-0123456789", f"/{HOOK_SECRET}x"])
async def test_heartbeat_without_the_secret_is_refused(client: Client, path: str) -> None:
    """SRS drops the heartbeat URL's query: the secret is the path's last segment, and a
    heartbeat without it (or with another) is refused in the one error shape."""
    heartbeat = {**hook_fixture("heartbeat.json"), "service": "f0rged01"}
    resp = await client.post(f"/api/hooks/srs/heartbeat{path}", json=heartbeat)
    # an empty last segment matches no route: 404, in the same error shape
    assert resp.status == (404 if path == "/" else 403)
    body = await resp.json()
    assert body == {
        "error": body["error"],
        "code": "not_found" if path == "/" else "bad_hook_secret",
        "details": None,
    }
    # the query does not sign it either (SRS could not send it)
    resp = await client.post(f"/api/hooks/srs/heartbeat?secret={HOOK_SECRET}", json=heartbeat)
    assert resp.status == 403


@pytest.mark.parametrize("field", ["server", "service"])
async def test_an_oversized_heartbeat_field_is_refused(client: Client, field: str) -> None:
    heartbeat = {**hook_fixture("heartbeat.json"), field: "x" * 65}
    resp = await client.post(f"/api/hooks/srs/heartbeat/{HOOK_SECRET}", json=heartbeat)
    assert resp.status == 400
    body = await resp.json()
    assert body["code"] == "validation_error" and field in body["details"]
    heartbeat[field] = "x" * 64
    resp = await client.post(f"/api/hooks/srs/heartbeat/{HOOK_SECRET}", json=heartbeat)
    assert resp.status == 200


@pytest.mark.parametrize("field", ["server_id", "service_id"])
async def test_an_oversized_srs_id_in_a_hook_is_refused(
    client: Client, create_room: CreateRoom, post_hook: PostHook, field: str
) -> None:
    room = await create_room()
    status, body = await post_hook(hook_for(room, "on_publish.json", **{field: "v" * 65}))
    assert status == 400 and field in body["details"]
    assert (await get_room(client, room["id"]))["status"] == "preparing"


async def test_reply_is_exactly_what_srs_accepts(client: Client, create_room: CreateRoom) -> None:
    """SRS needs HTTP 200/201 and a JSON object whose `code` is the integer 0."""
    room = await create_room()
    body = hook_for(room, "on_publish.json")
    resp = await client.post(f"/api/hooks/srs?secret={HOOK_SECRET}", json=body)
    assert resp.status == 200
    assert resp.content_type == "application/json"
    assert await resp.read() == b'{"code":0}'


@pytest.mark.parametrize("query", ["", "?secret=", "?secret=wrong", "?token=" + HOOK_SECRET])
async def test_hook_without_the_secret_is_rejected(
    client: Client, create_room: CreateRoom, query: str
) -> None:
    room = await create_room()
    resp = await client.post(f"/api/hooks/srs{query}", json=hook_for(room, "on_publish.json"))
    assert resp.status == 403
    assert (await resp.json())["code"] == "bad_hook_secret"
    assert (await get_room(client, room["id"]))["status"] == "preparing"


# -- captured from a real SRS 5.0.216 ---------------------------------------------------------


def _retarget(body: dict[str, Any], rooms: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Point a captured body at the room created for its stream, with that room's token."""
    room = rooms[body["stream"]]
    out = dict(body)
    out["stream"] = room["streamKey"]
    out["stream_url"] = f"/live/{room['streamKey']}"
    token = room["publish"]["token"]
    out["param"] = (
        body["param"]
        .replace("token=abc", f"token={token}")
        .replace(f"stream={body['stream']}", f"stream={room['streamKey']}")
    )
    return out


@pytest.mark.parametrize(
    "capture",
    ["srs-5.0.216-rtmp-flv.jsonl", "srs-5.0.216-whip.jsonl", "srs-5.0.216-kick-reject.jsonl"],
)
async def test_captured_sessions_replay(
    client: Client, create_room: CreateRoom, post_hook: PostHook, capture: str
) -> None:
    """Replay each captured phase in a fresh room and follow the state after every hook."""
    records = captured_hooks(capture)
    phases: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        assert record["headers"]["User-Agent"].startswith("SRS/5.0.216")
        phases.setdefault(record["phase"], []).append(record["body"])
    for phase, bodies in phases.items():
        rooms = {body["stream"]: await create_room(phase) for body in bodies}
        players: dict[str, set[str]] = {stream: set() for stream in rooms}
        for body in bodies:
            sent = _retarget(body, rooms)
            status, reply = await post_hook(sent)
            assert status == 200, (phase, body)
            assert reply == {"code": 0}, (phase, body, reply)
            room = await get_room(client, rooms[body["stream"]]["id"])
            action = body["action"]
            if action == "on_publish":
                assert room["status"] == "live"
            elif action == "on_unpublish":
                assert room["status"] == "ended"  # reconnect window 0 in these tests
                assert room["endTime"] >= room["startTime"]
            elif action == "on_play":
                players[body["stream"]].add(body["client_id"])
            elif action == "on_stop":
                players[body["stream"]].discard(body["client_id"])
            # an ended room shows no players, whatever on_stop SRS sends later (issue 20)
            counted = 0 if room["status"] == "ended" else len(players[body["stream"]])
            assert room["playerCount"] == counted, (phase, body)


async def test_captured_publish_with_foreign_token_is_refused(
    client: Client, create_room: CreateRoom, post_hook: PostHook
) -> None:
    """The captured bodies carry `token=abc`: not this room's token, so livehub refuses."""
    room = await create_room()
    body = captured_hooks("srs-5.0.216-rtmp-flv.jsonl")[0]["body"]
    body = {**body, "stream": room["streamKey"], "stream_url": f"/live/{room['streamKey']}"}
    status, reply = await post_hook(body)
    assert status == 200 and reply["code"] != 0
    assert (await get_room(client, room["id"]))["status"] == "preparing"
