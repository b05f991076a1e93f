"""Webhook events no room write reports: the host joining and leaving a room's signaling
channel (``host.joined`` / ``host.left``) and its viewer count (``viewers.updated``).

Signaling calls :meth:`PresenceEvents.on_presence` synchronously on every join and leave; the
events are staged through :meth:`RoomService.append_events` by one background task, in the
order they happened (the store gives each its room's next ``seq``). Hooks into presence never
wait on the database: a join or a leave only appends to a list.

``viewers.updated`` is throttled per room: at most one every ``interval`` seconds, the first
change after a quiet period is reported at once, later ones when the interval has passed, and
only when the count differs from the last one reported; the body's ``viewerCount`` is the hub's
count when the row is written. In cluster mode every node throttles the rooms whose members it
holds on its own (documented in ``docs/webhooks.md``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from livehub.domain.room import EventType, RoomEvent, now_ms
from livehub.domain.service import RoomService
from livehub.domain.store import StoreUnavailable
from livehub.tasks import cancel_and_wait, pause

log = logging.getLogger(__name__)

#: events waiting for the store at most (a database down for long drops the oldest)
MAX_PENDING = 10_000
#: seconds before staging is tried again after the store failed
RETRY_DELAY = 1.0
#: seconds close() lets a write in progress finish
CLOSE_WAIT = 10.0


class PresenceEvents:
    def __init__(
        self,
        rooms: RoomService,
        count: Callable[[str], int],
        *,
        interval: float,
        on_staged: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], int] = now_ms,
    ) -> None:
        self._rooms = rooms
        self._count = count
        self.interval = interval
        self._on_staged = on_staged
        self._clock = clock
        self._wall_clock = wall_clock
        self._pending: list[RoomEvent] = []
        #: last viewer count reported, and when (monotonic), per room
        self._reported: dict[str, tuple[int, float]] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._wake = asyncio.Event()
        self._stopped = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    # -- from signaling (synchronous, no I/O) ---------------------------------------------

    def on_presence(self, room_id: str, peer_id: str, role: str | None, joined: bool) -> None:
        """A member joined or left ``room_id`` with ``role`` (a role change is a leave with
        the old role, then a join with the new one)."""
        if self._closed:
            return
        if role == "host":
            kind = EventType.HOST_JOINED if joined else EventType.HOST_LEFT
            self._stage(
                RoomEvent(
                    type=kind, room_id=room_id, at=self._wall_clock(), extra={"peerId": peer_id}
                )
            )
        self._viewers_changed(room_id)

    def _viewers_changed(self, room_id: str) -> None:
        if room_id in self._timers:
            return  # a report is due already; it reads the count then
        reported = self._reported.get(room_id)
        delay = 0.0 if reported is None else reported[1] + self.interval - self._clock()
        loop = asyncio.get_running_loop()
        self._timers[room_id] = loop.call_later(max(delay, 0.0), self._report_viewers, room_id)

    def _report_viewers(self, room_id: str, *, final: bool = False) -> None:
        self._timers.pop(room_id, None)
        count = self._count(room_id)
        reported = self._reported.get(room_id)
        if count == (0 if reported is None else reported[0]):
            if count == 0:
                self._reported.pop(room_id, None)  # an empty room is forgotten
            return
        self._reported[room_id] = (count, self._clock())
        self._stage(
            RoomEvent(type=EventType.VIEWERS_UPDATED, room_id=room_id, at=self._wall_clock())
        )
        if count == 0 and not final:
            # keep the throttle for an interval (a room flapping 0 ↔ 1 is not reported on
            # every flap), then forget the room
            self._timers[room_id] = asyncio.get_running_loop().call_later(
                self.interval, self._report_viewers, room_id
            )

    def _stage(self, event: RoomEvent) -> None:
        self._pending.append(event)
        if len(self._pending) > MAX_PENDING:
            del self._pending[0]
            log.warning("webhook presence events: the store is behind, oldest event dropped")
        self._wake.set()

    # -- the writer task ------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="livehub-webhook-presence")

    async def _run(self) -> None:
        # ends on close() (_closed, woken), not by a cancellation in the middle of a write:
        # a batch cut short there may be committed and would be staged twice
        while not self._closed:
            await self._wake.wait()
            self._wake.clear()
            if not await self.flush() and not await pause(self._stopped, RETRY_DELAY):
                self._wake.set()

    async def flush(self) -> bool:
        """Stage what is pending, in one transaction; False if the store failed (the events
        stay pending)."""
        batch, self._pending = self._pending, []
        if not batch:
            return True
        try:
            await self._rooms.append_events(batch)
        except asyncio.CancelledError:
            self._pending[:0] = batch  # staged again by close(): at least once
            raise
        except (StoreUnavailable, OSError) as exc:
            self._pending[:0] = batch
            log.warning("webhook presence events not staged yet: %s", exc)
            return False
        except Exception:
            log.exception("webhook presence events dropped")
            return True
        if self._on_staged is not None:
            self._on_staged()
        return True

    async def close(self) -> None:
        """Stop the timers and the task, then stage what is pending once: the members of a
        shutting-down node have left, so their hosts' ``host.left`` and the rooms' last counts
        (reported now rather than when the interval would have passed) are written."""
        self._closed = True
        self._stopped.set()
        self._wake.set()  # the writer task ends after what it is writing
        due = list(self._timers)
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for room_id in due:
            self._report_viewers(room_id, final=True)
        if self._task is not None:
            # a write in progress ends, then the task stops (bounded: a database that does
            # not answer gets the task cancelled, and its batch staged again below)
            await asyncio.wait({self._task}, timeout=CLOSE_WAIT)
            await cancel_and_wait(self._task)
            self._task = None
        await self.flush()
