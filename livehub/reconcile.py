"""Reconciliation with SRS: hooks can be lost (no retries, nothing sent when SRS stops), so
live rooms are compared with SRS's own stream list at start-up, periodically, and whenever a
hook's ``service_id`` shows SRS restarted. While SRS cannot be reached nothing is ended.
Player counts are compared with SRS's client list in the same passes: players it no longer
lists are forgotten (a lost on_stop), and a registry that started empty counts SRS's players
again.

A restart signal (a hook's or a heartbeat's new ``service``) triggers at most one pass per SRS
origin per :data:`TRIGGER_INTERVAL` seconds, whoever sends it: a signal inside the interval is
not lost, it runs one pass when the interval ends. The heartbeat's service ids are kept here,
apart from the hooks' (:meth:`RoomService.service_changed`), and bounded: a heartbeat cannot
make a genuine hook look like a restart, nor grow livehub's memory.

With several SRS origins every pass asks each of them at once. A live room keeps its publisher
while any origin that answered lists its stream; it loses it only when its own origin (the one
whose ``server_id`` its publisher's hook carried) answered without it. Rooms of an origin that
did not answer are left alone, and a room whose origin is unknown is only judged when every
origin answered."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

from livehub.adapters.srs.api import SRSClient, SRSOrigins, SRSUnavailable
from livehub.domain.room import Room
from livehub.domain.service import RoomService
from livehub.metrics import Metrics

log = logging.getLogger(__name__)

#: seconds between two passes that restart signals of one SRS origin may trigger
TRIGGER_INTERVAL = 10.0
#: SRS servers whose heartbeat service id is remembered (the oldest is forgotten first)
MAX_HEARTBEAT_SERVERS = 64


class Reconciler:
    """Runs reconciliation passes. ``leader`` (cluster mode) tells whether this node holds the
    leader lock: the start-up and periodic passes run only there, so one node at a time asks
    SRS; a pass triggered here (a hook showed SRS restarted) runs on this node anyway, as it is
    rare and safe to repeat (every change is a conditional write)."""

    def __init__(
        self,
        rooms: RoomService,
        srs: SRSClient | SRSOrigins,
        metrics: Metrics,
        interval: float,
        *,
        leader: Callable[[], bool] | None = None,
        player_sessions: Callable[[], int] | None = None,
        stage: Callable[[Mapping[str, str | None], int], Awaitable[int]] | None = None,
    ) -> None:
        self._rooms = rooms
        self._origins = srs if isinstance(srs, SRSOrigins) else SRSOrigins([srs])
        self._leader = leader
        self._triggered = False
        self._metrics = metrics
        self._interval = interval
        self._wake = asyncio.Event()
        self.last_run: float | None = None
        self.last_ok: bool | None = None
        #: passes skipped because SRS could not be asked, since start-up
        self.skipped = 0
        #: when each origin's restart signal last triggered a pass (monotonic seconds)
        self._triggered_at: dict[str | None, float] = {}
        #: origins whose signal came inside the interval: one pass when it ends
        self._deferred: dict[str | None, float] = {}
        #: the last heartbeat ``service`` per SRS ``server`` (bounded)
        self._heartbeats: dict[str | None, str] = {}
        #: origins that did not answer the last pass (their rooms were left alone)
        self.unanswered: tuple[str, ...] = ()
        #: the player registry's sessions (cluster mode: the shared registry's with Redis;
        #: embedded: one, the process's): when it changed since the players were last
        #: restored, a pass counts SRS's players again
        self._player_sessions = player_sessions or (lambda: 1)
        #: the stage's reconciliation (guest streams SRS no longer publishes), once every
        #: origin answered
        self._stage = stage
        self._players_restored_for = 0
        #: players counted again from SRS's client list, since start-up
        self.players_restored = 0
        #: players forgotten because SRS no longer listed them, since start-up
        self.players_forgotten = 0

    def players_reset(self) -> None:
        """The player registry has a new session (Redis may have restarted empty): the
        leader restores the players from SRS now; other nodes leave it to the leader."""
        if self.leading:
            self._run_soon()

    def _run_soon(self) -> None:
        self._triggered = True
        self._wake.set()

    def trigger(self, server_id: str | None = None) -> bool:
        """Reconcile as soon as possible: the SRS ``server_id`` restarted. At most once per
        origin per :data:`TRIGGER_INTERVAL`; a signal inside the interval runs one pass when
        it ends. Returns whether a pass was triggered now."""
        origin = self._origins.origin_of(server_id)
        now = time.monotonic()
        last = self._triggered_at.get(origin)
        if last is not None and now - last < TRIGGER_INTERVAL:
            self._deferred.setdefault(origin, last + TRIGGER_INTERVAL)
            self._wake.set()  # the loop waits no longer than the deferred pass
            return False
        self._triggered_at[origin] = now
        self._deferred.pop(origin, None)
        self._run_soon()
        return True

    @property
    def deferred(self) -> tuple[str | None, ...]:
        """Origins whose restart signal waits for the end of its throttle interval."""
        return tuple(self._deferred)

    @property
    def heartbeat_servers(self) -> int:
        """SRS servers whose heartbeat service id is remembered."""
        return len(self._heartbeats)

    def heartbeat(self, server_id: str | None, service_id: str | None) -> bool:
        """An SRS heartbeat: True when ``service_id`` differs from the last one this
        ``server_id`` sent (SRS restarted) and a pass was triggered."""
        if not service_id:
            return False
        last = self._heartbeats.pop(server_id, None)
        if last is None and len(self._heartbeats) >= MAX_HEARTBEAT_SERVERS:
            del self._heartbeats[next(iter(self._heartbeats))]
        self._heartbeats[server_id] = service_id  # re-inserted: the most recent is last
        return last is not None and last != service_id and self.trigger(server_id)

    @property
    def leading(self) -> bool:
        """Whether the scheduled passes run on this node (always, outside cluster mode)."""
        return self._leader is None or self._leader()

    async def run_once(self) -> bool:
        """One pass. True if every SRS origin answered and live rooms were checked (with
        several origins, the rooms of those that answered are checked either way)."""
        self.last_run = time.time()
        asked_at = int(self.last_run * 1000)
        clients = self._origins.clients
        replies = await asyncio.gather(
            *(client.publishing() for client in clients), return_exceptions=True
        )
        publishing: dict[str, str | None] = {}
        answered: set[str] = set()
        failed: list[tuple[str, BaseException]] = []
        for client, reply in zip(clients, replies, strict=True):
            if isinstance(reply, SRSUnavailable):
                failed.append((client.name, reply))
            elif isinstance(reply, BaseException):
                raise reply
            else:
                answered.add(client.name)
                publishing.update(reply)
                if client.service_id:
                    self._rooms.service_changed(client.service_id, client.server_id)
        self.unanswered = tuple(name for name, _ in failed)
        if failed:
            # warn once per outage; every further skip (each interval) only at DEBUG
            level = logging.DEBUG if self.last_ok is False else logging.WARNING
            self.last_ok = False
            self.skipped += 1
            self._metrics.srs_api_up.set(0)
            self._metrics.reconciles.labels("unreachable").inc()
            for name, exc in failed:
                if len(clients) == 1:
                    log.log(level, "reconciliation skipped, SRS API unreachable: %s", exc)
                else:
                    log.log(level, "reconciliation skips SRS origin %s, unreachable: %s", name, exc)
            if not answered:
                return False
        elif self.last_ok is False:
            log.info("SRS API reachable again: reconciling")
        origins = self._origins

        def judged(room: Room) -> bool:
            """Whether the origin of the room's publisher answered."""
            client = origins.route(room.publisher_server_id, room.publisher_origin)
            return client.name in answered if client is not None else not failed

        changed = await self._rooms.reconcile(
            publishing, asked_at, answered=judged if len(clients) > 1 else None
        )
        for room in changed:
            log.info("room %s has no publisher in SRS: publisher gone", room.id)
        await self._players([c for c in clients if c.name in answered])
        if failed:
            return False
        if self._stage is not None:
            guests = await self._stage(publishing, asked_at)
            if guests:
                log.info("%d rooms' stages no longer published in SRS: guests updated", guests)
        self.last_ok = True
        self._metrics.srs_api_up.set(1)
        self._metrics.reconciles.labels("ok").inc()
        return True

    async def _players(self, clients: list[SRSClient]) -> None:
        """Player counts against SRS's client list, once every origin answered (so no
        origin's players are missed): the players SRS no longer lists are forgotten (their
        on_stop was lost, see :class:`~livehub.domain.reconciliation.LostPlayers`), and after
        the registry started a new session (this process's first pass: an embedded registry
        starts empty at every start-up; a shared one whose Redis came back, maybe empty) SRS's
        players are counted again."""
        if len(clients) < len(self._origins.clients):
            return
        counted = await self._rooms.players.clients()  # read before SRS is asked
        asked_at = int(time.time() * 1000)
        players: dict[str, str] = {}
        try:
            for reply in await asyncio.gather(*(client.players() for client in clients)):
                players.update(reply)
        except SRSUnavailable as exc:
            log.warning("player counts not checked, SRS client list unavailable: %s", exc)
            return
        sessions = self._player_sessions()
        if sessions != self._players_restored_for:
            added = await self._rooms.restore_players(players)
            self._players_restored_for = sessions
            self.players_restored += added
            if added:
                log.info("player counts restored from SRS: %d players counted again", added)
        forgotten = await self._rooms.forget_lost_players(counted, players, asked_at)
        self.players_forgotten += forgotten
        if forgotten:
            log.info("%d players SRS no longer lists are not counted any more", forgotten)

    def _deferred_due(self) -> bool:
        """Whether a deferred restart signal's pass is due now (it counts as triggered)."""
        now = time.monotonic()
        due = [origin for origin, at in self._deferred.items() if at <= now]
        for origin in due:
            del self._deferred[origin]
            self._triggered_at[origin] = now
        return bool(due)

    async def run(self) -> None:
        """Forever: at start, every ``interval`` seconds, and when triggered. A wake-up that
        is neither (a signal deferred by the throttle) runs no pass."""
        scheduled = True  # the start-up pass
        while True:
            self._wake.clear()
            deferred = self._deferred_due()  # a pass now serves it too
            triggered, self._triggered = self._triggered or deferred, False
            try:
                if triggered or (scheduled and self.leading):
                    await self.run_once()
            except Exception:
                log.exception("reconciliation failed")
            interval = self._interval if self._interval > 0 else None
            timeout = interval
            if self._deferred:
                wait = max(0.0, min(self._deferred.values()) - time.monotonic())
                timeout = wait if timeout is None else min(timeout, wait)
            scheduled = False
            try:
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            except TimeoutError:
                scheduled = timeout == interval  # not a deferred signal's time
