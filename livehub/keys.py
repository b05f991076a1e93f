"""Typed application keys: everything the app keeps in its state, declared in one place.

Values are domain objects and adapters; nothing here imports :mod:`livehub.api` (wiring
points one way: api → domain)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from livehub.adapters.redis.leader import LeaderLock
from livehub.adapters.srs.api import Kicker, SRSClient, SRSOrigins
from livehub.config import Config
from livehub.domain.addresses import ConnectionCounts
from livehub.domain.admission import CreatePolicy
from livehub.domain.bus import Bus
from livehub.domain.moderation import Moderation
from livehub.domain.recordings import RecordingService
from livehub.domain.room import RoomPresenter
from livehub.domain.room_hub import RoomHub
from livehub.domain.service import RoomService
from livehub.domain.signaling import Signaling
from livehub.domain.stage import Stage
from livehub.domain.store import RoomStore
from livehub.domain.viewer_tokens import ViewerTokens
from livehub.guard import ConnectionGuard
from livehub.metrics import Metrics
from livehub.readiness import Readiness
from livehub.reconcile import Reconciler
from livehub.webhooks.dispatcher import Dispatcher, Tuning
from livehub.webhooks.queue import DeliveryQueue, OutboxFactory

config = web.AppKey("config", Config)
store = web.AppKey("store", RoomStore)
rooms = web.AppKey("rooms", RoomService)
recordings = web.AppKey("recordings", RecordingService)
create_policy = web.AppKey("create_policy", CreatePolicy)
#: open signaling connections per client address (LIVEHUB_MAX_CONNECTIONS_PER_ADDRESS)
connections = web.AppKey("connections", ConnectionCounts)
#: the public port's connections per address and first-request deadline (livehub.guard)
guard = web.AppKey("guard", ConnectionGuard)
hub = web.AppKey("hub", RoomHub)
#: the bus between nodes (cluster mode only)
bus = web.AppKey("bus", Bus)
signaling = web.AppKey("signaling", Signaling)
views = web.AppKey("views", RoomPresenter)
metrics = web.AppKey("metrics", Metrics)
#: the first SRS origin (readiness); every origin is in ``srs_origins``
srs = web.AppKey("srs", SRSClient)
srs_origins = web.AppKey("srs_origins", SRSOrigins)
#: /readyz's checks of the database and SRS, reused for a second
readiness = web.AppKey("readiness", Readiness[tuple[bool, list[bool]]])
kicker = web.AppKey("kicker", Kicker)
reconciler = web.AppKey("reconciler", Reconciler)
#: cluster mode only: the lock of the node that reconciles and sweeps
leader = web.AppKey("leader", LeaderLock)
openapi = web.AppKey("openapi", dict[str, Any])
#: co-hosts on stage, and private rooms' viewer tokens (issue 18)
stage = web.AppKey("stage", Stage)
#: chat moderation (issue 18): its writes in flight end before the store closes
moderation = web.AppKey("moderation", Moderation)
viewer_tokens = web.AppKey("viewer_tokens", ViewerTokens)
# webhooks (livehub/webhooks): set by its cleanup context when LIVEHUB_WEBHOOK_URLS is set
webhook_queue = web.AppKey("webhook_queue", DeliveryQueue)
#: opens the outbox of the app's database (livehub.engines)
outbox = web.AppKey("outbox", OutboxFactory)
webhook_dispatcher = web.AppKey("webhook_dispatcher", Dispatcher)
webhook_tuning = web.AppKey("webhook_tuning", Tuning)
