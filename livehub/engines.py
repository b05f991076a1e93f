"""Engines: every adapter of one livehub process, built for its config, with one lifetime.

This is the only module that branches on the mode. What differs between the modes sits behind
the ports of :mod:`livehub.domain.ports`; here each port gets its adapter:

- room store: SQLite file (``adapters.sqlite.store``), or PostgreSQL
  (``adapters.postgres.store``) with ``LIVEHUB_DATABASE_URL``;
- webhook outbox: in the same database (``adapters.sqlite.outbox``, written by the store's
  writer thread; ``adapters.postgres.outbox``);
- signaling hub and bus: :class:`Hub` in memory, or :class:`ClusterHub` on the Redis bus
  (``adapters.redis.bus``) with ``LIVEHUB_REDIS_URL``;
- player counts: :class:`MemoryPlayers`, or Redis (``adapters.redis.players``);
- leader lock: none (the one process leads), or Redis (``adapters.redis.leader``) with both
  URLs set;
- per-address limits (connections, kick bans, anonymous creates): this process's
  (:mod:`livehub.domain.addresses`), or every node's in Redis (``adapters.redis.address_limits``).

The database and the coordination engine are chosen independently, as before: PostgreSQL with
``LIVEHUB_DATABASE_URL``, Redis with ``LIVEHUB_REDIS_URL``; cluster mode is both.

Building :class:`Engines` is synchronous and does no I/O (``create_app`` does it: the hub is needed
to build the signaling); :meth:`Engines.lifetime` is the app's cleanup context that opens the rest
(the bus, the store, the player counts, the leader lock) and closes everything in reverse order
after the WebSockets are closed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import sqlite3
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from livehub import keys
from livehub.adapters.memory.players import MemoryPlayers
from livehub.adapters.postgres.outbox import PostgresDeliveryQueue
from livehub.adapters.postgres.store import PostgresStore
from livehub.adapters.redis.address_limits import RedisAddressLimits
from livehub.adapters.redis.bus import RedisBus
from livehub.adapters.redis.leader import LeaderLock
from livehub.adapters.redis.players import RedisPlayers
from livehub.adapters.rows import EventView
from livehub.adapters.sqlite.outbox import SQLiteDeliveryQueue
from livehub.adapters.sqlite.store import SQLiteStore, SQLiteWriter
from livehub.config import Config, redact_url
from livehub.domain.addresses import ConnectionCounts, KickBans, LocalBans, LocalConnections
from livehub.domain.cluster_hub import ClusterHub
from livehub.domain.hub import Encoder, Hub
from livehub.domain.ports import Bus, PlayerCounts, RoomHub, RoomStore
from livehub.domain.room import RoomStatus
from livehub.domain.store import StoreUnavailable
from livehub.webhooks.queue import DeliveryQueue

log = logging.getLogger(__name__)

Later = Callable[[float, Callable[[], None]], object]
Soon = Callable[[Callable[[], None]], object]


class Engines:
    """The adapters of one process (see the module docstring). ``store``, ``players`` and
    ``leader`` are set while :meth:`lifetime` runs."""

    def __init__(self, config: Config, encode: Encoder, call_soon: Soon, call_later: Later):
        self.config = config
        queue, interval = config.send_queue_bytes, config.viewer_count_interval
        #: the cluster hub, to start and stop (None in one process)
        self._cluster: ClusterHub | None = None
        #: the bus between nodes (None in one process: nothing to reach)
        self.bus: Bus | None = None
        self.hub: RoomHub
        if config.redis_url is not None:
            key = None if config.cluster_key is None else config.cluster_key.encode()
            old_keys = tuple(old.encode() for old in config.old_cluster_keys)
            bus = RedisBus(config.redis_url, key=key, old_keys=old_keys)
            self._cluster = ClusterHub(
                bus, encode, call_soon, call_later, max_buffer=queue, count_interval=interval
            )
            self.hub, self.bus = self._cluster, bus
        else:
            self.hub = Hub(encode, call_soon, call_later, max_buffer=queue, count_interval=interval)
        #: the per-address limits (connections, kick bans, the anonymous create buckets):
        #: every node's in Redis, or this process's own
        self.address_limits: RedisAddressLimits | None = None
        self.connections: ConnectionCounts
        self.bans: KickBans
        if self.bus is not None and config.redis_url is not None:
            shared = RedisAddressLimits(
                config.redis_url,
                node_id=self.bus.node_id,
                limit=config.max_connections_per_address,
                ban_seconds=config.kick_ban_s,
            )
            self.address_limits = self.connections = self.bans = shared
        else:
            self.connections = LocalConnections(config.max_connections_per_address)
            self.bans = LocalBans(config.kick_ban_s)
        self.store: RoomStore | None = None
        #: the shared player counts (None: in memory, ``_memory_players``)
        self.players: RedisPlayers | None = None
        self._memory_players = MemoryPlayers()
        #: the housekeeping leader lock (None: this process always leads)
        self.leader: LeaderLock | None = None
        #: the SQLite file's writer, shared by the store and the outbox (None otherwise)
        self._writer: SQLiteWriter | None = None
        #: the webhook outbox, opened by the webhooks' cleanup context (after this one)
        self.outbox = self._outbox

    @property
    def player_counts(self) -> PlayerCounts:
        """The player counts the room service uses: Redis's, or this process's memory."""
        return self.players if self.players is not None else self._memory_players

    async def _open_store(self, event_view: EventView) -> RoomStore:
        config = self.config
        if config.database_url is not None:
            return await PostgresStore.open(
                config.database_url, webhook_endpoints=config.webhook_urls, event_view=event_view
            )
        try:
            store = SQLiteStore(
                config.db_path,
                webhook_endpoints=config.webhook_urls,
                event_view=event_view,
                sync=config.db_sync,
            )
        except (OSError, sqlite3.Error) as exc:
            # a directory, no permission, a read-only file system, a full disk: say which file
            # (not a traceback, nor a port that needs privileges: run_app's OSErrors are binds)
            raise StoreUnavailable(
                f"cannot open the database LIVEHUB_DB={config.db_path!r} (--db): {exc}"
            ) from exc
        self._writer = store.writer
        return store

    def _outbox(self) -> DeliveryQueue:
        """The webhook outbox where the store stages it: PostgreSQL (shared by every node), or
        the SQLite file through the store's writer."""
        if self.config.database_url is not None:
            return PostgresDeliveryQueue(self.config.database_url)
        return SQLiteDeliveryQueue(self.config.db_path, writer=self._writer)

    @property
    def where(self) -> str:
        """The database, for logs (no password)."""
        url = self.config.database_url
        return self.config.db_path if url is None else redact_url(url)

    async def lifetime(self, app: web.Application) -> AsyncIterator[None]:
        """The cleanup context: join the cluster (Redis down is no error: the node serves its
        own members meanwhile), open the store and the player counts, take part in the leader
        election; afterwards (the WebSockets closed: their leaves are announced first) close
        them in reverse order."""
        config = self.config
        rooms = app[keys.rooms]
        if self._cluster is not None:
            await self._cluster.start()
            bus = self._cluster.bus
            log.info("cluster bus: node %s, redis %s", bus.node_id, "up" if bus.healthy else "down")
        if self.address_limits is not None:
            # its heartbeat keeps this node's connection counts alive in Redis
            await self.address_limits.start()
        try:
            store = self.store = await self._open_store(app[keys.views].public)
            try:
                if config.redis_url is not None:
                    self.players = RedisPlayers(config.redis_url)
                    await self.players.start()  # waits up to 2 s for Redis; never fails
                app[keys.store] = store
                if self.bus is not None:
                    app[keys.bus] = self.bus
                rooms.use(store, self.player_counts)
                await rooms.rearm()
                log.info(
                    "database %s: %d rooms live, %d preparing",
                    self.where,
                    await store.count(RoomStatus.LIVE),
                    await store.count(RoomStatus.PREPARING),
                )
                if config.cluster and config.redis_url is not None:
                    owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
                    self.leader = LeaderLock(config.redis_url, "housekeeping", owner)
                    await self.leader.start()
                    app[keys.leader] = self.leader
                try:
                    yield
                finally:
                    if self.leader is not None:
                        # released at once: another node takes over without waiting the TTL
                        await asyncio.shield(self.leader.close())
                    rooms.shutdown()
            finally:
                if self.players is not None:
                    await asyncio.shield(self.players.close())
                await asyncio.shield(store.close())
        finally:
            if self.address_limits is not None:
                await asyncio.shield(self.address_limits.close())
            if self._cluster is not None:
                await asyncio.shield(self._cluster.close())
