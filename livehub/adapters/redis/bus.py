"""The cluster bus on Redis: pub/sub between nodes, presence in hashes, a heartbeat per node.

One node = one :class:`RedisBus`. Its state of truth is its own mirror of local membership
(``room -> peer -> (name, role)``, kept by :meth:`join`/:meth:`leave`); Redis holds the union of
every node's mirror, which a node can always rebuild from its own. That makes the failure cases
simple:

- **Redis lost**: the session ends (the pub/sub reader sees the socket close, or the heartbeat
  times out), :attr:`healthy` turns false at once, broadcasts reach local members only
  (:meth:`broadcast` drops what it cannot carry), and a new session is tried every
  ``retry_interval``. A new session subscribes again, then in one MULTI removes this node's
  stale entries and writes the mirror back: counts are exact again as soon as it commits.
- **A node dies** (kill -9): its ``alive:`` key expires after ``node_ttl``, which already takes
  its members out of every count; the survivors' reapers run ``REAP_DEAD``, which checks that
  the key is still gone and deletes the node's presence in one script (exactly one survivor gets
  its members) and calls :meth:`BusHandler.members_lost` so the hub announces ``peer-left``.
- **A node was presumed dead** (paused longer than ``node_ttl``, then resumed): its next
  heartbeat writes ``alive:`` and registers it again in one pipeline. If the registration was
  gone (``ZADD`` added it: a survivor reaped it), it rebuilds presence from the mirror and calls
  :meth:`BusHandler.members_returned` so its members are announced again; if only the key had
  expired, it rebuilds quietly. A reap can no longer land after the rebuild: the script sees the
  heartbeat. The writer makes that rebuild between two of its batches, so that no join or leave
  lands between the mirror's snapshot and the rebuild (the rebuild would undo it); the ones
  queued before the snapshot and written after it change nothing (the scripts see the later
  seq, the member already there or already gone).
- **A node reaped while its session was down** (cut off longer than ``node_ttl``): the reaper
  left ``reaped:<node>``; the new session's rebuild takes it and announces the members again.

Presence travels as deltas. Each :meth:`RedisBus.join` / :meth:`RedisBus.leave` takes the next
number of the node's one counter (``seq``; it starts at the clock in microseconds, so a node
restarted under the same id goes on above its old numbers) and names the node's previous one in
the room (``prev``, 0 when the node had nobody there). The JOIN / LEAVE script writes the
membership and the node's latest seq in the room (``room:<room>:seq``) and publishes the
signed delta (kind ``j`` / ``l``) on the room's channel, in one atomic step; MEMBERS returns the
members and those seqs together (:meth:`RedisBus.snapshot`). A rebuild's joins are quiet and
record the room's latest seq (every change the mirror holds); it publishes one ``c`` notice per
room, as reaping and closing do: a node's whole presence there was rewritten, read it again.

Ordering: everything a node sends goes through one queue and one connection, pipelined in call
order (at most :data:`CHUNK` operations a round trip; past :data:`MAX_QUEUED` waiting, producers
wait in :meth:`RedisBus.writable`); each receiving node reads its room and node channels on one
pub/sub connection, so a recipient gets a sender's broadcasts, presence deltas and direct sends
in send order. A direct send to a peer whose node the caller knows is a plain PUBLISH on that
node's channel; only an unknown node is looked up (the SEND script). Consecutive publishes on
one channel within one batch of the writer go out as one PUBLISH (kind ``B``, signed once):
on a busy node the relays of a burst cost one Redis command and one read per node, not one
each. A room's channel is subscribed (and the subscription confirmed) before the join that
needs it is written.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import hmac
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

import orjson
import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError

from livehub.adapters.redis import scripts
from livehub.config import redact_url
from livehub.domain.bus import BusHandler, Member, PresenceDelta, Snapshot
from livehub.tasks import cancel_and_wait, pause, run_together

log = logging.getLogger(__name__)

#: what ends a Redis session: the server went away or answered nonsense
SESSION_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError, asyncio.TimeoutError)

_Op = tuple[Any, ...]


#: operations waiting for the writer beyond which producers wait (:meth:`RedisBus.writable`)
MAX_QUEUED = 10_000
#: operations written per pipeline (one round trip each): a burst is not one huge pipeline
CHUNK = 500
#: bytes of messages one PUBLISH carries at most when the writer batches a run of messages on
#: one channel (a single larger message goes alone)
BATCH_BYTES = 64 * 1024

#: connections one client opens to Redis at most; a burst of calls beyond it waits for one
MAX_CONNECTIONS = 64
#: seconds a call may wait for a free connection before it fails
POOL_WAIT = 10.0


def connect(url: str, *, timeout: float = 2.0) -> aioredis.Redis:
    """A redis-py client that fails fast instead of retrying (the callers have their own
    loops) on a bounded pool that makes a burst wait for a connection: redis-py's default pool
    raises ``MaxConnectionsError`` past 100 connections, which a join storm reading the members
    of hundreds of rooms at once reached, and which looked like Redis being gone.

    RESP2, not redis-py 8's default RESP3: under RESP3 every pub/sub message is a push reply
    that redis-py hands to its push handler, which looks a logger up (a lock) and formats a
    debug record for each one, about 3 % of a node relaying across the cluster; under RESP2 the
    message is the plain reply the bus's reader takes as it is. Nothing livehub reads depends
    on RESP3's types (every Redis engine livehub supports speaks RESP2)."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        protocol=2,
        max_connections=MAX_CONNECTIONS,
        timeout=POOL_WAIT,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )
    client: aioredis.Redis = aioredis.Redis.from_pool(pool)
    return client


