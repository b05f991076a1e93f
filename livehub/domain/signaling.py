"""The signaling protocol: what each client message does, and the events the server sends.

Every decoded frame goes through :meth:`Signaling.handle`. A bad message is answered with an
``error`` event (``code``, ``message``, ``inReplyTo``) and changes nothing; the connection stays
open unless the client breaks policy (a sustained flood closes it with 1008). ``from`` on
relayed messages is always the sender's server-assigned peer id; anything the client put there
is replaced. The protocol is documented message by message in ``docs/protocol.md``.

Rate limits (a general bucket for every frame, one for chat, one of relayed bytes, floods closed
with 1008) are in :mod:`livehub.domain.ratelimit`. Chat is closed, for everyone, once the room has
ended.

Relays cannot amplify: one without ``to`` (to the whole room) is accepted from a host, and from a
viewer only in a room of at most ``broadcast_relay_max_members`` members (``relay_needs_to``
otherwise); a payload over ``max_relay_bytes`` is refused (``payload_too_large``); and each
relay costs its payload's size times its recipients from the connection's byte budget
(``rate_limited`` when it is spent). A peer kicked from a room leaves its address banned from
joining that room again for a while (``banned``; :mod:`livehub.domain.addresses`).
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import json
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Final

from livehub.domain.addresses import KickBans
from livehub.domain.errors import LivehubError, RoomEnded
from livehub.domain.peer import Peer, Sink
from livehub.domain.ratelimit import ConnectionLimiter, Verdict
from livehub.domain.room import Room, RoomStatus
from livehub.domain.room_cache import RoomCache
from livehub.domain.room_hub import RoomHub
from livehub.domain.service import RoomService
from livehub.domain.text import has_control, has_visible

log = logging.getLogger(__name__)

CLOSE_POLICY_VIOLATION = 1008
RELAY_TYPES = frozenset({"offer", "answer", "candidate"})
ROLES = ("viewer", "host")
MAX_ID_LENGTH = 64
MAX_NAME_LENGTH = 64
#: the largest integer request id (JavaScript's Number.MAX_SAFE_INTEGER: SDKs round-trip it)
MAX_INT_REQUEST_ID = 2**53 - 1

#: the ``id`` of the client message being handled, if it carried one: echoed on its reply
#: (``joined``, ``left``, the sender's own ``chat``) and on any ``error`` it causes. A
#: context variable, so that it follows the message through its handler's awaits and never
#: leaks to another connection's message handled meanwhile.
_request_id: contextvars.ContextVar[str | int | None] = contextvars.ContextVar(
    "livehub_request_id", default=None
)


def request_id_of(message: dict[str, Any]) -> tuple[bool, str | int | None]:
    """``(valid, id)`` of a client message: no ``id`` (or ``null``) is valid and None; a
    string of at most 64 characters or an integer within ±(2^53 - 1) is valid; anything else
    is not."""
    value = message.get("id")
    if value is None:
        return True, None
    if isinstance(value, str) and len(value) <= MAX_ID_LENGTH:
        return True, value
    if isinstance(value, int) and not isinstance(value, bool):
        return abs(value) <= MAX_INT_REQUEST_ID, value
    return False, None


@dataclasses.dataclass(frozen=True, kw_only=True)
class Limits:
    #: general message rate per connection (0: no limit), and its burst; more refusals than
    #: ``rate_burst`` in one episode close the connection
    rate_per_s: float = 50.0
    rate_burst: int = 200
    #: chat messages per connection (0: no limit of their own), and their burst
    chat_rate_per_s: float = 2.0
    chat_rate_burst: int = 5
    max_rooms_per_connection: int = 16
    max_members_per_room: int = 10_000
    max_chat_length: int = 500
    #: members above which a room's viewers are counted, not announced
    presence_limit: int = 100
    #: a viewer's relay without ``to`` is refused in rooms of more members than this (hosts
    #: may always relay to the whole room)
    broadcast_relay_max_members: int = 10
    #: largest relay payload, in bytes of its JSON (0: only the frame size limits it)
    max_relay_bytes: int = 16384
    #: relayed bytes per second per connection, payload x recipients (0: no limit)
    relay_bytes_per_s: int = 262144


#: the message types relayed to other members as they are (``_relay``)
RELAYED: Final = frozenset({"offer", "answer", "candidate"})


class ProtocolError(LivehubError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


RoomView = Callable[[Room], dict[str, Any]]
#: a relay payload encoded once: its size in bytes as JSON, and what the relayed message carries
#: in its place (the app's encoder embeds the encoded bytes as they are, so a relay is encoded
#: once); raises TypeError or ValueError for a payload that cannot be encoded
Measure = Callable[[Any], tuple[int, Any]]


def json_size(payload: Any) -> tuple[int, Any]:
    """:data:`Measure` with the standard library (the app measures with its own encoder): the
    size, and the payload itself."""
    size = len(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode())
    return size, payload


#: closes a room for good (and kicks its publisher); members hear ``room-status`` "ended"
RoomCloser = Callable[[str], Awaitable[Room]]
#: handles one message type: ``(peer, message, room_id)``; either done on return (None: relays,
#: the bulk of the traffic, take no coroutine) or returns what to await (a coroutine); raises
#: :class:`LivehubError` to answer with an error
Handler = Callable[[Peer, dict[str, Any], str], Awaitable[None] | None]
#: hears every join and leave on this node: ``(room_id, peer_id, role, joined)``; a role change
#: is a leave with the old role, then a join with the new one. Synchronous: it must not block
#: (the webhooks' presence events only queue)
PresenceListener = Callable[[str, str, str | None, bool], None]
#: a check a join must pass (private rooms): ``(peer, room, message, role)``, raises
#: :class:`LivehubError` to refuse. Made before any other check of the join (a room that
#: has ended, the owner token, a kick ban), so that what it refuses learns nothing else
JoinCheck = Callable[[Peer, Room, dict[str, Any], str], None]
#: fields merged into the ``joined`` reply: ``(peer, room, message)`` → fields. Synchronous, so
#: that nothing happens between the join and its reply
JoinExtra = Callable[[Peer, Room, dict[str, Any]], dict[str, Any]]
#: what a join sets off once it is answered and announced: ``(peer, room, message)``, done on
#: return (None) or what to await (a guest taking its place on stage again writes the room)
JoinFollowUp = Callable[[Peer, Room, dict[str, Any]], Awaitable[None] | None]
#: hears of one member of a room: ``(room_id, peer_id)``; kicked from a room on this node (before
#: its departure is announced), or lost with a dead node. Synchronous
MemberListener = Callable[[str, str], None]
#: a kick ban's key other than the address, from a join: ``(room_id, message)`` → the key, or
#: None. Synchronous
BanKey = Callable[[str, dict[str, Any]], str | None]
#: a check a chat line must pass (moderation): ``(peer, room)`` → fields the line gets;
#: raises :class:`ProtocolError` to refuse it
ChatCheck = Callable[[Peer, Room], dict[str, Any]]


def _unrelayable(peer: Peer, exc: Exception) -> ProtocolError:
    log.debug("payload from peer %s not relayed: %s", peer.id, exc)
    return ProtocolError("invalid_payload", "Field 'payload' cannot be relayed")


#: checks of a room this node now hears of (room_heard), HEARD_WAIT s apart while this process
#: writes rooms; then it tells what it read
HEARD_CHECKS = 10
HEARD_WAIT = 0.02


class Signaling:
    def __init__(
        self,
        hub: RoomHub,
        rooms: RoomService,
        *,
        room_view: RoomView,
        close_room: RoomCloser,
        limits: Limits | None = None,
        bans: KickBans | None = None,
        measure: Measure = json_size,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.hub = hub
        self.rooms = rooms
        #: rooms as of their last change: joins, chat and close-room read no store (kept
        #: while the hub hears of their changes)
        self.known = RoomCache(rooms.get, keeps=hub.hears)
        self.bans = bans
        self._measure = measure
        self._room_view = room_view
        self._close_room = close_room
        self.limits = limits or Limits()
        self._clock = clock
        self._wall_clock = wall_clock
        #: rooms over the presence limit: viewers counted, not announced
        self._counted: set[str] = set()
        #: rooms whose changes the hub does not hear yet -> the room as joins were answered
        #: with then (room_heard checks it)
        self._told_unheard: dict[str, Room] = {}
        self._handlers: dict[str, Handler] = {
            "join": self._join,
            "leave": self._leave,
            "offer": self._relay,
            "answer": self._relay,
            "candidate": self._relay,
            "chat": self._chat,
            "close-room": self._close,
            "kick": self._kick,
        }
        self._presence_listeners: list[PresenceListener] = []
        self.join_checks: list[JoinCheck] = []
        self.join_extras: list[JoinExtra] = []
        self.join_follow_ups: list[JoinFollowUp] = []
        self.kick_listeners: list[MemberListener] = []
        #: hear of members of another node that died (cluster mode), reaped by this node alone:
        #: ``(room_id, peer_id)``. Synchronous
        self.lost_listeners: list[MemberListener] = []
        self.chat_checks: list[ChatCheck] = []
        #: what else than its address a kick bans a peer by, read from a join (a private room's
        #: viewer token); the key's ban is written by whoever keeps it (a kick listener)
        self.ban_keys: list[BanKey] = []
        rooms.subscribe(self.on_room_change)
        rooms.subscribe_quiet(self.on_quiet_change)
        hub.listen(self)

    def register(self, kind: str, handler: Handler) -> None:
        """Handle the message type ``kind`` with ``handler`` (the stage, moderation)."""
        if kind in self._handlers:
            raise ValueError(f"message type {kind!r} is handled already")
        self._handlers[kind] = handler

    def subscribe_presence(self, listener: PresenceListener) -> None:
        self._presence_listeners.append(listener)

    def _presence(self, room_id: str, peer_id: str, role: str | None, joined: bool) -> None:
        for listener in self._presence_listeners:
            try:
                listener(room_id, peer_id, role, joined)
            except Exception:
                log.exception("presence listener failed")

    # -- connection lifecycle -------------------------------------------------------------

    def open(self, sink: Sink, address: str = "") -> Peer:
        """A new connection; ``address`` is its client's address key (kick bans)."""
        limits = self.limits
        limiter = ConnectionLimiter(
            rate_per_s=limits.rate_per_s,
            rate_burst=limits.rate_burst,
            chat_rate_per_s=limits.chat_rate_per_s,
            chat_rate_burst=limits.chat_rate_burst,
            flood_after=limits.rate_burst,
            clock=self._clock,
            relay_bytes_per_s=limits.relay_bytes_per_s,
        )
        peer = Peer(sink, limiter, address=address)
        self.hub.connect(peer)
        return peer

    def close(self, peer: Peer) -> None:
        """The connection is gone (cleanly or not): leave every room, tell the others."""
        roles = dict(peer.roles)
        for room_id in self.hub.disconnect(peer):
            self._left(room_id, peer.id, roles.get(room_id))

    # -- messages -------------------------------------------------------------------------

    def reject(self, peer: Peer, code: str, message: str, **extra: Any) -> None:
        self._reply(peer, {"type": "error", "code": code, "message": message, **extra})

    def _reply(self, peer: Peer, event: dict[str, Any]) -> None:
        """Send ``event`` to ``peer`` in answer to its message: with the message's ``id``."""
        request_id = _request_id.get()
        if request_id is not None:
            event["id"] = request_id
        self.hub.send(peer, event)

    def bad_frame(self, peer: Peer, code: str, message: str) -> None:
        """A frame that never became a message (not JSON, binary). It costs a token like any
        other frame, so a flood of garbage is throttled and closed too; then its error."""
        if peer.closed:
            return
        verdict = peer.limiter.frame()
        if verdict is not Verdict.PASS:
            self._refused(peer, verdict)
            return
        self.reject(peer, code, message)

    def handle(self, peer: Peer, message: Any) -> Coroutine[Any, Any, None] | None:
        """Handle one decoded frame from ``peer``: done on return (None), or returns the rest of
        the work to await (the bus to other nodes is backed up, or the message's handler waits,
        for the store for instance). A relay, most of the traffic, is done on return: it costs
        no coroutine."""
        hub = self.hub
        if hub.can_back_up and hub.backed_up():  # the bus to other nodes is backed up
            return self._handle_when_writable(peer, message)
        if peer.closed:
            return None  # being disconnected (flood, slow consumer): its last frames change nothing
        limiter = peer.limiter
        if limiter.limits_frames:
            verdict = limiter.frame()
            if verdict is not Verdict.PASS:
                self._refused(peer, verdict)
                return None
        if not isinstance(message, dict):
            self.reject(peer, "invalid_message", "A message must be a JSON object")
            return None
        if "id" not in message:  # most messages: no request id, no context to set
            kind = message.get("type")
            room_id = message.get("roomId")
            # the bulk of the traffic: a relay in one of the peer's rooms (whose ids were
            # checked when it joined) goes straight to the relay; anything else is routed
            if (
                type(kind) is str
                and kind in RELAYED
                and type(room_id) is str
                and room_id in peer.roles  # its rooms (without the property's call)
            ):
                try:
                    pending = self._relay_member(peer, message, kind, room_id)
                except LivehubError as exc:
                    self.reject(peer, exc.code, exc.message, inReplyTo=kind, roomId=room_id)
                    return None
                if pending is None:
                    return None
                return self._finish(peer, pending, None, kind, room_id)
            return self._dispatch(peer, message, None)
        valid, request_id = request_id_of(message)
        if not valid:
            self.reject(
                peer,
                "invalid_id",
                f"Field 'id' must be a string of at most {MAX_ID_LENGTH} characters or an integer",
            )
            return None
        if request_id is None:
            return self._dispatch(peer, message, None)
        # the id goes into the reply and into the errors this message causes
        token = _request_id.set(request_id)
        try:
            return self._dispatch(peer, message, request_id)
        finally:
            _request_id.reset(token)

    def _dispatch(
        self, peer: Peer, message: dict[str, Any], request_id: str | int | None
    ) -> Coroutine[Any, Any, None] | None:
        """Route a checked message to its handler; what the handler returns to await is wrapped
        so that its errors are answered as the handler's own, with ``request_id``."""
        routed = self._route(peer, message)
        if routed is None:
            return None
        kind, room_id, handler = routed
        try:
            pending = handler(peer, message, room_id)
        except LivehubError as exc:
            self.reject(peer, exc.code, exc.message, inReplyTo=kind, roomId=room_id)
            return None
        if pending is None:
            return None
        return self._finish(peer, pending, request_id, kind, room_id)

    async def _handle_when_writable(self, peer: Peer, message: Any) -> None:
        await self.hub.writable()
        pending = self.handle(peer, message)
        if pending is not None:
            await pending

    async def _finish(
        self,
        peer: Peer,
        pending: Awaitable[None],
        request_id: str | int | None,
        kind: str,
        room_id: str,
    ) -> None:
        """Await what a handler returned; its errors are answered as the handler's own."""
        token = _request_id.set(request_id) if request_id is not None else None
        try:
            await pending
        except LivehubError as exc:
            self.reject(peer, exc.code, exc.message, inReplyTo=kind, roomId=room_id)
        finally:
            if token is not None:
                _request_id.reset(token)

    def _route(self, peer: Peer, message: dict[str, Any]) -> tuple[str, str, Handler] | None:
        """The message's type, room and handler; None when it has no valid type or room (its
        error is sent)."""
        kind = message.get("type")
        if not isinstance(kind, str) or not kind:
            self.reject(peer, "missing_type", "Field 'type' is required and must be a string")
            return None
        handler = self._handlers.get(kind)
        if handler is None:
            self.reject(
                peer, "unknown_type", f"Unknown message type {kind[:40]!r}", inReplyTo=kind[:40]
            )
            return None
        room_id = message.get("roomId")
        if not isinstance(room_id, str) or not room_id or len(room_id) > MAX_ID_LENGTH:
            self.reject(
                peer,
                "missing_room_id",
                "Field 'roomId' is required and must be a room id",
                inReplyTo=kind,
            )
            return None
        return kind, room_id, handler

    def _refused(self, peer: Peer, verdict: Verdict, message: str = "", **extra: Any) -> None:
        """A message the rate limit refused: dropped; answered once per episode; a flood closes
        the connection."""
        self.hub.stats.dropped += 1
        if verdict is Verdict.REFUSE_AND_TELL:
            self.reject(peer, "rate_limited", message or "Too many messages: slow down", **extra)
        elif verdict is Verdict.CLOSE:
            log.info("closing peer %s: message flood", peer.id)
            # what is already queued for it (its rate_limited error among them) goes out
            # before the close frame; a closed peer's queue is otherwise discarded
            self.hub.flush()
            peer.closed = True
            peer.sink.abort(CLOSE_POLICY_VIOLATION, "message rate limit exceeded")

    def _member_room(self, peer: Peer, room_id: str) -> None:
        if not self.hub.is_member(peer, room_id):
            raise ProtocolError("not_in_room", "Join the room first")

    async def _join(self, peer: Peer, message: dict[str, Any], room_id: str) -> None:
        name = message.get("name")
        if name is None:
            name = ""
        if (
            not isinstance(name, str)
            or len(name) > MAX_NAME_LENGTH
            or has_control(name)
            or (name.strip() and not has_visible(name))
        ):
            raise ProtocolError(
                "invalid_name",
                f"Field 'name' must be a string of at most {MAX_NAME_LENGTH} characters, "
                "empty or with a visible one, and no control characters",
            )
        role = message.get("role")
        if role is None:
            role = "viewer"
        if role not in ROLES:
            raise ProtocolError("invalid_role", "Field 'role' must be 'viewer' or 'host'")
        room = await self._room_to_join(peer, message, room_id, role)
        # from here on nothing is awaited until the join is answered and announced: no other
        # message (a kick, another join, a close) comes between the joiner becoming a member
        # and what it and the room are told
        already = self.hub.is_member(peer, room_id)
        if not already:
            if len(peer.rooms) >= self.limits.max_rooms_per_connection:
                raise ProtocolError("too_many_rooms", "This connection has joined too many rooms")
            if self.hub.count(room_id) >= self.limits.max_members_per_room:
                raise ProtocolError("room_full", "Room is full")
        verdict = peer.limiter.join()
        if verdict is not Verdict.PASS:
            self._refused(
                peer, verdict, "Too many joins: slow down", inReplyTo="join", roomId=room_id
            )
            return
        old_role = peer.roles.get(room_id)
        was_host = old_role == "host"
        self.hub.join(peer, room_id, name.strip(), role)
        if not self.hub.hears(room_id):
            self._told_unheard.setdefault(room_id, room)  # checked once it does (room_heard)
        if not already:
            self._presence(room_id, peer.id, role, True)
        elif old_role != role:
            self._presence(room_id, peer.id, old_role, False)
            self._presence(room_id, peer.id, role, True)
        count = self.hub.count(room_id)
        self._check_mode(room_id, count, joiner=peer)
        counted = room_id in self._counted
        if counted:  # O(hosts), not O(members)
            members = self.hub.describe_hosts(room_id)
            if role != "host":
                members.append(peer.describe(room_id))
        else:
            members = self.hub.describe_members(room_id)
        joined = {
            "type": "joined",
            "roomId": room_id,
            "peerId": peer.id,
            "role": role,
            "room": self._room_view(room),
            "members": members,
            "presence": "counted" if counted else "full",
            "viewerCount": count,
        }
        for extra in self.join_extras:
            joined.update(extra(peer, room, message))
        self._reply(peer, joined)
        # hosts are always announced; in a counted room a viewer is not. A member that comes
        # back with another role is announced again where the others' lists hold it (they
        # hold roles: a co-host a full room's lists kept as host would stay in them once the
        # room is counted); a host that comes back as viewer leaves a counted room's lists,
        # which hold only hosts there
        if (not already or old_role != role) and (role == "host" or not counted):
            self.hub.broadcast(
                room_id,
                {"type": "peer-joined", "roomId": room_id, "peer": peer.describe(room_id)},
                exclude=peer,
            )
        elif already and counted and was_host and role != "host":
            self.hub.broadcast(
                room_id, {"type": "peer-left", "roomId": room_id, "peerId": peer.id}, exclude=peer
            )
        for follow_up in self.join_follow_ups:
            pending = follow_up(peer, room, message)
            if pending is not None:
                await pending

    async def _room_to_join(
        self, peer: Peer, message: dict[str, Any], room_id: str, role: str
    ) -> Room:
        """The room, once ``peer`` may join it as ``role``: its checks are made on the room as
        it is after the last thing they awaited (a room closed meanwhile is refused)."""
        for _ in range(3):
            room = await self.known.get(room_id)
            # not kept when the hub does not hear of the room yet (no members on this node):
            # a change then is told once it does (room_heard)
            kept = self.known.peek(room_id) is room
            # first: a private room refuses a stranger as an unknown id, whatever its state
            for check in self.join_checks:
                check(peer, room, message, role)
            if room.status is RoomStatus.ENDED:
                raise RoomEnded(room_id)
            if role == "host":
                token = message.get("token")
                if not isinstance(token, str) or not self.rooms.is_owner(room, token):
                    raise ProtocolError("forbidden", "Joining as host needs the room's owner token")
            elif self.bans is not None and not self.hub.is_member(peer, room_id):
                # the owner (host, with its token) is never banned from its own room
                await self._check_bans(self.bans, peer, message, room_id)
            await self.hub.load(room_id)  # other nodes' members (nothing to do in one process)
            latest = self.known.peek(room_id)
            if latest is room or (latest is None and not kept):
                return room
            # the room changed while this join waited: check it again
        return room  # changing all the time: as of the last read

    async def _check_bans(
        self, bans: KickBans, peer: Peer, message: dict[str, Any], room_id: str
    ) -> None:
        """Refuse a join (``banned``) from a kicked peer's address, or with what else identified
        it (:attr:`ban_keys`: a private room's viewer token)."""
        if peer.address and await bans.banned(room_id, peer.address):
            raise ProtocolError(
                "banned", "A peer from this address was kicked from this room: try again later"
            )
        for ban_key in self.ban_keys:
            key = ban_key(room_id, message)
            if key and await bans.banned(room_id, key):
                raise ProtocolError(
                    "banned", "A peer with this token was kicked from this room: try again later"
                )

    async def _leave(self, peer: Peer, message: dict[str, Any], room_id: str) -> None:
        role = peer.roles.get(room_id)
        if not self.hub.leave(peer, room_id):
            raise ProtocolError("not_in_room", "Not a member of this room")
        self._reply(peer, {"type": "left", "roomId": room_id})
        self._left(room_id, peer.id, role)

    def _relay(
        self, peer: Peer, message: dict[str, Any], room_id: str
    ) -> Coroutine[Any, Any, None] | None:
        """Relay at once to members on this node or through the hub's bus; a ``to`` that this
        node does not know returns the registry look-up to await."""
        self._member_room(peer, room_id)
        return self._relay_member(peer, message, message["type"], room_id)

    def _relay_member(
        self, peer: Peer, message: dict[str, Any], kind: str, room_id: str
    ) -> Coroutine[Any, Any, None] | None:
        """:meth:`_relay` of a member of the room."""
        payload = message.get("payload")
        to = message.get("to")
        if to is not None and not isinstance(to, str):
            raise ProtocolError("invalid_to", "Field 'to' must be a peer id")
        limits = self.limits
        try:
            size, encoded = self._measure(payload)
        except (TypeError, ValueError, RecursionError) as exc:
            # the JSON codec refuses what it decoded (orjson: nesting deeper than 254 levels)
            raise _unrelayable(peer, exc) from None
        if limits.max_relay_bytes and size > limits.max_relay_bytes:
            raise ProtocolError(
                "payload_too_large",
                f"Field 'payload' must be at most {limits.max_relay_bytes} bytes of JSON",
            )
        if to is None:
            count = self.hub.count(room_id)
            if peer.roles.get(room_id) != "host" and count > limits.broadcast_relay_max_members:
                raise ProtocolError(
                    "relay_needs_to",
                    f"In a room of more than {limits.broadcast_relay_max_members} members "
                    "relays need 'to' (only hosts may relay to the whole room)",
                )
            recipients = count - 1
        else:
            recipients = 1
        limiter = peer.limiter
        if limiter.limits_relays:
            verdict = limiter.relay(size * recipients)
            if verdict is not Verdict.PASS:
                self._refused(
                    peer,
                    verdict,
                    "Too many relayed bytes: slow down",
                    inReplyTo=kind,
                    roomId=room_id,
                )
                return None
        out = {"type": kind, "roomId": room_id, "payload": encoded, "from": peer.id}
        try:
            if to is None:
                self.hub.broadcast(room_id, out, exclude=peer)
                return None
            out["to"] = to
            if to == peer.id:
                raise ProtocolError("peer_not_found", "No such peer in this room")
            if self.hub.send_to(room_id, to, out):
                return None
        except (TypeError, ValueError) as exc:
            # the payload was measured, so this is not expected; the hub encodes before it
            # queues anything, so nothing was sent
            raise _unrelayable(peer, exc) from None
        # a peer that joined on another node a moment ago: ask the registry
        return self._relay_elsewhere(peer, room_id, to, out)

    async def _relay_elsewhere(
        self, peer: Peer, room_id: str, to: str, out: dict[str, Any]
    ) -> None:
        try:
            found = await self.hub.send_elsewhere(room_id, to, out)
        except (TypeError, ValueError) as exc:
            raise _unrelayable(peer, exc) from None
        if not found:
            raise ProtocolError("peer_not_found", "No such peer in this room")

    async def _chat(self, peer: Peer, message: dict[str, Any], room_id: str) -> None:
        self._member_room(peer, room_id)
        text = message.get("text")
        if not isinstance(text, str) or not has_visible(text) or has_control(text, lines=True):
            raise ProtocolError(
                "invalid_text",
                "Field 'text' must be a string with a visible character and no control "
                "characters but tabs and line feeds",
            )
        if len(text) > self.limits.max_chat_length:
            raise ProtocolError(
                "chat_too_long",
                f"Field 'text' must be at most {self.limits.max_chat_length} characters",
            )
        room = await self.known.get(room_id)
        if room.status is RoomStatus.ENDED:
            raise RoomEnded(room_id)  # chat is closed for everyone once the room has ended
        verdict = peer.limiter.chat()
        if verdict is not Verdict.PASS:
            self._refused(
                peer,
                verdict,
                "Too many chat messages: slow down",
                inReplyTo="chat",
                roomId=room_id,
            )
            return
        line: dict[str, Any] = {
            "type": "chat",
            "roomId": room_id,
            "from": peer.id,
            "name": peer.names.get(room_id, ""),
            "role": peer.roles.get(room_id, "viewer"),
            "text": text,
            "ts": int(self._wall_clock() * 1000),
        }
        for check in self.chat_checks:
            line.update(check(peer, room))
        request_id = _request_id.get()
        if request_id is None:
            self.hub.broadcast(room_id, line)
            return
        # the sender's own copy is its reply; a chat line's ``id`` is the line's own (chat-delete
        # names it), so the request's id comes back as ``requestId``; the others' copies carry
        # none
        self.hub.broadcast(room_id, line, exclude=peer)
        self.hub.send(peer, {**line, "requestId": request_id})

    def require_member(self, peer: Peer, room_id: str) -> None:
        self._member_room(peer, room_id)

    def require_host(self, peer: Peer, room_id: str) -> None:
        self._require_host(peer, room_id)

    def _require_host(self, peer: Peer, room_id: str) -> None:
        self._member_room(peer, room_id)
        if peer.roles.get(room_id) != "host":
            raise ProtocolError("forbidden", "Only the room's host may do this")

    async def _close(self, peer: Peer, message: dict[str, Any], room_id: str) -> None:
        self._require_host(peer, room_id)
        if (await self.known.get(room_id)).status is RoomStatus.ENDED:
            # nothing would change, so no room-status would answer: say so
            raise RoomEnded(room_id)
        await self._close_room(room_id)  # members hear room-status "ended"

    async def _kick(self, peer: Peer, message: dict[str, Any], room_id: str) -> None:
        self._require_host(peer, room_id)
        target_id = message.get("peerId")
        if not isinstance(target_id, str) or target_id == peer.id:
            raise ProtocolError("peer_not_found", "No such peer in this room")
        target = self.hub.member(room_id, target_id)
        if target is None:
            # a member on another node: its node removes it and announces it
            if not await self.hub.kick_elsewhere(room_id, target_id, peer.id):
                raise ProtocolError("peer_not_found", "No such peer in this room")
            return
        self._remove_kicked(target, room_id, peer.id)

    def kick_requested(self, room_id: str, peer_id: str, by: str) -> None:
        """A host on another node kicked ``peer_id``, connected here (cluster mode)."""
        target = self.hub.member(room_id, peer_id)
        if target is not None:
            self._remove_kicked(target, room_id, by)

    def _remove_kicked(self, target: Peer, room_id: str, by: str) -> None:
        role = target.roles.get(room_id)
        if self.bans is not None and target.address:
            self.bans.ban(room_id, target.address)
        for listener in self.kick_listeners:
            try:
                listener(room_id, target.id)
            except Exception:
                log.exception("kick listener failed")
        self.hub.leave(target, room_id)
        self.hub.send(target, {"type": "kicked", "roomId": room_id, "by": by})
        if not self._left(room_id, target.id, role):
            # a viewer of a counted room is not announced: the host who kicked it hears it
            # (wherever it is connected)
            self.hub.send_to(
                room_id, by, {"type": "peer-left", "roomId": room_id, "peerId": target.id}
            )

    # -- presence ---------------------------------------------------------------------------

    def _left(self, room_id: str, peer_id: str, role: str | None) -> bool:
        """A member left (or was kicked, or disconnected): tell the room if its presence is
        announced; True if it was."""
        self._presence(room_id, peer_id, role, False)
        announced = role == "host" or room_id not in self._counted
        if announced:
            self.hub.broadcast(room_id, {"type": "peer-left", "roomId": room_id, "peerId": peer_id})
        self._check_mode(room_id, self.hub.count(room_id))
        return announced

    def _check_mode(self, room_id: str, count: int, joiner: Peer | None = None) -> None:
        """Switch the room to counted presence above the limit, back to full presence at 90 %
        of it or below (so a room at the limit does not flip on every join and leave), and tell
        its members (but the joiner, whose ``joined`` says so)."""
        limit = self.limits.presence_limit
        if room_id not in self._counted:
            if count > limit:
                self._counted.add(room_id)
                self.hub.broadcast_local(
                    room_id,
                    {
                        "type": "presence-mode",
                        "roomId": room_id,
                        "presence": "counted",
                        "viewerCount": count,
                    },
                    exclude=joiner,
                )
        elif count <= limit - limit // 10:
            self._counted.discard(room_id)
            if count:
                self.hub.broadcast_local(
                    room_id,
                    {
                        "type": "presence-mode",
                        "roomId": room_id,
                        "presence": "full",
                        "viewerCount": count,
                        "members": self.hub.describe_members(room_id),
                    },
                    exclude=joiner,
                )

    # -- room events ----------------------------------------------------------------------

    def on_quiet_change(self, room: Room) -> None:
        """The stage or moderation was written (its callers tell the members): the room cache
        keeps the new room here and the other nodes forget theirs."""
        self.known.put(room)
        self.hub.touch_room(room.id)

    def on_room_change(self, room: Room) -> None:
        self.known.put(room)
        if room.id in self._told_unheard:
            self._told_unheard[room.id] = room  # what the members are told now
        self.hub.announce_room(
            room.id,
            lambda: {
                "type": "room-status",
                "roomId": room.id,
                "status": room.status.value,
                "room": self._room_view(room),
            },
        )

    # -- what other nodes change (cluster mode) ---------------------------------------------

    def presence_changed(self, room_id: str, count: int) -> None:
        """Members came or went on other nodes: this node's members may change mode."""
        self._check_mode(room_id, count)

    def room_changed(self, room_id: str) -> None:
        """Another node changed the room, or this node no longer hears of it (its members
        left): read it again when next needed."""
        self.known.forget(room_id)
        # the notice told the members the room as it is now: nothing left to check
        self._told_unheard.pop(room_id, None)

    async def room_heard(self, room_id: str) -> None:
        """A close (or any status change) made after this node's members read the room and
        before the node heard the room's notices reached none of them: read the room again
        and tell them, as the notice would have."""
        room: Room | None = None
        for _ in range(HEARD_CHECKS):
            if room_id not in self._told_unheard:
                return  # no join was answered before: every change since is heard
            started, writing = self.rooms.local_writes()
            if writing:  # this process's own change tells the members itself: after it
                await asyncio.sleep(HEARD_WAIT)
                continue
            try:
                room = await self.known.get(room_id)
            except LivehubError:
                self._told_unheard.pop(room_id, None)
                return
            if self.rooms.local_writes() == (started, 0):
                break
            # a change of this process's came meanwhile (read or not): check after it
        if room is None:  # this process kept writing rooms: read it all the same
            try:
                room = await self.known.get(room_id)
            except LivehubError:
                self._told_unheard.pop(room_id, None)
                return
        told = self._told_unheard.pop(room_id, None)
        if told is not None and room.status is not told.status:
            self.hub.broadcast_local(
                room_id,
                {
                    "type": "room-status",
                    "roomId": room.id,
                    "status": room.status.value,
                    "room": self._room_view(room),
                },
            )

    def rooms_unknown(self) -> None:
        """The bus's session ended or began: room changes may have gone unheard."""
        self.known.clear()

    def members_lost(self, room_id: str, members: list[tuple[str, str]], count: int) -> None:
        """A dead node's members, reaped here: announce them where presence applies (every
        node's members hear it through the bus)."""
        counted = room_id in self._counted or count > self.limits.presence_limit
        for peer_id, role in members:
            if role == "host" or not counted:
                self.hub.broadcast(
                    room_id, {"type": "peer-left", "roomId": room_id, "peerId": peer_id}
                )
            for listener in self.lost_listeners:
                try:
                    listener(room_id, peer_id)
                except Exception:
                    log.exception("lost-member listener failed")

    def members_returned(self, room_id: str, members: list[Peer], count: int) -> None:
        """This node's members, announced gone by a node that took this one for dead, are
        present again: announce them as their joins were (hosts always; viewers unless the
        room is counted), to every member but themselves, cluster-wide."""
        counted = room_id in self._counted or count > self.limits.presence_limit
        for peer in members:
            if peer.roles.get(room_id) == "host" or not counted:
                self.hub.broadcast(
                    room_id,
                    {"type": "peer-joined", "roomId": room_id, "peer": peer.describe(room_id)},
                    exclude=peer,
                )
