"""The application factory: config → state → cleanup contexts → routes → middlewares."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

import aiohttp
from aiohttp import web

from livehub import keys
from livehub.api.middlewares import error_middleware
from livehub.api.openapi import build_spec
from livehub.api.rooms import end_room
from livehub.api.routes import setup_routes
from livehub.api.signaling import close_all, encode
from livehub.api.views import RoomViews
from livehub.config import Config
from livehub.domain.hub import Hub
from livehub.domain.rooms import Cancellable, RoomService
from livehub.domain.signaling import Limits, Signaling
from livehub.metrics import Metrics
from livehub.reconcile import Reconciler
from livehub.srs import PublicUrls, SRSClient
from livehub.storage import SQLiteStore
from livehub.webhooks.setup import setup_webhooks

log = logging.getLogger(__name__)


def _call_later(delay: float, callback: Callable[[], None]) -> Cancellable:
    return asyncio.get_running_loop().call_later(delay, callback)


def _call_soon(callback: Callable[[], None]) -> object:
    return asyncio.get_running_loop().call_soon(callback)


def create_app(config: Config) -> web.Application:
    """Build the application. Synchronous and free of I/O: storage, the SRS client and the
    reconciler start in cleanup contexts."""
    app = web.Application(middlewares=[error_middleware], client_max_size=config.max_body_size)
    app[keys.config] = config
    rooms = RoomService(
        app=config.srs_app, reconnect_window=config.reconnect_window, scheduler=_call_later
    )
    hub = Hub(
        encode,
        _call_soon,
        _call_later,
        max_buffer=config.send_queue_bytes,
        count_interval=config.viewer_count_interval,
    )
    urls = PublicUrls.from_config(config)
    views = RoomViews(rooms, hub, urls)
    app[keys.rooms] = rooms
    app[keys.hub] = hub
    app[keys.urls] = urls
    app[keys.views] = views
    app[keys.metrics] = Metrics(rooms, hub)
    app[keys.signaling] = Signaling(
        hub,
        rooms,
        room_view=views.public,
        close_room=lambda room_id: end_room(app, room_id),
        limits=Limits(
            rate_per_s=config.rate_per_s,
            rate_burst=config.rate_burst,
            max_rooms_per_connection=config.max_rooms_per_connection,
            max_members_per_room=config.max_members_per_room,
            max_chat_length=config.max_chat_length,
        ),
    )
    app[keys.background] = set()
    app[keys.openapi] = build_spec()

    app.cleanup_ctx.append(storage_ctx)
    app.cleanup_ctx.append(srs_ctx)
    app.on_shutdown.append(close_all)
    setup_routes(app, config.cors_origins)
    setup_webhooks(app, config)  # after storage_ctx: its cleanup context reads the outbox
    return app


async def storage_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[keys.config]
    store = SQLiteStore(config.db_path)
    app[keys.store] = store
    app[keys.rooms].load(store)
    log.info("database %s: %d rooms", config.db_path, len(app[keys.rooms].rooms()))
    yield
    app[keys.rooms].shutdown()
    store.close()


async def srs_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[keys.config]
    timeout = aiohttp.ClientTimeout(total=5, connect=2)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        srs = SRSClient(session, config.srs_api_url, config.srs_app)
        app[keys.http_session] = session
        app[keys.srs] = srs
        reconciler = Reconciler(app[keys.rooms], srs, app[keys.metrics], config.reconcile_interval)
        app[keys.reconciler] = reconciler
        task = asyncio.create_task(reconciler.run(), name="livehub-reconcile")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        # let kicks in flight finish, then cancel what is left before the session goes. The
        # budget: WebSockets close within T/2, handlers get T, kicks T/4: at worst 1.75 T.
        tasks = app[keys.background]
        pending = list(tasks)
        if pending:
            _, late = await asyncio.wait(pending, timeout=config.shutdown_timeout / 4)
            for task in late:
                task.cancel()
            if late:
                log.warning("%d background tasks cancelled at shutdown", len(late))
                await asyncio.wait(late)
