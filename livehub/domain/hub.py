"""The signaling hub: which connections are in which room, and fan-out to them.

Model: ``rooms`` maps a room id to an insertion-ordered dict ``peer id -> Peer``; each
:class:`Peer` knows its rooms. Membership changes are plain synchronous dict operations, an
emptied room is deleted, and ``viewerCount`` is by definition ``len(rooms[room_id])``: the
number of distinct connections joined, whatever order joins, leaves and disconnects come in.

Fan-out encodes a message once (JSON and WebSocket frame) and appends the same bytes to each
recipient's outbound buffer; one callback per loop iteration flushes every dirty buffer with a
single write, so a burst of relayed messages costs one syscall per recipient, not per message.
A recipient whose transport buffer stays above its limit is disconnected (1013) and never
delays the others. Viewer-count pushes are coalesced per room per interval.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterator
from typing import Any, Protocol

log = logging.getLogger(__name__)

#: close code for a recipient that cannot keep up (RFC 6455 "try again later")
CLOSE_TRY_AGAIN_LATER = 1013


class Sink(Protocol):
    """Where a peer's encoded frames go: the WebSocket transport, adapted by the API layer."""

    def write(self, frames: list[bytes]) -> None: ...

    def buffered(self) -> int: ...

    def abort(self, code: int, reason: str) -> None: ...


class Encoder(Protocol):
    def __call__(self, message: dict[str, Any]) -> bytes: ...