async def subscriptions_confirmed(pubsub: PubSub, channels: set[str], within: float) -> None:
    """Wait until Redis confirms the subscription to every one of ``channels`` (from then on
    every message published to them arrives); TimeoutError after ``within`` seconds. What
    comes before a confirmation is dropped."""
    deadline = time.monotonic() + within
    while channels:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no subscription confirmation from Redis")
        message = await pubsub.get_message(timeout=remaining)
        if message and message["type"] == "subscribe":
            channels.discard(message["channel"].decode())


async def close_pubsub(pubsub: PubSub) -> None:
    """Close a pub/sub connection, whatever state it is in; a cancellation does not cut it
    short."""
    with contextlib.suppress(Exception):
        # redis-py < 8.2 leaves aclose untyped: a typed alias type-checks with either
        aclose: Callable[[], Awaitable[None]] = pubsub.aclose
        await asyncio.shield(aclose())


class RedisBus:
    """:class:`livehub.domain.bus.Bus` on Redis (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        node_id: str | None = None,
        prefix: str = "livehub:",
        heartbeat: float = 1.0,
        node_ttl: float = 5.0,
        reap_interval: float = 1.0,
        retry_interval: float = 0.5,
        timeout: float = 2.0,
        max_queued: int = MAX_QUEUED,
        key: bytes | None = None,
        old_keys: Sequence[bytes] = (),
    ) -> None:
        """``key``: every message is signed with it (keyed BLAKE2b) and a message that is not
        signed with it is dropped (``LIVEHUB_CLUSTER_KEY``: the same on every node).
        ``old_keys`` (a rotation, ``LIVEHUB_CLUSTER_KEY=new,old``): a message signed with one
        of them is accepted too; they are tried only when ``key`` fails."""
        self.url = url
        self._key = None if key is None else _mac_key(key)
        if old_keys and key is None:
            raise ValueError("old_keys need a key: the one that signs")
        self._old_keys = tuple(_mac_key(old) for old in old_keys)
        #: messages dropped because their signature was missing or wrong
        self.forged = 0
        self.node_id = node_id or secrets.token_hex(6)
        #: how this node's id appears in the header of its own messages (quotes inside JSON
        #: strings are escaped, so only the ``n`` field itself can match)
        self._own_tag = orjson.dumps({"n": self.node_id})[1:-1]
        self.prefix = prefix
        self.heartbeat = heartbeat
        self.node_ttl = node_ttl
        self.reap_interval = reap_interval
        self.retry_interval = retry_interval
        self.timeout = timeout
        self._handler: BusHandler | None = None
        #: this node's members: room -> peer -> (name, role)
        self._local: dict[str, dict[str, tuple[str, str]]] = {}
        self._peer_rooms: dict[str, set[str]] = {}
        #: this node's presence sequence, one counter for every room; it starts at the clock
        #: (microseconds) so a node restarted under the same id continues above its old numbers
        self._seq = time.time_ns() // 1000
        #: room with local members -> seq of this node's latest presence message there
        self._last_seq: dict[str, int] = {}
        self._ops: collections.deque[_Op] = collections.deque()
        self.max_queued = max_queued
        #: set while fewer than ``max_queued`` operations wait for the writer
        self._room = asyncio.Event()
        self._room.set()
        self._accepting = False
        self._healthy = False
        self._wake = asyncio.Event()
        self._enqueued = 0
        self._written = 0
        self._flush_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._subscribed: set[str] = set()
        #: rooms whose last local member left since the writer last looked: unsubscribed then
        self._unused: set[str] = set()
        #: rooms that got their first local member since the writer last looked: subscribed then
        self._fresh: set[str] = set()
        self._sub_waiters: dict[str, asyncio.Future[None]] = {}
        self._shas: dict[str, str] = {}
        self._client: aioredis.Redis | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._closing = False
        #: held by each heartbeat beat, and by close() while it removes the presence
        self._beat_lock = asyncio.Lock()
        #: the heartbeat asked the writer for a rebuild (:meth:`_rebuild_in_order`)
        self._rebuild_due: asyncio.Future[None] | None = None
        #: what the current session's loops stop on (set when the session ends or stops)
        self._session_stop = asyncio.Event()
        self._outage_logged = False
        #: messages dropped because Redis was unreachable (broadcasts and direct sends)
        self.dropped = 0
        #: sessions started (1 + reconnections)
        self.sessions = 0
        #: snapshots read (:meth:`snapshot`, :meth:`members`): a full read of a room
        self.snapshots = 0
        #: presence deltas received from other nodes
        self.deltas = 0
        #: direct sends whose node was looked up in Redis (the SEND script): the node unknown
        self.looked_up = 0
        #: PUBLISH commands the writer sent (a batch is one)
        self.published = 0
        #: messages that went out inside batches (:meth:`_publish`)
        self.batched = 0

    # -- keys -----------------------------------------------------------------------------
    def _room_channel(self, room_id: str) -> str:
        return f"{self.prefix}room:{room_id}"

    def _node_channel(self, node_id: str) -> str:
        return f"{self.prefix}node:{node_id}"

    @property
    def _alive_key(self) -> str:
        return f"{self.prefix}alive:{self.node_id}"

    # -- the Bus interface ----------------------------------------------------------------
    @property
    def healthy(self) -> bool:
        return self._healthy

    def set_handler(self, handler: BusHandler) -> None:
        self._handler = handler

    def join(self, room_id: str, peer_id: str, name: str, role: str) -> None:
        members = self._local.get(room_id)
        if members is None:
            members = self._local[room_id] = {}
            self._fresh.add(room_id)  # the writer subscribes it before it writes the join
        members[peer_id] = (name, role)
        self._peer_rooms.setdefault(peer_id, set()).add(room_id)
        seq, prev = self._next_seq(room_id)
        self._enqueue(("join", room_id, peer_id, name, role, seq, prev))

    def leave(self, room_id: str, peer_id: str) -> None:
        members = self._local.get(room_id)
        if members is None or members.pop(peer_id, None) is None:
            return
        seq, prev = self._next_seq(room_id)
        emptied = not members
        if emptied:
            del self._local[room_id]
            del self._last_seq[room_id]  # the next join here starts a new run (prev 0)
            self._unused.add(room_id)  # the writer unsubscribes it
        rooms = self._peer_rooms.get(peer_id)
        gone = True
        if rooms is not None:
            rooms.discard(room_id)
            gone = not rooms
            if gone:
                del self._peer_rooms[peer_id]
        self._enqueue(("leave", room_id, peer_id, gone, seq, prev, emptied))

    def broadcast(self, room_id: str, frame: bytes, exclude: str | None = None) -> None:
        header = {"k": "b", "n": self.node_id, "r": room_id, "x": exclude}
        self._enqueue(("publish", self._room_channel(room_id), _pack(header, frame)), drop=True)

    def send(
        self, peer_id: str, frame: bytes, node_id: str | None = None, room_id: str | None = None
    ) -> None:
        """A known node gets a plain PUBLISH on its channel; otherwise the SEND script looks
        the peer's node up in Redis. ``room_id`` goes in the header: the peer's node delivers
        the frame only while the peer is a member of that room."""
        header = {"k": "d", "n": self.node_id, "p": peer_id}
        if room_id is not None:
            header["r"] = room_id
        message = _pack(header, frame)
        if node_id is None:
            self._enqueue(("send", peer_id, message), drop=True)
        else:
            self._enqueue(("publish", self._node_channel(node_id), message), drop=True)

    def notify(self, room_id: str, notice: bytes) -> None:
        header = {"k": "s", "n": self.node_id, "r": room_id}
        self._enqueue(("publish", self._room_channel(room_id), _pack(header, notice)), drop=True)

    def kick(self, room_id: str, peer_id: str, by: str) -> None:
        header = {"k": "k", "n": self.node_id, "p": peer_id, "r": room_id, "by": by}
        self._enqueue(("send", peer_id, _pack(header, b"")), drop=True)

    async def member(self, room_id: str, peer_id: str) -> Member | None:
        """One registry read (the member's entry and its node's heartbeat); this node's own
        mirror if Redis is unreachable."""
        await self.flush()
        client = self._client
        local = self._local.get(room_id, {}).get(peer_id)
        mine = Member(room_id, peer_id, self.node_id, *local) if local is not None else None
        if client is None or not self._healthy:
            return mine
        try:
            raw = await client.hget(f"{self.prefix}room:{room_id}:members", peer_id)
            if raw is None:
                return None
            info = orjson.loads(raw)
            if info["node"] != self.node_id and not await client.exists(
                f"{self.prefix}alive:{info['node']}"
            ):
                return None  # a dead node's member, not reaped yet
        except SESSION_ERRORS:
            return mine
        return Member(room_id, peer_id, info["node"], info["name"], info["role"])

    async def flush(self) -> None:
        """Wait until everything enqueued so far was written to Redis (or dropped)."""
        if self._written >= self._enqueued:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._flush_waiters.append((self._enqueued, future))
        await future

    async def count(self, room_id: str) -> int:
        """Members of the room on live nodes; this node's own count if Redis is unreachable.
        This node's own earlier joins and leaves are written first (read your writes)."""
        await self.flush()
        client = self._client
        if client is None or not self._healthy:
            return len(self._local.get(room_id, ()))
        try:
            value = await client.evalsha(self._shas["COUNT"], 0, self.prefix, room_id)
        except SESSION_ERRORS:
            return len(self._local.get(room_id, ()))
        return int(value)

    async def counts(self, room_ids: list[str]) -> dict[str, int]:
        """:meth:`count` of several rooms, pipelined (local counts if Redis is unreachable)."""
        await self.flush()
        local = {room_id: len(self._local.get(room_id, ())) for room_id in room_ids}
        client = self._client
        if client is None or not self._healthy or not room_ids:
            return local
        try:
            async with client.pipeline(transaction=False) as pipe:
                for room_id in room_ids:
                    pipe.evalsha(self._shas["COUNT"], 0, self.prefix, room_id)
                values = await pipe.execute()
        except SESSION_ERRORS:
            return local
        return {room_id: int(value) for room_id, value in zip(room_ids, values, strict=True)}

    async def members(self, room_id: str) -> list[Member]:
        """Members of the room on live nodes (this node's alone if Redis is unreachable)."""
        return (await self.snapshot(room_id)).members

    async def snapshot(self, room_id: str) -> Snapshot:
        """The room's members on live nodes and each such node's latest presence seq there, in
        one script (this node's members alone, and no seqs, if Redis is unreachable)."""
        await self.flush()
        client = self._client
        if client is None or not self._healthy:
            return Snapshot(self._local_members(room_id), {})
        try:
            self.snapshots += 1
            flat, at = await client.evalsha(self._shas["MEMBERS"], 0, self.prefix, room_id)
        except SESSION_ERRORS:
            return Snapshot(self._local_members(room_id), {})
        members: list[Member] = []
        for peer, raw in zip(flat[::2], flat[1::2], strict=True):
            info = orjson.loads(raw)
            members.append(Member(room_id, peer.decode(), info["node"], info["name"], info["role"]))
        seqs = {node.decode(): int(seq) for node, seq in zip(at[::2], at[1::2], strict=True)}
        return Snapshot(members, seqs)

    def local_count(self, room_id: str) -> int:
        return len(self._local.get(room_id, ()))

    async def start(self, wait: float | None = None) -> None:
        """Start the session loop; wait up to ``wait`` seconds (default ``timeout``) for the
        first session. Redis being down is not an error: the node serves locally meanwhile."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"redis-bus-{self.node_id}")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.timeout if wait is None else wait):
                await self._ready.wait()

    async def close(self) -> None:
        """Leave the cluster cleanly: write what is queued, then remove this node's presence
        and heartbeat at once (other nodes hear ``presence_changed`` for its rooms). Close the
        hub's WebSockets first, so their leaves are announced as usual."""
        self._closing = True
        async with self._beat_lock:  # a beat under way ends first; the next ones see _closing
            client = self._client
            if client is not None and self._healthy:
                with contextlib.suppress(*SESSION_ERRORS):
                    async with asyncio.timeout(self.timeout):
                        await self.flush()
                    rooms = list(self._local)
                    async with client.pipeline(transaction=True) as pipe:
                        pipe.evalsha(self._shas["REAP"], 0, self.prefix, self.node_id)
                        pipe.delete(self._alive_key)
                        for room_id in rooms:
                            notice = {"k": "c", "n": self.node_id, "r": room_id}
                            pipe.publish(self._room_channel(room_id), self._pack(notice, b""))
                        await pipe.execute()
        await self.stop()

    async def stop(self) -> None:
        """Stop without cleaning up, as a crash would (tests use it to play a dead node)."""
        self._closing = True
        self._session_stop.set()
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
        self._release_flush_waiters(everything=True)

    # -- internals ------------------------------------------------------------------------
    def _local_members(self, room_id: str) -> list[Member]:
        return [
            Member(room_id, peer, self.node_id, name, role)
            for peer, (name, role) in self._local.get(room_id, {}).items()
        ]

    def _next_seq(self, room_id: str) -> tuple[int, int]:
        """A new presence seq for the room, and this node's previous one there (0: none)."""
        self._seq += 1
        prev = self._last_seq.get(room_id, 0)
        self._last_seq[room_id] = self._seq
        return self._seq, prev

    def _enqueue(self, op: _Op, *, drop: bool = False) -> None:
        self._enqueued += 1
        if not self._accepting:
            # presence is rebuilt from the mirror when Redis is back; messages are lost
            if drop:
                self.dropped += 1
            self._written = self._enqueued
            self._release_flush_waiters()
            return
        self._ops.append(op)
        if len(self._ops) >= self.max_queued:
            self._room.clear()
        self._wake.set()

    def backed_up(self) -> bool:
        return not self._room.is_set()

    async def writable(self) -> None:
        """Wait while ``max_queued`` operations or more wait for the writer (Redis slower than
        the producers): callers that produce messages (a connection's next frame) wait here, so
        the queue stays bounded instead of growing with the backlog."""
        if not self._room.is_set():
            await self._room.wait()

    def _release_flush_waiters(self, *, everything: bool = False) -> None:
        waiting = []
        for seq, future in self._flush_waiters:
            if everything or seq <= self._written:
                if not future.done():
                    future.set_result(None)
            else:
                waiting.append((seq, future))
        self._flush_waiters = waiting

    async def _run(self) -> None:
        while True:
            sessions = self.sessions
            try:
                await self._session()
            except SESSION_ERRORS as exc:
                # one warning per outage, not one per attempt
                if self.sessions > sessions or not self._outage_logged:
                    log.warning(
                        "redis bus: %s unreachable (%s); serving local members only",
                        redact_url(self.url),
                        exc,
                    )
                    self._outage_logged = True
            except Exception:
                log.exception("redis bus: session failed; starting a new one")
            finally:
                self._accepting = False
                self._healthy = False
                self._ops.clear()
                self._room.set()
                self._written = self._enqueued
                self._release_flush_waiters()
                if self._rebuild_due is not None:
                    self._rebuild_due.cancel()  # the new session rebuilds anyway
                    self._rebuild_due = None
                self._subscribed.clear()
                self._unused.clear()
                self._fresh.clear()  # a new session subscribes every local room
                for future in self._sub_waiters.values():
                    if not future.done():
                        future.cancel()
                self._sub_waiters.clear()
                client, self._client = self._client, None
                if client is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(client.aclose())  # never cut short
            if self._closing:
                break
            self._ready.set()
            await asyncio.sleep(self.retry_interval)

    async def _session(self) -> None:
        client = connect(self.url, timeout=self.timeout)
        self._client = client
        pubsub = client.pubsub()
        try:
            await client.ping()
            self._shas = {
                name: await client.script_load(getattr(scripts, name))
                for name in ("JOIN", "LEAVE", "REAP", "REAP_DEAD", "COUNT", "MEMBERS", "SEND")
            }
            # everything from here on is queued; what came before is in the mirror
            self._accepting = True
            self._ops.clear()
            self._room.set()
            rooms = list(self._local)
            channels = [self._node_channel(self.node_id)] + [self._room_channel(r) for r in rooms]
            await pubsub.subscribe(*channels)
            await subscriptions_confirmed(pubsub, set(channels), self.timeout)
            self._subscribed = set(rooms)
            reaped = await self._rebuild(client)
            self.sessions += 1
            self._outage_logged = False
            self._healthy = True
            self._ready.set()
            if reaped and self.sessions > 1:
                # reaped while this session was down: its members were announced gone
                log.warning(
                    "redis bus: node %s was reaped as dead while cut off; announcing its %d "
                    "members again",
                    self.node_id,
                    sum(map(len, self._local.values())),
                )
                self._returned()
            if self.sessions > 1:
                log.info(
                    "redis bus: %s reachable again; presence rebuilt (%d rooms)",
                    redact_url(self.url),
                    len(rooms),
                )
            stop = self._session_stop = _Stop(self._wake)
            if self._closing:
                return
            await run_together(
                self._reader(pubsub, stop),
                self._writer(client, pubsub, stop),
                self._heartbeat(client, stop),
                self._reaper(client, stop),
                name=f"redis-bus-{self.node_id}",
                stop=stop,
            )
        finally:
            self._healthy = False
            await close_pubsub(pubsub)

    async def _rebuild(self, client: aioredis.Redis) -> bool:
        """Replace this node's presence in Redis by the mirror, atomically. The joins are
        quiet (one notice per room follows, and the other nodes read the room) and record the
        room's latest seq, which covers every change the mirror holds: the next delta follows
        on from the snapshot those reads take. Only at a session's start, before its writer
        runs, or from the writer itself (:meth:`_rebuild_in_order`). Returns whether a
        survivor had reaped this node (``reaped:<node>``, taken)."""
        async with client.pipeline(transaction=True) as pipe:
            pipe.getdel(f"{self.prefix}reaped:{self.node_id}")
            pipe.evalsha(self._shas["REAP"], 0, self.prefix, self.node_id)
            for room_id, members in self._local.items():
                seq = str(self._last_seq[room_id])
                for peer_id, (name, role) in members.items():
                    args = self._join_args(room_id, peer_id, name, role)
                    pipe.evalsha(self._shas["JOIN"], 0, *args, seq, "")
            pipe.set(self._alive_key, b"1", px=int(self.node_ttl * 1000))
            pipe.zadd(f"{self.prefix}nodes", {self.node_id: time.time() * 1000})
            for room_id in self._local:
                pipe.publish(
                    self._room_channel(room_id),
                    self._pack({"k": "c", "n": self.node_id, "r": room_id}, b""),
                )
            results = await pipe.execute()
        return results[0] is not None

    async def _rebuild_in_order(self) -> None:
        """:meth:`_rebuild`, made by the writer between two of its batches (the heartbeat
        asks for it). Made beside the writer, a join or leave written after the mirror's
        snapshot and before the rebuild's MULTI would be undone for good."""
        future = self._rebuild_due
        if future is None:
            future = self._rebuild_due = asyncio.get_running_loop().create_future()
            self._wake.set()
        await asyncio.shield(future)

    async def _rebuild_if_due(self, client: aioredis.Redis) -> None:
        future = self._rebuild_due
        if future is None:
            return
        self._rebuild_due = None
        try:
            await self._rebuild(client)
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: the session ends with it anyway
            raise
        except BaseException:  # cancelled: the session is ending
            future.cancel()
            raise
        future.set_result(None)

    def _join_args(self, room_id: str, peer_id: str, name: str, role: str) -> tuple[str, ...]:
        info = orjson.dumps({"node": self.node_id, "name": name, "role": role}).decode()
        return (self.prefix, self.node_id, room_id, peer_id, info)

    async def _writer(self, client: aioredis.Redis, pubsub: PubSub, stop: asyncio.Event) -> None:
        # the writer's own connection, outside the pool: its batches go out as packed commands
        # and their replies are read straight off it (a redis-py pipeline per batch cost a
        # node a sixth of its CPU in the cross-node benchmark)
        # Without a socket timeout: redis-py runs every send of a connection that has one in a
        # task of its own (asyncio.wait_for); the batch's one timeout covers the send here.
        pool = client.connection_pool
        connection: AbstractConnection = pool.connection_class(
            **{**pool.connection_kwargs, "socket_timeout": None}
        )
        connect: Callable[[], Awaitable[None]] = connection.connect
        try:
            await connect()
            while True:
                await self._wake.wait()  # the session's stop sets it too
                if stop.is_set():
                    return
                self._wake.clear()
                await self._write_ops(connection, pubsub, client)
        finally:
            await asyncio.shield(connection.disconnect())  # never cut short

    async def _write_ops(
        self, connection: AbstractConnection, pubsub: PubSub, client: aioredis.Redis
    ) -> None:
        while True:
            await self._rebuild_if_due(client)  # between two batches (_rebuild_in_order)
            if not self._ops:
                return
            # only what is queued now: a join queued while the subscriptions below are being
            # confirmed may be in a room they do not cover, and is written on the next pass,
            # after its own (a join written before its room is subscribed misses the other
            # nodes' joins that land in between, and the node's view of the room lacks them)
            covered = len(self._ops)
            await self._subscribe_new_rooms(pubsub)
            queue = self._ops
            ops = [queue.popleft() for _ in range(min(CHUNK, covered))]
            written = self._enqueued - len(queue)
            async with asyncio.timeout(self.timeout):  # one timeout for the whole batch
                await _pipelined(connection, self._commands(ops))
            self._written = max(self._written, written)
            if len(queue) < self.max_queued:
                self._room.set()
            self._release_flush_waiters()
            if self._unused:
                unused, local, subscribed = self._unused, self._local, self._subscribed
                gone = [room for room in unused if room not in local and room in subscribed]
                unused.clear()
                if gone:
                    await pubsub.unsubscribe(*(self._room_channel(room) for room in gone))
                    self._subscribed.difference_update(gone)

    async def _subscribe_new_rooms(self, pubsub: PubSub) -> None:
        if not self._fresh:
            return
        new = [room for room in self._fresh if room in self._local and room not in self._subscribed]
        self._fresh.clear()
        if not new:
            return
        loop = asyncio.get_running_loop()
        futures = []
        for room in new:
            channel = self._room_channel(room)
            future = self._sub_waiters.get(channel)
            if future is None:
                future = self._sub_waiters[channel] = loop.create_future()
            futures.append(future)
        await pubsub.subscribe(*(self._room_channel(room) for room in new))
        self._subscribed.update(new)
        async with asyncio.timeout(self.timeout):
            await asyncio.gather(*futures)

    def _commands(self, ops: list[_Op]) -> list[tuple[Any, ...]]:
        """The Redis commands that write ``ops``, in order. A run of consecutive publishes on
        one channel is one PUBLISH of a batch (at most :data:`BATCH_BYTES` of messages, or a
        single larger one): one Redis command, one message for every subscribed node to read
        and one tag to sign and check, where each relay of a busy node was one of each. Only
        consecutive ones: a recipient still gets a sender's messages in send order."""
        commands: list[tuple[Any, ...]] = []
        channel: str | None = None
        run: list[bytes] = []
        size = 0
        for op in ops:
            if op[0] == "publish":
                message: bytes = op[2]
                if op[1] == channel and size + len(message) <= BATCH_BYTES:
                    run.append(message)
                    size += len(message)
                    continue
                if run:
                    commands.append(self._publish(cast(str, channel), run))
                channel, run, size = op[1], [message], len(message)
                continue
            if run:
                commands.append(self._publish(cast(str, channel), run))
                channel, run = None, []
            commands.append(self._command(op))
        if run:
            commands.append(self._publish(cast(str, channel), run))
        return commands

    def _publish(self, channel: str, messages: list[bytes]) -> tuple[Any, ...]:
        """One PUBLISH of ``messages`` (unsigned): the message itself if it is alone, else a
        batch (kind ``B``: the messages' lengths in the header, the messages one after the
        other as its frame), signed once."""
        self.published += 1
        if len(messages) == 1:
            return ("PUBLISH", channel, self._signed(messages[0]))
        self.batched += len(messages)
        header = {"k": "B", "n": self.node_id, "l": [len(message) for message in messages]}
        return ("PUBLISH", channel, self._signed(_pack(header, b"".join(messages))))

    def _command(self, op: _Op) -> tuple[Any, ...]:
        """The Redis command that writes ``op``, any but a publish (:meth:`_commands` writes
        those, batched: :meth:`_publish`)."""
        kind = op[0]
        if kind == "join":
            _, room_id, peer_id, name, role, seq, prev = op
            delta = {
                "k": "j",
                "n": self.node_id,
                "r": room_id,
                "s": seq,
                "v": prev,
                "p": peer_id,
                "m": name,
                "o": role,
            }
            args = self._join_args(room_id, peer_id, name, role)
            return ("EVALSHA", self._shas["JOIN"], 0, *args, str(seq), self._pack(delta, b""))
        if kind == "leave":
            _, room_id, peer_id, gone, seq, prev, emptied = op
            delta = {"k": "l", "n": self.node_id, "r": room_id, "s": seq, "v": prev, "p": peer_id}
            return (
                "EVALSHA",
                self._shas["LEAVE"],
                0,
                self.prefix,
                self.node_id,
                room_id,
                peer_id,
                "1" if gone else "0",
                str(seq),
                "1" if emptied else "0",
                self._pack(delta, b""),
            )
        if kind == "send":
            self.looked_up += 1
            return ("EVALSHA", self._shas["SEND"], 0, self.prefix, op[1], self._signed(op[2]))
        raise ValueError(f"unknown bus operation {kind!r}")

    async def _reader(self, pubsub: PubSub, stop: asyncio.Event) -> None:
        # (redis-py's stubs say the attribute is always None: it is set by the first subscribe)
        connection = cast(AbstractConnection | None, pubsub.connection)
        if connection is None:  # pragma: no cover - the session subscribed before this runs
            raise RuntimeError("the pub/sub connection is not open")
        # (redis-py leaves handle_message untyped: a typed alias type-checks)
        handle_message: Callable[[Any], Awaitable[dict[str, Any] | None]] = pubsub.handle_message
        while not stop.is_set():
            # a blocking read straight off the pub/sub connection (no timeout per message, no
            # retry layer: an error ends the session, which starts a new one); a published
            # message is dispatched at once, the rest goes through redis-py's own bookkeeping
            reply = await connection.read_response(
                timeout=math.inf, disconnect_on_error=False, push_request=True
            )
            if isinstance(reply, list) and len(reply) == 3 and reply[0] == b"message":
                self._dispatch(reply[2])
                continue
            if reply is None:
                continue
            message = await handle_message(reply)
            if message is not None and message["type"] == "subscribe":
                future = self._sub_waiters.pop(message["channel"].decode(), None)
                if future is not None and not future.done():
                    future.set_result(None)

    def _pack(self, header: dict[str, Any], frame: bytes) -> bytes:
        """A bus message: its JSON header, a newline, the frame; signed (:meth:`_signed`)."""
        return self._signed(_pack(header, frame))

    def _signed(self, message: bytes) -> bytes:
        """``message`` signed with the cluster key (its MAC in hex and a newline first) when
        there is one."""
        if self._key is None:
            return message
        return _mac(self._key, message) + b"\n" + message

    def _verified(self, data: bytes) -> bytes | None:
        """The message without its signature; None if the node has a key and the message is
        signed neither with it nor with one of its old keys (forged, or from a node without
        the key)."""
        if self._key is None:
            return data
        mac, _, message = data.partition(b"\n")
        if not hmac.compare_digest(mac, _mac(self._key, message)) and not (
            # a rotation: another node may still sign with an old key (tried only now, so
            # with one key a message costs one MAC and one compare, as before)
            self._old_keys
            and any(hmac.compare_digest(mac, _mac(old, message)) for old in self._old_keys)
        ):
            self.forged += 1
            if self.forged == 1 or self.forged % 1000 == 0:
                log.warning(
                    "redis bus: dropped %d message(s) not signed with LIVEHUB_CLUSTER_KEY "
                    "(a node without the key or with another one, or a forgery)",
                    self.forged,
                )
            return None
        return message

    def _dispatch(self, data: bytes) -> None:
        # this node's own messages come back on the room channels it is subscribed to: drop
        # them before the signature is checked (a message that only claims to be ours is
        # dropped too, which is all a forgery of it could get)
        # (searched in place: a broadcast's frame is not copied for it)
        start = data.find(b"\n") + 1 if self._key is not None else 0
        if data.find(self._own_tag, start, data.find(b"\n", start)) != -1:
            return
        verified = self._verified(data)
        handler = self._handler
        if verified is None or handler is None:
            return
        head, _, frame = verified.partition(b"\n")
        try:
            header = orjson.loads(head)
            if header["n"] == self.node_id:
                return
            if header["k"] == "B":
                self._unbatch(handler, header["l"], frame)
                return
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            log.warning("redis bus: ignored a malformed message on a livehub channel")
            return
        self._deliver(handler, header, frame)

    def _unbatch(self, handler: BusHandler, lengths: list[int], body: bytes) -> None:
        """Deliver the messages of a batch (:meth:`_publish`) in order; a batch whose lengths
        do not add up to its body is dropped whole (ValueError)."""
        if (
            type(lengths) is not list
            or not all(type(n) is int and n > 0 for n in lengths)
            or sum(lengths) != len(body)
        ):
            raise ValueError("a batch's lengths do not match its body")
        end = 0
        for length in lengths:
            start, end = end, end + length
            newline = body.find(b"\n", start, end)
            try:
                if newline == -1:
                    raise ValueError("no header")
                header = orjson.loads(body[start:newline])
                if type(header) is not dict:
                    raise TypeError("the header is not an object")
            except (orjson.JSONDecodeError, TypeError, ValueError):
                log.warning("redis bus: ignored a malformed message in a batch")
                continue
            self._deliver(handler, header, body[newline + 1 : end])

    def _deliver(self, handler: BusHandler, header: dict[str, Any], frame: bytes) -> None:
        """Hand one message to the handler."""
        try:
            kind = header["k"]
            if kind == "b":
                handler.deliver_room(header["r"], frame, header.get("x"))
            elif kind == "d":
                handler.deliver_peer(header["p"], frame, header.get("r"))
            elif kind == "j" or kind == "l":
                self.deltas += 1
                handler.presence_delta(
                    PresenceDelta(
                        header["r"],
                        header["n"],
                        header["s"],
                        header["v"],
                        header["p"],
                        kind == "j",
                        header.get("m", ""),
                        header.get("o", ""),
                    )
                )
            elif kind == "c":
                handler.presence_changed(header["r"])
            elif kind == "s":
                handler.room_changed(header["r"], frame)
            elif kind == "k":
                handler.kick_peer(header["r"], header["p"], header["by"])
        except Exception:
            log.exception("redis bus: handler failed on a %s message", header.get("k"))

    async def _heartbeat(self, client: aioredis.Redis, stop: asyncio.Event) -> None:
        while not await pause(stop, self.heartbeat):
            # close() takes the lock before it removes the presence: a beat never lands after
            # that (it would register the node again, and take the removal for a reap)
            async with self._beat_lock:
                if self._closing:
                    return
                await self._beat(client)

    async def _beat(self, client: aioredis.Redis) -> None:
        async with client.pipeline(transaction=False) as pipe:
            pipe.set(self._alive_key, b"1", px=int(self.node_ttl * 1000), get=True)
            pipe.zadd(f"{self.prefix}nodes", {self.node_id: time.time() * 1000})
            previous, added = await pipe.execute()
        if added:
            # our registration was gone: a survivor reaped us and announced our members gone
            log.warning(
                "redis bus: node %s was reaped as dead; rebuilding presence and announcing "
                "its %d members again",
                self.node_id,
                sum(map(len, self._local.values())),
            )
            await self._rebuild_in_order()
            self._returned()
        elif previous is None:
            # our key had expired, nobody reaped us yet (and now nobody will): write back
            log.warning("redis bus: node %s was presumed dead; rebuilding presence", self.node_id)
            await self._rebuild_in_order()

    async def _reaper(self, client: aioredis.Redis, stop: asyncio.Event) -> None:
        nodes_key = f"{self.prefix}nodes"
        while not await pause(stop, self.reap_interval):
            nodes = cast(list[bytes], await client.zrange(nodes_key, 0, -1))
            others = [raw.decode() for raw in nodes if raw.decode() != self.node_id]
            if not others:
                continue
            # one round trip; each script checks the node's heartbeat itself
            async with client.pipeline(transaction=False) as pipe:
                for node in others:
                    pipe.evalsha(self._shas["REAP_DEAD"], 0, self.prefix, node)
                results = await pipe.execute()
            for node, flat in zip(others, results, strict=True):
                if flat is not None:
                    await self._reaped(client, node, flat)

    async def _reaped(self, client: aioredis.Redis, node: str, flat: list[bytes]) -> None:
        members = [
            Member(room.decode(), peer.decode(), node, name.decode(), role.decode())
            for room, peer, name, role in zip(*[iter(flat)] * 4, strict=True)
        ]
        log.info("redis bus: node %s stopped heartbeating; reaped %d members", node, len(members))
        rooms = {m.room_id for m in members}
        if rooms:
            async with client.pipeline(transaction=False) as pipe:
                for room_id in rooms:
                    pipe.publish(
                        self._room_channel(room_id),
                        self._pack({"k": "c", "n": node, "r": room_id}, b""),
                    )
                await pipe.execute()
        handler = self._handler
        if handler is not None and members:
            try:
                handler.members_lost(members)
            except Exception:
                log.exception("redis bus: members_lost handler failed")
            for room_id in rooms:
                with contextlib.suppress(Exception):
                    handler.presence_changed(room_id)

    def _returned(self) -> None:
        handler = self._handler
        members = [
            Member(room_id, peer_id, self.node_id, name, role)
            for room_id, local in self._local.items()
            for peer_id, (name, role) in local.items()
        ]
        if handler is not None and members:
            try:
                handler.members_returned(members)
            except Exception:
                log.exception("redis bus: members_returned handler failed")


