"""Per-address limits shared by every node of a cluster, in Redis: open WebSockets per address,
kick bans, and the anonymous room-create buckets (the ports of :mod:`livehub.domain.addresses`
and :class:`livehub.domain.admission.CreateBuckets`).

Connections: each node counts its own in a hash ``P conns:<node>`` (address key -> open
connections), listed in the set ``P conns:nodes``. An upgrade runs one Lua script that sums the
address's count over the nodes whose hash still exists and, under the limit, increments this
node's; a close decrements it. The hash expires ``ttl`` seconds after the node's last heartbeat,
so the connections of a node that died stop counting within ``ttl`` (nothing leaks). The node
keeps a mirror of its own connections; a heartbeat that finds its hash gone (Redis restarted
empty) or follows a failed call (an increment or decrement that may be lost) writes the hash
again from the mirror, so the counts are right again within a heartbeat. A rewrite waits for the
increments and decrements already sent, and holds back new ones until it is written: one that
ran between the mirror's snapshot and the rewrite would be lost, or counted twice, for good.

Kick bans: ``P ban:<room>:<address>`` with the ban's TTL, announced on the channel ``P bans``
(one pipelined write). Every node keeps a mirror of every current ban: it subscribes to the
channel, then reads the ban keys already there (SCAN, with what is left of each TTL), and from
then on answers a join's ban check from the mirror, without a Redis round trip (that round trip
was a fifth of a node's CPU in a join storm). While its subscription is down (Redis restarted,
unreachable) a node checks Redis as before, its own bans first; it subscribes and reads the keys
again when Redis is back. A rejoin on the banning node is refused at once, whatever Redis does.

Create buckets: ``P create:<address>``, a token bucket (tokens, last refill by Redis's clock)
updated by one script, with a TTL of one full refill. A creation whose room was not written is
given back by another script (a bucket gone since is full again: nothing to give back).

Redis unreachable: each node limits on its own (its mirror of its connections against the same
limit, its own bans and create buckets) and tries Redis again after ``retry_interval``; a
warning is logged once per outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from typing import Any

import orjson

from livehub.adapters.redis.bus import (
    SESSION_ERRORS,
    close_pubsub,
    connect,
    subscriptions_confirmed,
)
from livehub.domain.addresses import LocalBans, LocalConnections, SharedUnavailable
from livehub.tasks import cancel_and_wait, pause

log = logging.getLogger(__name__)

#: ARGV: prefix, node, address, limit, ttl (ms). 1 if counted, 0 at the limit.
ACQUIRE = """
local p, node, addr, limit, ttl = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local nodes = p .. 'conns:nodes'
local total = 0
for _, n in ipairs(redis.call('SMEMBERS', nodes)) do
  local key = p .. 'conns:' .. n
  local count = redis.call('HGET', key, addr)
  if count then
    total = total + tonumber(count)
  elseif n ~= node and redis.call('EXISTS', key) == 0 then
    redis.call('SREM', nodes, n)
  end
end
if total >= limit then return 0 end
local mine = p .. 'conns:' .. node
redis.call('SADD', nodes, node)
redis.call('HINCRBY', mine, addr, 1)
redis.call('PEXPIRE', mine, ttl)
return 1
"""

#: ARGV: prefix, node, address. The node's count of the address after the decrement.
RELEASE = """
local key = ARGV[1] .. 'conns:' .. ARGV[2]
local n = redis.call('HINCRBY', key, ARGV[3], -1)
if n <= 0 then redis.call('HDEL', key, ARGV[3]); n = 0 end
return n
"""

#: ARGV: prefix, address, rate per minute (= the burst). 0 if a creation was taken, else the
#: seconds until the bucket holds one.
TAKE_CREATE = """
local key, burst = ARGV[1] .. 'create:' .. ARGV[2], tonumber(ARGV[3])
local rate = burst / 60.0
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', key, 'tokens', 'last')
local tokens = tonumber(state[1]) or burst
local last = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - last) * rate)
local wait = 0
if tokens < 1 then
  wait = math.max(1, math.ceil((1 - tokens) / rate))
else
  tokens = tokens - 1
