"""Delivery: encoded frames to the members of a room, batched, in order, slow peers cut off.

A broadcast encodes the message once (the JSON text of one WebSocket message). In a big room
(100 members and more) it costs O(1): the bytes go to the room's :class:`_Backlog`, and one
callback per loop iteration (:meth:`Delivery.flush`) hands every member its share of every
backlog plus its own queue (direct sends) in one :meth:`~livehub.domain.peer.Sink.write`. So a
burst of relayed messages costs one hand-over per recipient, and a join storm, where every join
is announced to every member, costs O(members) per flush instead of O(members) per join. In a
small room the same bytes are appended to each member's own queue at once, which is cheaper
than a backlog for a few members.

Each connection receives its frames in the order they were sent: a direct send first moves
the peer's share of its rooms' backlogs into its own queue, a leave does the same before the
peer stops being a member, and a peer in several rooms gets their frames merged in send order.
A member that joins mid-iteration gets only what was broadcast after it joined.

Big rooms (``BATCH_MIN_MEMBERS`` and more) are flushed together, at most once per
``W x BATCH_PER_MEMBER`` seconds where W is the number of members the previous big-room flush
wrote to (50 ms after writing to 1,000, 0.5 s after 10,000). A flush costs a write per member
(5-10 µs of CPU on loopback, more with bigger batches), so without that, rooms with a steady
stream of broadcasts (joins announced during a join storm, busy chats) would spend the whole CPU
on writes of a frame or two each; with it, big-room writes take a bounded share of a core
(about 10-20 %) however many big rooms are busy, and each write carries everything of its
window. The first broadcast after a quiet period goes out on the next iteration; what follows
waits for the end of the window, in the same order. Smaller rooms and direct sends always go
out on the next iteration. (Join storm of 2,000: 20 µs per member gave 340 µs of server CPU
per join, 50 µs 290, 100 µs 265 with half the fan-out rate; 50 µs keeps fan-out latency to a
1,000-member room under ~50 ms.)

A recipient whose transport buffer stays above its limit after a write is disconnected (1013)
and never delays the others.

The hub (:mod:`livehub.domain.hub`) decides who is a member; this module only reads its rooms
and is told of joins and leaves (:meth:`Delivery.joined`, :meth:`Delivery.leaving`).
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable, Mapping

from livehub.domain.peer import Peer
from livehub.domain.room_hub import HubStats

log = logging.getLogger(__name__)

#: close code for a recipient that cannot keep up (RFC 6455 "try again later")
CLOSE_TRY_AGAIN_LATER = 1013
#: seconds of big-room flush interval per member written (see the module docstring)
BATCH_PER_MEMBER = 50e-6
#: rooms smaller than this are flushed on every loop iteration
BATCH_MIN_MEMBERS = 100


class _Backlog:
    """Frames broadcast to one room since the last flush.

    ``start[peer]`` is the first frame the peer has not had yet when that is not frame 0 (it
    joined mid-iteration, or its share was moved to its own queue); ``skip[peer]`` holds the
    frames it sent itself. ``seqs`` are hub-wide send numbers, to merge several rooms.
    ``due`` is when it may be flushed (0: on the next iteration)."""

    __slots__ = ("due", "frames", "seqs", "skip", "start")

    def __init__(self, due: float = 0.0) -> None:
        self.due = due
        self.frames: list[bytes] = []
        self.seqs: list[int] = []
        self.start: dict[Peer, int] = {}
        self.skip: dict[Peer, set[int]] = {}

    def share(self, peer: Peer) -> list[bytes]:
        """The frames ``peer`` still has to get, in order."""
        start = self.start.get(peer, 0)
        skip = self.skip.get(peer)
        if not skip:
            return self.frames[start:] if start else self.frames
        return [f for i, f in enumerate(self.frames[start:], start) if i not in skip]

    def numbered_share(self, peer: Peer) -> list[tuple[int, bytes]]:
        start = self.start.get(peer, 0)
        skip = self.skip.get(peer) or ()
        return [
            (self.seqs[i], self.frames[i]) for i in range(start, len(self.frames)) if i not in skip
        ]

    def served(self, peer: Peer) -> None:
        """``peer`` has had everything so far."""
        self.start[peer] = len(self.frames)
        self.skip.pop(peer, None)


class Delivery:
    """The frames on their way to the peers of one hub: the rooms' backlogs and the peers'
    own queues, handed over once per loop iteration (big rooms paced)."""

    def __init__(
        self,
        rooms: Mapping[str, Mapping[str, Peer]],
        stats: HubStats,
        call_soon: Callable[[Callable[[], None]], object],
        call_later: Callable[[float, Callable[[], None]], object],
        *,
        max_buffer: int,
        clock: Callable[[], float],
        batch_per_member: float = BATCH_PER_MEMBER,
    ) -> None:
        """``rooms`` is the hub's membership (room id -> peer id -> peer), read, never changed."""
        self.rooms = rooms
        self.stats = stats
        self._call_soon = call_soon
        self._call_later = call_later
        self._max_buffer = max_buffer
        self._clock = clock
        self._batch_per_member = batch_per_member
        #: room id -> what was broadcast to it since the last flush
        self._backlogs: dict[str, _Backlog] = {}
        self._seq = 0
        #: earliest time of the next flush of big rooms
        self._big_due = 0.0
        self._timer_due: float | None = None
        #: peers with frames in their own queue
        self._dirty: list[Peer] = []
        self._flush_scheduled = False

    def joined(self, peer: Peer, room_id: str) -> None:
        """``peer`` has just joined the room: what was sent before is not for it."""
        backlog = self._backlogs.get(room_id)
        if backlog is not None:
            backlog.served(peer)

    def leaving(self, peer: Peer, room_id: str) -> None:
        """``peer`` is about to leave the room: it gets what was sent while it was a member."""
        backlog = self._backlogs.get(room_id)
        if backlog is not None:
            if not peer.closed:
                self._take_shares(peer)  # it was a member when those were sent
            backlog.start.pop(peer, None)
            backlog.skip.pop(peer, None)

    def closed(self, peer: Peer) -> None:
        """``peer`` is gone: nothing more is delivered to it."""
        peer.closed = True
        peer.out.clear()
        peer.out_bytes = 0

    def send(self, peer: Peer, frame: bytes) -> None:
        """One frame to one peer, after what it has still to get of its rooms."""
        if peer.closed:
            self.stats.dropped += 1
            return
        self._take_shares(peer)
        self._enqueue_frame(peer, frame)

    def fan_out(
        self, room_id: str, members: dict[str, Peer], frame: bytes, exclude: Peer | None
    ) -> int:
        excluded = exclude is not None and members.get(exclude.id) is exclude
        recipients = len(members) - excluded
        if not recipients:
            return 0
        if len(members) < BATCH_MIN_MEMBERS:  # cheaper than a backlog for a few members
            earlier = bool(self._backlogs)  # frames of big rooms (or of this one) come first
            for peer in list(members.values()):
                if peer is exclude:
                    continue
                if peer.closed:
                    self.stats.dropped += 1
                    continue
                if earlier:
                    self._take_shares(peer)
                # _enqueue_frame, without the call per recipient
                out = peer.out
                if not out:
                    self._dirty.append(peer)
                    if not self._flush_scheduled:
                        self._schedule_flush()
                out.append(frame)
                peer.out_bytes += len(frame)
                if peer.out_bytes > self._max_buffer:
                    self._too_slow(peer)
            return recipients
        backlog = self._backlogs.get(room_id)
        if backlog is None:
            backlog = self._backlogs[room_id] = self._new_backlog(len(members))
        if excluded:
            assert exclude is not None
            backlog.skip.setdefault(exclude, set()).add(len(backlog.frames))
        backlog.frames.append(frame)
        backlog.seqs.append(self._seq)
        self._seq += 1
        return recipients

    def _new_backlog(self, members: int) -> _Backlog:
        if members >= BATCH_MIN_MEMBERS:
            now = self._clock()
            if self._big_due > now:
                self._schedule_timer(self._big_due, now)
                return _Backlog(self._big_due)
        self._schedule_flush()
        return _Backlog()

    def _schedule_timer(self, due: float, now: float) -> None:
        if self._timer_due is None or due < self._timer_due:
            self._timer_due = due
            self._call_later(due - now, self._on_timer)

    def _on_timer(self) -> None:
        self._timer_due = None
        self.flush()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._call_soon(self.flush)

    def _take_shares(self, peer: Peer) -> None:
        """Move the peer's share of its rooms' backlogs to its own queue (before a direct
        send or a leave, so that it gets everything in send order)."""
        if self._backlogs:
            frames = self._shares(peer, self._backlogs)
            if frames:
                self._enqueue(peer, frames)

    @staticmethod
    def _shares(peer: Peer, backlogs: dict[str, _Backlog]) -> list[bytes]:
        """The peer's share of every backlog of its rooms, merged in send order; from now on
        the backlogs count it as served."""
        numbered: list[list[tuple[int, bytes]]] = []
        for room_id in peer.rooms:
            backlog = backlogs.get(room_id)
            if backlog is not None:
                share = backlog.numbered_share(peer)
                backlog.served(peer)
                if share:
                    numbered.append(share)
        if not numbered:
            return []
        merged = numbered[0] if len(numbered) == 1 else heapq.merge(*numbered)
        return [frame for _, frame in merged]

    def _enqueue_frame(self, peer: Peer, frame: bytes) -> None:
        out = peer.out
        if not out:
            self._dirty.append(peer)
            if not self._flush_scheduled:
                self._schedule_flush()
        out.append(frame)
        peer.out_bytes += len(frame)
        if peer.out_bytes > self._max_buffer:
            self._too_slow(peer)

    def _enqueue(self, peer: Peer, frames: list[bytes]) -> None:
        if not peer.out:
            self._dirty.append(peer)
            self._schedule_flush()
        peer.out.extend(frames)
        peer.out_bytes += sum(map(len, frames))
        if peer.out_bytes > self._max_buffer:
            self._too_slow(peer)

    def flush(self) -> None:
        """Give every peer its frames of this iteration, one write per peer."""
        self._flush_scheduled = False
        backlogs = self._backlogs
        if any(backlog.due for backlog in backlogs.values()):
            now = self._clock()
            waiting = {rid: backlog for rid, backlog in backlogs.items() if backlog.due > now}
            ready = {rid: backlog for rid, backlog in backlogs.items() if backlog.due <= now}
        else:
            now, waiting, ready = 0.0, {}, backlogs
        self._backlogs = waiting
        dirty, self._dirty = self._dirty, []
        several = len(backlogs) > 1
        tangled: set[Peer] = set()  # members of more than one room with a backlog
        big_writes = 0
        for room_id, backlog in ready.items():
            members = self.rooms.get(room_id)
            if not members:
                continue
            if len(members) >= BATCH_MIN_MEMBERS:
                big_writes += len(members)
            frames = backlog.frames
            adjusted = backlog.start or backlog.skip
            for peer in members.values():
                if several and len(peer.rooms) > 1:
                    tangled.add(peer)
                elif adjusted and (peer in backlog.start or peer in backlog.skip):
                    self._deliver(peer, backlog.share(peer))
                else:
                    self._deliver(peer, frames)
        for peer in tangled:  # their frames of waiting rooms too, or they would be reordered
            self._deliver(peer, self._shares(peer, backlogs))
        for peer in dirty:  # what is left: peers with only direct frames
            if peer.out:
                self._deliver(peer, [])
        if big_writes:
            self._big_due = (now or self._clock()) + big_writes * self._batch_per_member
        if waiting:
            self._schedule_timer(min(backlog.due for backlog in waiting.values()), self._clock())

    def _deliver(self, peer: Peer, frames: list[bytes]) -> None:
        """Write the peer's own queue, then ``frames``, in one write."""
        if peer.closed:
            self.stats.dropped += len(frames)
            return
        if peer.out:
            batch, peer.out = peer.out, []
            peer.out_bytes = 0
            batch.extend(frames)
        elif frames:
            batch = frames
        else:
            return
        self.stats.relayed += len(batch)
        try:
            buffered = peer.sink.write(batch)
        except Exception:
            log.debug("write to peer %s failed", peer.id, exc_info=True)
            self._too_slow(peer)
            return
        if buffered > self._max_buffer:
            self._too_slow(peer)

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
