"""The public view is built by hand for speed: it must equal the schema's dump, always."""

from __future__ import annotations

from livehub import keys
from livehub.api.views import RoomViews
from livehub.domain.room import RoomStatus
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
    # a view is the caller's own: changing one changes no other
    first = views.public(stored[0])
    first["playUrls"]["flv"] = "changed"
    assert views.public(stored[0])["playUrls"]["flv"] != "changed"
