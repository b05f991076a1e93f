"""Chat moderation: server-assigned chat ids, deleting a line, muting a member, slow mode.

Protocol (``docs/protocol.md``): hosts send ``chat-delete`` (every member hears
``chat-deleted``), ``mute`` / ``unmute`` (the member's chat lines are refused with ``muted``
until then; it hears ``muted`` / ``unmuted``) and ``slow-mode`` (every member hears
``room-settings``; a non-host's chat line within ``slowMode`` seconds of its previous one is
refused with ``slow_mode``). A viewer's moderation message gets ``forbidden``.

Mutes and slow mode are stored with the room (``Room.moderation``), so every node applies
them, whichever node the host is connected to; each chat line reads the room anyway (a chat in
an ended room is refused). When a member last chatted is known only to its own node, which is
where its chat lines arrive. A mute names a peer id, that is one connection: a muted member
that reconnects comes back unmuted (there are no accounts to mute).

A host's moderation messages are limited per room (:data:`MODERATION_BURST` at once, then
:data:`MODERATION_RATE_PER_S`; on each node): anyone may create a room and so be a host, and each
``mute``, ``unmute`` or ``slow-mode`` writes the room to the store and tells members, each
``chat-delete`` tells every member. Only a host's messages count, so nobody else can spend a
room's budget.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any

from livehub.domain.errors import RoomEnded
from livehub.domain.peer import Peer
from livehub.domain.room import Room, RoomEvent, RoomStatus, now_ms
from livehub.domain.room_hub import RoomHub
from livehub.domain.service import RoomService
from livehub.domain.signaling import MAX_ID_LENGTH, ProtocolError, Signaling

#: seconds a mute lasts at most, and slow mode's longest interval
MAX_MUTE_SECONDS = 7 * 24 * 3600
MAX_SLOW_MODE_SECONDS = 3600
#: a mute without ``seconds`` lasts this long
DEFAULT_MUTE_SECONDS = 300
#: moderation messages of a room's hosts (on one node): a burst, then a rate per second
MODERATION_BURST = 20
MODERATION_RATE_PER_S = 2.0
#: rooms whose moderation budget is tracked at most (a forgotten one starts full again)
MAX_BUDGETS = 10_000


def _seconds(message: dict[str, Any], *, low: int, high: int, default: int | None) -> int:
    value = message.get("seconds", default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ProtocolError(
            "invalid_seconds", f"Field 'seconds' must be an integer from {low} to {high}"
        )
    return value


class Moderation:
    def __init__(
        self,
        signaling: Signaling,
        rooms: RoomService,
        hub: RoomHub,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], int] = now_ms,
    ) -> None:
        self._signaling = signaling
        self._rooms = rooms
        self._hub = hub
        self._clock = clock
        self._wall_clock = wall_clock
        #: (room id, peer id) -> when a member of this node last chatted (monotonic), oldest
        #: first
        self._last_chat: dict[tuple[str, str], float] = {}
        #: room id -> (tokens, when last counted) of its hosts' moderation messages, least
        #: recently used first
        self._budgets: dict[str, tuple[float, float]] = {}
        signaling.register("chat-delete", self._delete)
        signaling.register("mute", self._mute)
        signaling.register("unmute", self._unmute)
        signaling.register("slow-mode", self._slow_mode)
        signaling.chat_checks.append(self.check_chat)
        signaling.join_extras.append(self._joined)

    # -- chat lines -----------------------------------------------------------------------

    def check_chat(self, peer: Peer, room: Room) -> dict[str, Any]:
        """Refuse a muted member's line, or a non-host's within slow mode; the line's id."""
        mutes = room.moderation.get("mutes") or {}
        until = mutes.get(peer.id)
        if isinstance(until, int) and until > self._wall_clock():
            raise ProtocolError("muted", f"A host muted you until {until} (epoch ms)")
        key = (room.id, peer.id)
        now = self._clock()
        slow = room.moderation.get("slowMode") or 0
        if slow and peer.roles.get(room.id) != "host":
            last = self._last_chat.get(key)
            if last is not None and now - last < slow:
                wait = max(1, int(slow - (now - last) + 0.999))
                raise ProtocolError(
                    "slow_mode", f"Slow mode: one chat line every {slow} s (wait {wait} s)"
                )
        self._chatted(key, now)
        return {"id": secrets.token_urlsafe(9)}

    def _chatted(self, key: tuple[str, str], now: float) -> None:
        """Note a member's chat line. Kept through a leave and a join again (or slow mode
        would end with them) until no slow mode can be longer: oldest first, so what has
        lapsed is dropped from the front."""
        chats = self._last_chat
        chats.pop(key, None)
        chats[key] = now
        horizon = now - MAX_SLOW_MODE_SECONDS
        while True:  # each entry is dropped once: O(1) per line, amortized
            oldest = next(iter(chats))
            if chats[oldest] >= horizon:
                break
            del chats[oldest]

    def _joined(self, peer: Peer, room: Room, message: dict[str, Any]) -> dict[str, Any]:
        return {"slowMode": room.moderation.get("slowMode") or 0}

    # -- host actions ---------------------------------------------------------------------

    def _require_host(self, peer: Peer, room_id: str) -> None:
        """The sender is the room's host (or ``forbidden``), within the room's budget of
        moderation messages (or ``rate_limited``)."""
        self._signaling.require_host(peer, room_id)
        now = self._clock()
        budgets = self._budgets
        tokens, last = budgets.pop(room_id, (MODERATION_BURST, now))
        tokens = min(MODERATION_BURST, tokens + (now - last) * MODERATION_RATE_PER_S)
        if tokens < 1:
            budgets[room_id] = (tokens, now)
            raise ProtocolError(
                "rate_limited", "Too many moderation messages in this room: slow down"
            )
        budgets[room_id] = (tokens - 1, now)
        if len(budgets) > MAX_BUDGETS:
            refill = MODERATION_BURST / MODERATION_RATE_PER_S
            for key, (_, at) in list(budgets.items()):  # full again: the same as forgotten
                if now - at >= refill:
                    del budgets[key]
            while len(budgets) > MAX_BUDGETS:
                del budgets[next(iter(budgets))]

    async def _delete(self, peer: Peer, message: dict[str, Any], room_id: str) -> None:
        self._require_host(peer, room_id)
        chat_id = message.get("id")
        if not isinstance(chat_id, str) or not chat_id or len(chat_id) > MAX_ID_LENGTH:
            raise ProtocolError("invalid_id", "Field 'id' must be the id of a chat line")
        self._hub.broadcast(room_id, {"type": "chat-deleted", "roomId": room_id, "id": chat_id})

    async def _target(self, peer: Peer, message: dict[str, Any], room_id: str) -> str:
        """The member a host names in ``peerId`` (on any node). The sender is checked first:
        reading the room's members (every node's, from Redis in cluster mode) for anyone who
        asks would let any connection make its node read any room's member list."""
        self._require_host(peer, room_id)
        await self._hub.load(room_id)
        target = message.get("peerId")
        if (
            not isinstance(target, str)
            or target == peer.id
            or not any(d["peerId"] == target for d in self._hub.describe_members(room_id))
        ):
            raise ProtocolError("peer_not_found", "No such peer in this room")
        return target

    async def _mute(self, peer: Peer, message: dict[str, Any], room_id: str) -> None:
        target = await self._target(peer, message, room_id)
        seconds = _seconds(message, low=1, high=MAX_MUTE_SECONDS, default=DEFAULT_MUTE_SECONDS)
        until = self._wall_clock() + seconds * 1000

        def decide(room: Room) -> list[RoomEvent] | None:
            if room.status is RoomStatus.ENDED:
                raise RoomEnded(room_id)  # chat is closed: nothing to mute
            now = self._wall_clock()
            mutes = {
                p: t
                for p, t in (room.moderation.get("mutes") or {}).items()
                if isinstance(t, int) and t > now  # expired mutes are dropped on every write
            }
            mutes[target] = until
            room.moderation["mutes"] = mutes
            return []

        await self._rooms.update(room_id, decide)
        notice = {
            "type": "muted",
            "roomId": room_id,
            "peerId": target,
            "until": until,
            "by": peer.id,
        }
        self._hub.send_to(room_id, target, notice) or await self._hub.send_elsewhere(
            room_id, target, notice
        )

    async def _unmute(self, peer: Peer, message: dict[str, Any], room_id: str) -> None:
        target = await self._target(peer, message, room_id)

        def decide(room: Room) -> list[RoomEvent] | None:
            mutes = room.moderation.get("mutes") or {}
            if target not in mutes:
                return None
            del mutes[target]
            room.moderation["mutes"] = mutes
            return []

        await self._rooms.update(room_id, decide)
        notice = {"type": "unmuted", "roomId": room_id, "peerId": target, "by": peer.id}
        self._hub.send_to(room_id, target, notice) or await self._hub.send_elsewhere(
            room_id, target, notice
        )

    async def _slow_mode(self, peer: Peer, message: dict[str, Any], room_id: str) -> None:
        self._require_host(peer, room_id)
        seconds = _seconds(message, low=0, high=MAX_SLOW_MODE_SECONDS, default=None)

        def decide(room: Room) -> list[RoomEvent] | None:
            if room.status is RoomStatus.ENDED:
                raise RoomEnded(room_id)
            if (room.moderation.get("slowMode") or 0) == seconds:
                return None
            if seconds:
                room.moderation["slowMode"] = seconds
            else:
                room.moderation.pop("slowMode", None)
            return []

        await self._rooms.update(room_id, decide)
        self._hub.broadcast(
            room_id, {"type": "room-settings", "roomId": room_id, "slowMode": seconds}
        )
