"""``livehub`` / ``python -m livehub``: read config (environment, then flags), log, serve.

``livehub migrate-db --from livehub.db [--to postgresql://...]`` copies an embedded database
into PostgreSQL instead (:mod:`livehub.migrate_db`)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import errno
import gc
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

from livehub import __version__, keys
from livehub.adapters.postgres.store import SchemaTooNew as PgSchemaTooNew
from livehub.adapters.sqlite.store import SchemaTooNew
from livehub.app import create_app
from livehub.config import (
    Config,
    ConfigError,
    is_sensitive_param,
    printable,
    redact_path,
    redact_query,
    redact_url,
)
from livehub.domain.store import StoreUnavailable
from livehub.guard import GuardedSite
from livehub.webhook_settings import endpoint_label

log = logging.getLogger("livehub")

#: listen() backlog. aiohttp's default (128) overflows when a few hundred clients connect at
#: once (a join storm, a reconnect wave after a restart): the kernel drops their SYNs and they
#: retry after 1 s, 3 s, ... while the server idles. Linux caps it at net.core.somaxconn.
LISTEN_BACKLOG = 4096

#: why binding the port failed, said in one line instead of a traceback
_BIND_ERRORS = {
    errno.EADDRINUSE: "is taken by another process: stop it or choose another port "
    "(LIVEHUB_PORT, --port)",
    errno.EADDRNOTAVAIL: "is not an address of this machine (LIVEHUB_HOST, --host)",
    errno.EACCES: "needs privileges this process lacks: choose a port above 1023 "
    "(LIVEHUB_PORT, --port)",
}

#: config fields the DEBUG config dump leaves out (secrets, and what they can be guessed from)
SECRET_FIELDS = frozenset(
    {
        "hook_secret",
        "old_hook_secrets",
        "admin_token",
        "api_key_hashes",
        "webhook_secrets",
        "viewer_token_secret",
        "old_viewer_token_secrets",
        "cluster_key",
        "old_cluster_keys",
    }
)


class AccessLogger(AbstractAccessLogger):
    """Access log with secrets masked: password-like query parameters (the hook URLs' secret,
    publish tokens) and a secret path segment (the signed heartbeat's)."""

    @property
    def enabled(self) -> bool:
        # aiohttp asks once per connection; when INFO is off (LIVEHUB_LOG_LEVEL=WARNING) no
        # line is built, and aiohttp does not time the requests for it
        return self.logger.isEnabledFor(logging.INFO)

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        self.logger.info(
            '%s "%s %s" %d %.1fms',
            request.remote,
            request.method,
            loggable_target(request),
            response.status,
            time * 1000,
        )


def loggable_target(request: BaseRequest) -> str:
    """The request's path and query as logs may show them: secrets masked, and what is not
    printable escaped (:func:`~livehub.config.printable`: a decoded ``%0A`` would begin a forged
    log line)."""
    path = redact_path(request.path)
    query = redact_query(request.query_string)
    return printable(f"{path}?{query}" if query else path)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="livehub",
        description="livehub: rooms REST API, WebSocket signaling and SRS hooks. Every flag "
        "overrides its LIVEHUB_* environment variable.",
        epilog="livehub migrate-db --from livehub.db [--to postgresql://...]: copy an embedded "
        "SQLite database into PostgreSQL (cluster mode); see livehub migrate-db --help.",
    )
    parser.add_argument("--version", action="version", version=f"livehub {__version__}")
    parser.add_argument("--host", help="bind address (LIVEHUB_HOST, default 0.0.0.0)")
    parser.add_argument("--port", help="bind port (LIVEHUB_PORT, default 8088)")
    parser.add_argument("--db", dest="db", help="SQLite path or :memory: (LIVEHUB_DB)")
    parser.add_argument("--srs-api-url", help="SRS HTTP API base URL (LIVEHUB_SRS_API_URL)")
    parser.add_argument("--public-host", help="host in play/publish URLs (LIVEHUB_PUBLIC_HOST)")
    parser.add_argument(
        "--reconnect-window", help="seconds an encoder may reconnect (LIVEHUB_RECONNECT_WINDOW)"
    )
    parser.add_argument("--log-level", help="DEBUG, INFO, ... (LIVEHUB_LOG_LEVEL)")
    parser.add_argument(
        "--workers",
        help="processes sharing the port; more than 1 needs cluster mode (LIVEHUB_WORKERS)",
    )
    return parser


