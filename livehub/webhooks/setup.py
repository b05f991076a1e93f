"""Wiring webhooks into the app: routes, metrics, and the cleanup context that opens the outbox
and runs the dispatcher. ``create_app`` calls :func:`setup_webhooks` once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

import aiohttp
from aiohttp import web

from livehub import keys
from livehub.config import Config
from livehub.webhooks import api
from livehub.webhooks.dispatcher import Dispatcher, Tuning
from livehub.webhooks.metrics import WebhookMetrics
from livehub.webhooks.queue import DeliveryQueue
from livehub.webhooks.settings import endpoint_label
from livehub.webhooks.signing import Signer
from livehub.webhooks.sqlite import SQLiteDeliveryQueue

log = logging.getLogger(__name__)

QueueFactory = Callable[[web.Application], DeliveryQueue]


def sqlite_queue(app: web.Application) -> DeliveryQueue:
    """The embedded outbox: the store's database file, through a connection of its own."""
    return SQLiteDeliveryQueue(app[keys.config].db_path)


def setup_webhooks(
    app: web.Application, config: Config, *, queue: QueueFactory = sqlite_queue
) -> None:
    """Admin routes always (they answer ``webhooks_disabled`` when no URL is configured);
    metrics, the outbox and the dispatcher when ``LIVEHUB_WEBHOOK_URLS`` is set.

    ``queue`` picks the outbox adapter (the cluster mode passes its PostgreSQL one).
    """
    app[keys.webhook_tuning] = Tuning()
    router = app.router
    router.add_get("/api/webhooks/deliveries", api.list_deliveries, name="webhook_deliveries")
    router.add_post(
        "/api/webhooks/deliveries/{delivery_id}/retry",
        api.retry_delivery,
        name="webhook_delivery_retry",
    )
    if not config.webhook_urls:
        return
    metrics = WebhookMetrics(app[keys.metrics].registry)

    async def webhooks_ctx(app: web.Application) -> AsyncIterator[None]:
        tuning = app[keys.webhook_tuning]
        outbox = queue(app)
        connector = aiohttp.TCPConnector(limit=config.webhook_concurrency)
        session = aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())
        dispatcher = Dispatcher(
            outbox,
            session,
            Signer(config.webhook_secrets),
            schedule=tuning.schedule,
            timeout=config.webhook_timeout,
            concurrency=config.webhook_concurrency,
            poll_interval=tuning.poll_interval,
            stats_interval=tuning.stats_interval,
            on_outcome=metrics.count,
        )
        metrics.read_stats_from(lambda: dispatcher.stats)
        app[keys.webhook_queue] = outbox
        app[keys.webhook_dispatcher] = dispatcher
        task = asyncio.create_task(dispatcher.run(), name="livehub-webhooks")
        log.info(
            "webhooks to %s (%d secret%s)",
            ", ".join(endpoint_label(url) for url in config.webhook_urls),
            len(config.webhook_secrets),
            "s" if len(config.webhook_secrets) > 1 else "",
        )
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await dispatcher.stop(grace=min(config.webhook_timeout, config.shutdown_timeout / 4))
            await session.close()
            await outbox.close()

    app.cleanup_ctx.append(webhooks_ctx)
