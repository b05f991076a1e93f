"""How rooms are shown: the public view, the owner's view (with publish credentials)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from livehub.adapters.srs.api import PublicUrls, with_token
from livehub.api.schemas import OwnerRoomSchema, PublishSchema, RoomCreatedSchema, RoomSchema
from livehub.domain.room import ListedRoom, Room
from livehub.domain.room_hub import RoomHub
from livehub.domain.service import RoomService
from livehub.domain.stage import public_stage

_PUBLIC = RoomSchema()
_OWNER = OwnerRoomSchema()
_CREATED = RoomCreatedSchema()
_PUBLISH = PublishSchema()


def _listed_stage(stage: Any, play: Any) -> list[dict[str, Any]]:
    """The public stage of a listed row's stored JSON (``{}`` for almost every room)."""
    if not stage or stage == "{}":
        return []
    value = orjson.loads(stage) if isinstance(stage, str | bytes) else stage
    guests = value.get("guests") if isinstance(value, dict) else None
    if not guests:
        return []
    return [
        {
            "peerId": peer_id,
            "name": guest.get("name", ""),
            "streamKey": guest["streamKey"],
            "live": bool(guest.get("live")),
            "playUrls": play(guest["streamKey"]),
        }
        for peer_id, guest in guests.items()
    ]


class RoomViews:
    """:class:`livehub.domain.room.RoomPresenter` through the marshmallow schemas."""

    def __init__(self, rooms: RoomService, hub: RoomHub, urls: PublicUrls) -> None:
        self._rooms = rooms
        self._hub = hub
        self._urls = urls

    def _play(self, token: str | None) -> Any:
        """The play URLs of a stream key, carrying ``token`` when given."""
        play = self._urls.play
        if token is None:
            return play
        return lambda stream_key: with_token(play(stream_key), token)

    def credentials(self, stream_key: str, token: str) -> dict[str, Any]:
        """A stream's ``publish`` object (a created room's, or a guest's)."""
        result: dict[str, Any] = _PUBLISH.dump(self._urls.publish(stream_key, token))
        return result

    def _fields(self, room: Room, token: str | None = None) -> dict[str, Any]:
        play = self._play(token)
        return {
            "id": room.id,
            "title": room.title,
            "stream_key": room.stream_key,
            "status": room.status,
            "start_time": room.start_time,
            "end_time": room.end_time,
            "created_at": room.created_at,
            "viewer_count": self._hub.count(room.id),
            "player_count": self._rooms.player_count(room.id, room.status),
            "reconnecting": room.reconnecting,
            "play_urls": play(room.stream_key),
            "visibility": room.visibility,
            "stage": [
                {
                    "peer_id": guest["peerId"],
                    "name": guest["name"],
                    "stream_key": guest["streamKey"],
                    "live": guest["live"],
                    "play_urls": guest["playUrls"],
                }
                for guest in public_stage(room, play)
            ],
        }

    def public(self, room: Room, token: str | None = None) -> dict[str, Any]:
        """The public view, built directly: it is what lists render by the thousand, and
        ``RoomSchema.dump`` costs ~60 µs a room. ``tests/api/test_views.py`` keeps the two
        equal for every field. ``token``: a private room's viewer token, carried by every play
        URL (the view a token holder gets)."""
        play = self._play(token)
        return {
            "id": room.id,
            "title": room.title,
            "streamKey": room.stream_key,
            "status": room.status.value,
            "startTime": room.start_time,
            "endTime": room.end_time,
            "createdAt": room.created_at,
            "viewerCount": self._hub.count(room.id),
            "playerCount": self._rooms.player_count(room.id, room.status),
            "reconnecting": room.reconnecting_since is not None,
            "playUrls": play(room.stream_key),
            "visibility": room.visibility.value,
            "stage": public_stage(room, play),
        }

    def listed(self, rows: Sequence[ListedRoom]) -> list[dict[str, Any]]:
        """:meth:`public` of a list page's rooms, straight from their rows, counts at 0 (the
        store may run this in its reader thread: it reads the rows and the URLs, nothing that
        changes). With :meth:`count_into` it equals :meth:`public` field for field, in the
        same order (``tests/api/test_views.py``)."""
        play = self._urls.play
        return [
            {
                "id": room_id,
                "title": title,
                "streamKey": stream_key,
                "status": status,
                "startTime": start_time,
                "endTime": end_time,
                "createdAt": created_at,
                "viewerCount": 0,
                "playerCount": 0,
                "reconnecting": reconnecting_since is not None,
                "playUrls": play(stream_key),
                "visibility": visibility,
                "stage": _listed_stage(stage, play),
            }
            for (
                room_id,
                title,
                stream_key,
                status,
                created_at,
                start_time,
                end_time,
                reconnecting_since,
                visibility,
                stage,
            ) in rows
        ]

    def count_into(self, views: list[dict[str, Any]]) -> bool:
        """The viewer and player counts of :meth:`listed` views, filled in on the event loop
        (most rooms of a long history have none); whether any is not 0."""
        viewers, players = self._hub.count, self._rooms.player_count
        counted = False
        for view in views:
            room_id = view["id"]
            watching, playing = viewers(room_id), players(room_id, view["status"])
            if watching or playing:
                view["viewerCount"], view["playerCount"] = watching, playing
                counted = True
        return counted

    def public_by_schema(self, room: Room, token: str | None = None) -> dict[str, Any]:
        """The public view through :class:`RoomSchema` (the reference for :meth:`public`)."""
        result: dict[str, Any] = _PUBLIC.dump(self._fields(room, token))
        return result

    def owner(self, room: Room, token: str | None = None) -> dict[str, Any]:
        fields = self._fields(room, token)
        fields["publish"] = self._urls.publish(room.stream_key, room.publish_token)
        fields["record"] = room.record
        result: dict[str, Any] = _OWNER.dump(fields)
        return result

    def created(self, room: Room, owner_token: str, token: str | None = None) -> dict[str, Any]:
        fields = self._fields(room, token)
        fields["publish"] = self._urls.publish(room.stream_key, room.publish_token)
        fields["record"] = room.record
        fields["owner_token"] = owner_token
        result: dict[str, Any] = _CREATED.dump(fields)
        return result