def load_config(argv: Sequence[str] | None = None, env: dict[str, str] | None = None) -> Config:
    """Environment first, flags on top; both go through the same casts and checks."""
    args = _parser().parse_args(argv)
    merged = dict(os.environ if env is None else env)
    flags = {
        "LIVEHUB_HOST": args.host,
        "LIVEHUB_PORT": args.port,
        "LIVEHUB_DB": args.db,
        "LIVEHUB_SRS_API_URL": args.srs_api_url,
        "LIVEHUB_PUBLIC_HOST": args.public_host,
        "LIVEHUB_RECONNECT_WINDOW": args.reconnect_window,
        "LIVEHUB_LOG_LEVEL": args.log_level,
        "LIVEHUB_WORKERS": args.workers,
    }
    merged.update({name: value for name, value in flags.items() if value is not None})
    return Config.from_env(merged)


def _install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - optional on platforms without it
        return
    uvloop.install()


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "migrate-db":
        from livehub.migrate_db import main as migrate_db

        raise SystemExit(migrate_db(args[1:]))
    try:
        config = load_config(argv)
    except ConfigError as exc:
        print(f"livehub: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    # several workers log into one stream: each line says which process wrote it
    process = " [%(process)d]" if config.workers > 1 else ""
    logging.basicConfig(
        level=config.log_level,
        format=f"%(asctime)s %(levelname)s{process} %(name)s: %(message)s",
    )
    if not config.hook_secret_set:
        log.warning(
            "LIVEHUB_HOOK_SECRET is not set: a random secret is in use, so SRS hooks are "
            "refused until you set it (and the same secret in srs.conf)"
        )
    for setting, count, first in (
        ("LIVEHUB_HOOK_SECRET", len(config.old_hook_secrets), "is the one for SRS's URLs"),
        ("LIVEHUB_VIEWER_TOKEN_SECRET", len(config.old_viewer_token_secrets), "signs"),
        ("LIVEHUB_CLUSTER_KEY", len(config.old_cluster_keys), "signs"),
    ):
        if count:  # how many, never which: the values are secrets
            log.info(
                "%s: %d values (a rotation): the first %s, each one is accepted; remove the "
                "old ones when the rotation is done",
                setting,
                count + 1,
                first,
            )
    if config.viewer_token_secret is None:
        log.warning(
            "LIVEHUB_VIEWER_TOKEN_SECRET is not set: private rooms' viewer tokens are signed "
            "with a random key of this process, so they stop working when it restarts"
        )
    settings = {
        field.name: getattr(config, field.name)
        for field in dataclasses.fields(config)
        if field.name not in SECRET_FIELDS and not is_sensitive_param(field.name)
    }
    settings["srs_api_url"] = redact_url(config.srs_api_url)
    settings["srs_api_urls"] = tuple((name, redact_url(url)) for name, url in config.srs_api_urls)
    for name in ("database_url", "redis_url"):
        if settings[name] is not None:
            settings[name] = redact_url(settings[name])
    settings["webhook_urls"] = [endpoint_label(url) for url in config.webhook_urls]
    log.debug("config: %s", settings)
    logging.getLogger("aiohttp.server").addFilter(_malformed_requests_at_info)
    if config.workers > 1:
        raise SystemExit(supervise(config))
    serve(config)


#: the collector's thresholds for a server (see :func:`settle_garbage_collection`): a young
#: collection every 5,000 net allocations (Python's default is 700), a generation-1 collection
#: every 2 young ones (10), a full one every 100 generation-1 ones (10)
YOUNG_COLLECTION_EVERY = 5_000
MIDDLE_COLLECTION_EVERY = 2
FULL_COLLECTION_EVERY = 100


def settle_garbage_collection() -> None:
    """Tune the collector for a server, after start-up:

    - What start-up made (modules, classes, schemas: ~60,000 objects) lives as long as the
      process. A full collection walks every object it holds; unfrozen, that took ~50 ms of CPU
      (the GIL held: the loop stalls), and big list pages allocate enough to trigger one every
      ~100 pages of 1,000 rooms (docs/benchmarks.md, rooms at scale). It is frozen.
    - A full collection also walks every live connection (a few hundred objects each), and
      Python runs one whenever the objects that survived the young collections grew by a
      quarter and ten generation-1 collections passed: a storm of 2,000 joins ran four, 55 ms
      each (the loop stalled as long), 230 of its 960 ms of CPU. Full collections now wait for
      :data:`FULL_COLLECTION_EVERY` generation-1 collections (a million allocations).
    - A young collection walks every young object still alive, and on a busy server most of
      them are the connections' waits for their next message (a future, the read coroutines
      and their frames: about ten objects per connection that has just been served). With
      1,000 connections relaying, each young collection at Python's 700 walked 4,000-7,000 of
      them for about 1 ms, 500 times in 100,000 relayed messages: 8 % of the server's CPU.
      Every :data:`YOUNG_COLLECTION_EVERY` allocations the collector took 57 ms in all in the
      same run; a generation-1 collection every :data:`MIDDLE_COLLECTION_EVERY` young ones
      keeps that generation small, so no pause grew past ~10 ms even in a join storm
      (docs/benchmarks.md, young collections)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_EVERY, MIDDLE_COLLECTION_EVERY, FULL_COLLECTION_EVERY)


def serve(config: Config, *, reuse_port: bool = False) -> None:
    """Run one livehub process until a signal stops it; SystemExit(2) for a database newer
    than this livehub, SystemExit(1) for a PostgreSQL unreachable at start-up."""
    _install_uvloop()
    internal: socket.socket | None = None
    if config.internal_port is not None:
        host = config.internal_host or config.host
        try:
            internal = listen(host, config.internal_port, reuse_port=reuse_port)
        except OSError as exc:
            log.error("cannot listen on LIVEHUB_INTERNAL_PORT %d: %s", config.internal_port, exc)
            raise SystemExit(1) from None
    app = create_app(config)
    settle_garbage_collection()
    try:
        run(app, config, internal, reuse_port=reuse_port)
    except socket.gaierror as exc:
        log.error("cannot start: %s does not resolve (LIVEHUB_HOST, --host): %s", config.host, exc)
        raise SystemExit(1) from None
    except OSError as exc:
        why = _BIND_ERRORS.get(exc.errno or 0)
        if why is None:
            raise
        log.error("cannot start: %s:%d %s", config.host, config.port, why)
        raise SystemExit(1) from None
    except (SchemaTooNew, PgSchemaTooNew) as exc:
        log.error("%s", exc)
        raise SystemExit(2) from None
    except StoreUnavailable as exc:
        log.error("cannot start: %s", exc.message)
        raise SystemExit(1) from None
    # run_app returns once a signal (SIGTERM, SIGINT) stopped it and every cleanup ran
    log.info("livehub shut down cleanly")


def run(
    app: web.Application, config: Config, internal: socket.socket | None, *, reuse_port: bool
) -> None:
    """Serve ``app`` until SIGTERM or SIGINT, as ``web.run_app`` does (its own event loop,
    the same shutdown), but the public port through the app's :class:`ConnectionGuard`
    (``GuardedSite``): ``run_app`` has no way to wrap its sites' connections. The internal
    port (``internal``, not published) is a plain site."""
    loop = asyncio.new_event_loop()
    main = loop.create_task(_serve_app(app, config, internal, reuse_port=reuse_port))
    try:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(main)
    except (web.GracefulExit, KeyboardInterrupt):
        pass
    finally:
        try:
            if not main.done():  # a signal: the runner's cleanup runs as main is cancelled
                main.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    loop.run_until_complete(main)
        finally:
            rest = asyncio.all_tasks(loop)
            for task in rest:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*rest, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()


async def _serve_app(
    app: web.Application, config: Config, internal: socket.socket | None, *, reuse_port: bool
) -> None:
    runner = web.AppRunner(
        app,
        handle_signals=True,
        access_log_class=AccessLogger,
        shutdown_timeout=config.shutdown_timeout,
        keepalive_timeout=config.keepalive_timeout,
    )
    await runner.setup()
    try:
        public = GuardedSite(
            runner,
            app[keys.guard],
            config.host,
            config.port,
            backlog=LISTEN_BACKLOG,
            reuse_port=reuse_port or None,
        )
        await public.start()
        if internal is not None:
            await web.SockSite(runner, internal, backlog=LISTEN_BACKLOG).start()
        _say_listening(config)  # every site is bound and listening
        await asyncio.Event().wait()  # until a signal (GracefulExit) cancels this
    finally:
        await runner.cleanup()


def _say_listening(config: Config) -> None:
    log.info("livehub %s listening on http://%s:%d", __version__, config.host, config.port)
    if config.host in ("0.0.0.0", "::", ""):  # a browser cannot open the wildcard address
        log.info("web console: http://localhost:%d/", config.port)
    if config.internal_port is not None:
        log.info(
            "SRS hooks, heartbeat and /metrics on http://%s:%d only",
            config.internal_host or config.host,
            config.internal_port,
        )


def listen(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A listening TCP socket on ``host:port`` (the internal port: ``web.run_app`` serves the
    public port from ``host``/``port`` and this one as an extra site of the same app)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(LISTEN_BACKLOG)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def _worker(config: Config) -> None:
    """One of ``--workers N`` processes (forked): the parent's signal handlers do not apply,
    and a worker whose parent died (kill -9) shuts itself down rather than linger."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    threading.Thread(
        target=_exit_with_parent, args=(os.getppid(),), name="parent-watch", daemon=True
    ).start()
    serve(config, reuse_port=True)


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    log.warning("the supervisor (pid %d) is gone: shutting down", parent)
    os.kill(os.getpid(), signal.SIGTERM)


