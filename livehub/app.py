"""The application factory: config → state → cleanup contexts → routes → middlewares."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
from aiohttp import web

from livehub import keys
from livehub.api.middlewares import error_middleware
from livehub.api.openapi import build_spec
from livehub.api.routes import setup_routes
from livehub.api.shutdown import close_websockets
from livehub.api.views import RoomViews
from livehub.api.websocket import encode
from livehub.cluster.leader import LeaderLock, lead
from livehub.cluster.players import RedisPlayers
from livehub.cluster.redis_bus import RedisBus
from livehub.config import Config, redact_url
from livehub.domain.admission import CreatePolicy
from livehub.domain.cluster_hub import ClusterHub
from livehub.domain.hub import Hub
from livehub.domain.moderation import Moderation
from livehub.domain.room import RoomStatus
from livehub.domain.service import Cancellable, RoomService
from livehub.domain.signaling import Limits, Signaling
from livehub.domain.stage import Stage
from livehub.domain.store import StoreUnavailable
from livehub.domain.viewer_tokens import PrivateRooms, ViewerTokens
from livehub.metrics import Metrics
from livehub.reconcile import Reconciler
from livehub.srs import Kicker, PublicUrls, SRSClient, SRSOrigins
from livehub.storage import SQLiteStore
from livehub.storage_pg import PostgresStore
from livehub.tasks import cancel_and_wait
from livehub.webhooks.setup import setup_webhooks

log = logging.getLogger(__name__)

HOUR = 3600.0
DAY = 24 * HOUR


class _Timers:
    """The room service's scheduler: runs a coroutine function after a delay, as a task the
    app cancels at shutdown."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[None]] = set()

    def __call__(self, delay: float, callback: Callable[[], Awaitable[None]]) -> Cancellable:
        return asyncio.get_running_loop().call_later(delay, self._run, callback)

    def _run(self, callback: Callable[[], Awaitable[None]]) -> None:
        task = asyncio.ensure_future(self._guard(callback))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    @staticmethod
    async def _guard(callback: Callable[[], Awaitable[None]]) -> None:
        try:
            await callback()
        except Exception:
            log.exception("room timer failed")


def _call_soon(callback: Callable[[], None]) -> object:
    return asyncio.get_running_loop().call_soon(callback)


def _call_later(delay: float, callback: Callable[[], None]) -> object:
    return asyncio.get_running_loop().call_later(delay, callback)


