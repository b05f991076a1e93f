"""The application factory: config → state → cleanup contexts → routes → middlewares."""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import orjson
from aiohttp import web

from livehub import keys
from livehub.adapters.redis.leader import lead
from livehub.adapters.srs.api import Kicker, PublicUrls, SRSClient, SRSOrigins
from livehub.api import health
from livehub.api.console import security_headers
from livehub.api.listeners import listener_middleware
from livehub.api.middlewares import error_middleware
from livehub.api.openapi import build_spec
from livehub.api.recordings import recording_view
from livehub.api.routes import setup_routes
from livehub.api.shutdown import close_websockets
from livehub.api.turns import Turns, turns_middleware
from livehub.api.views import RoomViews
from livehub.api.websocket import encode
from livehub.config import Config
from livehub.domain.admission import CreatePolicy
from livehub.domain.moderation import Moderation
from livehub.domain.recordings import RecordingService
from livehub.domain.service import RoomService
from livehub.domain.signaling import Limits, Signaling
from livehub.domain.stage import Stage
from livehub.domain.store import StoreUnavailable
from livehub.domain.viewer_tokens import PrivateRooms, ViewerTokens
from livehub.domain.windows import Cancellable
from livehub.engines import Engines
from livehub.guard import ConnectionGuard, GuardCollector, guard_middleware
from livehub.metrics import Metrics
from livehub.readiness import Readiness
from livehub.reconcile import Reconciler
from livehub.recording_files import LocalRecordingFiles
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
    guard = ConnectionGuard(
        per_address=config.sockets_per_address,
        header_timeout=config.header_timeout,
        trusted_proxies=config.trusted_proxies,
    )
    # the guard's first: a request that waits for its turn has arrived all the same
    middlewares = [guard_middleware(guard), turns_middleware(Turns()), error_middleware]
    if config.internal_port is not None:  # hooks and metrics on their own port
        middlewares.append(listener_middleware)
    app = web.Application(middlewares=middlewares, client_max_size=config.max_body_size)
    app[keys.config] = config
    app[keys.guard] = guard  # its site is made where the app is served (livehub.__main__)
    kicker = Kicker()
    viewer_tokens = ViewerTokens(
        config.viewer_token_secret or secrets.token_urlsafe(32),
        old_secrets=config.old_viewer_token_secrets,
    )
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
        max_open_rooms=config.max_open_rooms,
    )
    engines = Engines(config, encode, _call_soon, _call_later)
    hub = engines.hub
    views = RoomViews(rooms, hub, PublicUrls.from_config(config))
    app[keys.rooms] = rooms
    app[keys.recordings] = RecordingService(
        rooms,
        LocalRecordingFiles(config.recordings_dir),
        app=config.srs_app,
        retention=config.recording_retention_days * DAY,
        view=recording_view,
        viewer_token_valid=viewer_tokens.valid,
    )
    app[keys.kicker] = kicker
    # per-address limits: this process's own, or (cluster mode) shared by every node in Redis
    app[keys.connections] = engines.connections
    app[keys.create_policy] = CreatePolicy(
        api_key_hashes=config.api_key_hashes,
        admin_token=config.admin_token,
        rate_per_min=config.create_rate_per_min,
        shared=engines.address_limits,
    )
    app[keys.hub] = hub
    app[keys.views] = views
    app[keys.metrics] = Metrics(rooms, hub)
    app[keys.metrics].registry.register(GuardCollector(guard))
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
            broadcast_relay_max_members=config.broadcast_relay_max_members,
            max_relay_bytes=config.max_relay_bytes,
            relay_bytes_per_s=config.relay_bytes_per_s,
        ),
        bans=engines.bans,
        measure=_json_size,
    )
    app[keys.openapi] = build_spec()
    app[keys.readiness] = Readiness(functools.partial(health.check, app))
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
    app[keys.moderation] = Moderation(signaling, rooms, hub)

    app[keys.outbox] = engines.outbox
    # the engines (bus, store, player counts, leader lock: livehub.engines) first, closed last
    app.cleanup_ctx.append(engines.lifetime)
    app.cleanup_ctx.append(functools.partial(srs_ctx, engines=engines))
    app.cleanup_ctx.append(sweep_ctx)
    app.cleanup_ctx.append(stage_ctx)
    app.on_shutdown.append(close_websockets)
    app.on_response_prepare.append(security_headers)
    setup_routes(app, config.cors_origins)
    setup_webhooks(app, config)  # after the engines: its cleanup context opens the outbox
    return app


def _json_size(payload: object) -> tuple[int, object]:
    """A relay payload encoded once: its size, and the encoded bytes as an ``orjson.Fragment``
    that the hub's encoder embeds as they are (not encoded a second time)."""
    encoded = orjson.dumps(payload)
    return len(encoded), orjson.Fragment(encoded)


async def sweep_ctx(app: web.Application) -> AsyncIterator[None]:
    """End what is due (reconnect windows, the preparing TTL) and delete old history."""
    rooms = app[keys.rooms]
    recordings = app[keys.recordings]
    interval = app[keys.config].sweep_interval
    lock = app.get(keys.leader)

    unavailable = False

    async def sweep_once() -> None:
        nonlocal unavailable
        try:
            await rooms.sweep()
            await recordings.sweep()  # retention, and recordings of deleted rooms
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
    closes. Embedded mode (SQLite: one process) starts with nobody connected: the guests the
    previous run left on stage get their reconnect window (``Stage.orphaned``)."""
    if app[keys.config].database_url is None:
        changed = await app[keys.stage].orphaned()
        if changed:
            log.info("%d rooms' stage guests are away since the restart: window opened", changed)
    yield
    await app[keys.stage].close()
    # the members' moderation keys the shutdown's disconnects left to write: T/4 to land
    await app[keys.moderation].close(app[keys.config].shutdown_timeout / 4)


async def srs_ctx(app: web.Application, engines: Engines) -> AsyncIterator[None]:
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
        players = engines.players  # shared (Redis) player counts, if any
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
        # budget: WebSockets close within T/2, handlers get T, moderation's key writes T/4,
        # kicks T/4: at worst 2 T.
        await app[keys.kicker].drain(config.shutdown_timeout / 4)
        app[keys.kicker].origins = None
