"""Viewer-count pushes: each member hears its room's count, coalesced and, in big rooms, paced.

Viewer-count pushes are coalesced per room per interval, and a big
room's at most once per ``W x COUNT_PER_MEMBER`` seconds, W being the members of all big rooms
with a count to push (0.5 s for 1,000, capped at ``COUNT_MAX_INTERVAL``): each push is a write
to every member, and while big rooms fill they were most of the server's writes (2,000 joins
into one room: ~10 pushes to ~1,000 members per 1,000 joins; 10,000 joins into 50 rooms of
200: 5 pushes a second to every member, ~60 s of CPU). The exact count is always ``count()``;
only its pushes are spaced out.

Each process pushes to its own members; the count pushed is the one the hub is given (a cluster
hub's is cluster-wide), so the pacing is this one in every mode.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from livehub.domain.delivery import BATCH_MIN_MEMBERS

#: seconds between a big room's viewer-count pushes per member, and their cap
COUNT_PER_MEMBER = 0.5e-3
COUNT_MAX_INTERVAL = 5.0


class ViewerCounts:
    """The viewer-count pushes of one hub: which rooms' counts changed, and when each big room
    may hear its count next."""

    def __init__(
        self,
        rooms: Collection[str],
        count_of: Callable[[str], int],
        broadcast: Callable[[str, dict[str, Any]], object],
        call_later: Callable[[float, Callable[[], None]], object],
        *,
        interval: float,
        clock: Callable[[], float],
    ) -> None:
        """``rooms``: the rooms with members here (the hub's, read only); ``count_of``: the
        count to push; ``broadcast``: to the room's members here."""
        self._rooms = rooms
        self._count_of = count_of
        self._broadcast = broadcast
        self._call_later = call_later
        self._interval = interval
        self._clock = clock
        self._dirty: set[str] = set()
        self._scheduled = False
        #: big room id -> earliest time of its next viewer-count push
        self._next: dict[str, float] = {}

    def changed(self, room_id: str) -> None:
        """The room's count may have changed: push it (coalesced, paced) to its members."""
        self._dirty.add(room_id)
        if not self._scheduled:
            self._scheduled = True
            self._call_later(self._interval, self.push)

    def push(self) -> None:
        """Push the counts that changed to the rooms' members on this process (each process
        tells its own members), big rooms paced (see the module docstring)."""
        self._scheduled = False
        dirty, self._dirty = self._dirty, set()
        now = self._clock() if dirty else 0.0
        for room_id in dirty.difference(self._rooms):  # emptied here: nobody to tell
            self._next.pop(room_id, None)
        counts = {room_id: self._count_of(room_id) for room_id in dirty if room_id in self._rooms}
        big = sum(count for count in counts.values() if count >= BATCH_MIN_MEMBERS)
        interval = min(COUNT_MAX_INTERVAL, big * COUNT_PER_MEMBER)
        for room_id, count in counts.items():
            if count >= BATCH_MIN_MEMBERS:
                if self._next.get(room_id, 0.0) > now:
                    self._dirty.add(room_id)  # pushed recently: the next round
                    continue
                self._next[room_id] = now + interval
            else:
                self._next.pop(room_id, None)
            self._broadcast(
                room_id, {"type": "viewer-count", "roomId": room_id, "viewerCount": count}
            )
        if self._dirty and not self._scheduled:
            self._scheduled = True
            self._call_later(self._interval, self.push)
