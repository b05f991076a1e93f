"""The signaling hub of one node in a cluster: local fan-out as in one process, plus the bus.

Model: the node's own connections live in the :class:`~livehub.domain.hub.Hub` it holds
(``local``), and fan-out to them, the order of frames, slow consumers and the pacing of
viewer-count pushes are exactly the in-process ones (the local hub pushes the cluster-wide count
it is given: one pacing for both modes). What crosses nodes goes through the
:class:`~livehub.domain.bus.Bus`, which keeps every node's calls in order:

- a broadcast is encoded once, delivered here, and handed to the bus once (the bus never echoes
  it back); other nodes deliver the same bytes to their members (:meth:`deliver_room`);
- a send to a peer of another node goes over the bus straight to that node, which this node's
  view of the room names (:meth:`deliver_peer`); a peer this node has not heard of yet (it
  joined a moment ago elsewhere) is looked up in the registry before the sender is told
  ``peer_not_found`` (:meth:`send_elsewhere`);
- a host's kick of a member on another node goes to that node as a notice (:meth:`kick_peer`),
  which removes the member and announces it as a local kick would;
- joins and leaves are mirrored to the bus, which keeps cluster presence. For each room with
  local members this node keeps the other nodes' members and their nodes (``_remote``,
  ``_homes``), so ``count``, ``describe_members`` and ``page_members`` stay synchronous. Each
  join or leave elsewhere arrives as a delta (:meth:`presence_delta`) applied in O(1); each
  node's deltas carry sequence numbers (``seq`` and the ``prev`` one in the room), and the last
  seq applied per node (``_seqs``) shows a missed delta. The room is read whole (a
  :class:`~livehub.domain.bus.Snapshot`: members and each node's seq) only when it becomes
  local, on a missed delta, on a new bus session and on a notice that a node's presence was
  rewritten (:meth:`presence_changed`); one read in flight per room, and deltas that come
  meanwhile wait and are replayed on the snapshot (those it holds already are skipped by
  seq). Rooms without local members are read when asked (:meth:`load`, :meth:`prefetch`);
- ``viewer-count`` and ``presence-mode`` are each node's own decision for its own members
  (pushed locally when the count changes, whoever changed it): no duplicates across nodes;
- a room change (``room-status``) is delivered here and sent to the other nodes as a notice
  (:meth:`announce_room`); each puts its own viewer count in (:meth:`room_changed`).

When the bus's session to the other nodes ends or starts again (Redis lost and back), every
local room is read again: counts are this node's own while the others cannot be reached, and
exact again once the bus has rebuilt presence.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import Callable
from typing import Any

from livehub.domain.bus import Bus, Member, PresenceDelta, Snapshot
from livehub.domain.hub import Encoder, Hub
from livehub.domain.peer import Peer
from livehub.domain.presence import PresenceListener
from livehub.domain.room_hub import HubStats
from livehub.tasks import cancel_and_wait

log = logging.getLogger(__name__)

#: the type of a room notice that only tells the other nodes a room was written (no member
#: hears it; their room caches forget the room)
TOUCHED = "room-touched"

#: snapshots of rooms without local members kept for views (reset beyond this many)
MAX_PEEKED = 4096


class ClusterHub:
    """:class:`~livehub.domain.hub.RoomHub` of one node: it holds the node's local
    :class:`Hub` (fan-out, order, slow consumers and the pacing of count pushes are that hub's,
    the same code as in one process) and adds what crosses nodes. It does not extend the hub:
    what the local hub does is never redone here."""

    def __init__(
        self,
        bus: Bus,
        encode: Encoder,
        call_soon: Callable[[Callable[[], None]], object],
        call_later: Callable[[float, Callable[[], None]], object],
        *,
        watch_interval: float = 0.25,
        **options: Any,
    ) -> None:
        #: this node's connections; its count pushes carry the cluster-wide count
        self.local = Hub(encode, call_soon, call_later, count_of=self.count, **options)
        self.bus = bus
        self._encode = encode
        self._watch_interval = watch_interval
        #: room with local members -> peer id -> description of a member on another node
        self._remote: dict[str, dict[str, dict[str, str]]] = {}
        #: room with local members -> the hosts of ``_remote`` (a join in a counted room lists
        #: the hosts: O(hosts), not a scan of every member)
        self._hosts: dict[str, dict[str, dict[str, str]]] = {}
        #: room with local members -> peer id of ``_remote`` -> its node
        self._homes: dict[str, dict[str, str]] = {}
        #: rooms without local members being read for a join or a view (one read at a time;
        #: True when it was read)
        self._loading: dict[str, asyncio.Future[bool]] = {}
        #: room with local members -> node -> its members in ``_homes`` (when none, a node's
        #: new run in the room has nothing of its old one to drop: no scan)
        self._held: dict[str, dict[str, int]] = {}
        #: room with local members -> node -> seq of its last presence message applied here
        self._seqs: dict[str, dict[str, int]] = {}
        #: deltas that came while the room is read whole, replayed on the snapshot
        self._queued: dict[str, list[PresenceDelta]] = {}
        #: rooms without local members, as last read: their other-node members and counts
        self._peeked: dict[str, dict[str, dict[str, str]]] = {}
        self._peeked_counts: dict[str, int] = {}
        self._refreshing: set[str] = set()
        self._stale: set[str] = set()
        #: rooms new here whose notices are not confirmed heard yet (their first read is not
        #: done: the bus subscribes to a room's notices before it writes the join)
        self._unheard: set[str] = set()
        self._listener: PresenceListener | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._watcher: asyncio.Task[None] | None = None
        bus.set_handler(self)

    @property
    def stats(self) -> HubStats:
        return self.local.stats

    @property
    def rooms(self) -> dict[str, dict[str, Peer]]:
        """Rooms with members on this node (their local members)."""
        return self.local.rooms

    @property
    def peers(self) -> dict[str, Peer]:
        return self.local.peers

    # -- life -------------------------------------------------------------------------------

    async def start(self) -> None:
        await self.bus.start()
        self._watcher = asyncio.create_task(self._watch(), name="livehub-cluster-hub")

    async def close(self) -> None:
        """After the WebSockets are closed (their leaves go out first)."""
        if self._watcher is not None:
            await cancel_and_wait(self._watcher)
        await cancel_and_wait(*self._tasks)
        await self.bus.close()

    async def _watch(self) -> None:
        """Read every local room again when the bus's session changes (lost or back)."""
        seen = (self.bus.healthy, self.bus.sessions)
        while True:
            await asyncio.sleep(self._watch_interval)
            now = (self.bus.healthy, self.bus.sessions)
            if now != seen:
                seen = now
                if self._listener is not None:
                    self._listener.rooms_unknown()
                for room_id in list(self.local.rooms):
                    self._refresh(room_id)

    # -- membership -------------------------------------------------------------------------

    def connect(self, peer: Peer) -> None:
        self.local.connect(peer)

    def disconnect(self, peer: Peer) -> list[str]:
        left = self.local.disconnect(peer)
        for room_id in left:
            self._left(peer, room_id)
        return left

    def join(self, peer: Peer, room_id: str, name: str, role: str) -> bool:
        new_room = room_id not in self.local.rooms
        added = self.local.join(peer, room_id, name, role)
        self.bus.join(room_id, peer.id, name, role)
        if new_room:
            self._remote[room_id] = self._peeked.pop(room_id, {})
            self._hosts[room_id] = _hosts_of(self._remote[room_id])
            self._homes[room_id] = {}
            self._held[room_id] = {}
            self._seqs[room_id] = {}
            self._peeked_counts.pop(room_id, None)
            self._unheard.add(room_id)
            self._refresh(room_id)  # after our join is written: nothing between is missed
        return added

    def leave(self, peer: Peer, room_id: str) -> bool:
        left = self.local.leave(peer, room_id)
        if left:
            self._left(peer, room_id)
        return left

    def _left(self, peer: Peer, room_id: str) -> None:
        self.bus.leave(room_id, peer.id)
        if room_id not in self.local.rooms:
            # no longer local: its count is the other nodes' members (a report of this leave
            # reads it), and its notices are no longer heard here (signaling forgets it)
            self._peek(room_id, self._remote.get(room_id, {}))
            self._unheard.discard(room_id)
            if self._listener is not None:
                self._listener.room_changed(room_id)
            self._remote.pop(room_id, None)
            self._hosts.pop(room_id, None)
            self._homes.pop(room_id, None)
            self._held.pop(room_id, None)
            self._seqs.pop(room_id, None)
            self._queued.pop(room_id, None)

    def is_member(self, peer: Peer, room_id: str) -> bool:
        return self.local.is_member(peer, room_id)

    def hears(self, room_id: str) -> bool:
        # room notices reach the nodes subscribed to the room: those with members there, once
        # the subscription is confirmed (the room's first read is done)
        return room_id in self.local.rooms and room_id not in self._unheard

    def member(self, room_id: str, peer_id: str) -> Peer | None:
        return self.local.member(room_id, peer_id)

    def count(self, room_id: str) -> int:
        local = self.local.count(room_id)
        if local:
            return local + len(self._remote.get(room_id, ()))
        return self._peeked_counts.get(room_id, 0)

    def _others(self, room_id: str) -> dict[str, dict[str, str]]:
        if room_id in self.local.rooms:
            return self._remote.get(room_id, {})
        return self._peeked.get(room_id, {})

    def describe_members(self, room_id: str) -> list[dict[str, str]]:
        return self.local.describe_members(room_id) + list(self._others(room_id).values())

    def describe_hosts(self, room_id: str) -> list[dict[str, str]]:
        if room_id in self.local.rooms:
            others = list(self._hosts.get(room_id, {}).values())
        else:
            others = list(_hosts_of(self._peeked.get(room_id, {})).values())
        return self.local.describe_hosts(room_id) + others

    def page_members(self, room_id: str, limit: int, offset: int) -> list[dict[str, str]]:
        local = self.local.page_members(room_id, limit, offset)
        if len(local) == limit:
            return local
        skip = max(0, offset - self.local.count(room_id))
        others = itertools.islice(self._others(room_id).values(), skip, skip + limit - len(local))
        return local + list(others)

    async def load(self, room_id: str) -> None:
        while room_id not in self.local.rooms:  # else kept up to date by the bus's messages
            loading = self._loading.get(room_id)
            if loading is None:
                await self._load(room_id)
                return
            # joiners of a room new here share one read; if it failed, one of them reads
            if await asyncio.shield(loading):
                return

    async def _load(self, room_id: str) -> None:
        loading = self._loading[room_id] = asyncio.get_running_loop().create_future()
        read = False
        try:
            self._peek(room_id, self._describe(await self.bus.members(room_id)))
            read = True
        finally:
            del self._loading[room_id]
            loading.set_result(read)

    def _peek(self, room_id: str, others: dict[str, dict[str, str]]) -> None:
        """Keep the other nodes' members of a room without local members, for views."""
        if len(self._peeked) >= MAX_PEEKED:
            self._peeked.clear()
        if len(self._peeked_counts) >= MAX_PEEKED:
            self._peeked_counts.clear()
        self._peeked[room_id] = others
        self._peeked_counts[room_id] = len(others)

    async def prefetch(self, room_ids: list[str]) -> None:
        wanted = [room_id for room_id in room_ids if room_id not in self.local.rooms]
        if not wanted:
            return
        counts = await self.bus.counts(wanted)
        if len(self._peeked_counts) + len(counts) > MAX_PEEKED:
            self._peeked_counts.clear()
        self._peeked_counts.update(counts)

    #: the bus to other nodes can back up
    can_back_up = True

    def backed_up(self) -> bool:
        return self.bus.backed_up()

    async def writable(self) -> None:
        await self.bus.writable()

    def listen(self, listener: PresenceListener) -> None:
        self._listener = listener

    # -- sending ----------------------------------------------------------------------------

    def send(self, peer: Peer, message: dict[str, Any]) -> None:
        self.local.send(peer, message)

    def broadcast(self, room_id: str, message: dict[str, Any], exclude: Peer | None = None) -> int:
        frame = self._encode(message)
        recipients = self.local.broadcast_frame(room_id, frame, exclude)
        self.bus.broadcast(room_id, frame, exclude.id if exclude is not None else None)
        return recipients + len(self._remote.get(room_id, ()))

    def broadcast_local(
        self, room_id: str, message: dict[str, Any], exclude: Peer | None = None
    ) -> int:
        return self.local.broadcast(room_id, message, exclude)

    def send_to(self, room_id: str, peer_id: str, message: dict[str, Any]) -> bool:
        if self.local.send_to(room_id, peer_id, message):
            return True
        if peer_id not in self._remote.get(room_id, ()):
            return False
        # straight to its node (no look-up) when the view knows it, as it does once read
        home = self._homes.get(room_id, {}).get(peer_id)
        self.bus.send(peer_id, self._encode(message), home, room_id)
        return True

    async def send_elsewhere(self, room_id: str, peer_id: str, message: dict[str, Any]) -> bool:
        node = await self._node_elsewhere(room_id, peer_id)
        if node is None:
            return False
        self.bus.send(peer_id, self._encode(message), node, room_id)
        return True

    async def kick_elsewhere(self, room_id: str, peer_id: str, by: str) -> bool:
        if peer_id not in self._remote.get(room_id, ()) and not await self._node_elsewhere(
            room_id, peer_id
        ):
            return False
        self.bus.kick(room_id, peer_id, by)
        return True

    def announce_room(self, room_id: str, make: Callable[[], dict[str, Any]]) -> None:
        message = make()
        self.local.announce_room(room_id, lambda: message)
        # a notice is read by the other nodes (room_changed), not passed to sockets: plain JSON
        self.bus.notify(room_id, json.dumps(message, separators=(",", ":")).encode())

    def touch_room(self, room_id: str) -> None:
        # a notice no member hears: the other nodes only forget the room (room_changed)
        self.bus.notify(room_id, json.dumps({"type": TOUCHED, "roomId": room_id}).encode())

    def flush(self) -> None:
        self.local.flush()

    # -- the bus's handler ------------------------------------------------------------------

    def deliver_room(self, room_id: str, frame: bytes, exclude: str | None) -> None:
        excluded = self.local.peers.get(exclude) if exclude else None
        self.local.broadcast_frame(room_id, frame, excluded)

    def deliver_peer(self, peer_id: str, frame: bytes, room_id: str | None) -> None:
        # a send for a member of a room: not for a peer that has left it since the sender's
        # view named it (a left or kicked peer gets nothing more of the room, as in one process)
        if room_id is None:
            peer = self.local.peers.get(peer_id)
        else:
            peer = self.local.member(room_id, peer_id)
        if peer is not None:
            self.local.send_frame(peer, frame)

    def presence_delta(self, delta: PresenceDelta) -> None:
        room_id = delta.room_id
        if room_id not in self.local.rooms:
            return
        if room_id in self._refreshing:
            self._queued.setdefault(room_id, []).append(delta)
            return
        applied = self._apply(delta)
        if applied is None:
            self._refresh(room_id)  # a delta was missed: read the room whole
        elif applied:
            self._changed(room_id)

    def presence_changed(self, room_id: str) -> None:
        if room_id in self.local.rooms:
            self._refresh(room_id)

    def members_lost(self, members: list[Member]) -> None:
        by_room: dict[str, list[tuple[str, str]]] = {}
        for member in members:
            by_room.setdefault(member.room_id, []).append((member.peer_id, member.role))
        self._spawn(self._announce_lost(by_room))

    def members_returned(self, members: list[Member]) -> None:
        by_room: dict[str, list[Peer]] = {}
        for member in members:
            peer = self.local.member(member.room_id, member.peer_id)
            if peer is not None:
                by_room.setdefault(member.room_id, []).append(peer)
        for room_id in list(self.local.rooms):
            self._refresh(room_id)  # what changed elsewhere while this node was away
        if self._listener is not None:
            for room_id, peers in by_room.items():
                self._listener.members_returned(room_id, peers, self.count(room_id))

    def kick_peer(self, room_id: str, peer_id: str, by: str) -> None:
        if self._listener is not None and self.member(room_id, peer_id) is not None:
            self._listener.kick_requested(room_id, peer_id, by)

    def room_changed(self, room_id: str, notice: bytes) -> None:
        if self._listener is not None:
            self._listener.room_changed(room_id)
        if room_id not in self.local.rooms:
            return
        message = json.loads(notice)
        if message.get("type") == TOUCHED:
            return
        room = message.get("room")
        if isinstance(room, dict) and "viewerCount" in room:
            room["viewerCount"] = self.count(room_id)  # this node's view of the count
        self.local.broadcast(room_id, message)

    # -- internals --------------------------------------------------------------------------

    def _describe(self, members: list[Member]) -> dict[str, dict[str, str]]:
        node = self.bus.node_id
        return {
            m.peer_id: {"peerId": m.peer_id, "name": m.name, "role": m.role}
            for m in members
            if m.node_id != node
        }

    async def _node_elsewhere(self, room_id: str, peer_id: str) -> str | None:
        """The other live node where the registry has ``peer_id`` as a member of the room, if
        any (this node's view of the room may not have it yet)."""
        member = await self.bus.member(room_id, peer_id)
        if member is None or member.node_id == self.bus.node_id:
            return None
        return member.node_id

    def _apply(self, delta: PresenceDelta) -> bool | None:
        """Apply another node's delta to the view of a local room: whether the members changed,
        None if it shows a missed delta of that node (nothing applied: read the room whole)."""
        room_id, node = delta.room_id, delta.node_id
        seqs = self._seqs[room_id]
        last = seqs.get(node, 0)
        if delta.seq <= last:
            return False  # already in the view (a snapshot held it)
        changed = False
        if delta.prev == 0:
            # the node had nobody here before this: whatever the view has of it is gone
            changed = self._drop_node(room_id, node)
        elif delta.prev != last:
            return None
        seqs[node] = delta.seq
        remote, homes, peer_id = self._remote[room_id], self._homes[room_id], delta.peer_id
        held = self._held[room_id]
        if delta.joined:
            described = {"peerId": peer_id, "name": delta.name, "role": delta.role}
            home = homes.get(peer_id)
            if home != node:
                if home is not None:
                    held[home] -= 1
                held[node] = held.get(node, 0) + 1
                homes[peer_id] = node
                remote[peer_id] = described
                changed = True
            elif remote[peer_id] != described:
                remote[peer_id] = described
                changed = True
            hosts = self._hosts[room_id]
            if delta.role == "host":
                hosts[peer_id] = described
            else:
                hosts.pop(peer_id, None)
        elif homes.get(peer_id) == node:  # not if it has joined on another node since
            del remote[peer_id]
            del homes[peer_id]
            self._hosts[room_id].pop(peer_id, None)
            held[node] -= 1
            changed = True
        return changed

    def _drop_node(self, room_id: str, node: str) -> bool:
        """Forget the node's members in the view of the room (a scan only if it has some)."""
        if not self._held[room_id].pop(node, 0):
            return False
        homes, remote = self._homes[room_id], self._remote[room_id]
        hosts = self._hosts[room_id]
        for peer_id in [peer_id for peer_id, home in homes.items() if home == node]:
            del homes[peer_id]
            remote.pop(peer_id, None)
            hosts.pop(peer_id, None)
        return True

    def _install(self, room_id: str, snapshot: Snapshot) -> None:
        """Replace the view of a local room by a snapshot, then replay the deltas that came
        while it was read (a gap among them marks the room to be read again)."""
        node = self.bus.node_id
        others = [m for m in snapshot.members if m.node_id != node]
        self._remote[room_id] = self._describe(others)
        self._hosts[room_id] = _hosts_of(self._remote[room_id])
        self._homes[room_id] = {m.peer_id: m.node_id for m in others}
        held: dict[str, int] = {}
        self._held[room_id] = held
        for m in others:
            held[m.node_id] = held.get(m.node_id, 0) + 1
        self._seqs[room_id] = {n: seq for n, seq in snapshot.seqs.items() if n != node}
        queued = self._queued.pop(room_id, [])
        for at, delta in enumerate(queued):
            if self._apply(delta) is None:
                self._queued[room_id] = queued[at + 1 :]
                self._stale.add(room_id)
                return

    def _changed(self, room_id: str) -> None:
        self.local.count_changed(room_id)
        if self._listener is not None:
            self._listener.presence_changed(room_id, self.count(room_id))

    def _spawn(self, coroutine: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _refresh(self, room_id: str) -> None:
        """Read the room's members on other nodes again (one read in flight per room; a
        notice or a missed delta during it makes it read once more)."""
        if room_id in self._refreshing:
            self._stale.add(room_id)
            return
        self._refreshing.add(room_id)
        self._spawn(self._read(room_id))

    async def _read(self, room_id: str) -> None:
        try:
            while True:
                self._stale.discard(room_id)
                snapshot = await self.bus.snapshot(room_id)
                if room_id in self.local.rooms:
                    before = self._remote.get(room_id)
                    self._install(room_id, snapshot)
                    if self._remote[room_id] != before:
                        self._changed(room_id)
                    if room_id in self._unheard:  # the room's notices are heard now
                        self._unheard.discard(room_id)
                        if self._listener is not None:
                            self._spawn(self._listener.room_heard(room_id))
                if room_id not in self._stale:
                    break
        except Exception:
            log.exception("reading the members of room %s failed", room_id)
            if room_id in self._seqs:
                self._seqs[room_id] = {}  # the next delta with a prev reads it again
        finally:
            self._refreshing.discard(room_id)
            self._queued.pop(room_id, None)

    async def _announce_lost(self, by_room: dict[str, list[tuple[str, str]]]) -> None:
        for room_id, lost in by_room.items():
            try:
                count = await self.bus.count(room_id) + len(lost)
            except Exception:
                log.exception("counting room %s failed", room_id)
                continue
            if self._listener is not None:
                self._listener.members_lost(room_id, lost, count)
            if room_id in self.local.rooms:
                self._refresh(room_id)


def _hosts_of(members: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    return {peer_id: d for peer_id, d in members.items() if d["role"] == "host"}
