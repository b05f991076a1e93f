"""The outbox port: the ``webhook_deliveries`` table seen as a queue (plain Python).

The store writes rows in the same transaction as the room change they report (one per endpoint
per event, ``body`` the exact JSON to send). The dispatcher only reads and updates them through
:class:`DeliveryQueue`, which the embedded (SQLite) and cluster (PostgreSQL) adapters implement.

Order: only the *head* of each (endpoint, room) — its oldest pending row — is ever claimed, so
a room's events reach an endpoint in ``seq`` order; a row that ends ``failed`` stops blocking
the rows after it. Claiming a row *leases* it (moves ``next_attempt_at`` past the attempt's
timeout), so another dispatcher (another process, in cluster mode with ``FOR UPDATE SKIP
LOCKED``) does not send it too; a dispatcher killed mid-attempt leaves a lease that simply
expires, and the row is sent again: delivery is at least once.

The lease is also the holder's token. A claimed row carries its lease's end in
``next_attempt_at``, and an attempt's outcome (:meth:`DeliveryQueue.delivered`, ``retry_later``,
``fail``) is recorded only while the row is still pending with that very value. An attempt that
outlived its lease (a paused process, a node whose clock is behind the others') may find the row
claimed again by another dispatcher, which is sending it now: recorded by id alone, its late
outcome would overwrite that holder's row (a stale retry freeing it for a third sender, a stale
failure or delivery ending it while it is in flight and letting the room's next event overtake
it). Such an outcome is a no-op instead; the current holder's own outcome decides, and a holder
that dies leaves its lease to expire, so delivery stays at least once. Each claim needs
``now >= next_attempt_at`` and sets ``now + lease``, so no two claims of a row share a token.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, Protocol

from livehub.domain.errors import LivehubError


class DeliveryState(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Delivery:
    """One row of ``webhook_deliveries``: one event for one endpoint. Times in epoch ms."""

    id: int
    endpoint: str
    room_id: str
    seq: int
    type: str
    body: str
    created_at: int
    state: DeliveryState
    attempts: int
    next_attempt_at: int
    last_status: int | None
    last_error: str | None
    delivered_at: int | None


@dataclasses.dataclass(frozen=True)
class QueueStats:
    """Rows by state, and the creation time (epoch ms) of the oldest pending row."""

    counts: dict[DeliveryState, int]
    oldest_pending_created_at: int | None


class DeliveryNotFound(LivehubError):
    code = "delivery_not_found"

    def __init__(self, delivery_id: int) -> None:
        super().__init__("Webhook delivery not found", details={"id": delivery_id})


class DeliveryNotFailed(LivehubError):
    """Only a failed delivery can be retried: a pending one is being retried already, and a
    delivered one sent again would arrive after the room's newer events."""

    code = "delivery_not_failed"

    def __init__(self, delivery_id: int, state: DeliveryState) -> None:
        super().__init__(
            f"Only a failed delivery can be retried; this one is {state.value}",
            details={"id": delivery_id, "state": state.value},
        )


class WebhooksDisabled(LivehubError):
    code = "webhooks_disabled"

    def __init__(self) -> None:
        super().__init__("Webhooks are not configured (LIVEHUB_WEBHOOK_URLS)")


class DeliveryQueue(Protocol):
    """What the dispatcher and the admin endpoints need of the outbox. Times in epoch ms."""

    async def claim(self, now: int, limit: int, lease: int) -> list[Delivery]:
        """Up to ``limit`` due heads (pending, ``next_attempt_at <= now``, the oldest pending
        row of their endpoint and room), oldest due first, each leased until ``now + lease``
        (the returned rows' ``next_attempt_at``: the token their outcome is recorded with)."""

    async def delivered(self, claimed: Delivery, now: int, status: int) -> bool:
        """The attempt got a 2xx: the row is done. ``claimed`` is the row as :meth:`claim`
        returned it; False (nothing written) when its lease is no longer this claim's."""

    async def retry_later(
        self, claimed: Delivery, *, at: int, status: int | None, error: str
    ) -> bool:
        """The attempt failed: count it, try again at ``at``. False as for :meth:`delivered`."""

    async def fail(self, claimed: Delivery, *, status: int | None, error: str) -> bool:
        """The attempt failed and the schedule is over: count it, mark the row failed. False as
        for :meth:`delivered`."""

    async def get(self, delivery_id: int) -> Delivery | None: ...

    async def list(self, state: DeliveryState | None, limit: int, offset: int) -> list[Delivery]:
        """Rows newest first, optionally of one state."""

    async def retry(self, delivery_id: int, now: int) -> Delivery:
        """A failed row back to pending, due now, with a fresh schedule (attempts 0).
        :class:`DeliveryNotFound`, :class:`DeliveryNotFailed` otherwise."""

    async def prune(self, delivered_before: int, limit: int) -> int:
        """Delete at most ``limit`` delivered rows delivered before ``delivered_before``
        (retention; failed and pending rows are kept); returns how many."""

    async def stats(self) -> QueueStats: ...

    async def close(self) -> None: ...


class OutboxFactory(Protocol):
    """Opens the outbox of the app's database (``livehub.engines`` gives it)."""

    def __call__(self) -> DeliveryQueue: ...


#: the ``webhook_deliveries`` columns (the outbox; created by the stores' migrations)
DELIVERY_COLUMNS = (
    "id",
    "endpoint",
    "room_id",
    "seq",
    "type",
    "body",
    "created_at",
    "state",
    "attempts",
    "next_attempt_at",
    "last_status",
    "last_error",
    "delivered_at",
)


def delivery_from_row(row: Any) -> Delivery:
    """A delivery from a ``webhook_deliveries`` row in :data:`DELIVERY_COLUMNS` order (a sqlite3
    tuple or an asyncpg record)."""
    values = dict(zip(DELIVERY_COLUMNS, row, strict=True))
    values["state"] = DeliveryState(values["state"])
    return Delivery(**values)
