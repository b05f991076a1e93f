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

``host.joined`` / ``host.left`` are coalesced per room and peer: each type is reported at most
once per :data:`HOST_INTERVAL` (the first after a quiet period at once, so a host that joins and
leaves is reported as it happens), and only when the host's state then differs from the one last
reported. So a host flapping join/leave produces at most one pair a second, whatever it sends,
and the final state is always reported (at the latest when the process stops). Each event's
``at`` is when it is staged, as for ``viewers.updated`` (so times follow ``seq``).
"""

from __future__ import annotations

import asyncio
import logging
import math
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
#: seconds between two host events of one room and peer
HOST_INTERVAL = 1.0


class _HostState:
    """A host's presence in one room as reported, and as it is now."""

    __slots__ = ("joined", "last_joined", "last_left", "reported", "timer")

    def __init__(self) -> None:
        #: state last reported (None: nothing yet)
        self.reported: bool | None = None
        #: when (monotonic) the last host.joined and host.left were reported
        self.last_joined = -math.inf
        self.last_left = -math.inf
        #: state now
        self.joined = False
        self.timer: asyncio.TimerHandle | None = None


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
        host_interval: float = HOST_INTERVAL,
    ) -> None:
        self._rooms = rooms
        self.host_interval = host_interval
        #: (room, peer) -> the host's state, while it is joined or a report is due
        self._hosts: dict[tuple[str, str], _HostState] = {}
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
            self._host_changed(room_id, peer_id, joined)
        self._viewers_changed(room_id)

    def _host_changed(self, room_id: str, peer_id: str, joined: bool) -> None:
        state = self._hosts.get((room_id, peer_id))
        if state is None:
            state = self._hosts[(room_id, peer_id)] = _HostState()
        state.joined = joined
        if state.timer is not None:
            state.timer.cancel()
        self._report_host(room_id, peer_id)

    def _report_host(self, room_id: str, peer_id: str, *, final: bool = False) -> None:
        """Report the host's state if it differs from the one last reported and its event
        type's interval has passed (or ``final``); else come back when it has. A host that is
        gone is forgotten once its intervals have passed."""
        key = (room_id, peer_id)
        state = self._hosts[key]
        state.timer = None
        now = self._clock()
        if state.joined != state.reported and (state.reported is not None or state.joined):
            last = state.last_joined if state.joined else state.last_left
            due = last + self.host_interval - now
            if due > 0 and not final:
                state.timer = self._call_later(due, room_id, peer_id)
                return
            kind = EventType.HOST_JOINED if state.joined else EventType.HOST_LEFT
            self._stage(
                RoomEvent(
                    type=kind, room_id=room_id, at=self._wall_clock(), extra={"peerId": peer_id}
                )
            )
            state.reported = state.joined
            if state.joined:
                state.last_joined = now
            else:
                state.last_left = now
        if not state.joined:
            quiet = max(state.last_joined, state.last_left) + self.host_interval - now
            if quiet > 0 and not final:
                state.timer = self._call_later(quiet, room_id, peer_id)
            else:
                del self._hosts[key]

    def _call_later(self, delay: float, room_id: str, peer_id: str) -> asyncio.TimerHandle:
        return asyncio.get_running_loop().call_later(delay, self._report_host, room_id, peer_id)

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
        for (room_id, peer_id), state in list(self._hosts.items()):
            if state.timer is not None:
                state.timer.cancel()
            self._report_host(room_id, peer_id, final=True)
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
