"""Chat moderation: server-assigned chat ids, deleting a line, muting a member, slow mode.

Protocol (``docs/protocol.md``): hosts send ``chat-delete`` (every member hears
``chat-deleted``), ``mute`` / ``unmute`` (the member's chat lines are refused with ``muted``
until then; it hears ``muted`` / ``unmuted``) and ``slow-mode`` (every member hears
``room-settings``; a non-host's chat line within ``slowMode`` seconds of its previous one is
refused with ``slow_mode``). A viewer's moderation message gets ``forbidden``.

Mutes and slow mode are stored with the room (``Room.moderation``), so every node applies
them, whichever node the host is connected to; each chat line reads the room anyway (a chat in
an ended room is refused). When a member last chatted is known to its own node, which is where
its chat lines arrive.

Slow mode follows a member the same way, through a reconnect: when a viewer that chatted within
the interval leaves, its last line's time is kept under its address and (private room) viewer
token, on its node at once and with the room (``slowKeys``, digests: ``{key: epoch ms}``, at most
:data:`MAX_SLOW_KEYS`), and a connection that joins with one of those keys inherits it: a reload
does not reset slow mode. Members already in the room are not affected (behind one NAT address,
two viewers chat side by side); one who joins from that address within the interval waits out
the rest of it once.

A mute names a peer id, that is one connection; it also follows the muted member's address (its
:func:`~livehub.domain.addresses.address_key`) and, in a private room, the viewer token it
joined with, as a kick ban does: a muted member that reconnects (or another connection from that
address or with that token) is muted again when it joins, under its new peer id, and hears
``muted``. Those keys are known only to the member's own node: they are stored with the room
(``mutedKeys``, digests: ``{key: {"peer", "until", "by"}}``) when the host's node is the
member's, else by the member's node when it leaves while muted. ``unmute`` of the new peer id
lifts it (and the keys that carried it over).

A host's moderation messages are limited per room (:data:`MODERATION_BURST` at once, then
:data:`MODERATION_RATE_PER_S`; on each node): anyone may create a room and so be a host, and each
``mute``, ``unmute`` or ``slow-mode`` writes the room to the store and tells members, each
``chat-delete`` tells every member. Only a host's messages count, so nobody else can spend a
room's budget.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Coroutine
from typing import Any

from livehub.domain.errors import LivehubError, RoomEnded
from livehub.domain.peer import Peer
from livehub.domain.room import Room, RoomEvent, RoomStatus, now_ms
from livehub.domain.room_hub import RoomHub
from livehub.domain.service import RoomService
from livehub.domain.signaling import MAX_ID_LENGTH, ProtocolError, Signaling
from livehub.domain.tokens import hash_token
from livehub.domain.viewer_tokens import ban_key
from livehub.tasks import drain

log = logging.getLogger(__name__)

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
#: departed chatters' keys a room keeps for slow mode, the latest lines' (about 45 kB of JSON)
MAX_SLOW_KEYS = 500


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
        #: first (nearly: an inherited time goes to the end); (room id, mute key) -> the last
        #: line of a member of this node that left with that key
        self._last_chat: dict[tuple[str, str], float] = {}
        #: room id -> (tokens, when last counted) of its hosts' moderation messages, least
        #: recently used first
        self._budgets: dict[str, tuple[float, float]] = {}
        #: (room id, peer id) -> the mute keys (address, viewer token) of a viewer of this node
        self._keys: dict[tuple[str, str], tuple[str, ...]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        signaling.register("chat-delete", self._delete)
        signaling.register("mute", self._mute)
        signaling.register("unmute", self._unmute)
        signaling.register("slow-mode", self._slow_mode)
        signaling.chat_checks.append(self.check_chat)
        signaling.join_extras.append(self._joined)
        signaling.join_follow_ups.append(self._muted_again)
        signaling.subscribe_presence(self._presence)

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
        if peer.roles.get(room.id) != "host":  # hosts (the owner token) are never muted again
            keys = []
            if peer.address:
                keys.append("address:" + hash_token(peer.address))
            token_key = ban_key(room.id, message) if room.private else None
            if token_key is not None:
                keys.append(token_key)
            if keys:
                self._keys[(room.id, peer.id)] = tuple(keys)
                if room.moderation.get("slowMode"):
                    self._inherit(peer, room, keys)
        return {"slowMode": room.moderation.get("slowMode") or 0}

    # -- slow mode that follows a member ------------------------------------------------------

    def _inherit(self, peer: Peer, room: Room, keys: list[str]) -> None:
        """A joiner whose address or token left the room after a chat line within the slow
        mode interval: that line counts as its own."""
        now = self._clock()
        wall = self._wall_clock()
        stored = room.moderation.get("slowKeys") or {}
        latest: float | None = None
        for key in keys:
            here = self._last_chat.get((room.id, key))  # left from this node
            if here is not None and (latest is None or here > latest):
                latest = here
            at = stored.get(key)  # left from any node
            if isinstance(at, int) and not isinstance(at, bool):
                there = now - (wall - at) / 1000
                if latest is None or there > latest:
                    latest = there
        if latest is None or now - latest >= room.moderation["slowMode"]:
            return
        self._keep_later((room.id, peer.id), latest)

    def _keep_later(self, entry: tuple[str, str], at: float) -> None:
        """``entry``'s last chat line was at ``at``, unless a later one is known."""
        if self._last_chat.get(entry, at - 1) < at:
            self._last_chat[entry] = at

    def _departed(self, room_id: str, peer_id: str, keys: tuple[str, ...]) -> None:
        """A viewer of this node left: its last chat line, if within the slow mode interval,
        is kept under its keys (on this node, and with the room for the others)."""
        last = self._last_chat.get((room_id, peer_id))
        if last is None:
            return
        for key in keys:
            self._keep_later((room_id, key), last)
        room = self._signaling.known.peek(room_id)
        slow = (room.moderation.get("slowMode") or 0) if room is not None else 0
        if room is not None and (not slow or self._clock() - last >= slow):
            return
        at = self._wall_clock() - int((self._clock() - last) * 1000)
        self._spawn(self._store_slow(room_id, keys, at))

    async def _store_slow(self, room_id: str, keys: tuple[str, ...], at: int) -> None:
        def decide(room: Room) -> list[RoomEvent] | None:
            slow = room.moderation.get("slowMode") or 0
            now = self._wall_clock()
            if not slow or now - at >= slow * 1000:
                return None
            kept = {
                k: t
                for k, t in (room.moderation.get("slowKeys") or {}).items()
                if isinstance(t, int) and now - t < slow * 1000
            }
            if all(kept.get(k, at - 1) >= at for k in keys):
                return None
            for key in keys:
                kept[key] = max(kept.get(key, at), at)
            if len(kept) > MAX_SLOW_KEYS:
                kept = dict(sorted(kept.items(), key=lambda e: e[1])[-MAX_SLOW_KEYS:])
            room.moderation["slowKeys"] = kept
            return []

        await self._rooms.update(room_id, decide)

    # -- mutes that follow a member ---------------------------------------------------------

    def _live(self, room: Room, now: int) -> tuple[dict[str, int], dict[str, dict[str, Any]]]:
        """The room's current mutes and mute keys (what has ended is dropped on every write)."""
        mutes = {
            p: t
            for p, t in (room.moderation.get("mutes") or {}).items()
            if isinstance(t, int) and t > now
        }
        keys = {
            k: e
            for k, e in (room.moderation.get("mutedKeys") or {}).items()
            if isinstance(e, dict) and isinstance(e.get("until"), int) and e["until"] > now
        }
        return mutes, keys

    @staticmethod
    def _store(room: Room, mutes: dict[str, int], keys: dict[str, dict[str, Any]]) -> None:
        for field, value in (("mutes", mutes), ("mutedKeys", keys)):
            if value:
                room.moderation[field] = value
            else:
                room.moderation.pop(field, None)

    def _muted_again(
        self, peer: Peer, room: Room, message: dict[str, Any]
    ) -> Coroutine[Any, Any, None] | None:
        """A joiner whose address or token a mute follows is muted under its peer id."""
        keys = self._keys.get((room.id, peer.id))
        muted = room.moderation.get("mutedKeys")
        if not keys or not muted:
            return None
        now = self._wall_clock()
        mutes, live = self._live(room, now)
        found = [live[k] for k in keys if k in live]
        if not found or peer.id in mutes:
            return None
        entry = max(found, key=lambda e: int(e["until"]))
        return self._carry_over(peer, room.id, keys, int(entry["until"]), entry.get("by"))

    async def _carry_over(
        self, peer: Peer, room_id: str, keys: tuple[str, ...], until: int, by: Any
    ) -> None:
        def decide(room: Room) -> list[RoomEvent] | None:
            if room.status is RoomStatus.ENDED:
                return None
            mutes, live = self._live(room, self._wall_clock())
            mutes[peer.id] = until
            for key in keys:
                live[key] = {"peer": peer.id, "until": until, "by": by}
            self._store(room, mutes, live)
            return []

        _, changed = await self._rooms.update(room_id, decide)
        if changed:
            notice = {"type": "muted", "roomId": room_id, "peerId": peer.id, "until": until}
            self._hub.send(peer, {**notice, "by": by} if isinstance(by, str) else notice)

    def _presence(self, room_id: str, peer_id: str, role: str | None, joined: bool) -> None:
        """A viewer of this node left: if it is muted, its keys are stored (if they are not)."""
        if joined:
            return
        keys = self._keys.pop((room_id, peer_id), None)
        if keys is None:
            return
        self._departed(room_id, peer_id, keys)
        room = self._signaling.known.peek(room_id)
        if room is not None and not self._unrecorded(room, peer_id, keys):
            return
        self._spawn(self._record(room_id, peer_id, keys))

    def _unrecorded(self, room: Room, peer_id: str, keys: tuple[str, ...]) -> bool:
        """Whether ``peer_id`` is muted in ``room`` and its keys do not say so yet."""
        mutes, live = self._live(room, self._wall_clock())
        if peer_id not in mutes:
            return False
        return any(live.get(k, {}).get("peer") != peer_id for k in keys)

    async def _record(self, room_id: str, peer_id: str, keys: tuple[str, ...]) -> None:
        if not self._unrecorded(await self._signaling.known.get(room_id), peer_id, keys):
            return

        def decide(room: Room) -> list[RoomEvent] | None:
            mutes, live = self._live(room, self._wall_clock())
            until = mutes.get(peer_id)
            if until is None:
                return None
            by = (room.moderation.get("mutedBy") or {}).get(peer_id)
            for key in keys:
                live[key] = {"peer": peer_id, "until": until, "by": by}
            self._store(room, mutes, live)
            return []

        await self._rooms.update(room_id, decide)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(self._guard(coroutine))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _guard(coroutine: Coroutine[Any, Any, None]) -> None:
        try:
            await coroutine
        except LivehubError as exc:  # the room was deleted meanwhile, the store unreachable
            log.info("a departed member's moderation keys were not stored: %s", exc.message)
        except Exception:
            log.exception("a departed member's moderation keys were not stored")

    async def close(self, budget: float) -> None:
        """The app's shutdown, before the store closes: the key writes in flight (the members
        the shutdown disconnected) get ``budget`` seconds to land; what is left is cancelled."""
        late = await drain(list(self._tasks), budget)
        if late:
            log.warning("%d moderation key writes cancelled at shutdown", late)

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

        keys = self._keys.get((room_id, target), ())  # a viewer of this node: known here

        def decide(room: Room) -> list[RoomEvent] | None:
            if room.status is RoomStatus.ENDED:
                raise RoomEnded(room_id)  # chat is closed: nothing to mute
            mutes, live = self._live(room, self._wall_clock())
            mutes[target] = until
            for key in keys:
                live[key] = {"peer": target, "until": until, "by": peer.id}
            self._store(room, mutes, live)
            # who muted whom, for the member's node to store with its keys when it leaves
            muted_by = room.moderation.get("mutedBy") or {}
            muted_by = {p: h for p, h in muted_by.items() if p in mutes}
            muted_by[target] = peer.id
            room.moderation["mutedBy"] = muted_by
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
            keys = room.moderation.get("mutedKeys") or {}
            carried = [
                k for k, e in keys.items() if isinstance(e, dict) and e.get("peer") == target
            ]
            if target not in mutes and not carried:
                return None
            mutes.pop(target, None)
            for key in carried:  # the mute does not come back with its next connection
                del keys[key]
            self._store(room, mutes, keys)
            muted_by = {
                p: h for p, h in (room.moderation.get("mutedBy") or {}).items() if p in mutes
            }
            if muted_by:
                room.moderation["mutedBy"] = muted_by
            else:
                room.moderation.pop("mutedBy", None)
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
                room.moderation.pop("slowKeys", None)
            return []

        await self._rooms.update(room_id, decide)
        self._hub.broadcast(
            room_id, {"type": "room-settings", "roomId": room_id, "slowMode": seconds}
        )
