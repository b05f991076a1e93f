"""The public view is built by hand for speed: it must equal the schema's dump, always."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from livehub import keys
from livehub.adapters.rows import ROOM_COLUMNS
from livehub.adapters.srs.api import PublicUrls
from livehub.api.views import RoomViews
from livehub.domain.room import LISTED_COLUMNS, RoomStatus
from tests.conftest import Client, hook_for, send_hook


async def test_the_fast_public_view_equals_the_schema_dump(client: Client) -> None:
    views = client.app[keys.views]
    assert isinstance(views, RoomViews)
    rooms = client.app[keys.rooms]
    made = [await (await client.post("/api/rooms", json={"title": t})).json() for t in "abc"]
    await send_hook(client, hook_for(made[1], "on_publish.json"))
    await send_hook(client, hook_for(made[1], "on_play.json"))
    await send_hook(client, hook_for(made[2], "on_publish.json", client_id="c2"))
    await rooms.close(made[2]["id"])
    stored = [await rooms.get(room["id"]) for room in made]
    assert [room.status for room in stored] == [
        RoomStatus.PREPARING,
        RoomStatus.LIVE,
        RoomStatus.ENDED,
    ]
    for room in stored:
        assert views.public(room) == views.public_by_schema(room)
        assert list(views.public(room)) == list(views.public_by_schema(room))  # same order
    # lists build the same views from rows (off the loop), then fill in the counts
    rows = [tuple(getattr(room, column) for column in LISTED_COLUMNS) for room in stored]
    listed = views.listed([(row[0], row[1], row[2], row[3].value, *row[4:]) for row in rows])
    assert [view["playerCount"] for view in listed] == [0, 0, 0]
    assert views.count_into(listed)  # the live room has a player
    for view, room in zip(listed, stored, strict=True):
        assert view == views.public(room) and list(view) == list(views.public(room))
    assert not views.count_into(views.listed(rows[:1]))  # nobody in the preparing room
    # a view is the caller's own: changing one changes no other
    first = views.public(stored[0])
    first["playUrls"]["flv"] = "changed"
    assert views.public(stored[0])["playUrls"]["flv"] != "changed"


@pytest.mark.parametrize("app", ["live", "my app/2"])
@given(
    stream_key=st.one_of(
        st.from_regex(r"[A-Za-z0-9_.~-]+", fullmatch=True), st.text(min_size=1, max_size=40)
    )
)
def test_play_urls_escape_every_stream_key(app: str, stream_key: str) -> None:
    """Keys that need no escaping take a shortcut (lists show thousands): the URLs are the
    same as escaping every key gives."""
    urls = PublicUrls(host="media.example", app=app, rtmp_port=1935, http_port=8080, api_port=1985)
    key = quote(stream_key)
    query = urlencode({"app": app, "stream": stream_key})
    assert urls.play(stream_key) == {
        "webrtc": f"webrtc://media.example/{app}/{key}",
        "whep": f"http://media.example:1985/rtc/v1/whep/?{query}",
        "flv": f"http://media.example:8080/{app}/{key}.flv",
        "hls": f"http://media.example:8080/{app}/{key}.m3u8",
    }


async def test_views_with_a_stage_and_a_viewer_token_equal_the_schema_dump(client: Client) -> None:
    """The stage (no guest token in any view), a private room's visibility, and play URLs that
    carry a viewer token: the hand-built view, the schema's and the list's are the same."""
    import orjson

    from livehub.adapters.rows import room_values

    views = client.app[keys.views]
    assert isinstance(views, RoomViews)
    rooms = client.app[keys.rooms]
    body = {"title": "staged", "visibility": "private"}
    made = await (await client.post("/api/rooms", json=body)).json()

    def decide(room: Any) -> list[Any]:
        room.stage = {
            "guests": {
                "p-1": {
                    "name": "Gus",
                    "streamKey": f"{room.stream_key}-p-1",
                    "token": "SECRET",
                    "live": True,
                    # upper case: no room id, stream key or URL holds it (they are lower case)
                    "clientId": "CLIENT-9",
                },
            }
        }
        return []

    await rooms.update(made["id"], decide)
    room = await rooms.get(made["id"])
    for token in (None, "a.viewer.token"):
        view = views.public(room, token)
        assert view == views.public_by_schema(room, token)
        assert list(view) == list(views.public_by_schema(room, token))
        shown = orjson.dumps(view).decode()
        assert "SECRET" not in shown and "CLIENT-9" not in shown
        assert view["visibility"] == "private"
        [guest] = view["stage"]
        assert list(guest) == ["peerId", "name", "streamKey", "live", "playUrls"]
        assert (guest["peerId"], guest["name"], guest["live"]) == ("p-1", "Gus", True)
        carried = {url.endswith("token=a.viewer.token") for url in guest["playUrls"].values()}
        assert carried == {token is not None}
    # a list page reads the stored JSON text of the stage
    values = dict(zip(ROOM_COLUMNS, room_values(room), strict=True))
    row: Any = tuple(values[column] for column in LISTED_COLUMNS)
    listed = views.listed([row])
    views.count_into(listed)
    assert listed == [views.public(room)]
