"""How rooms are shown: the public view, the owner's view (with publish credentials)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from livehub.adapters.srs.api import PublicUrls
from livehub.api.schemas import OwnerRoomSchema, RoomCreatedSchema, RoomSchema
from livehub.domain.hub import RoomHub
from livehub.domain.room import ListedRoom, Room
from livehub.domain.service import RoomService

_PUBLIC = RoomSchema()
_OWNER = OwnerRoomSchema()
_CREATED = RoomCreatedSchema()


class RoomViews:
    """:class:`livehub.domain.room.RoomPresenter` through the marshmallow schemas."""

    def __init__(self, rooms: RoomService, hub: RoomHub, urls: PublicUrls) -> None:
        self._rooms = rooms
        self._hub = hub
        self._urls = urls

    def _fields(self, room: Room) -> dict[str, Any]:
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
            "play_urls": self._urls.play(room.stream_key),
        }

    def public(self, room: Room) -> dict[str, Any]:
        """The public view, built directly: it is what lists render by the thousand, and
        ``RoomSchema.dump`` costs ~60 µs a room. ``tests/api/test_views.py`` keeps the two
        equal for every field."""
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
            "playUrls": self._urls.play(room.stream_key),
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

    def public_by_schema(self, room: Room) -> dict[str, Any]:
        """The public view through :class:`RoomSchema` (the reference for :meth:`public`)."""
        result: dict[str, Any] = _PUBLIC.dump(self._fields(room))
        return result

    def owner(self, room: Room) -> dict[str, Any]:
        fields = self._fields(room)
        fields["publish"] = self._urls.publish(room.stream_key, room.publish_token)
        fields["record"] = room.record
        result: dict[str, Any] = _OWNER.dump(fields)
        return result

    def created(self, room: Room, owner_token: str) -> dict[str, Any]:
        fields = self._fields(room)
        fields["publish"] = self._urls.publish(room.stream_key, room.publish_token)
        fields["record"] = room.record
        fields["owner_token"] = owner_token
        result: dict[str, Any] = _CREATED.dump(fields)
        return result