class TokenBucket:
    """Per-connection message rate limit."""

    __slots__ = ("_clock", "_last", "_rate", "_tokens", "burst")

    def __init__(self, rate: float, burst: int, clock: Callable[[], float]) -> None:
        self._rate = rate
        self.burst = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._last = clock()

    def take(self) -> bool:
        now = self._clock()
        tokens = min(self.burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if tokens < 1.0:
            self._tokens = tokens
            return False
        self._tokens = tokens - 1.0
        return True


class Peer:
    """One signaling connection."""

    __slots__ = (
        "closed",
        "id",
        "names",
        "out",
        "out_bytes",
        "rate",
        "roles",
        "rooms",
        "sink",
    )

    def __init__(self, sink: Sink, rate: TokenBucket, peer_id: str | None = None) -> None:
        self.id = peer_id or secrets.token_urlsafe(9)
        self.sink = sink
        self.rate = rate
        self.rooms: set[str] = set()
        self.names: dict[str, str] = {}
        self.roles: dict[str, str] = {}
        self.out: list[bytes] = []
        self.out_bytes = 0
        self.closed = False

    def describe(self, room_id: str) -> dict[str, str]:
        return {
            "peerId": self.id,
            "name": self.names.get(room_id, ""),
            "role": self.roles.get(room_id, "viewer"),
        }


class HubStats:
    __slots__ = ("connections", "dropped", "relayed", "slow_disconnects")

    def __init__(self) -> None:
        self.connections = 0
        self.relayed = 0
        self.dropped = 0
        self.slow_disconnects = 0


class Hub:
    def __init__(
        self,
        encode: Encoder,
        call_soon: Callable[[Callable[[], None]], object],
        call_later: Callable[[float, Callable[[], None]], object],
        *,
        max_buffer: int = 1024 * 1024,
        count_interval: float = 0.2,
    ) -> None:
        self.rooms: dict[str, dict[str, Peer]] = {}
        self.peers: dict[str, Peer] = {}
        self.stats = HubStats()
        self._encode = encode
        self._call_soon = call_soon
        self._call_later = call_later
        self._max_buffer = max_buffer
        self._count_interval = count_interval
        self._dirty: list[Peer] = []
        self._flush_scheduled = False
        self._count_dirty: set[str] = set()
        self._count_scheduled = False

    # -- membership -----------------------------------------------------------------------

    def connect(self, peer: Peer) -> None:
        self.peers[peer.id] = peer
        self.stats.connections = len(self.peers)

    def disconnect(self, peer: Peer) -> list[str]:
        """Remove a peer from every room; returns the rooms it was in."""
        left = [room_id for room_id in list(peer.rooms) if self.leave(peer, room_id)]
        self.peers.pop(peer.id, None)
        self.stats.connections = len(self.peers)
        peer.closed = True
        peer.out.clear()
        peer.out_bytes = 0
        return left

    def join(self, peer: Peer, room_id: str, name: str, role: str) -> bool:
        """Add a peer to a room. False if it was already a member (counted once)."""
        members = self.rooms.setdefault(room_id, {})
        peer.names[room_id] = name
        peer.roles[room_id] = role
        if peer.id in members:
            return False
        members[peer.id] = peer
        peer.rooms.add(room_id)
        self._count_changed(room_id)
        return True

    def leave(self, peer: Peer, room_id: str) -> bool:
        members = self.rooms.get(room_id)
        if members is None or members.pop(peer.id, None) is None:
            return False
        peer.rooms.discard(room_id)
        peer.names.pop(room_id, None)
        peer.roles.pop(room_id, None)
        if not members:
            del self.rooms[room_id]
        self._count_changed(room_id)
        return True

    def is_member(self, peer: Peer, room_id: str) -> bool:
        return room_id in peer.rooms

    def count(self, room_id: str) -> int:
        members = self.rooms.get(room_id)
        return len(members) if members else 0

    def members(self, room_id: str) -> Iterator[Peer]:
        return iter(list(self.rooms.get(room_id, {}).values()))

    def member(self, room_id: str, peer_id: str) -> Peer | None:
        return self.rooms.get(room_id, {}).get(peer_id)

    # -- sending --------------------------------------------------------------------------

    def send(self, peer: Peer, message: dict[str, Any]) -> None:
        self._enqueue(peer, self._encode(message))

    def broadcast(self, room_id: str, message: dict[str, Any], exclude: Peer | None = None) -> int:
        """Send one message to every member but ``exclude``; encoded once. Returns recipients."""
        members = self.rooms.get(room_id)
        if not members:
            return 0
        frame = self._encode(message)
        sent = 0
        for peer in list(members.values()):
            if peer is not exclude:
                self._enqueue(peer, frame)
                sent += 1
        return sent

    def _enqueue(self, peer: Peer, frame: bytes) -> None:
        if peer.closed:
            self.stats.dropped += 1
            return
        if not peer.out:
            self._dirty.append(peer)
            if not self._flush_scheduled:
                self._flush_scheduled = True
                self._call_soon(self.flush)
        peer.out.append(frame)
        peer.out_bytes += len(frame)
        if peer.out_bytes > self._max_buffer:
            self._too_slow(peer)

    def flush(self) -> None:
        """Write every dirty peer's buffered frames, one write per peer."""
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, []
        relayed = 0
        for peer in dirty:
            if peer.closed or not peer.out:
                continue
            frames, peer.out = peer.out, []
            peer.out_bytes = 0
            relayed += len(frames)
            try:
                peer.sink.write(frames)
            except Exception:
                log.debug("write to peer %s failed", peer.id, exc_info=True)
                self._too_slow(peer)
                continue
            if peer.sink.buffered() > self._max_buffer:
                self._too_slow(peer)
        self.stats.relayed += relayed

    def _too_slow(self, peer: Peer) -> None:
        if peer.closed:
            return
        self.stats.slow_disconnects += 1
        self.stats.dropped += len(peer.out)
        log.info("disconnecting peer %s: outbound queue full", peer.id)
        peer.closed = True
        peer.out.clear()
        peer.out_bytes = 0
        peer.sink.abort(CLOSE_TRY_AGAIN_LATER, "outbound queue full")

    # -- coalesced viewer counts -----------------------------------------------------------

    def _count_changed(self, room_id: str) -> None:
        self._count_dirty.add(room_id)
        if not self._count_scheduled:
            self._count_scheduled = True
            self._call_later(self._count_interval, self.push_counts)

    def push_counts(self) -> None:
        self._count_scheduled = False
        dirty, self._count_dirty = self._count_dirty, set()
        for room_id in dirty:
            self.broadcast(
                room_id,
                {"type": "viewer-count", "roomId": room_id, "viewerCount": self.count(room_id)},
            )
