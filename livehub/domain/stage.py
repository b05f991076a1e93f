"""The stage: co-hosts (guests) who publish their own stream to SRS next to the room's.

Model, stored with the room (``Room.stage``, so every node sees the same stage and every change
is a conditional write like the lifecycle's)::

    {"invites": {peer id: {"by": host peer id, "at": ms}},
     "guests":  {peer id: {"name", "streamKey", "token", "live", "clientId", "serverId",
                           "serviceId", "origin", "joinedAt", "goneSince"}}}

A host invites a member (``stage-invite``); nothing happens on the member's side until it
accepts (``stage-accept``): then it becomes a guest with its own stream key
``<room stream key>-<peer id>`` and publish token (``stage-credentials``, to it alone), and
``stage.joined`` is reported. SRS's on_publish of a guest key is accepted only with that
guest's token, while it is a guest and the room has not ended, and (like the room's own
publisher) from one publisher at a time unless that one's SRS restarted or its origin is down;
every member then hears ``stage`` with the public stage (no token). ``stage-remove`` (or ``DELETE
/api/rooms/{id}/stage/{peerId}``) ends a guest: its stream is kicked from SRS and its token
forgotten, so a republish is refused (``stage.left``). A guest whose connection goes away
stays on stage for the reconnect window (a new connection that joins with the guest's token as
``stageToken`` takes its place), then leaves. An ended room kicks every guest stream.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hmac
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any

from livehub.domain import lifecycle
from livehub.domain.errors import HookRejected, LivehubError, RoomEnded
from livehub.domain.hooks import NO_ROOM, HookResult, Kicker, Publisher
from livehub.domain.peer import Peer
from livehub.domain.room import EventType, Room, RoomEvent, RoomStatus, now_ms
from livehub.domain.room_hub import RoomHub
from livehub.domain.service import RoomService
from livehub.domain.signaling import ProtocolError, Signaling
from livehub.domain.srs_params import HookEvent, param_token, stream_of
from livehub.domain.tokens import new_token

log = logging.getLogger(__name__)

#: milliseconds an invitation waits for an answer (an invitee that disconnected on another
#: node never answers); older ones are dropped by the next change of the stage
INVITE_TTL_MS = 10 * 60 * 1000
#: prefixes of a stream name tried as a room's stream key (``<key>-<peer id>``; peer ids may
#: hold ``-`` themselves)
MAX_PREFIXES = 6


class NotOnStage(LivehubError):
    code = "not_on_stage"

    def __init__(self, peer_id: str) -> None:
        super().__init__("No such guest on this room's stage", details={"peerId": peer_id})


#: the public stage item's play URLs of a stream key (the API's)
PlayUrls = Callable[[str], dict[str, str]]
#: the ``publish`` object of a stream key and its token (the API's, as a created room's)
Credentials = Callable[[str, str], dict[str, str]]
#: runs a coroutine function after a delay in seconds
Later = Callable[[float, Callable[[], Awaitable[None]]], object]


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def guests(room: Room) -> dict[str, dict[str, Any]]:
    value = room.stage.get("guests")
    return value if isinstance(value, dict) else {}


def invites(room: Room) -> dict[str, dict[str, Any]]:
    value = room.stage.get("invites")
    return value if isinstance(value, dict) else {}


def public_stage(room: Room, play_urls: PlayUrls) -> list[dict[str, Any]]:
    """The stage as everyone may see it, in the order guests joined: no token, no client id."""
    return [
        {
            "peerId": peer_id,
            "name": guest.get("name", ""),
            "streamKey": guest["streamKey"],
            "live": bool(guest.get("live")),
            "playUrls": play_urls(guest["streamKey"]),
        }
        for peer_id, guest in guests(room).items()
    ]


class Stage:
    def __init__(
        self,
        signaling: Signaling,
        rooms: RoomService,
        hub: RoomHub,
        *,
        play_urls: PlayUrls,
        credentials: Credentials,
        kick: Kicker | None = None,
        max_guests: int = 6,
        reconnect_window: float = 30.0,
        later: Later | None = None,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self._signaling = signaling
        self._rooms = rooms
        self._hub = hub
        self._play_urls = play_urls
        self._credentials = credentials
        self.kick = kick
        self.max_guests = max_guests
        self._window_ms = int(reconnect_window * 1000)
        self._later = later
        self._clock = clock
        self._tasks: set[asyncio.Task[None]] = set()
        #: (room id, peer id) of the guests connected to this node: their departure starts
        #: their reconnect window (other members' departures cost nothing)
        self._local: set[tuple[str, str]] = set()
        signaling.register("stage-invite", self._invite)
        signaling.register("stage-accept", self._accept)
        signaling.register("stage-decline", self._decline)
        signaling.register("stage-remove", self._remove)
        signaling.register("stage-leave", self._leave)
        signaling.join_follow_ups.append(self._joined)
        signaling.kick_listeners.append(self._kicked)
        signaling.lost_listeners.append(self._lost)
        signaling.subscribe_presence(self._presence)
        rooms.subscribe(self._room_changed)

    # -- views ------------------------------------------------------------------------------

    def public(self, room: Room) -> list[dict[str, Any]]:
        return public_stage(room, self._play_urls)

    def _announce(self, room: Room) -> None:
        """Tell the members the stage of ``room``, or of a newer version of it that was
        written while ``room``'s writer waited (members must not end on a stale stage)."""
        latest = self._signaling.known.peek(room.id)
        if latest is not None and latest.version > room.version:
            room = latest
        self._hub.broadcast(
            room.id, {"type": "stage", "roomId": room.id, "stage": self.public(room)}
        )

    # -- protocol ---------------------------------------------------------------------------

    async def _member_anywhere(self, room_id: str, peer_id: str) -> str | None:
        """The name of ``peer_id`` if it is a member of the room on any node."""
        await self._hub.load(room_id)
        for described in self._hub.describe_members(room_id):
            if described["peerId"] == peer_id:
                return described["name"]
        return None

    async def _send(self, room_id: str, peer_id: str, message: dict[str, Any]) -> bool:
        return self._hub.send_to(room_id, peer_id, message) or await self._hub.send_elsewhere(
            room_id, peer_id, message
        )

    def _expired(self, guest: dict[str, Any], now: int) -> bool:
        gone = guest.get("goneSince")
        return isinstance(gone, int) and now >= gone + self._window_ms

    def _purge(self, room: Room, now: int) -> list[tuple[str, dict[str, Any]]]:
        """Drop the guests whose reconnect window passed (the dropped ones are returned) and
        the invitations left unanswered too long."""
        dropped = [(p, g) for p, g in guests(room).items() if self._expired(g, now)]
        for peer_id, _ in dropped:
            del room.stage["guests"][peer_id]
        stale = [p for p, i in invites(room).items() if i.get("at", 0) + INVITE_TTL_MS <= now]
        for peer_id in stale:
            del room.stage["invites"][peer_id]
        return dropped

    async def _invite(self, peer: Peer, message: dict[str, Any], room_id: str) -> None:
        self._signaling.require_host(peer, room_id)
        target = message.get("to")
        if not isinstance(target, str) or target == peer.id:
            raise ProtocolError("invalid_to", "Field 'to' must be another member's peer id")
        if await self._member_anywhere(room_id, target) is None:
            raise ProtocolError("peer_not_found", "No such peer in this room")
        kicked: list[dict[str, Any]] = []

        def decide(room: Room) -> list[RoomEvent] | None:
            if room.status is RoomStatus.ENDED:
                raise RoomEnded(room_id)
            now = self._clock()
            kicked[:] = [{**g, "peerId": p} for p, g in self._purge(room, now)]
            if target in guests(room):
                raise ProtocolError("already_on_stage", "This member is on stage already")
            if len(guests(room)) >= self.max_guests:
                raise ProtocolError("stage_full", f"The stage holds {self.max_guests} guests")
            room.stage.setdefault("invites", {})[target] = {"by": peer.id, "at": now}
            return self._left_events(room, kicked)

        room, _ = await self._rooms.update(room_id, decide)
        if self._hub.member(room_id, target) is not None:
            self._local.add((room_id, target))  # its disconnection withdraws the invitation
        if kicked:
            self._kick_all(kicked)
            self._announce(room)
        invite = {
            "type": "stage-invite",
            "roomId": room_id,
            "from": peer.id,
            "name": peer.names.get(room_id, ""),
        }
        if not await self._send(room_id, target, invite):
            raise ProtocolError("peer_not_found", "No such peer in this room")

    async def _accept(self, peer: Peer, message: dict[str, Any], room_id: str) -> None:
        self._signaling.require_member(peer, room_id)
        name = peer.names.get(room_id, "")
        stage: dict[str, Any] = {}
        kicked: list[dict[str, Any]] = []

        def decide(room: Room) -> list[RoomEvent] | None:
            if room.status is RoomStatus.ENDED:
                raise RoomEnded(room_id)
            now = self._clock()
            kicked[:] = [{**g, "peerId": p} for p, g in self._purge(room, now)]
            if peer.id not in invites(room):  # never invited, answered, or lapsed
                raise ProtocolError("not_invited", "No stage invitation to accept")
            if len(guests(room)) >= self.max_guests:
                raise ProtocolError("stage_full", f"The stage holds {self.max_guests} guests")
            del room.stage["invites"][peer.id]
            guest = {
                "name": name,
                "streamKey": f"{room.stream_key}-{peer.id}",
                "token": new_token(),
                "live": False,
                "clientId": None,
                "serverId": None,
                "serviceId": None,
                "origin": None,
                "joinedAt": now,
                "goneSince": None,
            }
            room.stage.setdefault("guests", {})[peer.id] = guest
            stage.update(guest)
            events = self._left_events(room, kicked)
            events.append(
                RoomEvent(
                    type=EventType.STAGE_JOINED,
                    room_id=room.id,
                    at=now,
                    extra={"peerId": peer.id, "name": name},
                )
            )
            return events

        room, _ = await self._rooms.update(room_id, decide)
        self._kick_all(kicked)
        if not self._hub.is_member(peer, room_id):
            # kicked while the acceptance was written: no credentials, and off the stage
            await self._drop(room_id, peer.id)
            return
        self._local.add((room_id, peer.id))
        self._hub.send(
            peer,
            {
                "type": "stage-credentials",
                "roomId": room_id,
                "streamKey": stage["streamKey"],
                "publish": self._credentials(stage["streamKey"], stage["token"]),
            },
        )
        self._announce(room)

    async def _decline(self, peer: Peer, message: dict[str, Any], room_id: str) -> None:
        self._signaling.require_member(peer, room_id)
        by: list[str] = []

        def decide(room: Room) -> list[RoomEvent] | None:
            invite = invites(room).get(peer.id)
            if invite is None:
                raise ProtocolError("not_invited", "No stage invitation to decline")
            by[:] = [invite.get("by", "")]
            del room.stage["invites"][peer.id]
            return []

        await self._rooms.update(room_id, decide)
        declined = {
            "type": "stage-declined",
            "roomId": room_id,
            "peerId": peer.id,
            "name": peer.names.get(room_id, ""),
        }
        if not by[0] or not await self._send(room_id, by[0], declined):
            for host in self._hub.describe_hosts(room_id):  # the inviter left: any host
                await self._send(room_id, host["peerId"], declined)

    async def _remove(self, peer: Peer, message: dict[str, Any], room_id: str) -> None:
        self._signaling.require_host(peer, room_id)
        target = message.get("peerId")
        if not isinstance(target, str) or not target:
            raise ProtocolError("not_on_stage", "Field 'peerId' must name a guest on stage")
        try:
            await self.remove(room_id, target, by=peer.id)
        except NotOnStage:
            raise ProtocolError("not_on_stage", "No such guest on this room's stage") from None

    async def _leave(self, peer: Peer, message: dict[str, Any], room_id: str) -> None:
        self._signaling.require_member(peer, room_id)
        try:
            await self.remove(room_id, peer.id, by=peer.id)
        except NotOnStage:
            raise ProtocolError("not_on_stage", "You are not on this room's stage") from None

    async def remove(self, room_id: str, peer_id: str, *, by: str | None = None) -> Room:
        """Take a guest off the stage (or withdraw its invitation): its stream is kicked from
        SRS and its token forgotten. :class:`NotOnStage` if it is neither."""
        removed: list[dict[str, Any]] = []

        def decide(room: Room) -> list[RoomEvent] | None:
            removed.clear()
            if peer_id in invites(room):
                del room.stage["invites"][peer_id]
                return []
            guest = guests(room).get(peer_id)
            if guest is None:
                raise NotOnStage(peer_id)
            del room.stage["guests"][peer_id]
            removed.append({**guest, "peerId": peer_id})
            return self._left_events(room, removed)

        room, _ = await self._rooms.update(room_id, decide)
        self._local.discard((room_id, peer_id))
        notice: dict[str, Any] = {"type": "stage-removed", "roomId": room_id, "peerId": peer_id}
        if by is not None:
            notice["by"] = by
        await self._send(room_id, peer_id, notice)
        if removed:
            self._kick_all(removed)
            self._announce(room)
        return room

    def _left_events(self, room: Room, left: list[dict[str, Any]]) -> list[RoomEvent]:
        at = self._clock()
        return [
            RoomEvent(
                type=EventType.STAGE_LEFT,
                room_id=room.id,
                at=at,
                extra={"peerId": guest.get("peerId", ""), "name": guest.get("name", "")},
            )
            for guest in left
        ]

    def _kick_all(self, left: list[dict[str, Any]]) -> None:
        for guest in left:
            # a guest reconciliation made not live keeps its client: SRS may still have it
            if guest.get("clientId") and self.kick is not None:
                self.kick(
                    Publisher(
                        client_id=guest["clientId"],
                        server_id=guest.get("serverId"),
                        origin=guest.get("origin"),
                    )
                )

    # -- a guest's connection ---------------------------------------------------------------

    def _joined(
        self, peer: Peer, room: Room, message: dict[str, Any]
    ) -> Coroutine[Any, Any, None] | None:
        """After a join is answered: a guest coming back (``join`` with ``stageToken``) takes
        its place on stage; every member (the joiner too) hears the new ``stage``."""
        token = message.get("stageToken")
        if isinstance(token, str) and 0 < len(token) <= 256 and guests(room):
            return self._come_back(peer, room, token)
        return None

    async def _come_back(self, peer: Peer, room: Room, token: str) -> None:
        try:
            await self._resume(peer, room, token)
        except LivehubError as exc:  # the join stands; the guest may join again
            log.warning("room %s: a guest could not take its place again: %s", room.id, exc)

    async def _resume(self, peer: Peer, room: Room, token: str) -> Room:
        """The guest whose token this is now connects as ``peer`` (its stream key stays);
        a token that is no guest's, or a ``peer`` that has a place of its own, changes
        nothing. A ``peer`` kicked while this was written is taken off the stage."""
        moved: list[str] = []

        def decide(room: Room) -> list[RoomEvent] | None:
            moved.clear()
            for peer_id, guest in guests(room).items():
                if hmac.compare_digest(str(guest.get("token", "")).encode(), token.encode()):
                    if self._expired(guest, self._clock()):
                        return None
                    if peer_id != peer.id and peer.id in guests(room):
                        return None  # ``peer`` holds a place of its own: one each
                    del room.stage["guests"][peer_id]
                    guest["goneSince"] = None
                    room.stage["guests"][peer.id] = guest
                    moved.append(peer_id)
                    return []
            return None

        stored, changed = await self._rooms.update(room.id, decide)
        if changed:
            self._local.discard((room.id, moved[0]))
            if not self._hub.is_member(peer, room.id):
                await self._drop(room.id, peer.id)
                return stored
            self._local.add((room.id, peer.id))
            self._announce(stored)
        return stored

    def _presence(self, room_id: str, peer_id: str, role: str | None, joined: bool) -> None:
        if not joined and (room_id, peer_id) in self._local:
            self._spawn(self._gone(room_id, peer_id))

    def _lost(self, room_id: str, peer_id: str) -> None:
        """A member of a node that died: if it is a guest, its reconnect window opens here
        (the node that timed it is gone)."""
        self._spawn(self._gone(room_id, peer_id))

    def _kicked(self, room_id: str, peer_id: str) -> None:
        """A guest kicked from the room leaves the stage at once (no reconnect window)."""
        if (room_id, peer_id) in self._local:
            self._local.discard((room_id, peer_id))  # its departure starts no window
            self._spawn(self._drop(room_id, peer_id))

    async def _drop(self, room_id: str, peer_id: str) -> Room | None:
        """``peer_id``, no longer a member (kicked), off the stage; the room as it is then."""
        self._local.discard((room_id, peer_id))
        try:
            return await self.remove(room_id, peer_id)
        except LivehubError:  # not on stage any more, or the room is gone
            return None

    async def _gone(self, room_id: str, peer_id: str) -> None:
        if self._hub.member(room_id, peer_id) is not None:
            return  # a role change, not a departure
        self._local.discard((room_id, peer_id))
        at = self._clock()

        def decide(room: Room) -> list[RoomEvent] | None:
            changed = False
            if peer_id in invites(room):
                del room.stage["invites"][peer_id]
                changed = True
            guest = guests(room).get(peer_id)
            if guest is not None and guest.get("goneSince") is None:
                guest["goneSince"] = at
                changed = True
            return [] if changed else None

        try:
            room, changed = await self._rooms.update(room_id, decide)
        except LivehubError:
            return
        if changed and peer_id in guests(room):
            if self._window_ms <= 0:
                await self._expire(room_id, peer_id)
            elif self._later is not None:
                self._later(self._window_ms / 1000, lambda: self._expire(room_id, peer_id))

    async def _expire(self, room_id: str, peer_id: str) -> None:
        """The guest's window passed: off the stage, unless it came back."""
        removed: list[dict[str, Any]] = []

        def decide(room: Room) -> list[RoomEvent] | None:
            guest = guests(room).get(peer_id)
            if guest is None or not self._expired(guest, self._clock()):
                return None
            del room.stage["guests"][peer_id]
            removed[:] = [{**guest, "peerId": peer_id}]
            return self._left_events(room, removed)

        try:
            room, changed = await self._rooms.update(room_id, decide)
        except LivehubError:
            return
        if changed:
            log.info("room %s: guest %s left the stage (connection gone)", room_id, peer_id)
            self._kick_all(removed)
            self._announce(room)

    async def orphaned(self) -> int:
        """The start-up of the only process (embedded mode): nobody is connected yet, so every
        guest the previous run left on stage is gone since now (unless it was already) and
        gets what is left of its reconnect window (the timers that would have ended it died
        with that run: a cluster's other nodes time a dead node's guests instead); a guest
        that joins again with its stage token takes its place. Pending invitations lapse
        (their invitees are gone). Returns the rooms changed."""
        at = self._clock()
        changed = 0
        due: list[tuple[str, str, int]] = []

        def decide(room: Room) -> list[RoomEvent] | None:
            dirty = bool(invites(room))
            if dirty:
                room.stage["invites"] = {}
            for guest in guests(room).values():
                if not isinstance(guest.get("goneSince"), int):
                    guest["goneSince"] = at
                    dirty = True
            return [] if dirty else None

        for room in await self._rooms.store.staged():
            try:
                stored, did = await self._rooms.update(room.id, decide)
            except LivehubError:
                continue
            changed += did
            due.extend((stored.id, peer, g["goneSince"]) for peer, g in guests(stored).items())
        for room_id, peer_id, gone in due:
            delay = max(0, gone + self._window_ms - at) / 1000
            if delay <= 0 or self._later is None:
                await self._expire(room_id, peer_id)
            else:
                self._later(delay, functools.partial(self._expire, room_id, peer_id))
        return changed

    # -- the room ends ------------------------------------------------------------------------

    def _room_changed(self, room: Room) -> None:
        if room.status is RoomStatus.ENDED and (guests(room) or invites(room)):
            self._spawn(self._clear(room.id))

    async def _clear(self, room_id: str) -> None:
        removed: list[dict[str, Any]] = []

        def decide(room: Room) -> list[RoomEvent] | None:
            if not guests(room) and not invites(room):
                return None
            removed[:] = [{**g, "peerId": p} for p, g in guests(room).items()]
            room.stage = {}
            return self._left_events(room, removed)

        try:
            room, changed = await self._rooms.update(room_id, decide)
        except LivehubError:
            return
        if changed:
            self._kick_all(removed)
            self._announce(room)

    # -- SRS hooks of guest streams -------------------------------------------------------------

    async def handle_hook(self, event: HookEvent) -> HookResult:
        """The room service's answer, or, for a guest's stream, the stage's."""
        result = await self._rooms.handle_hook(event)
        guest_stream = (
            result.reason == NO_ROOM
            if event.action in ("on_publish", "on_play")
            else event.action == "on_unpublish" and result.outcome == "ignored"
        )
        if guest_stream:
            found = await self._guest_of(event)
            if found is not None:
                guest = await self._guest_hook(event, *found)
                # the room service saw SRS restarted (a new service id) on this hook: the
                # reconciliation it calls for must not be lost with its answer
                return dataclasses.replace(guest, srs_restarted=result.srs_restarted)
        return result

    async def _guest_of(self, event: HookEvent) -> tuple[Room, str] | None:
        """The room and guest peer id of a guest's stream name."""
        app, stream = stream_of(event.app, event.stream, event.stream_url)
        if app != self._rooms.app:
            return None
        cut = -1
        for _ in range(MAX_PREFIXES):
            cut = stream.find("-", cut + 1)
            if cut <= 0:
                return None
            room = await self._rooms.store.get_by_stream(stream[:cut])
            if room is not None:
                for peer_id, guest in guests(room).items():
                    if guest.get("streamKey") == stream:
                        return room, peer_id
                return room, ""  # the room's key, but no such guest (removed, never invited)
        return None

    async def _guest_hook(self, event: HookEvent, room: Room, peer_id: str) -> HookResult:
        try:
            if event.action == "on_publish":
                stored = await self._guest_publish(event, room, peer_id)
            elif event.action == "on_unpublish":
                unpublished = await self._guest_unpublish(event, room, peer_id)
                if unpublished is None:
                    return HookResult(allowed=True, outcome="ignored")
                stored = unpublished
            else:
                stored = self._guest_play(event, room, peer_id)
        except HookRejected as exc:
            return HookResult(allowed=False, outcome="rejected", reason=exc.message)
        return HookResult(allowed=True, outcome="accepted", room=stored)

    async def _guest_publish(self, event: HookEvent, room: Room, peer_id: str) -> Room:
        token = param_token(event.param)
        origin = self._rooms.origin_of(event.server_id)

        def decide(room: Room) -> list[RoomEvent] | None:
            if room.status is RoomStatus.ENDED:
                raise HookRejected("room has ended")
            guest = guests(room).get(peer_id)
            if guest is None or self._expired(guest, self._clock()):
                raise HookRejected("not a guest on this room's stage")
            expected = str(guest.get("token", "")).encode()
            if token is None or not hmac.compare_digest(expected, token.encode()):
                raise HookRejected("guest token missing or wrong")
            if guest.get("live") and guest.get("clientId") == event.client_id:
                return None  # a duplicated on_publish of the guest's publisher
            if (
                guest.get("live")
                and guest.get("clientId") is not None
                and not lifecycle.publisher_left(
                    event,
                    _text(guest.get("serverId")),
                    _text(guest.get("serviceId")),
                    _text(guest.get("origin")),
                    self._rooms.origin_lost,
                )
            ):
                # (SRS restarted, or the guest's origin is down: it goes on, as the room's
                # own publisher does)
                raise HookRejected("this guest stream already has a live publisher")
            guest.update(
                live=True,
                clientId=event.client_id,
                serverId=event.server_id,
                serviceId=event.service_id,
                unlistedAt=None,
                origin=origin,
                publishedAt=self._clock(),
            )
            return []

        if room.status is RoomStatus.ENDED:
            raise HookRejected("room has ended")
        if not peer_id:
            raise HookRejected("not a guest on this room's stage")
        stored, changed = await self._rooms.update(room.id, decide)
        if changed:
            log.info("room %s: guest %s is live on stage", room.id, peer_id)
            self._announce(stored)
        return stored

    async def _guest_unpublish(self, event: HookEvent, room: Room, peer_id: str) -> Room | None:
        def decide(room: Room) -> list[RoomEvent] | None:
            guest = guests(room).get(peer_id)
            if guest is None or guest.get("clientId") != event.client_id:
                return None
            guest.update(live=False, clientId=None, unlistedAt=None)
            return []

        if not peer_id:
            return None
        stored, changed = await self._rooms.update(room.id, decide)
        if not changed:
            return None
        self._announce(stored)
        return stored

    def _guest_play(self, event: HookEvent, room: Room, peer_id: str) -> Room:
        if room.status is RoomStatus.ENDED:
            raise HookRejected("room has ended")
        if not peer_id:
            raise HookRejected(NO_ROOM)
        allowed = self._rooms.play_allowed
        if room.private and (allowed is None or not allowed(room, event.param)):
            raise HookRejected("viewer token missing or wrong")
        return room

    # -- reconciliation with SRS ----------------------------------------------------------------

    async def reconcile(self, publishing: Mapping[str, str | None], asked_at: int) -> int:
        """Hooks can be lost: a guest SRS does not list as publishing (``publishing``: stream
        name → client id, asked at ``asked_at``) is not live, unless its publish was accepted
        within the grace period, and live again when a later listing shows its client (no
        hook will say it); guests whose reconnect window passed (timed by a node that died)
        leave the stage. Returns the rooms changed."""
        grace_from = asked_at - self._rooms.publish_grace_ms
        changed = 0

        def decide(room: Room) -> list[RoomEvent] | None:
            removed.clear()
            dirty = False
            for guest in guests(room).values():
                published = guest.get("publishedAt")
                unlisted = guest.get("unlistedAt")
                if (
                    guest.get("live")
                    and guest.get("streamKey") not in publishing
                    and not (isinstance(published, int) and published > grace_from)
                ):
                    # its client is kept: SRS may list it later after all (a WebRTC
                    # publisher is active only once ICE and DTLS are done), and its
                    # on_unpublish is still its own
                    guest.update(live=False, unlistedAt=asked_at)
                    dirty = True
                elif (
                    not guest.get("live")
                    and guest.get("clientId") is not None
                    and publishing.get(guest.get("streamKey", "")) == guest["clientId"]
                    and isinstance(unlisted, int)
                    and unlisted < asked_at
                ):
                    guest.update(live=True, unlistedAt=None)  # no hook will say it
                    dirty = True
            gone = self._purge(room, self._clock())
            removed.extend({**g, "peerId": p} for p, g in gone)
            if not dirty and not gone:
                return None
            return self._left_events(room, removed)

        removed: list[dict[str, Any]] = []
        for room in await self._rooms.store.staged():
            try:
                stored, did = await self._rooms.update(room.id, decide)
            except LivehubError:
                continue
            if did:
                changed += 1
                self._kick_all(removed)
                self._announce(stored)
        return changed

    # -- background work ----------------------------------------------------------------------

    def _spawn(self, coroutine: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(self._guard(coroutine))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _guard(coroutine: Any) -> None:
        try:
            await coroutine
        except Exception:
            log.exception("stage task failed")

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
