"""The stream lifecycle rules: how a room goes preparing → live → ended, decided on a room.

A room is created ``preparing``. SRS's on_publish with the room's publish token makes it
``live`` and remembers the publisher's SRS ``client_id``; on_unpublish from that same client
starts the reconnect window (the room stays live, ``reconnecting``), and the room ends when the
window passes without a new publish, or at once when the window is 0. Closing a room ends it
for good: status never goes back from ``ended``. End events from client ids the room never
accepted change nothing (SRS sends them for refused and busy publishers).

The room remembers which SRS accepted its publisher (the hook's ``server_id`` and the name of
the configured origin it belongs to), so kicks and reconciliation go to that SRS. A publisher
on another origin cannot take over a live room, unless the room's origin is known to be down
(then the encoder has moved).

Each rule is a decision for :meth:`livehub.domain.service.RoomService.update`'s read → decide →
conditional write: it changes a fresh copy of the room and returns the events it reports, or
None when nothing changes; it raises :class:`HookRejected` to refuse. No I/O here.
"""

from __future__ import annotations

from collections.abc import Callable

from livehub.domain.errors import HookRejected
from livehub.domain.room import EventType, Room, RoomEvent, RoomStatus
from livehub.domain.srs_params import HookEvent

#: the time now, epoch milliseconds
Clock = Callable[[], int]
#: decides a change on a fresh copy of the room: mutates it and returns the events it reports,
#: or None when nothing changes; may raise (HookRejected) to refuse
Decision = Callable[[Room], list[RoomEvent] | None]
#: whether the SRS origin of a publisher (``server_id``, origin name) is known to be down now
OriginLost = Callable[[str | None, str | None], bool]


def end(room: Room, at: int, clock: Clock) -> list[RoomEvent]:
    """End the room; it ended ``at`` (not before it started)."""
    room.status = RoomStatus.ENDED
    if room.start_time is not None:
        at = max(at, room.start_time)
    room.end_time = at
    room.reconnecting_since = None
    return [RoomEvent(type=EventType.ROOM_ENDED, room_id=room.id, at=clock())]


def close(room: Room, clock: Clock) -> list[RoomEvent] | None:
    """Closed by its owner: ended for good. A room closed while its publisher is away ends at
    the unpublish, like one whose reconnect window passes: the broadcast stopped then."""
    if room.status is RoomStatus.ENDED:
        return None
    at = clock() if room.reconnecting_since is None else room.reconnecting_since
    return end(room, at, clock)


def publish(
    room: Room, event: HookEvent, origin: str | None, origin_lost: OriginLost, clock: Clock
) -> list[RoomEvent] | None:
    """An authorized publisher (on_publish with the publish token) of the SRS ``origin``."""
    now = clock()
    if room.status is RoomStatus.ENDED:
        raise HookRejected("room has ended")
    if room.status is RoomStatus.LIVE:
        if room.publisher_client_id == event.client_id and not room.reconnecting:
            return None  # a duplicated on_publish of the current publisher
        gone = publisher_left(
            event,
            room.publisher_server_id,
            room.publisher_service_id,
            room.publisher_origin,
            origin_lost,
        )
        if not room.reconnecting and not gone:
            raise HookRejected("room already has a live publisher")
        # the encoder came back inside the window (an RTMP republish on the same
        # connection keeps its client id), SRS restarted, or the encoder moved to
        # another origin: the broadcast goes on
    else:
        room.status = RoomStatus.LIVE
        room.start_time = now
    room.publisher_client_id = event.client_id
    room.publisher_service_id = event.service_id
    room.publisher_server_id = event.server_id
    room.publisher_origin = origin
    room.reconnecting_since = None
    room.published_at = now
    return [RoomEvent(type=EventType.ROOM_LIVE, room_id=room.id, at=now)]


def publisher_left(
    event: HookEvent,
    server_id: str | None,
    service_id: str | None,
    origin: str | None,
    origin_lost: OriginLost,
) -> bool:
    """Whether the live publisher that ``server_id``'s SRS (``service_id``, of the configured
    ``origin``) accepted is gone without a word, so the new publisher of ``event`` takes its
    place: that SRS restarted (a new service id of the same SRS sends no on_unpublish for the
    old one), or the encoder moved to another origin because its own is down (which sent no
    on_unpublish and which reconciliation cannot ask). Another origin has its own service
    id: a publisher there is no restart. The room's and the stage guests' rule."""
    same_server = event.server_id is None or server_id is None or event.server_id == server_id
    srs_restarted = (
        same_server
        and event.service_id is not None
        and service_id is not None
        and event.service_id != service_id
    )
    return srs_restarted or (not same_server and origin_lost(server_id, origin))


def publisher_gone(
    room: Room, at: int | None, window_ms: int, clock: Clock, client_id: str | None = None
) -> list[RoomEvent] | None:
    """The publisher is gone (on_unpublish or reconciliation): open the window or end.
    With ``client_id``, only if that client is the room's publisher."""
    if room.status is not RoomStatus.LIVE or room.reconnecting:
        return None
    if client_id is not None and room.publisher_client_id != client_id:
        return None
    at = clock() if at is None else at
    if window_ms <= 0:
        return end(room, at, clock)
    room.reconnecting_since = at
    return [RoomEvent(type=EventType.ROOM_RECONNECTING, room_id=room.id, at=clock())]


def resume(room: Room, clock: Clock) -> list[RoomEvent] | None:
    """The publisher of a room in its reconnect window is there after all (SRS lists it,
    reconciliation): the window closes, as when an encoder comes back."""
    if room.status is not RoomStatus.LIVE or room.reconnecting_since is None:
        return None
    room.reconnecting_since = None
    return [RoomEvent(type=EventType.ROOM_LIVE, room_id=room.id, at=clock())]


def expire(room: Room, window_ms: int, clock: Clock) -> list[RoomEvent] | None:
    """End a room whose reconnect window has passed; it ended at the unpublish."""
    if room.status is not RoomStatus.LIVE or room.reconnecting_since is None:
        return None
    if clock() < room.reconnecting_since + window_ms:
        return None
    return end(room, room.reconnecting_since, clock)


def stale(room: Room, clock: Clock) -> list[RoomEvent] | None:
    """End a room still preparing (it never went live within the TTL)."""
    if room.status is not RoomStatus.PREPARING:
        return None
    return end(room, clock(), clock)
