"""Parsing of the ``LIVEHUB_WEBHOOK_*`` variables. Plain Python, no livehub imports, so
:mod:`livehub.config` can use it; a bad value raises :class:`ValueError` naming the variable
(``livehub.config`` turns it into a ``ConfigError``)."""

from __future__ import annotations

import base64
import binascii
import dataclasses
from urllib.parse import urlsplit

SECRET_PREFIX = "whsec_"
#: the spec recommends keys of 24 to 64 bytes
MIN_KEY_BYTES = 24
MAX_KEY_BYTES = 64


@dataclasses.dataclass(frozen=True)
class WebhookSecret:
    """One signing key. Its ``repr`` shows nothing of the key, so a logged config leaks nothing."""

    key: bytes = dataclasses.field(repr=False)


def parse_urls(name: str, raw: str) -> tuple[str, ...]:
    """Comma-separated http(s) endpoint URLs, in order, without duplicates."""
    urls: list[str] = []
    for item in raw.split(","):
        url = item.strip()
        if not url:
            continue
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"{name} must be comma-separated http(s) URLs, got {endpoint_label(url)!r}"
            )
        if parts.fragment:
            raise ValueError(f"{name}: a webhook URL must not have a #fragment")
        if url in urls:
            raise ValueError(f"{name} lists {endpoint_label(url)} twice")
        urls.append(url)
    if not urls:
        raise ValueError(f"{name} must be comma-separated http(s) URLs")
    return tuple(urls)


def parse_secrets(name: str, raw: str) -> tuple[WebhookSecret, ...]:
    """``whsec_<base64>``, or several comma-separated during a rotation (every one signs).

    The message of an error never repeats the value: it is a secret.
    """
    secrets: list[WebhookSecret] = []
    for position, item in enumerate(raw.split(","), start=1):
        value = item.strip()
        if not value:
            continue
        if not value.startswith(SECRET_PREFIX):
            raise ValueError(f"{name}: secret {position} must start with {SECRET_PREFIX!r}")
        encoded = value[len(SECRET_PREFIX) :]
        try:
            key = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(
                f"{name}: secret {position} must be {SECRET_PREFIX} followed by standard base64"
            ) from None
        if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
            raise ValueError(
                f"{name}: secret {position} must decode to {MIN_KEY_BYTES} to {MAX_KEY_BYTES} "
                f"bytes, got {len(key)}"
            )
        secrets.append(WebhookSecret(key))
    if not secrets:
        raise ValueError(f"{name} must be {SECRET_PREFIX}<base64>")
    if len(secrets) > 2:
        raise ValueError(f"{name}: at most two secrets (the new one and the old one)")
    return tuple(secrets)


def check(urls: tuple[str, ...], secrets: tuple[WebhookSecret, ...], db_path: str) -> None:
    """The settings that only make sense together."""
    if urls and not secrets:
        raise ValueError("LIVEHUB_WEBHOOK_SECRET must be set when LIVEHUB_WEBHOOK_URLS is")
    if urls and db_path == ":memory:":
        raise ValueError(
            "LIVEHUB_WEBHOOK_URLS needs a database file: webhooks are delivered from an "
            "outbox table, and LIVEHUB_DB is :memory:"
        )


def endpoint_label(url: str) -> str:
    """What logs and the admin listing show of an endpoint: scheme, host and port only. Paths
    and queries of webhook URLs often carry a token (Slack, Discord), userinfo a password."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")
