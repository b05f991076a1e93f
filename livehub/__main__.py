"""``livehub`` / ``python -m livehub``: read config (environment, then flags), log, serve.

``livehub migrate-db --from livehub.db [--to postgresql://...]`` copies an embedded database
into PostgreSQL instead (:mod:`livehub.migrate_db`)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from collections.abc import Sequence
from urllib.parse import urlsplit, urlunsplit

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

from livehub import __version__
from livehub.app import create_app
from livehub.config import Config, ConfigError
from livehub.storage import SchemaTooNew
from livehub.webhooks.settings import endpoint_label

log = logging.getLogger("livehub")

#: listen() backlog. aiohttp's default (128) overflows when a few hundred clients connect at
#: once (a join storm, a reconnect wave after a restart): the kernel drops their SYNs and they
#: retry after 1 s, 3 s, ... while the server idles. Linux caps it at net.core.somaxconn.
LISTEN_BACKLOG = 4096


class AccessLogger(AbstractAccessLogger):
    """Access log without query strings: hook URLs carry the shared secret there."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        self.logger.info(
            '%s "%s %s" %d %.1fms',
            request.remote,
            request.method,
            request.path,
            response.status,
            time * 1000,
        )


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
    logging.basicConfig(
        level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if not config.hook_secret_set:
        log.warning(
            "LIVEHUB_HOOK_SECRET is not set: a random secret is in use, so SRS hooks are "
            "refused until you set it (and the same secret in srs.conf)"
        )
    settings = {
        field.name: getattr(config, field.name)
        for field in dataclasses.fields(config)
        if field.name not in ("hook_secret", "admin_token")
    }
    settings["srs_api_url"] = redact_url(config.srs_api_url)
    settings["srs_api_urls"] = tuple((name, redact_url(url)) for name, url in config.srs_api_urls)
    for name in ("database_url", "redis_url"):
        if settings[name] is not None:
            settings[name] = redact_url(settings[name])
    settings["webhook_urls"] = [endpoint_label(url) for url in config.webhook_urls]
    log.debug("config: %s", settings)
    logging.getLogger("aiohttp.server").addFilter(_malformed_requests_at_info)
    _install_uvloop()
    log.info("livehub %s listening on http://%s:%d", __version__, config.host, config.port)
    try:
        web.run_app(
            create_app(config),
            host=config.host,
            port=config.port,
            backlog=LISTEN_BACKLOG,
            shutdown_timeout=config.shutdown_timeout,
            access_log_class=AccessLogger,
            print=None,
        )
    except SchemaTooNew as exc:
        log.error("%s", exc)
        raise SystemExit(2) from None
    # run_app returns once a signal (SIGTERM, SIGINT) stopped it and every cleanup ran
    log.info("livehub shut down cleanly")


def redact_url(url: str) -> str:
    """``url`` without the password of its userinfo (SRS API Basic auth), for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


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