end
redis.call('HSET', key, 'tokens', tostring(tokens), 'last', tostring(now))
redis.call('PEXPIRE', key, 61000)
return wait
"""

#: ARGV: prefix, address, rate per minute (= the burst). Puts back one creation; 0.
GIVE_BACK_CREATE = """
local key, burst = ARGV[1] .. 'create:' .. ARGV[2], tonumber(ARGV[3])
local state = redis.call('HMGET', key, 'tokens', 'last')
if not state[1] then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local elapsed = math.max(0, now - tonumber(state[2]))
local tokens = math.min(burst, tonumber(state[1]) + elapsed * burst / 60.0 + 1)
redis.call('HSET', key, 'tokens', tostring(tokens), 'last', tostring(now))
redis.call('PEXPIRE', key, 61000)
return 0
"""


class RedisAddressLimits:
    """``ConnectionCounts``, ``KickBans`` and ``CreateBuckets`` on Redis (module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        node_id: str,
        limit: int,
        ban_seconds: float,
        prefix: str = "livehub:",
        ttl: float = 6.0,
        heartbeat: float = 2.0,
        retry_interval: float = 1.0,
        timeout: float = 2.0,
    ) -> None:
        self.limit = limit
        self.seconds = ban_seconds
        self.node_id = node_id
        self.prefix = prefix
        self.ttl = ttl
        self.heartbeat = heartbeat
        self.retry_interval = retry_interval
        self._client = connect(url, timeout=timeout)
        self._acquire = self._client.register_script(ACQUIRE)
        self._release = self._client.register_script(RELEASE)
        self._take_create = self._client.register_script(TAKE_CREATE)
        self._give_back_create = self._client.register_script(GIVE_BACK_CREATE)
        #: this node's open connections per address: the truth its hash is rewritten from
        self.local = LocalConnections(limit)
        self._bans = LocalBans(ban_seconds)
        #: ban checks waiting for the next pipelined round trip (ban key -> its answer)
        self._checks: dict[str, asyncio.Future[bool]] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._beat: asyncio.Task[None] | None = None
        #: set by close(): the background loops end on it even if redis-py spent their
        #: cancellation (livehub/tasks.py)
        self._stop = asyncio.Event()
        #: monotonic time before which Redis is not tried again (after a failure)
        self._down_until = 0.0
        self._outage_logged = False
        #: Redis may not hold the mirror's counts (a call failed): the next heartbeat writes them
        self._dirty = False
        #: acquire and release scripts sent and not yet answered (a rewrite waits for them)
        self._calls = 0
        self._calls_done = asyncio.Event()
        #: a rewrite of this node's hash is under way (waiting for the calls, then writing)
        self._rewrite: asyncio.Future[None] | None = None
        #: the rewrite took its snapshot of the mirror: a release now runs after it
        self._writing = False
        #: the ban mirror holds every current ban of the cluster (subscribed, keys read)
        self.bans_mirrored = False
        self._feed: asyncio.Task[None] | None = None

    @property
    def _mine(self) -> str:
        return f"{self.prefix}conns:{self.node_id}"

    # -- life -------------------------------------------------------------------------------

    async def start(self) -> None:
        self._stop.clear()
        if self._beat is None:
            self._beat = asyncio.create_task(self._heartbeat(), name="livehub-address-limits")
        if self._feed is None and self.seconds > 0:
            self._feed = asyncio.create_task(self._ban_feed(), name="livehub-ban-feed")

    async def close(self) -> None:
        """Stop the heartbeat; this node's connections (all closed by now) stop counting."""
        self._stop.set()
        if self._beat is not None:
            await cancel_and_wait(self._beat)
            self._beat = None
        if self._feed is not None:
            await cancel_and_wait(self._feed)
            self._feed = None
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=self.retry_interval)
            await cancel_and_wait(*self._tasks)
        with contextlib.suppress(*SESSION_ERRORS):
            await self._client.delete(self._mine)
        await self._client.aclose()

    # -- connections ------------------------------------------------------------------------

    async def acquire(self, key: str) -> bool:
        if not self.limit:
            return True
        if self.local.counts.get(key, 0) >= self.limit:
            return False  # this node alone holds as many
        while self._rewrite is not None and self._up():
            await asyncio.shield(self._rewrite)  # a rewrite may fail: Redis is asked again
        if self._up():
            self._calls += 1
            try:
                counted = await self._acquire(
                    args=[self.prefix, self.node_id, key, self.limit, int(self.ttl * 1000)]
                )
            except SESSION_ERRORS as exc:
                self._outage(exc)
            else:
                self._back()
                if not counted:
                    return False
                self.local.counts[key] = self.local.counts.get(key, 0) + 1
                return True
            finally:
                self._call_done()
        self._dirty = True  # Redis unreachable: this node's own count, written to it when back
        return self.local.try_acquire(key)

    def release(self, key: str) -> None:
        if not self.limit:
            return
        self.local.release(key)
        if not self._up():
            self._dirty = True
        elif self._writing:  # the rewrite's snapshot holds this release already
            assert self._rewrite is not None
            self._spawn(self._released(key, after=self._rewrite))
        else:  # counted at once: a rewrite that has not taken its snapshot waits for it
            self._calls += 1
            task = self._spawn(self._released(key))
            task.add_done_callback(lambda _: self._call_done())

    async def _released(self, key: str, after: asyncio.Future[None] | None = None) -> None:
        if after is not None:
            await asyncio.shield(after)
        try:
            await self._release(args=[self.prefix, self.node_id, key])
        except SESSION_ERRORS as exc:  # the next heartbeat writes the right count
            self._outage(exc)

    def _call_done(self) -> None:
        self._calls -= 1
        if not self._calls:
            self._calls_done.set()

    # -- kick bans --------------------------------------------------------------------------

    @property
    def _ban_prefix(self) -> str:
        return f"{self.prefix}ban:"

    def _ban_key(self, room_id: str, key: str) -> str:
        return f"{self._ban_prefix}{room_id}:{key}"

    @property
    def _ban_channel(self) -> str:
        return f"{self.prefix}bans"

    def ban(self, room_id: str, key: str) -> None:
        if self.seconds <= 0 or not key:
            return
        self._bans.ban(room_id, key)
        self._spawn(self._ban(room_id, key))

    async def _ban(self, room_id: str, key: str) -> None:
        ms = int(self.seconds * 1000)
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.set(self._ban_key(room_id, key), b"1", px=ms)
                pipe.publish(self._ban_channel, orjson.dumps([room_id, key, ms]))
                await pipe.execute()
        except SESSION_ERRORS as exc:
            self._outage(exc)

    async def banned(self, room_id: str, key: str) -> bool:
        if self.seconds <= 0:
            return False
        if self._bans.is_banned(room_id, key):
            return True
        if self.bans_mirrored:
            return False  # the mirror holds every current ban of the cluster
        if not self._up():
            return False
        # the joins of one loop iteration (a join storm) share one pipelined round trip
        checks = self._checks
        if checks is None:
            checks = self._checks = {}
            # runs after the joins already scheduled; if it is cancelled before it starts
            # (shutdown), its askers are answered by the node's own bans
            task = asyncio.get_running_loop().create_task(self._check_bans(checks))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            task.add_done_callback(lambda _: self._settle(checks))
        ban_key = self._ban_key(room_id, key)
        found = checks.get(ban_key)
        if found is None:
            found = checks[ban_key] = asyncio.get_running_loop().create_future()
        return await asyncio.shield(found)

    def _settle(self, checks: dict[str, asyncio.Future[bool]]) -> None:
        """The check of ``checks`` ended: none of its askers is left waiting, and later askers
        start a new one (also when it was cancelled before it ran: shutdown)."""
        if self._checks is checks:
            self._checks = None
        for future in checks.values():
            if not future.done():
                future.set_result(False)

    async def _check_bans(self, checks: dict[str, asyncio.Future[bool]]) -> None:
        self._checks = None
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for ban_key in checks:
                    pipe.exists(ban_key)
                found = await pipe.execute()
        except SESSION_ERRORS as exc:
            self._outage(exc)
            found = [0] * len(checks)  # as the node's own bans say (checked first)
        except BaseException:
            found = [0] * len(checks)
            raise
        else:
            self._back()
        finally:
            for future, exists in zip(checks.values(), found, strict=True):
                if not future.done():
                    future.set_result(bool(exists))

    async def _ban_feed(self) -> None:
        """Keep the ban mirror: subscribe to the ban channel, read the ban keys already there,
        then apply each announced ban; again after any failure, ``retry_interval`` later."""
        while True:
            try:
                await self._follow_bans()
            except SESSION_ERRORS as exc:
                log.debug("address limits: ban feed interrupted (%s); asking Redis meanwhile", exc)
            except Exception:
                log.exception("address limits: ban feed failed; asking Redis meanwhile")
            if await pause(self._stop, self.retry_interval):
                return

    async def _follow_bans(self) -> None:
        pubsub = self._client.pubsub()
        try:
            await pubsub.subscribe(self._ban_channel)
            await subscriptions_confirmed(pubsub, {self._ban_channel}, self.heartbeat * 5)
            # subscribed: every later ban arrives; now the bans made before
            await self._read_bans()
            self.bans_mirrored = True
            while not self._stop.is_set():
                message = await pubsub.get_message(timeout=1.0)
                if message is not None and message["type"] == "message":
                    self._mirror(message["data"])
        finally:
            self.bans_mirrored = False
            await close_pubsub(pubsub)

    async def _read_bans(self) -> None:
        """Every ban key in Redis into the mirror, with what is left of its TTL."""
        prefix = self._ban_prefix
        cursor = 0
        while True:
            cursor, keys = await self._client.scan(
                cursor, match=_glob_escape(prefix) + "*", count=1000
            )
            if keys:
                async with self._client.pipeline(transaction=False) as pipe:
                    for name in keys:
                        pipe.pttl(name)
                    ttls = await pipe.execute()
                for name, ttl in zip(keys, ttls, strict=True):
                    # room ids hold no colon; an IPv6 address key does
                    text = name.decode() if isinstance(name, bytes) else name
                    room_id, sep, key = text[len(prefix) :].partition(":")
                    if sep and key and ttl > 0:
                        self._bans.ban(room_id, key, ttl / 1000)
            if not cursor:
                return

    def _mirror(self, data: bytes) -> None:
        try:
            room_id, key, ms = orjson.loads(data)
            self._bans.ban(str(room_id), str(key), float(ms) / 1000)
        except (orjson.JSONDecodeError, TypeError, ValueError):
            log.warning("address limits: ignored a malformed message on the ban channel")

    # -- room creation ----------------------------------------------------------------------

    async def take_create(self, key: str, rate_per_min: int) -> int:
        if not self._up():
            raise SharedUnavailable("Redis unreachable")
        try:
            wait = await self._take_create(args=[self.prefix, key, rate_per_min])
        except SESSION_ERRORS as exc:
            self._outage(exc)
            raise SharedUnavailable(str(exc)) from None
        self._back()
        return int(wait)

    async def give_back_create(self, key: str, rate_per_min: int) -> None:
        if not self._up():
            raise SharedUnavailable("Redis unreachable")
        try:
            await self._give_back_create(args=[self.prefix, key, rate_per_min])
        except SESSION_ERRORS as exc:
            self._outage(exc)
            raise SharedUnavailable(str(exc)) from None
        self._back()

    # -- internals --------------------------------------------------------------------------

    def _up(self) -> bool:
        return time.monotonic() >= self._down_until

    def _outage(self, exc: BaseException) -> None:
        self._dirty = True
        self._down_until = time.monotonic() + self.retry_interval
        if not self._outage_logged:
            log.warning("address limits: Redis unreachable (%s); each node limits on its own", exc)
            self._outage_logged = True

    def _back(self) -> None:
        if self._outage_logged:
            log.info("address limits: Redis reachable again")
            self._outage_logged = False

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def write_counts(self) -> None:
        """Write this node's hash from its mirror, and keep it alive for ``ttl``: once the
        calls already sent are answered, with new ones held back until it is written."""
        while self._rewrite is not None:
            await asyncio.shield(self._rewrite)
        rewrite = self._rewrite = asyncio.get_running_loop().create_future()
        try:
            while self._calls:
                self._calls_done.clear()
                await self._calls_done.wait()
            self._writing = True
            self._dirty = False
            counts: dict[Any, Any] = dict(self.local.counts)  # redis-py types it narrowly
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.delete(self._mine)
                if counts:
                    pipe.hset(self._mine, mapping=counts)
                    pipe.pexpire(self._mine, int(self.ttl * 1000))
                    pipe.sadd(f"{self.prefix}conns:nodes", self.node_id)
                await pipe.execute()
        finally:
            self._writing = False
            self._rewrite = None
            rewrite.set_result(None)

    async def _beat_once(self) -> None:
        if not self._dirty:
            alive = await self._client.pexpire(self._mine, int(self.ttl * 1000))
            if alive or not self.local.counts:
                return
            log.info("address limits: this node's counts were gone from Redis; writing them")
        await self.write_counts()

    async def _heartbeat(self) -> None:
        while not self._stop.is_set():
            if self.limit:
                try:
                    await self._beat_once()
                except SESSION_ERRORS as exc:
                    self._outage(exc)
                else:
                    self._down_until = 0.0
                    self._back()
            await pause(self._stop, self.heartbeat)


def _glob_escape(text: str) -> str:
    """``text`` matched literally in a Redis glob pattern (SCAN MATCH)."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
