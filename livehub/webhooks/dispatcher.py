"""The dispatcher: a background task that sends the outbox's due rows to their endpoints.

It never blocks the loop (the queue adapter does its I/O off the loop) and never waits on a
receiver but in its own tasks: at most ``concurrency`` attempts are in flight, each bounded by
``timeout``; hooks, REST and signaling do not wait on any of it. A 2xx delivers; anything else
(status, timeout, refused connection) schedules a retry from :class:`RetrySchedule`, honouring
``Retry-After``, until the schedule is over and the row is ``failed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import time
from collections.abc import Callable

import aiohttp

from livehub import __version__
from livehub.tasks import cancel_and_wait
from livehub.webhook_settings import endpoint_label
from livehub.webhooks.queue import Delivery, DeliveryQueue, QueueStats
from livehub.webhooks.schedule import RetrySchedule, parse_retry_after
from livehub.webhooks.signing import Signer, message_id

log = logging.getLogger(__name__)

USER_AGENT = f"livehub-webhooks/{__version__}"
MAX_ERROR_LENGTH = 300

Outcome = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class Tuning:
    """How the dispatcher runs. The defaults are production's; tests replace
    ``app[keys.webhook_tuning]`` before the app starts to run the schedule in milliseconds."""

    schedule: RetrySchedule = dataclasses.field(default_factory=RetrySchedule)
    poll_interval: float = 1.0
    stats_interval: float = 5.0
    #: seconds between prunes of delivered rows past their retention
    prune_interval: float = 300.0


#: delivered rows deleted per statement by a prune, and statements per prune at most
PRUNE_BATCH = 1000
PRUNE_BATCHES = 20


class Dispatcher:
    def __init__(
        self,
        queue: DeliveryQueue,
        session: aiohttp.ClientSession,
        signer: Signer,
        *,
        schedule: RetrySchedule | None = None,
        timeout: float = 10.0,
        concurrency: int = 16,
        poll_interval: float = 1.0,
        stats_interval: float = 5.0,
        retention: float = 0.0,
        prune_interval: float = 300.0,
        clock: Callable[[], float] = time.time,
        random: Callable[[], float] = random.random,
        on_outcome: Outcome | None = None,
    ) -> None:
        self.queue = queue
        self.session = session
        self.signer = signer
        self.schedule = schedule or RetrySchedule()
        self.timeout = timeout
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        self.stats_interval = stats_interval
        #: seconds a delivered row is kept (0: for ever)
        self.retention = retention
        self.prune_interval = prune_interval
        self._pruned_at: float | None = None
        self._clock = clock
        self._random = random
        self._on_outcome = on_outcome
        #: a claimed row stays leased this long: past its attempt's timeout, with a margin
        self.lease_ms = int((timeout * 2 + 5) * 1000)
        self._wake = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()
        self.stats: QueueStats | None = None
        self._stats_at = 0.0
        self.last_error: str | None = None

    def now_ms(self) -> int:
        return int(self._clock() * 1000)

    def wake(self) -> None:
        """Look for due rows now rather than at the next poll (after a write, after a retry)."""
        self._wake.set()

    async def run(self) -> None:
        """Claim and send until cancelled. A failing database is logged and retried."""
        while True:
            # cleared before the work: a wake-up during it (a slot freed) is not lost
            self._wake.clear()
            try:
                await self.refresh_stats()
                await self._claim_and_send()
                await self.prune()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.last_error is None:
                    log.exception(
                        "webhook outbox unavailable; retrying every %.1f s", self.poll_interval
                    )
                self.last_error = f"{type(exc).__name__}: {exc}"
            else:
                if self.last_error is not None:
                    log.info("webhook outbox available again")
                self.last_error = None
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation that
            # races with the event being set, and the task would never stop
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_interval):
                    await self._wake.wait()

    async def refresh_stats(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if force or self.stats is None or now - self._stats_at >= self.stats_interval:
            self.stats = await self.queue.stats()
            self._stats_at = now

    async def prune(self, *, force: bool = False) -> int:
        """Delete delivered rows older than the retention, in bounded batches, at most every
        ``prune_interval`` seconds; returns how many."""
        if self.retention <= 0:
            return 0
        now = time.monotonic()
        recent = self._pruned_at is not None and now - self._pruned_at < self.prune_interval
        if recent and not force:
            return 0
        self._pruned_at = now
        before = self.now_ms() - int(self.retention * 1000)
        deleted = 0
        for _ in range(PRUNE_BATCHES):
            batch = await self.queue.prune(before, PRUNE_BATCH)
            deleted += batch
            if batch < PRUNE_BATCH:
                break
        if deleted:
            log.info("deleted %d webhook deliveries past their retention", deleted)
        return deleted

    async def _claim_and_send(self) -> None:
        while True:
            free = self.concurrency - len(self._inflight)
            if free <= 0:
                return
            rows = await self.queue.claim(self.now_ms(), free, self.lease_ms)
            for n, row in enumerate(rows):
                if n:
                    # one attempt starts per loop iteration: a claimed batch does not set up
                    # its 16 HTTP requests in one step while requests wait to be served
                    await asyncio.sleep(0)
                task = asyncio.create_task(self._deliver(row), name=f"livehub-webhook-{row.id}")
                self._inflight.add(task)
                task.add_done_callback(self._done)
            if len(rows) < free:
                return

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        # a slot is free, and the row's successor in its room may be due: look again
        self._wake.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("webhook delivery task failed", exc_info=task.exception())

    async def _deliver(self, row: Delivery) -> None:
        try:
            status, error, retry_after = await self.attempt(row)
        except Exception as exc:
            # a bug, not the receiver's: this attempt failed like any other (retried on the
            # schedule) rather than ending the task with the row leased, to be sent again at
            # each lease's end while its room's later events wait behind it
            status, error, retry_after = None, _error_text(exc, row.endpoint), None
            log.error(
                "webhook %s to %s: unexpected error in the attempt: %s",
                message_id(row.id),
                endpoint_label(row.endpoint),
                error,
            )
            # the traceback at debug level only: an exception's text may quote the endpoint
            log.debug("traceback of the attempt's error", exc_info=True)
        if status is not None and 200 <= status < 300:
            if not await self.queue.delivered(row, self.now_ms(), status):
                self._superseded(row, f"HTTP {status}")
                return
            self._count("delivered")
            log.debug(
                "webhook %s delivered to %s", message_id(row.id), endpoint_label(row.endpoint)
            )
            return
        attempts = row.attempts + 1
        reason = error or f"HTTP {status}"
        age = self._clock() - row.created_at / 1000
        delay = self.schedule.delay(attempts, self._random, retry_after, age)
        if delay is None:
            if not await self.queue.fail(row, status=status, error=reason):
                self._superseded(row, reason)
                return
            self._count("failed")
            log.warning(
                "webhook %s (%s, room %s, seq %d) to %s failed for good after %d attempts: %s",
                message_id(row.id),
                row.type,
                row.room_id,
                row.seq,
                endpoint_label(row.endpoint),
                attempts,
                reason,
            )
            return
        at = self.now_ms() + int(delay * 1000)
        if not await self.queue.retry_later(row, at=at, status=status, error=reason):
            self._superseded(row, reason)
            return
        self._count("retried")
        log.info(
            "webhook %s to %s: attempt %d failed (%s), next in %.1f s",
            message_id(row.id),
            endpoint_label(row.endpoint),
            attempts,
            reason,
            delay,
        )

    def _superseded(self, row: Delivery, outcome: str) -> None:
        """The attempt outlived its lease and the row was claimed again (by this node or
        another): its outcome was not recorded, the new holder's will be (at least once)."""
        log.warning(
            "webhook %s to %s: the attempt (%s) outlived its lease and the row was claimed "
            "again; its outcome is left to the newer attempt (a process paused that long, or "
            "node clocks that differ by more than the lease?)",
            message_id(row.id),
            endpoint_label(row.endpoint),
            outcome,
        )

    async def attempt(self, row: Delivery) -> tuple[int | None, str | None, float | None]:
        """Send one row once: its status (or ``None``), an error text, ``Retry-After`` seconds."""
        now = self._clock()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            **self.signer.headers(message_id(row.id), int(now), row.body),
        }
        try:
            async with self.session.post(
                row.endpoint,
                data=row.body.encode(),
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            ) as response:
                retry_after = None
                if not 200 <= response.status < 300:  # a delivery needs no next attempt
                    retry_after = parse_retry_after(
                        response.headers.get("Retry-After"),
                        self._clock(),
                        self.schedule.max_retry_after,
                    )
                # the answer's body is not needed; release the connection without reading it
                return response.status, None, retry_after
        except TimeoutError:
            return None, f"timed out after {self.timeout:g} s", None
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return None, _error_text(exc, row.endpoint), None

    def _count(self, outcome: str) -> None:
        if self._on_outcome is not None:
            self._on_outcome(outcome)

    async def stop(self, grace: float) -> None:
        """Let attempts in flight finish for ``grace`` seconds, then cancel the rest (their
        rows stay leased and are sent again when the lease ends: at least once)."""
        pending = list(self._inflight)
        if not pending:
            return
        _, late = await asyncio.wait(pending, timeout=grace)
        await cancel_and_wait(*late)


def _error_text(exc: BaseException, endpoint: str) -> str:
    """A short reason for ``last_error`` and logs, without the endpoint's URL: its path, query
    or userinfo may carry a token (only scheme, host and port are shown)."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        text = f"cannot connect: {exc.os_error.strerror or exc.os_error}"
    elif isinstance(exc, aiohttp.InvalidURL):
        text = "invalid URL"
    elif isinstance(exc, aiohttp.ClientResponseError):
        text = f"{type(exc).__name__}: {exc.status} {exc.message}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    return text.replace(endpoint, endpoint_label(endpoint))[:MAX_ERROR_LENGTH]
