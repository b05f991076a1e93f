"""Reconciliation with SRS, the domain side: hooks can be lost, so what SRS's API lists wins.

:func:`reconcile_publishers` compares live rooms with SRS's stream list: a live room SRS does
not list as published loses its publisher (through the reconnect window), unless its publish
was accepted within :data:`PUBLISH_GRACE` (SRS lists a stream only once it has acquired it);
one in its window whose publisher SRS lists again is live again.
:func:`restore_players` counts SRS's players again after a registry lost them (a shared one
whose Redis restarted empty, this process's own after a restart), and :class:`LostPlayers`
forgets the players SRS no longer lists (their on_stop was lost), after the same grace.
``livehub/reconcile.py`` asks SRS periodically and calls these through the room service.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from livehub.domain import lifecycle
from livehub.domain.changes import RoomChanges
from livehub.domain.room import Room, RoomEvent, RoomStatus
from livehub.domain.store import PlayerCounts

#: seconds after an accepted on_publish during which SRS may not list the stream as published
#: yet (on_publish runs before SRS acquires the stream; a WebRTC publisher only becomes active
#: once ICE and DTLS are done), so reconciliation does not take the room for abandoned
PUBLISH_GRACE = 10.0


async def reconcile_publishers(
    changes: RoomChanges,
    publishing: dict[str, str | None],
    *,
    asked_at: int,
    answered: Callable[[Room], bool] | None,
    grace_ms: int,
    window_ms: int,
    clock: Callable[[], int],
) -> list[Room]:
    """Compare live rooms with what SRS reports publishing.

    ``publishing`` maps the stream names SRS has an active publisher for (in our app) to
    that publisher's client id when known; ``asked_at`` is when SRS was asked (epoch ms).
    A live room absent there loses its publisher (through the reconnect window), unless
    its publish was accepted less than the grace period before SRS was asked; a room in its
    window whose own publisher (the same client id) SRS lists, asked after the window
    opened, is live again. With several
    SRS origins, ``answered`` tells whether the origin of a room's publisher was asked
    (rooms of an origin that did not answer keep their publisher). Returns the rooms that
    changed.
    """
    grace_from = asked_at - grace_ms

    def gone(room: Room) -> list[RoomEvent] | None:
        if answered is not None and not answered(room):
            return None
        if room.reconnecting:
            # SRS lists the room's own publisher, asked after the window opened: the window
            # was opened by a pass that did not see it (a WebRTC publisher is active only once
            # ICE and DTLS are done; a paged list shifted), and no hook will say otherwise
            back = (
                room.publisher_client_id is not None
                and publishing.get(room.stream_key) == room.publisher_client_id
                and room.reconnecting_since is not None
                and room.reconnecting_since < asked_at
            )
            return lifecycle.resume(room, clock) if back else None
        if room.stream_key in publishing:
            return None
        if room.published_at is not None and room.published_at > grace_from:
            return None
        return lifecycle.publisher_gone(room, None, window_ms, clock)

    changed = []
    for room in await changes.store.live():
        stored, did = await changes.change(room, gone)
        if did and stored is not None:
            changed.append(stored)
    return changed


async def restore_players(
    changes: RoomChanges, counts: PlayerCounts, players: dict[str, str]
) -> int:
    """Count SRS's players again in the live rooms they play, as SRS's API lists them
    (client id → stream key): after a shared registry lost them (Redis restarted empty).
    A player counted already is not counted twice. Returns how many were counted."""
    if not players:
        return 0
    rooms = {room.stream_key: room for room in await changes.store.live()}
    added = 0
    changed: dict[str, Room] = {}
    for client_id, stream_key in players.items():
        room = rooms.get(stream_key)
        if room is not None and await counts.add(room.id, client_id):
            added += 1
            changed[room.id] = room
    for room in changed.values():
        changes.notify(room)
    return added


class LostPlayers:
    """Players counted that SRS no longer lists: their on_stop was lost (SRS sends no
    retries, and nothing when it stops; livehub could not be reached), and they would count
    as long as the room lives. A player is forgotten once SRS has left it out for the grace
    period: SRS calls on_play before it lists the player (HTTP-FLV, WebRTC), so one listing
    without it proves nothing. Remembers only the players left out of the last listing."""

    def __init__(self) -> None:
        #: client id -> when a listing (asked at, epoch ms) first left it out
        self._unlisted: dict[str, int] = {}

    async def forget(
        self,
        changes: RoomChanges,
        counts: PlayerCounts,
        counted: Mapping[str, str],
        listed: Mapping[str, str],
        *,
        asked_at: int,
        grace_ms: int,
    ) -> int:
        """``counted`` (client id -> room id, read before SRS was asked at ``asked_at``)
        against ``listed`` (SRS's players, client id -> stream key, of every origin): forget
        those left out for ``grace_ms``. Returns how many were forgotten."""
        unlisted = {
            client_id: self._unlisted.get(client_id, asked_at)
            for client_id in counted
            if client_id not in listed
        }
        self._unlisted = unlisted
        forgotten = 0
        changed: set[str] = set()
        for client_id, since in list(unlisted.items()):
            if asked_at - since < grace_ms:
                continue
            del unlisted[client_id]
            room_id = await counts.remove(client_id)
            if room_id is not None:
                forgotten += 1
                changed.add(room_id)
        for room_id in changed:
            room = await changes.store.get(room_id)
            if room is not None and room.status is not RoomStatus.ENDED:
                changes.notify(room)  # its viewer count changed (an ended room shows 0)
        return forgotten
