"""Limits per client address: open WebSockets, and kick bans.

An address is counted by its :func:`address_key`: an IPv4 address as itself, an IPv6 address by
its /64 (one household or one host gets a /64, and a client can pick any address in it), an
IPv4-mapped IPv6 address as the IPv4 address it maps. The anonymous room-create limit
(:mod:`livehub.domain.admission`) uses the same key.

Two ports, each with an in-process implementation here (embedded mode) and a Redis one shared
by every node of a cluster (:mod:`livehub.adapters.redis.address_limits`):

- :class:`ConnectionCounts`: at most ``limit`` open signaling connections per address; the next
  upgrade is refused (HTTP 429) before the handshake, and closing one frees its slot;
- :class:`KickBans`: a peer kicked from a room leaves its address banned from joining that room
  again for a while (``banned``).
"""

from __future__ import annotations

import functools
import ipaddress
import time
from collections.abc import Callable
from typing import Protocol


class SharedUnavailable(Exception):
    """The state shared by the nodes (Redis) cannot be reached: each node limits on its own
    meanwhile."""


#: tracked bans at most (beyond it the ones closest to their end are forgotten)
MAX_BANS = 100_000


@functools.lru_cache(maxsize=4096)
def address_key(address: str) -> str:
    """What a client address is counted as: IPv4 as is, IPv6 by its /64 (``2001:db8::/64``),
    an IPv4-mapped IPv6 address as its IPv4 address; anything else (no address) as given.
    The recent answers are kept: parsing an address was 2 % of a join storm's CPU, and the
    clients of a storm come from few addresses."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # no zone index
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
    return str(ip)


class ConnectionCounts(Protocol):
    """Open signaling connections per address key."""

    #: connections allowed per address (0: no limit)
    limit: int

    async def acquire(self, key: str) -> bool:
        """Count one more connection of ``key``; False (and nothing counted) at the limit."""
        ...

    def release(self, key: str) -> None:
        """A connection counted by :meth:`acquire` is gone."""
        ...


class KickBans(Protocol):
    """Addresses that may not join a room for a while, after a peer of theirs was kicked."""

    #: seconds a ban lasts (0: no bans)
    seconds: float

    def ban(self, room_id: str, key: str) -> None: ...

    async def banned(self, room_id: str, key: str) -> bool: ...


class LocalConnections:
    """:class:`ConnectionCounts` of one process."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.counts: dict[str, int] = {}

    def try_acquire(self, key: str) -> bool:
        count = self.counts.get(key, 0)
        if self.limit and count >= self.limit:
            return False
        self.counts[key] = count + 1
        return True

    async def acquire(self, key: str) -> bool:
        return self.try_acquire(key)

    def release(self, key: str) -> None:
        count = self.counts.get(key, 0) - 1
        if count > 0:
            self.counts[key] = count
        else:
            self.counts.pop(key, None)


class LocalBans:
    """:class:`KickBans` of one process: ``(room, key) -> end`` (monotonic), pruned as they
    end."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._ends: dict[tuple[str, str], float] = {}

    def ban(self, room_id: str, key: str, seconds: float | None = None) -> None:
        """Ban ``key`` from the room for ``seconds`` (default: the configured length; another
        node's ban arrives with what is left of it)."""
        if self.seconds <= 0 or not key:
            return
        now = self._clock()
        # re-inserted last: the dict stays in end order (but for another node's bans, which end a
        # little sooner: pruning stops at the first current ban, so some ended ones may wait)
        self._ends.pop((room_id, key), None)
        self._ends[(room_id, key)] = now + (self.seconds if seconds is None else seconds)
        if len(self._ends) > MAX_BANS:
            self._prune(now)

    def is_banned(self, room_id: str, key: str) -> bool:
        end = self._ends.get((room_id, key))
        if end is None:
            return False
        if end <= self._clock():
            del self._ends[(room_id, key)]
            return False
        return True

    async def banned(self, room_id: str, key: str) -> bool:
        return self.is_banned(room_id, key)

    def _prune(self, now: float) -> None:
        for entry, end in list(self._ends.items()):  # in end order: stop at the first current
            if end > now and len(self._ends) <= MAX_BANS:
                break
            del self._ends[entry]