def create_app(config: Config) -> web.Application:
    """Build the application. Synchronous and free of I/O: storage, the SRS client, the
    reconciler and the sweep start in cleanup contexts."""
    app = web.Application(middlewares=[error_middleware], client_max_size=config.max_body_size)
    app[keys.config] = config
    kicker = Kicker()
    viewer_tokens = ViewerTokens(config.viewer_token_secret or secrets.token_urlsafe(32))
    timers = _Timers()
    rooms = RoomService(
        None,
        app=config.srs_app,
        reconnect_window=config.reconnect_window,
        preparing_ttl=config.preparing_ttl_hours * HOUR,
        ended_retention=config.ended_retention_days * DAY,
        scheduler=timers,
        kick=kicker,
        origin_of=kicker.origin_of,
        origin_lost=kicker.origin_lost,
        play_allowed=viewer_tokens.play_allowed,
    )
    hub = _hub(config)
    views = RoomViews(rooms, hub, PublicUrls.from_config(config))
    app[keys.rooms] = rooms
    app[keys.kicker] = kicker
    app[keys.create_policy] = CreatePolicy(
        api_key_hashes=config.api_key_hashes,
        admin_token=config.admin_token,
        rate_per_min=config.create_rate_per_min,
    )
    app[keys.hub] = hub
    app[keys.views] = views
    app[keys.metrics] = Metrics(rooms, hub)
    app[keys.signaling] = Signaling(
        hub,
        rooms,
        room_view=views.public,
        close_room=rooms.close,
        limits=Limits(
            rate_per_s=config.rate_per_s,
            rate_burst=config.rate_burst,
            chat_rate_per_s=config.chat_rate_per_s,
            chat_rate_burst=config.chat_rate_burst,
            max_rooms_per_connection=config.max_rooms_per_connection,
            max_members_per_room=config.max_members_per_room,
            max_chat_length=config.max_chat_length,
            presence_limit=config.presence_limit,
        ),
    )
    app[keys.openapi] = build_spec()
    # issue 18: private rooms, co-hosts on stage, chat moderation (all on the signaling)
    signaling = app[keys.signaling]
    app[keys.viewer_tokens] = viewer_tokens
    PrivateRooms(signaling, viewer_tokens, views.public)
    app[keys.stage] = Stage(
        signaling,
        rooms,
        hub,
        play_urls=PublicUrls.from_config(config).play,
        credentials=views.credentials,
        kick=kicker,
        max_guests=config.stage_max,
        reconnect_window=config.reconnect_window,
        later=timers,
    )
    Moderation(signaling, rooms, hub)

    if isinstance(hub, ClusterHub):
        app[keys.bus] = hub.bus
        app.cleanup_ctx.append(bus_ctx)
    app.cleanup_ctx.append(storage_ctx)
    app.cleanup_ctx.append(leader_ctx)
    app.cleanup_ctx.append(srs_ctx)
    app.cleanup_ctx.append(sweep_ctx)
    app.cleanup_ctx.append(stage_ctx)
    app.on_shutdown.append(close_websockets)
    setup_routes(app, config.cors_origins)
    setup_webhooks(app, config)  # after storage_ctx: its cleanup context reads the outbox
    return app


# -- cluster signaling: the hub on the Redis bus (LIVEHUB_REDIS_URL) ---------------------------


def _hub(config: Config) -> Hub:
    """The in-process hub; in cluster mode the same, on the Redis bus between nodes."""
    max_buffer, count_interval = config.send_queue_bytes, config.viewer_count_interval
    if config.redis_url:
        return ClusterHub(
            RedisBus(config.redis_url),
            encode,
            _call_soon,
            _call_later,
            max_buffer=max_buffer,
            count_interval=count_interval,
        )
    return Hub(
        encode, _call_soon, _call_later, max_buffer=max_buffer, count_interval=count_interval
    )


async def bus_ctx(app: web.Application) -> AsyncIterator[None]:
    """Join the cluster (Redis down is no error: the node serves its own members meanwhile);
    leave it after the WebSockets are closed, so their leaves are announced first."""
    hub = app[keys.hub]
    assert isinstance(hub, ClusterHub)
    await hub.start()
    log.info("cluster bus: node %s, redis %s", hub.bus.node_id, "up" if hub.bus.healthy else "down")
    yield
    await hub.close()


# -- end of cluster signaling ------------------------------------------------------------------


async def _open_store(app: web.Application) -> SQLiteStore | PostgresStore:
    """SQLite, or PostgreSQL when LIVEHUB_DATABASE_URL is set; either stages a webhook row per
    LIVEHUB_WEBHOOK_URLS endpoint with every change."""
    config = app[keys.config]
    view = app[keys.views].public
    if config.database_url:
        return await PostgresStore.open(
            config.database_url, webhook_endpoints=config.webhook_urls, event_view=view
        )
    return SQLiteStore(config.db_path, webhook_endpoints=config.webhook_urls, event_view=view)


