"""The ports the room service owns: where rooms are stored, where players are counted.

The store is the source of truth: the service keeps no room in memory, reads what it needs and
writes every lifecycle change as a **conditional update** on ``version`` (read → decide →
``update(room, expected_version, events)``; a ``False`` means another writer came first: read
again and decide again). So several processes can share one database and two racing hooks
never produce an impossible state.

Every write takes the events it reports and, in the same transaction, increments
``rooms.event_seq`` once per event and stages one ``webhook_deliveries`` row per configured
endpoint per event (none configured: nothing staged). Adapters: SQLite
(:mod:`livehub.adapters.sqlite.store`) and PostgreSQL; both pass the same behaviour suite
(``tests/test_storage.py``).

Semantics every adapter keeps:

- ``insert`` stores a new room at ``version`` 1; the room's ``version`` and ``event_seq`` are
  set on the object. A duplicate id or stream key raises. With ``max_open`` > 0 it first counts
  the rooms not ended in its transaction and, when there are ``max_open`` already, writes
  nothing and returns False (SQLite, one writer: exact; PostgreSQL, read committed: creations
  committing at the same moment on other connections may each pass it, so the count may end
  above ``max_open`` by fewer than the creations in flight at once).
- ``update`` writes every column of ``room`` where ``id`` matches and ``version`` equals
  ``expected_version``; on success ``room.version`` becomes ``expected_version + 1`` and
  ``room.event_seq`` grows by ``len(events)``, and it returns True. Otherwise nothing is written
  (neither row nor events) and it returns False.
- ``get_by_publisher`` only finds rooms that have not ended.
- ``page`` orders newest first by ``(created_at, id)``; ``after`` is the ``(created_at, id)``
  of the last room of the previous page (keyset: O(limit) whatever the depth).
- ``render_page`` reads the rooms ``page`` would, only their ``LISTED_COLUMNS`` (one
  ``ListedRoom`` tuple each), and hands the list to ``render`` where that costs the event loop
  least (SQLite: its reader thread; PostgreSQL: the default executor once the rows arrived).
  ``render`` may run in another thread: it reads only its argument and state that never
  changes.
- Reads return fresh objects: mutating one never changes the store.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from livehub.domain.errors import LivehubError
from livehub.domain.room import ListedRoom, Room, RoomEvent, RoomStatus, Visibility

#: a keyset position: ``(created_at, id)`` of the last room of a page
Cursor = tuple[int, str]

_T = TypeVar("_T")


class StoreUnavailable(LivehubError):
    """The store cannot be reached (maps to 503 ``database_unavailable``)."""

    code = "database_unavailable"


class WriteHealth:
    """Whether a store's writes fail now, which its reads may not show (a full disk, a
    read-only standby): its last write failed less than ``window`` seconds ago and none has
    succeeded since. Past the window it is given the benefit of the doubt again (a node taken
    out of a load balancer for it gets no writes to show it has recovered): under writes that
    keep failing it stays failing, and once the database is back it is ready within the
    window."""

    def __init__(self, window: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._window = window
        self._clock = clock
        self._failed_at: float | None = None

    def succeeded(self) -> None:
        self._failed_at = None

    def failed(self) -> None:
        self._failed_at = self._clock()

    @property
    def failing(self) -> bool:
        return self._failed_at is not None and self._clock() - self._failed_at < self._window


class RoomStore(Protocol):
    async def insert(
        self, room: Room, events: Sequence[RoomEvent] = (), *, max_open: int = 0
    ) -> bool:
        """True once stored; False when ``max_open`` rooms are open already (module docstring)."""
        ...

    async def get(self, room_id: str) -> Room | None: ...

    async def get_by_stream(self, stream_key: str) -> Room | None: ...

    async def get_by_publisher(self, client_id: str) -> Room | None:
        """The room not ended whose accepted publisher has this SRS client id (the one whose
        publish was accepted last, should two carry it: SRS reuses ids after a restart)."""
        ...

    async def update(
        self, room: Room, expected_version: int, events: Sequence[RoomEvent] = ()
    ) -> bool: ...

    async def append_events(self, events: Sequence[RoomEvent]) -> None:
        """Events without a room change (viewers.updated, host.joined/left); events of rooms
        that no longer exist are dropped. Each moves its room's ``event_seq`` on and bumps its
        ``version``: an :meth:`update` that read the room before then conflicts and reads it
        again, instead of writing the older ``event_seq`` back (two events of the room would
        share a seq, and receivers drop the second as a duplicate)."""
        ...

    async def page(
        self,
        status: RoomStatus | None,
        limit: int,
        after: Cursor | None = None,
        visibility: Visibility | None = None,
    ) -> list[Room]: ...

    async def render_page(
        self,
        status: RoomStatus | None,
        limit: int,
        after: Cursor | None,
        render: Callable[[list[ListedRoom]], _T],
        visibility: Visibility | None = None,
    ) -> _T:
        """``render`` of the rooms ``page`` would return, as :data:`ListedRoom` rows; possibly
        called in another thread (see the module's notes)."""
        ...

    async def count(
        self, status: RoomStatus | None = None, visibility: Visibility | None = None
    ) -> int:
        """Rooms (of ``status``, of ``visibility``; None: any)."""
        ...

    async def live(self) -> list[Room]:
        """Every live room (reconciliation, metrics): bounded by what is on air."""
        ...

    async def staged(self) -> list[Room]:
        """Every room not ended with a stage (guests or invitations): the stage's
        reconciliation; bounded by what is on air (partial index ``rooms_staged``)."""
        ...

    async def reconnect_due(self, opened_before: int) -> list[Room]:
        """Live rooms whose reconnect window opened at or before ``opened_before`` (epoch ms)."""
        ...

    async def preparing_before(self, created_before: int, limit: int = 500) -> list[Room]:
        """Preparing rooms created before ``created_before`` (the never-used TTL)."""
        ...

    async def delete_ended_before(self, ended_before: int, limit: int = 1000) -> int:
        """Delete at most ``limit`` rooms that ended before ``ended_before`` (a bounded batch:
        call again while it returns ``limit``); returns how many."""
        ...

    async def ping(self) -> bool:
        """Whether the store works now (readiness)."""
        ...

    async def close(self) -> None: ...


class PlayerCounts(Protocol):
    """SRS players per room (on_play/on_stop), once per SRS client id. In memory on one node;
    a shared registry (Redis) in a cluster. ``count`` is synchronous because views read it (a
    shared registry keeps a local mirror)."""

    async def add(self, room_id: str, client_id: str) -> bool:
        """Count a player; True if it was not counted in this room already (a client id
        counted in another room moves)."""
        ...

    async def remove(self, client_id: str) -> str | None:
        """Forget a player; returns the room it was counted in."""
        ...

    async def clients(self) -> dict[str, str]:
        """Every player counted: SRS client id -> room id (reconciliation compares them with
        SRS's client list). Empty when the registry cannot be read."""
        ...

    def count(self, room_id: str) -> int: ...