class _Stop(asyncio.Event):
    """A session's stop event; setting it also wakes the writer (which waits on ``wake``)."""

    def __init__(self, wake: asyncio.Event) -> None:
        super().__init__()
        self._wake = wake

    def set(self) -> None:
        super().set()
        self._wake.set()


async def _pipelined(connection: AbstractConnection, commands: list[tuple[Any, ...]]) -> None:
    """Send ``commands`` in one write and read every reply, in order (as a pipeline does, but
    without a timeout per reply: the caller sets one for the batch); the first error reply is
    raised once all are read, so the connection stays in step. A timeout leaves it out of step:
    it ends the session, which drops the connection."""
    await connection.send_packed_command(_packed(commands), check_health=False)
    failed: ResponseError | None = None
    for _ in commands:
        try:
            await connection.read_response(timeout=math.inf)
        except ResponseError as exc:
            failed = failed or exc
    if failed is not None:
        raise failed


def _packed(commands: list[tuple[str | bytes | int, ...]]) -> bytes:
    """``commands`` in RESP, each an array of bulk strings: the bytes redis-py's own packer
    writes for them (``tests/cluster/test_redis_bus.py`` compares the two), without its
    per-argument Python (its packing was a tenth of a node's CPU relaying across the cluster).
    Arguments are the bus's own: text (UTF-8), bytes and integers."""
    out: list[bytes] = []
    for command in commands:
        out.append(b"*%d\r\n" % len(command))
        for arg in command:
            if isinstance(arg, str):
                arg = arg.encode()
            elif isinstance(arg, int) and not isinstance(arg, bool):
                arg = b"%d" % arg
            elif not isinstance(arg, bytes):
                raise TypeError(f"a bus command takes text, bytes or integers, not {arg!r}")
            out += (b"$%d\r\n" % len(arg), arg, b"\r\n")
    return b"".join(out)


def _pack(header: dict[str, Any], frame: bytes) -> bytes:
    return orjson.dumps(header) + b"\n" + frame


#: BLAKE2b personalization of the bus's MAC key (keeps it apart from any other use of the key)
_MAC_PERSON = b"livehub-bus-mac"


def _mac_key(key: bytes) -> bytes:
    """The 32-byte MAC key made from ``LIVEHUB_CLUSTER_KEY`` (any length; BLAKE2b takes at most
    64 bytes of key)."""
    return hashlib.blake2b(key, digest_size=32, person=_MAC_PERSON).digest()


def _mac(key: bytes, message: bytes) -> bytes:
    """The message's tag: keyed BLAKE2b-256 in hex (BLAKE2's keyed mode is a MAC, RFC 7693).
    It costs a quarter of an ``hmac.digest`` with SHA-256 (1.2 against 4.3 µs for a relayed
    offer), and a cross-node relay is signed once and checked once."""
    return hashlib.blake2b(message, digest_size=32, key=key).hexdigest().encode()
