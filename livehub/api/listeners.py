"""Which port serves which routes.

With ``LIVEHUB_INTERNAL_PORT`` set, livehub listens on two ports with one application: the
public port (browsers, encoders' API calls, the console) and the internal port (SRS's hooks
and heartbeat, the Prometheus scraper), which a deployment does not publish. Each listener
answers 404, in the one error shape, for the other's routes. The listener a request came in
on is told by the local port of its socket (not the ``Host`` header, which the client writes).
Health checks answer on both, for orchestrators on either network.
"""

from __future__ import annotations

from collections.abc import Awaitable

from aiohttp import web
from aiohttp.typedefs import Handler

from livehub import keys

#: route names served only on the internal port when it is set
INTERNAL_ROUTES = frozenset({"srs_hooks", "srs_heartbeat", "srs_heartbeat_signed", "metrics"})
#: route names both ports serve
SHARED_ROUTES = frozenset({"healthz", "readyz"})
#: the paths of those internal routes: a request that matched no route there (a wrong method:
#: 405) is answered as if the path did not exist on the public port, not with a 405 that says
#: it does
INTERNAL_PATHS = ("/api/hooks/srs", "/metrics")


def local_port(request: web.Request) -> int | None:
    """The port of the listening socket this request arrived on (None: a Unix socket)."""
    transport = request.transport
    sockname = transport.get_extra_info("sockname") if transport is not None else None
    if isinstance(sockname, tuple) and len(sockname) >= 2 and isinstance(sockname[1], int):
        return sockname[1]
    return None


@web.middleware
def listener_middleware(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
    """404 for an internal route on the public port, and for a public route on the internal
    port. Installed only when LIVEHUB_INTERNAL_PORT is set. Raises at once, or returns the
    handler's coroutine without a frame of its own around it (see ``turns_middleware``)."""
    name = request.match_info.route.name
    if name not in SHARED_ROUTES:
        internal_route = name in INTERNAL_ROUTES or (
            name is None and request.path.startswith(INTERNAL_PATHS)
        )
        on_internal_port = local_port(request) == request.app[keys.config].internal_port
        if on_internal_port != internal_route:
            raise web.HTTPNotFound()
    return handler(request)
