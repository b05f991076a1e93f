"""SRS's HTTP callbacks (on_publish, on_unpublish, on_play, on_stop): what a callback did
(:class:`HookResult`), the publisher SRS is asked to drop (:class:`Publisher`) and what the
decisions need to know of the SRS origins and of private rooms' viewers.

:class:`SrsHooks` answers the callbacks for the room service
(:class:`livehub.domain.service.RoomService`): it finds the room of the stream, checks the
publish or viewer token, applies the lifecycle rule (:mod:`livehub.domain.lifecycle`) through a
conditional change, counts players, and notices an SRS that restarted (a new service id).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from livehub.domain import lifecycle
from livehub.domain.changes import RoomChanges
from livehub.domain.errors import HookRejected
from livehub.domain.lifecycle import OriginLost
from livehub.domain.room import Room, RoomEvent, RoomStatus
from livehub.domain.srs_params import HookEvent, param_token, stream_of
from livehub.domain.store import PlayerCounts

#: why a callback for a stream no room has is refused (the stage then looks for a guest)
NO_ROOM = "no room has this stream"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Publisher:
    """A publisher to kick: its SRS client id and the SRS that accepted it (``server_id``
    from the hook, ``origin`` the configured SRS it was matched to; either may be unknown)."""

    client_id: str
    server_id: str | None = None
    origin: str | None = None


#: asks SRS to drop a publisher (in the background: it must not block)
Kicker = Callable[[Publisher], None]
#: the name of the configured SRS origin a hook's ``server_id`` belongs to, if known
OriginOf = Callable[[str | None], str | None]
#: whether an on_play's ``param`` carries a viewer token valid for the (private) room
PlayAllowed = Callable[[Room, str], bool]


def no_origin(server_id: str | None) -> str | None:
    return None


def never_lost(server_id: str | None, origin: str | None) -> bool:
    return False


@dataclasses.dataclass(frozen=True, kw_only=True)
class HookResult:
    """What a callback did. ``allowed`` is SRS's answer; ``outcome`` is for metrics and logs."""

    allowed: bool
    outcome: str  # accepted | rejected | ignored
    reason: str = ""
    room: Room | None = None
    srs_restarted: bool = False


def live_publisher(room: Room) -> Publisher | None:
    """The publisher SRS has for a live room, to kick when it is closed."""
    if room.status is RoomStatus.LIVE and room.publisher_client_id:
        return Publisher(
            client_id=room.publisher_client_id,
            server_id=room.publisher_server_id,
            origin=room.publisher_origin,
        )
    return None


class SrsHooks:
    """SRS's callbacks for the rooms of one app, decided over the room store."""

    def __init__(
        self,
        changes: RoomChanges,
        players: PlayerCounts,
        *,
        app: str,
        window_ms: int,
        origin_of: OriginOf,
        origin_lost: OriginLost,
        play_allowed: PlayAllowed | None,
        clock: Callable[[], int],
    ) -> None:
        self._changes = changes
        #: the player counts in use (the app's engines may swap them in)
        self.players = players
        self._app = app
        self._window_ms = window_ms
        self._origin_of = origin_of
        self._origin_lost = origin_lost
        #: private rooms' players need a viewer token (None: no private room may be played)
        self.play_allowed = play_allowed
        self._clock = clock
        #: the last SRS service id seen per SRS server id (None: an SRS that sends none)
        self._service_ids: dict[str | None, str] = {}

    async def handle(self, event: HookEvent) -> HookResult:
        """Dispatch one SRS callback on its action."""
        restarted = self.srs_restarted(event.service_id, event.server_id)
        room: Room | None
        try:
            if event.action == "on_publish":
                room = await self.on_publish(event)
            elif event.action == "on_play":
                room = await self.on_play(event)
            elif event.action == "on_unpublish":
                room = await self.on_unpublish(event)
            elif event.action == "on_stop":
                room = await self.on_stop(event)
            else:
                room = None
        except HookRejected as exc:
            return HookResult(
                allowed=False, outcome="rejected", reason=exc.message, srs_restarted=restarted
            )
        return HookResult(
            allowed=True,
            outcome="accepted" if room is not None else "ignored",
            room=room,
            srs_restarted=restarted,
        )

    async def _room_for_stream(self, app: str, stream: str, stream_url: str = "") -> Room | None:
        app, stream_key = stream_of(app, stream, stream_url)
        if app != self._app:
            return None
        return await self._changes.store.get_by_stream(stream_key)

    async def on_publish(self, event: HookEvent) -> Room:
        """Authorize a publisher. Raises :class:`HookRejected` with the reason to refuse."""
        room = await self._room_for_stream(event.app, event.stream, event.stream_url)
        if room is None:
            raise HookRejected(NO_ROOM)
        token = param_token(event.param)
        if token is None or not room.is_publish_token(token):
            raise HookRejected("publish token missing or wrong")
        origin = self._origin_of(event.server_id)

        def decide(room: Room) -> list[RoomEvent] | None:
            return lifecycle.publish(room, event, origin, self._origin_lost, self._clock)

        stored, _ = await self._changes.change(room, decide)
        if stored is None:  # deleted meanwhile (retention)
            raise HookRejected(NO_ROOM)
        return stored

    async def on_unpublish(self, event: HookEvent) -> Room | None:
        """The accepted publisher left. Unknown client ids are ignored (returns None)."""
        room = await self._changes.store.get_by_publisher(event.client_id)
        if room is None:
            return None
        stored, changed = await self._changes.change(
            room,
            lambda room: lifecycle.publisher_gone(
                room, None, self._window_ms, self._clock, event.client_id
            ),
        )
        return stored if changed else None

    async def on_play(self, event: HookEvent) -> Room:
        """Allow a player of a room that has not ended; count it once per client id."""
        room = await self._room_for_stream(event.app, event.stream, event.stream_url)
        if room is None:
            raise HookRejected(NO_ROOM)
        if room.status is RoomStatus.ENDED:
            raise HookRejected("room has ended")
        if room.private and (self.play_allowed is None or not self.play_allowed(room, event.param)):
            raise HookRejected("viewer token missing or wrong")
        if await self.players.add(room.id, event.client_id):
            self._changes.notify(room)
        return room

    async def on_stop(self, event: HookEvent) -> Room | None:
        room_id = await self.players.remove(event.client_id)
        room = await self._changes.store.get(room_id) if room_id else None
        if room is not None and room.status is not RoomStatus.ENDED:
            self._changes.notify(room)  # an ended room shows 0 players already: nothing to announce
        return room

    def srs_restarted(self, service_id: str | None, server_id: str | None = None) -> bool:
        """Remember the service id of the SRS ``server_id``; True when it changed (that SRS
        restarted). Each origin has its own: several origins never look like restarts."""
        if not service_id:
            return False
        last = self._service_ids.get(server_id)
        self._service_ids[server_id] = service_id
        return last is not None and service_id != last
