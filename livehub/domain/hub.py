"""The in-process hub: which connections are in which room (:class:`Hub`, the embedded mode's
:class:`~livehub.domain.room_hub.RoomHub`, and the local part of the cluster one).

Model: ``rooms`` maps a room id to an insertion-ordered dict ``peer id -> Peer``; each
:class:`Peer` knows its rooms. Membership changes are plain synchronous dict operations, an
emptied room is deleted, and ``viewerCount`` is by definition ``len(rooms[room_id])``: the
number of distinct connections joined, whatever order joins, leaves and disconnects come in.

How a message reaches the members (one encoding, batches, order, slow peers) is
:mod:`livehub.domain.delivery`'s business; the hub encodes once and tells it who is a member.

Viewer-count pushes (coalesced, big rooms paced) are :mod:`livehub.domain.viewer_counts`';
the exact count is always :meth:`Hub.count`.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from livehub.domain.delivery import BATCH_PER_MEMBER, Delivery
from livehub.domain.peer import Peer
from livehub.domain.presence import PresenceListener
from livehub.domain.room_hub import HubStats
from livehub.domain.viewer_counts import ViewerCounts


class Encoder(Protocol):
    def __call__(self, message: dict[str, Any]) -> bytes: ...


class Hub:
    def __init__(
        self,
        encode: Encoder,
        call_soon: Callable[[Callable[[], None]], object],
        call_later: Callable[[float, Callable[[], None]], object],
        *,
        max_buffer: int = 1024 * 1024,
        count_interval: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
        batch_per_member: float = BATCH_PER_MEMBER,
        count_of: Callable[[str], int] | None = None,
    ) -> None:
        """``count_of`` is the count pushed to the members (default :meth:`count`: this
        process's members); a cluster hub that holds this hub passes its cluster-wide count,
        so the pacing of count pushes is this one in every mode."""
        self.rooms: dict[str, dict[str, Peer]] = {}
        self.peers: dict[str, Peer] = {}
        self.stats = HubStats()
        self._encode = encode
        self._delivery = Delivery(
            self.rooms,
            self.stats,
            call_soon,
            call_later,
            max_buffer=max_buffer,
            clock=clock,
            batch_per_member=batch_per_member,
        )
        #: room id -> peer id -> the member's description, kept up to date by join/leave
        self._described: dict[str, dict[str, dict[str, str]]] = {}
        #: room id -> peer id -> the description of a member that is a host
        self._hosts: dict[str, dict[str, dict[str, str]]] = {}
        self._counts = ViewerCounts(
            self.rooms,
            count_of or self.count,
            self.broadcast,
            call_later,
            interval=count_interval,
            clock=clock,
        )

    # -- membership -----------------------------------------------------------------------

    def connect(self, peer: Peer) -> None:
        self.peers[peer.id] = peer
        self.stats.connections = len(self.peers)

    def disconnect(self, peer: Peer) -> list[str]:
        """Remove a peer from every room; returns the rooms it was in."""
        self._delivery.closed(peer)  # nothing more is delivered to it
        left = [room_id for room_id in list(peer.rooms) if self.leave(peer, room_id)]
        self.peers.pop(peer.id, None)
        self.stats.connections = len(self.peers)
        return left

    def join(self, peer: Peer, room_id: str, name: str, role: str) -> bool:
        """Add a peer to a room. False if it was already a member (counted once)."""
        members = self.rooms.setdefault(room_id, {})
        peer.names[room_id] = name
        peer.roles[room_id] = role
        described = self._described.setdefault(room_id, {})
        description = described[peer.id] = {"peerId": peer.id, "name": name, "role": role}
        if role == "host":
            self._hosts.setdefault(room_id, {})[peer.id] = description
        elif room_id in self._hosts:
            self._drop_host(room_id, peer.id)
        if peer.id in members:
            return False
        members[peer.id] = peer
        self._delivery.joined(peer, room_id)
        self.count_changed(room_id)
        return True

    def leave(self, peer: Peer, room_id: str) -> bool:
        members = self.rooms.get(room_id)
        if members is None or peer.id not in members:
            return False
        self._delivery.leaving(peer, room_id)
        del members[peer.id]
        if room_id in self._hosts:
            self._drop_host(room_id, peer.id)
        peer.names.pop(room_id, None)
        peer.roles.pop(room_id, None)  # its rooms are its roles' keys
        if members:
            del self._described[room_id][peer.id]
        else:
            del self.rooms[room_id]
            del self._described[room_id]
        self.count_changed(room_id)
        return True

    def is_member(self, peer: Peer, room_id: str) -> bool:
        return room_id in peer.roles

    def count(self, room_id: str) -> int:
        members = self.rooms.get(room_id)
        return len(members) if members else 0

    def members(self, room_id: str) -> Iterator[Peer]:
        return iter(list(self.rooms.get(room_id, {}).values()))

    def describe_members(self, room_id: str) -> list[dict[str, str]]:
        """``[member.describe(room_id) for member in members(room_id)]``, without building
        the descriptions again on every join (the dicts are shared: do not modify them)."""
        return list(self._described.get(room_id, {}).values())

    def describe_hosts(self, room_id: str) -> list[dict[str, str]]:
        """The descriptions of the room's hosts, in join order (shared dicts, as above)."""
        hosts = self._hosts.get(room_id)
        return list(hosts.values()) if hosts else []

    def page_members(self, room_id: str, limit: int, offset: int) -> list[dict[str, str]]:
        """At most ``limit`` member descriptions from ``offset`` on, in join order."""
        described = self._described.get(room_id)
        if not described:
            return []
        return list(itertools.islice(described.values(), offset, offset + limit))

    def _drop_host(self, room_id: str, peer_id: str) -> None:
        hosts = self._hosts[room_id]
        hosts.pop(peer_id, None)
        if not hosts:
            del self._hosts[room_id]

    def member(self, room_id: str, peer_id: str) -> Peer | None:
        return self.rooms.get(room_id, {}).get(peer_id)

    # -- sending --------------------------------------------------------------------------

    def send(self, peer: Peer, message: dict[str, Any]) -> None:
        frame = self._encode(message)  # first: a message that cannot be encoded sends nothing
        self._delivery.send(peer, frame)

    def send_to(self, room_id: str, peer_id: str, message: dict[str, Any]) -> bool:
        target = self.member(room_id, peer_id)
        if target is None:
            return False
        self.send(target, message)
        return True

    def broadcast(self, room_id: str, message: dict[str, Any], exclude: Peer | None = None) -> int:
        """Send one message to every member but ``exclude``, encoded once. A small room's
        members get it in their own queues at once; a big room's backlog takes it in O(1) and
        the flush delivers it (:mod:`livehub.domain.delivery`). Returns the number of recipients."""
        members = self.rooms.get(room_id)
        if not members:
            return 0
        return self._delivery.fan_out(room_id, members, self._encode(message), exclude)

    def broadcast_frame(self, room_id: str, frame: bytes, exclude: Peer | None = None) -> int:
        """:meth:`broadcast` of a message already encoded (one from another node)."""
        members = self.rooms.get(room_id)
        if not members:
            return 0
        return self._delivery.fan_out(room_id, members, frame, exclude)

    def send_frame(self, peer: Peer, frame: bytes) -> None:
        """:meth:`send` of a message already encoded (one from another node)."""
        self._delivery.send(peer, frame)

    def broadcast_local(
        self, room_id: str, message: dict[str, Any], exclude: Peer | None = None
    ) -> int:
        return self.broadcast(room_id, message, exclude)

    def announce_room(self, room_id: str, make: Callable[[], dict[str, Any]]) -> None:
        if room_id in self.rooms:
            self.broadcast(room_id, make())

    def hears(self, room_id: str) -> bool:
        return True

    def touch_room(self, room_id: str) -> None:
        return None

    async def send_elsewhere(self, room_id: str, peer_id: str, message: dict[str, Any]) -> bool:
        return False

    async def kick_elsewhere(self, room_id: str, peer_id: str, by: str) -> bool:
        return False

    async def load(self, room_id: str) -> None:
        return None

    async def prefetch(self, room_ids: list[str]) -> None:
        return None

    #: no bus: never backed up
    can_back_up = False

    def backed_up(self) -> bool:
        return False

    async def writable(self) -> None:
        return None

    def listen(self, listener: PresenceListener) -> None:
        return None

    def flush(self) -> None:
        """Give every peer its frames of this iteration, one write per peer."""
        self._delivery.flush()

    # -- coalesced viewer counts -----------------------------------------------------------

    def count_changed(self, room_id: str) -> None:
        """The room's count may have changed: push it (coalesced, paced) to its members."""
        self._counts.changed(room_id)

    def push_counts(self) -> None:
        """Push the counts that changed to the rooms' members on this process (each process
        tells its own members), big rooms paced (:mod:`livehub.domain.viewer_counts`)."""
        self._counts.push()
