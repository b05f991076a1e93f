"""SRS player counts shared through Redis (the store's ``PlayerCounts`` port, cluster mode).

SRS calls ``on_play``/``on_stop`` on whichever node the proxy picks, so the registry of players
(SRS client id -> room) lives in Redis; every change is one Lua call that also bumps a global
sequence number and publishes ``room, count, seq`` on one channel. Each node keeps a mirror of
the counts, so :meth:`count` stays synchronous (views read it): the mirror takes a room's count
only from a newer sequence number, so replies and notices arriving in any order never move it
backwards. On every (re)connection the node subscribes first, then loads a snapshot.

Redis unreachable: :meth:`add` and :meth:`remove` count nothing (a warning per outage) and the
mirror keeps the last known counts. The registry has no persistence of its own: after Redis
restarts empty, counts start again from the players that come and go, and the reconciliation
leader restores them from SRS's client list: every new session (:attr:`sessions`) calls
:attr:`on_session`, and the leader's next pass lists SRS's players again.

Keys: ``P players:room`` (hash client -> room), ``P players:count`` (hash room -> players),
``P players:seq`` (counter); channel ``P players``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError

from livehub.adapters.redis.bus import (
    SESSION_ERRORS,
    close_pubsub,
    connect,
    subscriptions_confirmed,
)
from livehub.tasks import cancel_and_wait, pause

log = logging.getLogger(__name__)

#: ARGV: prefix, room, client. Returns {added (0/1), old room or "", old count, new count, seq}.
ADD = """
local p, room, client = ARGV[1], ARGV[2], ARGV[3]
local rooms, counts = p .. 'players:room', p .. 'players:count'
local old = redis.call('HGET', rooms, client)
if old == room then return {0, '', 0, 0, 0} end
local seq = redis.call('INCR', p .. 'players:seq')
local old_n = 0
if old then
  old_n = redis.call('HINCRBY', counts, old, -1)
  if old_n <= 0 then redis.call('HDEL', counts, old); old_n = 0 end
  redis.call('PUBLISH', p .. 'players', old .. '\\n' .. old_n .. '\\n' .. seq)
else
  old = ''
