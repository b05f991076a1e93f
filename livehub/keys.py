"""Typed application keys: everything the app keeps in its state, declared in one place."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from aiohttp import web

from livehub.api.views import RoomViews
from livehub.config import Config
from livehub.domain.hub import Hub
from livehub.domain.rooms import RoomService, RoomStore
from livehub.domain.signaling import Signaling
from livehub.metrics import Metrics
from livehub.reconcile import Reconciler
from livehub.srs import PublicUrls, SRSClient
from livehub.webhooks.dispatcher import Dispatcher, Tuning
from livehub.webhooks.queue import DeliveryQueue

config = web.AppKey("config", Config)
store = web.AppKey("store", RoomStore)
rooms = web.AppKey("rooms", RoomService)
hub = web.AppKey("hub", Hub)
signaling = web.AppKey("signaling", Signaling)
views = web.AppKey("views", RoomViews)
urls = web.AppKey("urls", PublicUrls)
metrics = web.AppKey("metrics", Metrics)
http_session = web.AppKey("http_session", aiohttp.ClientSession)
srs = web.AppKey("srs", SRSClient)
reconciler = web.AppKey("reconciler", Reconciler)
background: web.AppKey[set[asyncio.Task[Any]]] = web.AppKey("background")
openapi = web.AppKey("openapi", dict[str, Any])
# webhooks (livehub/webhooks): set by its cleanup context when LIVEHUB_WEBHOOK_URLS is set
webhook_queue = web.AppKey("webhook_queue", DeliveryQueue)
webhook_dispatcher = web.AppKey("webhook_dispatcher", Dispatcher)
webhook_tuning = web.AppKey("webhook_tuning", Tuning)
