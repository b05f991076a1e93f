"""Changes to rooms: read → decide → conditional write on the room's ``version``, and who hears.

The store is the source of truth; nothing about a room is kept in this process. Every change is
read → decide → conditional write, retried when another writer came first, so processes
sharing a database never produce an impossible state and exactly one publisher wins a race.
The decisions are :mod:`livehub.domain.lifecycle`'s rules (or the stage's, moderation's).

Room listeners hear about every lifecycle change after it is stored (and about player count
changes); quiet listeners hear about the other writes (caches of rooms keep up with them).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Callable

from livehub.domain.errors import Conflict
from livehub.domain.lifecycle import Decision
from livehub.domain.room import Room
from livehub.domain.store import RoomStore

log = logging.getLogger(__name__)

#: how often a change is re-read and re-decided when other writers keep coming first
MAX_ATTEMPTS = 8

RoomListener = Callable[[Room], None]


class RoomChanges:
    """The conditional writes to one store, and the listeners that hear about them."""

    def __init__(self, store: RoomStore, after_write: Callable[[Room], None]) -> None:
        """``after_write(room)`` runs after every write, before the listeners."""
        #: the store in use (the app's engines swap it in when they open it)
        self.store = store
        self._after_write = after_write
        self._listeners: list[RoomListener] = []
        self._quiet_listeners: list[RoomListener] = []
        #: writes started, and writes not yet told to the listeners (what a reader that must
        #: not take this process's own change for another's checks)
        self.writes_started = 0
        self.writing = 0

    def subscribe(self, listener: RoomListener) -> None:
        self._listeners.append(listener)

    def subscribe_quiet(self, listener: RoomListener) -> None:
        self._quiet_listeners.append(listener)

    def notify_quiet(self, room: Room) -> None:
        for listener in self._quiet_listeners:
            try:
                listener(room)
            except Exception:
                log.exception("room listener failed")

    def notify(self, room: Room) -> None:
        for listener in self._listeners:
            try:
                listener(room)
            except Exception:
                log.exception("room listener failed")

    async def change(
        self, room: Room | None, decide: Decision, *, notify: bool = True
    ) -> tuple[Room | None, bool]:
        """Read → decide → conditional write, again on a version conflict.

        Returns the room as stored and whether this call changed it.
        """
        for _ in range(MAX_ATTEMPTS):
            if room is None:
                return None, False
            draft = dataclasses.replace(room)
            draft.stage = copy.deepcopy(room.stage)
            draft.moderation = copy.deepcopy(room.moderation)
            events = decide(draft)
            if events is None:
                return room, False
            self.writes_started += 1
            self.writing += 1
            try:
                if await self.store.update(draft, room.version, events):
                    self._after_write(draft)
                    if notify:
                        self.notify(draft)
                    else:
                        self.notify_quiet(draft)
                    return draft, True
            finally:
                self.writing -= 1
            room = await self.store.get(room.id)
        raise Conflict("The room changed too often to apply this change: try again")