async def storage_ctx(app: web.Application) -> AsyncIterator[None]:
    """The room store (PostgreSQL with ``LIVEHUB_DATABASE_URL``, else the SQLite file) and the
    player counts (Redis with ``LIVEHUB_REDIS_URL``, else this process's memory)."""
    config = app[keys.config]
    rooms = app[keys.rooms]
    store = await _open_store(app)
    where = config.db_path if config.database_url is None else redact_url(config.database_url)
    players: RedisPlayers | None = None
    try:
        if config.redis_url is not None:
            players = RedisPlayers(config.redis_url)
            await players.start()  # waits up to 2 s for Redis; never fails
        app[keys.store] = store
        rooms.use(store, players)
        await rooms.rearm()
        log.info(
            "database %s: %d rooms live, %d preparing",
            where,
            await store.count(RoomStatus.LIVE),
            await store.count(RoomStatus.PREPARING),
        )
    except BaseException:
        if players is not None:
            await players.close()
        await store.close()
        raise
    yield
    rooms.shutdown()
    if players is not None:
        await players.close()
    await store.close()


async def leader_ctx(app: web.Application) -> AsyncIterator[None]:
    """Cluster mode: the leader lock under which one node at a time reconciles with SRS and
    sweeps; it moves to another node within a few seconds when its holder dies. Embedded
    mode: no lock (the one process always leads)."""
    config = app[keys.config]
    if not config.cluster or config.redis_url is None:
        yield
        return
    owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
    lock = LeaderLock(config.redis_url, "housekeeping", owner)
    await lock.start()
    app[keys.leader] = lock
    yield
    await lock.close()  # released at once: another node takes over without waiting the TTL


async def sweep_ctx(app: web.Application) -> AsyncIterator[None]:
    """End what is due (reconnect windows, the preparing TTL) and delete old history."""
    rooms = app[keys.rooms]
    interval = app[keys.config].sweep_interval
    lock = app.get(keys.leader)

    unavailable = False

    async def sweep_once() -> None:
        nonlocal unavailable
        try:
            await rooms.sweep()
        except StoreUnavailable as exc:  # once per outage, not a traceback per interval
            if not unavailable:
                log.warning("room sweep skipped until the database is back: %s", exc.message)
            unavailable = True
            return
        if unavailable:
            log.info("room sweep: the database is back")
        unavailable = False

    async def sweep() -> None:
        while True:
            try:
                await sweep_once()
            except Exception:
                log.exception("room sweep failed")
            await asyncio.sleep(interval)

    # in a cluster, the leader sweeps for every node (a window opened by a node that died
    # still ends on time: its deadline is stored)
    job = sweep() if lock is None else lead(lock, interval, sweep_once)
    task = asyncio.create_task(job, name="livehub-sweep")
    yield
    await cancel_and_wait(task)


async def stage_ctx(app: web.Application) -> AsyncIterator[None]:
    """Stage work in flight (a guest's window, an ended room's guests) ends before the store
    closes."""
    yield
    await app[keys.stage].close()


async def srs_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[keys.config]
    timeout = aiohttp.ClientTimeout(total=5, connect=2)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        # one SRS or several origins (kicks and reconciliation go to a room's own origin)
        origins = SRSOrigins(
            SRSClient(session, url, config.srs_app, name=name) for name, url in config.srs_origins
        )
        app[keys.srs_origins] = origins
        app[keys.srs] = origins.primary
        app[keys.kicker].origins = origins
        lock = app.get(keys.leader)
        shared = app[keys.rooms].players
        players = shared if isinstance(shared, RedisPlayers) else None
        reconciler = Reconciler(
            app[keys.rooms],
            origins,
            app[keys.metrics],
            config.reconcile_interval,
            leader=None if lock is None else lambda: lock.is_leader,
            player_sessions=None if players is None else lambda: players.sessions,
            stage=app[keys.stage].reconcile,
        )
        if players is not None:  # Redis back (maybe empty): the leader restores the players
            players.on_session = reconciler.players_reset
        app[keys.reconciler] = reconciler
        task = asyncio.create_task(reconciler.run(), name="livehub-reconcile")
        yield
        await cancel_and_wait(task)
        # let kicks in flight finish, then cancel what is left before the session goes. The
        # budget: WebSockets close within T/2, handlers get T, kicks T/4: at worst 1.75 T.
        await app[keys.kicker].drain(config.shutdown_timeout / 4)
        app[keys.kicker].origins = None
