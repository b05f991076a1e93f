"""A room, its status and the events its changes report.

A room is created ``preparing``, becomes ``live`` when SRS accepts its publisher and ends for
good (``ended``); the rules live in :mod:`livehub.domain.lifecycle`. ``version`` counts the
stored writes of the row (every lifecycle change is a conditional write on it, so several
processes can share one database); ``event_seq`` counts the events the room reported (the
webhook ``seq``).
"""

from __future__ import annotations

import dataclasses
import enum
import hmac
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from livehub.domain.tokens import hash_token, same_token


class RoomStatus(enum.StrEnum):
    PREPARING = "preparing"
    LIVE = "live"
    ENDED = "ended"


class EventType(enum.StrEnum):
    """What a stored change reports (one webhook delivery per endpoint per event)."""

    ROOM_CREATED = "room.created"
    ROOM_LIVE = "room.live"
    ROOM_RECONNECTING = "room.reconnecting"
    ROOM_ENDED = "room.ended"
    VIEWERS_UPDATED = "viewers.updated"
    HOST_JOINED = "host.joined"
    HOST_LEFT = "host.left"
    RECORDING_READY = "recording.ready"
    STAGE_JOINED = "stage.joined"
    STAGE_LEFT = "stage.left"


class Visibility(enum.StrEnum):
    """Who may see and play a room: anyone, or viewer-token holders
    (:mod:`livehub.domain.viewer_tokens`)."""

    PUBLIC = "public"
    PRIVATE = "private"


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclasses.dataclass(kw_only=True)
class Room:
    id: str
    title: str
    stream_key: str
    status: RoomStatus = RoomStatus.PREPARING
    created_at: int
    start_time: int | None = None
    end_time: int | None = None
    publish_token: str
    owner_token_hash: str
    publisher_client_id: str | None = None
    publisher_service_id: str | None = None
    #: the SRS ``server_id`` of the accepted publisher's hook, and the name of the configured
    #: SRS origin it belongs to (kicks and reconciliation go to that origin's API)
    publisher_server_id: str | None = None
    publisher_origin: str | None = None
    #: epoch ms of the on_unpublish that opened the reconnect window, while it is open
    reconnecting_since: int | None = None
    #: epoch ms of the last accepted on_publish (reconciliation's grace period)
    published_at: int | None = None
    #: whether SRS's DVR files of this room are kept as recordings (livehub.domain.recordings)
    record: bool = False
    #: stored writes of this row; a conditional update expects the version it read
    version: int = 0
    #: events this room reported so far (the last webhook ``seq``)
    event_seq: int = 0
    visibility: Visibility = Visibility.PUBLIC
    #: the stage (``livehub.domain.stage``): ``{"guests": {peer id: guest}, "invites": {peer id:
    #: invite}}``, stored as JSON; guests carry their publish token (a secret)
    stage: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: chat moderation (``livehub.domain.moderation``): ``{"slowMode": s, "mutes": {peer id:
    #: until ms}, "mutedBy", "mutedKeys", "slowKeys"}``, stored as JSON (the keys are digests)
    moderation: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def private(self) -> bool:
        return self.visibility is Visibility.PRIVATE

    @property
    def reconnecting(self) -> bool:
        return self.reconnecting_since is not None

    def is_owner_token(self, token: str) -> bool:
        return hmac.compare_digest(self.owner_token_hash, hash_token(token))

    def is_publish_token(self, token: str) -> bool:
        return same_token(token, self.publish_token)


#: what a list page shows of a room, in this order: ``id, title, stream_key, status,
#: created_at, start_time, end_time, reconnecting_since, visibility, stage`` (status and
#: visibility as their values, the stage as its stored JSON text: the view keeps no secret of it)
ListedRoom = tuple[str, str, str, str, int, int | None, int | None, int | None, str, Any]
LISTED_COLUMNS = (
    "id",
    "title",
    "stream_key",
    "status",
    "created_at",
    "start_time",
    "end_time",
    "reconnecting_since",
    "visibility",
    "stage",
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class RoomEvent:
    """One event a change reports. ``extra`` is merged into the room's public view in the
    webhook body (e.g. ``{"peerId": ...}`` for host events); never a secret."""

    type: EventType
    room_id: str
    at: int
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)


class RoomPresenter(Protocol):
    """How rooms are shown to clients (the API implements it with its schemas)."""

    def public(self, room: Room, token: str | None = None) -> dict[str, Any]:
        """The public view; ``token``, a private room's viewer token, goes in its play URLs."""
        ...

    def listed(self, rows: Sequence[ListedRoom]) -> list[dict[str, Any]]:
        """The public views of a list page's rooms built from their rows, with the viewer and
        player counts left at 0: it reads no state that changes, so the store may call it off
        the event loop (``RoomStore.render_page``)."""
        ...

    def count_into(self, views: list[dict[str, Any]]) -> bool:
        """Fill in the counts of :meth:`listed` views (on the event loop: they are its
        state); whether any is not 0."""
        ...

    def owner(self, room: Room, token: str | None = None) -> dict[str, Any]: ...

    def created(self, room: Room, owner_token: str, token: str | None = None) -> dict[str, Any]: ...

    def credentials(self, stream_key: str, token: str) -> dict[str, Any]:
        """A stream's ``publish`` object (a created room's shape): a guest's credentials."""
        ...
