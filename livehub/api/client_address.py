"""The address of the client behind a request, through trusted proxies only.

``X-Forwarded-For`` is believed only from the proxies in ``LIVEHUB_TRUSTED_PROXIES``: the
header is read from the right (the hop nearest to us), skipping addresses that are trusted
proxies themselves; the first other address is the client, without a port some proxies write
after it (one client's connections are one address, whatever their source ports). From anyone
else the header is ignored (a client could write anything there).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from aiohttp import web

from livehub.config import Network, in_networks


def _bare(hop: str) -> str | None:
    """The address of an ``X-Forwarded-For`` hop, without the port some proxies add
    (``a.b.c.d:port``, ``[v6]:port``); None if it is no address."""
    if hop.startswith("["):
        end = hop.find("]")
        hop = hop[1:end] if end > 0 else hop
    elif hop.count(":") == 1:  # IPv4 and a port (an IPv6 address has more colons)
        hop = hop.partition(":")[0]
    try:
        return str(ipaddress.ip_address(hop))
    except ValueError:
        return None


def client_address(request: web.Request, proxies: Sequence[Network]) -> str:
    """The client's address: the peer, or through trusted proxies the nearest hop that is no
    trusted proxy. A hop that is no address (the proxy wrote something else) is the peer's,
    so that nobody can make up keys of their own for the per-address limits."""
    peer = request.remote or ""
    if not proxies or not in_networks(peer, proxies):
        return peer
    hops = [
        hop.strip()
        for header in request.headers.getall("X-Forwarded-For", [])
        for hop in header.split(",")
    ]
    addresses = [_bare(hop) for hop in hops if hop]
    for address in reversed(addresses):
        if address is None:
            return peer
        if not in_networks(address, proxies):
            return address
    return addresses[0] or peer if addresses else peer