def supervise(config: Config) -> int:
    """``--workers N``: N processes serving one port (SO_REUSEPORT: the kernel spreads new
    connections over them), each a full cluster node. SIGTERM or SIGINT to this parent is
    passed to every worker, which shuts down as a single process does; a worker that exits
    by itself stops the others too (the orchestrator restarts the whole). Returns the exit
    status: 0 when every worker shut down cleanly, 2 for a refused database, else 1."""
    context = multiprocessing.get_context("fork")
    workers = [
        context.Process(target=_worker, args=(config,), name=f"livehub-worker-{n}")
        for n in range(1, config.workers + 1)
    ]
    stopping = False

    def stop(signum: int = signal.SIGTERM, frame: object = None) -> None:
        nonlocal stopping
        stopping = True
        for worker in workers:
            if worker.pid is not None and worker.exitcode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for worker in workers:
        worker.start()
    log.info(
        "livehub: %d workers on port %d (pids %s)",
        len(workers),
        config.port,
        ", ".join(str(worker.pid) for worker in workers),
    )
    while running := [worker.sentinel for worker in workers if worker.exitcode is None]:
        # a timeout too: exit codes are read again at least every second whatever wakes it
        multiprocessing.connection.wait(running, timeout=1.0)
        if not stopping and any(worker.exitcode is not None for worker in workers):
            early = next(worker for worker in workers if worker.exitcode is not None)
            log.error("worker %s exited with %s: stopping the others", early.pid, early.exitcode)
            stop()
    codes = [worker.exitcode for worker in workers]
    if all(code == 0 for code in codes):
        log.info("livehub: every worker shut down cleanly")
        return 0
    return 2 if 2 in codes else 1


def _malformed_requests_at_info(record: logging.LogRecord) -> bool:
    """aiohttp logs a malformed HTTP request (a client's fault, answered 400) at ERROR with a
    traceback; that is noise in an operator's error log, so it is lowered to INFO."""
    if record.levelno >= logging.ERROR and record.exc_info:
        error = record.exc_info[1]
        if isinstance(error, HttpProcessingError):
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.exc_info = None
            record.exc_text = None
    return True


if __name__ == "__main__":
    main()
