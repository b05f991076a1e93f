"""The address of the client behind a request, through trusted proxies only.

``X-Forwarded-For`` is believed only from the proxies in ``LIVEHUB_TRUSTED_PROXIES``: the
header is read from the right (the hop nearest to us), skipping addresses that are trusted
proxies themselves; the first other address is the client. From anyone else the header is
ignored (a client could write anything there).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from aiohttp import web

from livehub.config import Network


def _trusted(address: str, proxies: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in proxies)


def client_address(request: web.Request, proxies: Sequence[Network]) -> str:
    peer = request.remote or ""
    if not proxies or not _trusted(peer, proxies):
        return peer
    hops = [
        hop.strip()
        for header in request.headers.getall("X-Forwarded-For", [])
        for hop in header.split(",")
    ]
    for hop in reversed(hops):
        if not hop:
            continue
        if not _trusted(hop, proxies):
            return hop
    return hops[0] if hops and hops[0] else peer
