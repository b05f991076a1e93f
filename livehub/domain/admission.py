"""Who may create rooms.

With API keys configured, creating a room needs one of them (or the admin token) as the
bearer: none is :class:`Unauthorized`, another is :class:`Forbidden`. Without keys (the
embedded default, the seed's anonymous create), anyone may create, but each client address
gets ``rate_per_min`` creations a minute (a token bucket with a burst of the same size); the
admin token is not limited. Keys are compared as SHA-256 digests: the keys themselves are not
kept.

A creation is taken from its bucket before the room is written (so that two concurrent
creations cannot both pass a bucket holding one) and given back if the room is not written
after all (the cap on open rooms, the store failing): a refused creation spends nothing
(:meth:`CreatePolicy.admission`). A creation is given back to the bucket it was taken from.

Addresses are counted by :func:`~livehub.domain.addresses.address_key` (IPv6 by its /64). In
cluster mode the buckets are shared by every node (``shared``, in Redis); while it cannot be
reached each node keeps its own, as in one process.

The per-address buckets are bounded: full (idle) buckets are dropped when the table grows, and
beyond :data:`MAX_TRACKED` addresses the oldest are forgotten (they start again with a full
bucket, which only errs towards letting someone create).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hmac
import logging
import math
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Collection
from typing import Protocol

from livehub.domain.addresses import SharedUnavailable, address_key
from livehub.domain.errors import Forbidden, RateLimited, Unauthorized
from livehub.domain.tokens import hash_token, same_token

log = logging.getLogger(__name__)

MAX_TRACKED = 100_000


class CreateBuckets(Protocol):
    """The per-address creation buckets of every node (cluster mode)."""

    async def take_create(self, key: str, rate_per_min: int) -> int:
        """Take a creation from the bucket of ``key`` (``rate_per_min`` a minute, a burst of as
        many): 0 if it was taken, else the seconds until one is there. Raises
        :class:`SharedUnavailable` when the shared state cannot be reached."""
        ...

    async def give_back_create(self, key: str, rate_per_min: int) -> None:
        """Put back a creation taken from the bucket of ``key`` (the room was not written).
        Raises :class:`SharedUnavailable` when the shared state cannot be reached."""
        ...


class Taken(enum.Enum):
    """Where :meth:`CreatePolicy.admit` took a creation from (where it is given back)."""

    NOWHERE = "nowhere"  # no limit
    SHARED = "shared"
    LOCAL = "local"


class CreatePolicy:
    def __init__(
        self,
        *,
        api_key_hashes: Collection[str] = (),
        admin_token: str | None = None,
        rate_per_min: int = 30,
        shared: CreateBuckets | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._keys = frozenset(api_key_hashes)
        self._rate_per_min = rate_per_min
        self.shared = shared
        self._shared_down = False
        self._admin = admin_token
        self._rate = rate_per_min / 60.0
        self._burst = float(rate_per_min)
        self._clock = clock
        #: client address -> (tokens, last refill), least recently used first
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    @property
    def keyed(self) -> bool:
        """Whether creation needs a key."""
        return bool(self._keys)

    def _is_admin(self, bearer: str) -> bool:
        return bool(self._admin) and same_token(bearer, self._admin or "")

    def _is_key(self, bearer: str) -> bool:
        digest = hash_token(bearer)
        found = False
        for key in self._keys:  # no early exit: the time says nothing about which key
            found |= hmac.compare_digest(key, digest)
        return found

    def is_admin(self, bearer: str) -> bool:
        return self._is_admin(bearer)

    def privileged(self, bearer: str) -> bool:
        """The admin token or an API key (listing private rooms, minting viewer tokens)."""
        return self._is_admin(bearer) or (bool(self._keys) and self._is_key(bearer))

    def authenticate(self, bearer: str | None) -> bool:
        """Check the credentials of a creation: raise why they do not do, or return whether
        the creation is anonymous (then :meth:`take` it from its address's bucket)."""
        if self._keys:
            if not bearer:
                raise Unauthorized("Creating a room needs Authorization: Bearer <API key>")
            if not (self._is_key(bearer) or self._is_admin(bearer)):
                raise Forbidden("The API key is not valid")
            return False
        return not (bearer and self._is_admin(bearer))

    def take(self, client: str) -> None:
        """Count an anonymous creation from address ``client`` in this process; raise
        :class:`RateLimited` when its bucket is empty."""
        if self._burst > 0:  # LIVEHUB_CREATE_RATE_PER_MIN=0: no limit
            self._take(address_key(client))

    async def admit(self, client: str) -> Taken:
        """:meth:`take`, from the buckets every node shares when there are (cluster mode);
        returns where the creation was taken from."""
        if self._burst <= 0:
            return Taken.NOWHERE
        if self.shared is not None:
            try:
                wait = await self.shared.take_create(address_key(client), self._rate_per_min)
            except SharedUnavailable as exc:
                if not self._shared_down:
                    log.warning("room creation limits: shared state unreachable (%s)", exc)
                self._shared_down = True
            else:
                self._shared_down = False
                if wait:
                    raise RateLimited(
                        f"Too many rooms created from this address: retry in {wait} s",
                        retry_after=wait,
                    )
                return Taken.SHARED
        self._take(address_key(client))
        return Taken.LOCAL

    async def give_back(self, client: str, taken: Taken) -> None:
        """Put back a creation :meth:`admit` took (``taken``: where from) for a room that was
        not written. Shared state unreachable: it stays spent (the outage is logged once by
        the shared state's adapter)."""
        key = address_key(client)
        if taken is Taken.LOCAL:
            self._give_back(key)
        elif taken is Taken.SHARED and self.shared is not None:
            try:
                await self.shared.give_back_create(key, self._rate_per_min)
            except SharedUnavailable as exc:
                log.debug("room creation limits: a refused creation stays spent (%s)", exc)

    @contextlib.asynccontextmanager
    async def admission(self, client: str | None) -> AsyncIterator[None]:
        """Admit an anonymous creation from address ``client`` (None: not limited, the admin
        token or an API key) around the writing of its room: :class:`RateLimited` when its
        bucket is empty; the creation is given back when the block raises an exception (the
        room was not written; were it written all the same, this errs towards letting someone
        create). Exceptions go through unchanged; a cancellation keeps the creation spent (the
        room may be written)."""
        if client is None:
            yield
            return
        taken = await self.admit(client)
        try:
            yield
        except Exception:
            # shielded: a cancellation now must not lose the give-back
            await asyncio.shield(self.give_back(client, taken))
            raise

    def check(self, bearer: str | None, client: str) -> None:
        """Allow a creation by ``bearer`` from address ``client``, or raise why not."""
        if self.authenticate(bearer):
            self.take(client)

    def _take(self, client: str) -> None:
        now = self._clock()
        tokens, last = self._buckets.pop(client, (self._burst, now))
        tokens = min(self._burst, tokens + (now - last) * self._rate)
        if tokens < 1.0:
            self._buckets[client] = (tokens, now)
            retry_after = max(1, math.ceil((1.0 - tokens) / self._rate))
            raise RateLimited(
                f"Too many rooms created from this address: retry in {retry_after} s",
                retry_after=retry_after,
            )
        self._buckets[client] = (tokens - 1.0, now)
        if len(self._buckets) > MAX_TRACKED:
            self._prune(now)

    def _give_back(self, client: str) -> None:
        state = self._buckets.get(client)
        if state is None:
            return  # forgotten since: it starts again full
        now = self._clock()
        tokens, last = state
        self._buckets[client] = (min(self._burst, tokens + (now - last) * self._rate + 1.0), now)

    def _prune(self, now: float) -> None:
        refill = self._burst / self._rate if self._rate else 0.0
        for address, (_, last) in list(self._buckets.items()):
            if now - last >= refill:  # full again: the same as forgotten
                del self._buckets[address]
        while len(self._buckets) > MAX_TRACKED:
            self._buckets.popitem(last=False)
