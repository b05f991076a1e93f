"""Wiring webhooks into the app: routes, metrics, and the cleanup context that opens the outbox
and runs the dispatcher. ``create_app`` calls :func:`setup_webhooks` once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

import aiohttp
from aiohttp import web

from livehub import keys
from livehub.config import Config
from livehub.tasks import cancel_and_wait
from livehub.webhook_settings import endpoint_label
from livehub.webhooks.dispatcher import Dispatcher, Tuning
from livehub.webhooks.metrics import WebhookMetrics
from livehub.webhooks.presence import PresenceEvents
from livehub.webhooks.queue import DeliveryQueue
from livehub.webhooks.signing import Signer

log = logging.getLogger(__name__)

QueueFactory = Callable[[web.Application], DeliveryQueue]

DAY = 86400.0


def default_queue(app: web.Application) -> DeliveryQueue:
    """The outbox where the store stages it (``livehub.engines`` decides which)."""
    return app[keys.outbox]()


class _Wakeup:
    """Wakes the running dispatcher (if any) right after a write that may have staged rows,
    rather than at its next poll."""

    def __init__(self) -> None:
        self.dispatcher: Dispatcher | None = None

    def __call__(self, *_: object) -> None:
        if self.dispatcher is not None:
            self.dispatcher.wake()


def setup_webhooks(
    app: web.Application, config: Config, *, queue: QueueFactory = default_queue
) -> None:
    """Metrics, the outbox, the dispatcher and the presence events when
    ``LIVEHUB_WEBHOOK_URLS`` is set (the admin routes are the API's: ``livehub.api.routes``;
    they answer ``webhooks_disabled`` without it). Call it after the room service and
    signaling are in ``app``.
    """
    app[keys.webhook_tuning] = Tuning()
    if not config.webhook_urls:
        return
    metrics = WebhookMetrics(app[keys.metrics].registry)
    wakeup = _Wakeup()
    # every stored room change (and player count change: a harmless extra look) wakes it
    app[keys.rooms].subscribe(wakeup)

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
            retention=config.webhook_retention_days * DAY,
            prune_interval=tuning.prune_interval,
            on_outcome=metrics.count,
        )
        presence = PresenceEvents(
            app[keys.rooms],
            app[keys.hub].count,
            interval=config.webhook_viewers_interval,
            on_staged=wakeup,
        )
        metrics.read_stats_from(lambda: dispatcher.stats)
        app[keys.webhook_queue] = outbox
        app[keys.webhook_dispatcher] = dispatcher
        wakeup.dispatcher = dispatcher
        task = asyncio.create_task(dispatcher.run(), name="livehub-webhooks")
        presence.start()
        app[keys.signaling].subscribe_presence(presence.on_presence)
        log.info(
            "webhooks to %s (%d secret%s)",
            ", ".join(endpoint_label(url) for url in config.webhook_urls),
            len(config.webhook_secrets),
            "s" if len(config.webhook_secrets) > 1 else "",
        )
        try:
            yield
        finally:
            # the WebSockets are closed by now (on_shutdown): their host.left are staged
            await presence.close()
            wakeup.dispatcher = None
            await cancel_and_wait(task)
            await dispatcher.stop(grace=min(config.webhook_timeout, config.shutdown_timeout / 4))
            await session.close()
            await outbox.close()

    app.cleanup_ctx.append(webhooks_ctx)