end
redis.call('HSET', rooms, client, room)
local n = redis.call('HINCRBY', counts, room, 1)
redis.call('PUBLISH', p .. 'players', room .. '\\n' .. n .. '\\n' .. seq)
return {1, old, old_n, n, seq}
"""

#: ARGV: prefix, client. Returns {room or "", count, seq}.
REMOVE = """
local p, client = ARGV[1], ARGV[2]
local rooms, counts = p .. 'players:room', p .. 'players:count'
local old = redis.call('HGET', rooms, client)
if not old then return {'', 0, 0} end
local seq = redis.call('INCR', p .. 'players:seq')
redis.call('HDEL', rooms, client)
local n = redis.call('HINCRBY', counts, old, -1)
if n <= 0 then redis.call('HDEL', counts, old); n = 0 end
redis.call('PUBLISH', p .. 'players', old .. '\\n' .. n .. '\\n' .. seq)
return {old, n, seq}
"""


class RedisPlayers:
    """``PlayerCounts`` on Redis with a local mirror (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "livehub:",
        retry_interval: float = 0.5,
        timeout: float = 2.0,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.retry_interval = retry_interval
        self._client = connect(url, timeout=timeout)
        self._timeout = timeout
        #: room with players -> (players, sequence number of that figure)
        self._counts: dict[str, tuple[int, int]] = {}
        #: the channel's sequence number so far: every change up to it is in the mirror
        self._floor = 0
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        #: what the follower loop stops on (with its cancellation)
        self._stop = asyncio.Event()
        self._outage_logged = False
        self.healthy = False
        #: sessions with Redis so far (a new one follows an outage, maybe an empty Redis)
        self.sessions = 0
        #: called after each session's snapshot is loaded (the app wakes reconciliation)
        self.on_session: Callable[[], None] | None = None

    def count(self, room_id: str) -> int:
        return self._counts.get(room_id, (0, 0))[0]

    async def add(self, room_id: str, client_id: str) -> bool:
        try:
            added, old, old_n, n, seq = await self._eval(ADD, room_id, client_id)
        except SESSION_ERRORS as exc:
            self._outage(exc)
            return False
        if not added:
            return False
        if old:
            self._apply(old.decode(), int(old_n), int(seq))
        self._apply(room_id, int(n), int(seq))
        return True

    async def remove(self, client_id: str) -> str | None:
        try:
            room, n, seq = await self._eval(REMOVE, client_id)
        except SESSION_ERRORS as exc:
            self._outage(exc)
            return None
        if not room:
            return None
        room_id: str = room.decode()
        self._apply(room_id, int(n), int(seq))
        return room_id

    async def clients(self) -> dict[str, str]:
        """The registry, read in pages (``HSCAN``): a large one does not hold Redis up."""
        found: dict[str, str] = {}
        try:
            async for client_id, room_id in self._client.hscan_iter(
                f"{self.prefix}players:room", count=1000
            ):
                found[client_id.decode()] = room_id.decode()
        except SESSION_ERRORS as exc:
            self._outage(exc)
            return {}
        return found

    async def _eval(self, script: str, *args: str) -> Any:
        """Run one of the scripts; once more on a fresh connection if the pooled one died
        (Redis restarted since: the first call after would fail, and the hook be lost). Both
        scripts are idempotent, so a retry never counts twice."""
        try:
            return await self._client.eval(script, 0, self.prefix, *args)
        except RedisConnectionError:
            return await self._client.eval(script, 0, self.prefix, *args)

    async def start(self) -> None:
        """Start following the counts; waits up to ``timeout`` for the first snapshot."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="redis-players")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._timeout):
                await self._ready.wait()

    async def close(self) -> None:
        self._stop.set()
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
        await self._client.aclose()

    def _apply(self, room_id: str, players: int, seq: int, *, in_order: bool = False) -> None:
        """Take a room's count at ``seq`` unless the mirror has a newer one. ``in_order``: a
        notice from the channel, which brings every change in sequence order; a room at zero
        is then dropped (the mirror keeps only rooms with players), and what arrives later
        about an absent room with a sequence number the channel has passed is stale."""
        floor = self._floor
        if in_order and seq > floor:
            self._floor = seq
        current = self._counts.get(room_id)
        if current is not None:
            if current[1] > seq:
                return
        elif seq < floor or players <= 0:
            # zero is what an absent room has; older than the channel: it was at zero since
            # (a move between rooms is two notices of one sequence number, hence not <=)
            return
        if players <= 0:
            if in_order:
                self._counts.pop(room_id, None)
            else:
                self._counts[room_id] = (0, seq)  # until its notice comes
            return
        self._counts[room_id] = (players, seq)

    def _outage(self, exc: BaseException) -> None:
        if not self._outage_logged:
            log.warning("player counts: Redis unreachable (%s); players are not counted", exc)
            self._outage_logged = True

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                await self._follow()
            except SESSION_ERRORS as exc:
                self._outage(exc)
            except Exception:
                log.exception("player counts: following Redis failed; starting again")
            await pause(self._stop, self.retry_interval)

    async def _follow(self) -> None:
        client = connect(self.url, timeout=self._timeout)
        pubsub = client.pubsub()
        try:
            channel = f"{self.prefix}players"
            await pubsub.subscribe(channel)
            await subscriptions_confirmed(pubsub, {channel}, self._timeout)
            # subscribed: every later change arrives; now the state up to here
            async with client.pipeline(transaction=True) as pipe:
                pipe.get(f"{self.prefix}players:seq")
                pipe.hgetall(f"{self.prefix}players:count")
                raw_seq, counts = await pipe.execute()
            seq = int(raw_seq or 0)
            snapshot = {room.decode(): int(n) for room, n in counts.items()}
            for room_id in list(self._counts):
                if room_id not in snapshot:
                    self._counts.pop(room_id)
            # a restarted Redis starts its sequence again: the snapshot replaces the mirror
            self._counts.update({room_id: (n, seq) for room_id, n in snapshot.items() if n > 0})
            self._floor = seq
            self.healthy = True
            self.sessions += 1
            if self.on_session is not None:
                try:
                    self.on_session()
                except Exception:
                    log.exception("player counts: session callback failed")
            if self._outage_logged:
                log.info("player counts: Redis reachable again")
            self._outage_logged = False
            self._ready.set()
            while not self._stop.is_set():
                message = await pubsub.get_message(timeout=1.0)
                if message is not None and message["type"] == "message":
                    room, n, change = message["data"].split(b"\n")
                    self._apply(room.decode(), int(n), int(change), in_order=True)
        finally:
            self.healthy = False
            await close_pubsub(pubsub)
            with contextlib.suppress(Exception):
                await asyncio.shield(client.aclose())
