"""Configuration: one frozen dataclass read from ``LIVEHUB_*`` environment variables.

Every value has an explicit cast; a bad value raises :class:`ConfigError` naming the variable.
``__main__`` layers command-line flags over the environment with :meth:`Config.replace`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import math
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

from livehub import webhook_settings
from livehub.webhook_settings import WebhookSecret

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value is missing or malformed; the message names the variable."""


def _int(name: str, raw: str, *, minimum: int = 0, maximum: int | None = None) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise ConfigError(f"{name} must be {bound}, got {value}")
    return value


def _float(name: str, raw: str, *, minimum: float = 0.0) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value) or value < minimum:  # NaN, infinite or below range
        raise ConfigError(f"{name} must be a number >= {minimum}, and finite, got {raw!r}")
    return value


def _list(name: str, raw: str) -> tuple[str, ...]:
    items = tuple(item.strip() for item in raw.split(",") if item.strip())
    if not items:
        raise ConfigError(f"{name} must be a comma-separated list, got {raw!r}")
    return items


def _http_url(name: str, raw: str) -> str:
    """An http(s) URL; a password in it (``user:password@``) must not be an example value."""
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{name} must be an http(s) URL, got {_redacted(raw)!r}")
    _no_placeholder_password(name, raw)
    return raw.rstrip("/")


#: values the shipped files and the docs print as examples of a secret: a deployment that
#: copied one is refused at start-up (compared case-insensitively; every value that starts
#: with ``change-me`` or ``changeme`` is refused too)
PLACEHOLDERS = frozenset(
    {
        "password",
        "passwd",
        "pw",
        "pass",
        "secret",
        "s3cret",
        "changeme",
        "example",
        "random",
        "<random>",
        "whsec_new",
        "whsec_old",
        "your-secret",
        "xxx",
        # docs/webhooks.md signs its example request with this one
        "whsec_mfkq9r8gkyqrtwjupd8ilpzio2lalasw",
    }
)


def is_placeholder(value: str) -> bool:
    """Whether ``value`` is a documented example of a secret rather than a real one."""
    folded = value.strip().lower()
    return folded.startswith(("change-me", "changeme", "change_me")) or folded in PLACEHOLDERS


def _refuse_placeholder(name: str, value: str, what: str = "") -> None:
    if is_placeholder(value):
        raise ConfigError(
            f"{name}{what} is a placeholder from the examples, not a secret: set a random "
            "value (python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )


def _no_placeholder_password(name: str, url: str) -> None:
    """A URL's password (``user:password@``) must not be an example value."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return
    if password is not None:
        _refuse_placeholder(name, unquote(password), "'s password")


_ORIGIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,62}")


def _srs_api_urls(name: str, raw: str) -> tuple[tuple[str, str], ...]:
    """``url,url`` or ``name=url,name=url``: the SRS origins' HTTP APIs. A bare URL is named
    after its ``host:port``; names are unique (rooms remember their origin by name)."""
    origins: dict[str, str] = {}
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        label, sep, url = item.partition("=")
        if not sep or "://" in label:
            label, url = "", item
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"{name}: {_redacted(url.strip())!r} is not an http(s) URL")
        url = _http_url(name, url.strip())
        parts = urlsplit(url)
        label = label.strip() or f"{parts.hostname}:{parts.port or 80}"
        if not _ORIGIN_NAME.fullmatch(label):
            raise ConfigError(
                f"{name}: origin name {label!r} must be letters, digits, '_', '.', ':' or '-'"
            )
        if label in origins:
            raise ConfigError(f"{name}: origin {label!r} is given twice")
        origins[label] = url
    if not origins:
        raise ConfigError(f"{name} must list at least one SRS API URL")
    return tuple(origins.items())


def _secret(name: str, raw: str, *, minimum: int) -> str:
    """A key: at least ``minimum`` characters; the message never repeats it."""
    value = raw.strip()
    if len(value) < minimum:
        raise ConfigError(f"{name} must be at least {minimum} characters (a random key)")
    _refuse_placeholder(name, value)
    return value


def _nonempty(name: str, raw: str) -> str:
    if not raw.strip():
        raise ConfigError(f"{name} must not be empty")
    return raw.strip()


def _redacted(raw: str) -> str:
    """``raw`` with the password of a URL's userinfo masked: config errors never echo secrets."""
    try:
        parts = urlsplit(raw)
        password = parts.password
    except ValueError:
        return "(unparsable URL)"
    return raw.replace(f":{password}@", ":***@") if password else raw


#: query parameter names (or parts of names, case-insensitive) whose values logs never show
SENSITIVE_PARAMS = ("pass", "pwd", "secret", "token", "key", "auth", "sig", "credential")
REDACTED = "***"


def is_sensitive_param(name: str) -> bool:
    folded = name.lower()
    return any(part in folded for part in SENSITIVE_PARAMS)


def redact_query(query: str) -> str:
    """A query string with the values of password-like parameters (:data:`SENSITIVE_PARAMS`)
    replaced by ``***``; the rest, and the order, as they were."""
    if not query:
        return query
    items = []
    for item in query.split("&"):
        name, sep, _ = item.partition("=")
        items.append(f"{name}={REDACTED}" if sep and is_sensitive_param(unquote(name)) else item)
    return "&".join(items)


#: what follows a ``heartbeat`` segment of a path is a secret (the signed heartbeat:
#: /api/hooks/srs/heartbeat/<secret>), wherever it is: a misconfigured SRS or proxy sends it
#: with a prefix, or with doubled slashes, and the 404 it gets is logged too
_SIGNED_PATH = re.compile(r"(/heartbeat/+).*", re.IGNORECASE)


def redact_path(path: str) -> str:
    """A request's path for logs: the signed heartbeat's secret segment masked."""
    return _SIGNED_PATH.sub(rf"\g<1>{REDACTED}", path)


def printable(text: str) -> str:
    """``text`` for a log line: each character that is not printable (C0 and C1 controls, DEL,
    the line and paragraph separators, format characters) as its escape (``\\n``, ``\\x1b``,
    ``\\u2028``). What a client sent (a decoded ``%0A`` in a path) can then neither begin a
    line of its own, forging a log entry of the server's, nor drive an operator's terminal."""
    if text.isprintable():
        return text
    return "".join(
        char if char.isprintable() else char.encode("unicode_escape").decode("ascii")
        for char in text
    )


def redact_url(url: str) -> str:
    """``url`` for logs: the password of its userinfo (SRS API Basic auth, database and Redis
    passwords) and password-like query parameters masked."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "(unparsable URL)"
    if password is not None:
        netloc = parts.netloc.rpartition("@")
        user = netloc[0].partition(":")[0]
        parts = parts._replace(netloc=f"{user}:{REDACTED}@{netloc[2]}")
    return urlunsplit(parts._replace(query=redact_query(parts.query)))


def _database_url(name: str, raw: str) -> str:
    value = raw.strip()
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a port out of range
    except ValueError:
        raise ConfigError(f"{name} must be a postgresql:// URL, got {_redacted(value)!r}") from None
    if parts.scheme not in ("postgresql", "postgres") or not (parts.netloc or parts.query):
        raise ConfigError(
            f"{name} must be a postgresql://user:password@host:port/database URL, "
            f"got {_redacted(value)!r}"
        )
    _no_placeholder_password(name, value)
    return value


def _redis_url(name: str, raw: str) -> str:
    value = raw.strip()
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a port out of range
    except ValueError:
        raise ConfigError(f"{name} must be a redis:// URL, got {_redacted(value)!r}") from None
    if not (
        (parts.scheme in ("redis", "rediss") and parts.hostname)
        or (parts.scheme == "unix" and parts.path)
    ):
        raise ConfigError(
            f"{name} must be a redis://[:password@]host:port/db (or rediss://, unix://) URL, "
            f"got {_redacted(value)!r}"
        )
    _no_placeholder_password(name, value)
    return value


def _log_level(name: str, raw: str) -> str:
    level = raw.strip().upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ConfigError(f"{name} must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
    return level


#: how an embedded (SQLite) store commits: ``full`` fsyncs each accepted change before it is
#: answered (it survives a power loss), ``normal`` does not (it survives a process crash)
DbSync = Literal["full", "normal"]


def _db_sync(name: str, raw: str) -> DbSync:
    value = raw.strip().lower()
    if value not in ("full", "normal"):
        raise ConfigError(
            f"{name} must be full (every accepted change fsynced: survives a power loss) or "
            f"normal (survives a process crash, not a power loss), got {raw!r}"
        )
    return "full" if value == "full" else "normal"


def _bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false (1/0, yes/no, on/off), got {raw!r}")


def _port(name: str, raw: str) -> int:
    return _int(name, raw, minimum=1, maximum=65535)


def _api_keys(name: str, raw: str) -> frozenset[str]:
    """API keys, kept only as SHA-256 hex digests from here on."""
    keys = _list(name, raw)
    for position, key in enumerate(keys, start=1):
        if len(key) < 16:
            raise ConfigError(f"{name}: every key must be at least 16 characters")
        _refuse_placeholder(name, key, f": key {position}")
    return frozenset(hashlib.sha256(key.encode()).hexdigest() for key in keys)


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def in_networks(address: str, networks: Sequence[Network]) -> bool:
    """Whether ``address`` is in one of ``networks`` (an IPv4-mapped IPv6 address, a
    dual-stack socket's IPv4 peer, as its IPv4 address); False for what is no address."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in networks)


def _networks(name: str, raw: str) -> tuple[Network, ...]:
    networks = []
    for item in _list(name, raw):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(
                f"{name} must list IP addresses or networks (CIDR), got {item!r}"
            ) from None
    return tuple(networks)


def _token(name: str, raw: str) -> str:
    """A shared secret: at least 16 characters, and not an example value."""
    value = raw.strip()
    if len(value) < 16:
        raise ConfigError(f"{name} must be at least 16 characters")
    _refuse_placeholder(name, value)
    return value


#: characters a hook secret may use: it goes verbatim into SRS's hook URLs (query and path)
_URL_SAFE_SECRET = re.compile(r"[A-Za-z0-9._~-]+")


def _hook_secret(name: str, raw: str) -> str:
    value = _token(name, raw)
    if not _URL_SAFE_SECRET.fullmatch(value):
        raise ConfigError(
            f"{name} must be URL-safe (letters, digits, '-', '_', '.', '~'): SRS puts it "
            "verbatim into the hook and heartbeat URLs"
        )
    return value


def _hmac_key(name: str, raw: str) -> str:
    """An HS256 key: at least 32 bytes (RFC 7518 §3.2), used as its UTF-8 bytes."""
    value = raw.strip()
    if len(value.encode()) < 32:
        raise ConfigError(f"{name} must be at least 32 bytes (UTF-8)")
    _refuse_placeholder(name, value)
    return value


#: values a rotated secret may list: the one in use, then the old ones still accepted
MAX_ROTATED_SECRETS = 4


def _rotated(one: Callable[[str, str], str]) -> Callable[[str, str], tuple[str, ...]]:
    """A secret that can be rotated without downtime: ``new,old`` (comma-separated, at most
    :data:`MAX_ROTATED_SECRETS`). The first is the one in use (it signs, SRS is told it); each
    one is accepted. Each value passes ``one``'s checks; an error names the setting and the
    value's position (``value 2``), never the value."""

    def cast(name: str, raw: str) -> tuple[str, ...]:
        items = [item.strip() for item in raw.split(",")]
        values = [item for item in items if item]
        if len(values) == 1:
            return (one(name, values[0]),)  # one value: the checks and messages as ever
        if not values:
            return (one(name, ""),)  # raises: empty
        if len(values) > MAX_ROTATED_SECRETS:
            raise ConfigError(
                f"{name}: at most {MAX_ROTATED_SECRETS} values (the one in use first, then "
                "the old ones)"
            )
        checked: list[str] = []
        for position, value in enumerate(values, start=1):
            value = one(f"{name}: value {position}", value)
            if value in checked:
                raise ConfigError(
                    f"{name}: values {checked.index(value) + 1} and {position} are the same"
                )
            checked.append(value)
        return tuple(checked)

    return cast


#: fields read from a rotated setting: the value in use, and the field of the others
ROTATED = {
    "hook_secret": "old_hook_secrets",
    "viewer_token_secret": "old_viewer_token_secrets",
    "cluster_key": "old_cluster_keys",
}


#: plain HTTP connections an address may hold beside its WebSockets (the default of
#: LIVEHUB_MAX_SOCKETS_PER_ADDRESS): a browser opens at most 6 to a host, a NAT's audience
#: a few dozen at once when the page loads
HTTP_SOCKETS_BESIDE_WEBSOCKETS = 100

#: the name of the one SRS origin given by LIVEHUB_SRS_API_URL
DEFAULT_ORIGIN = "srs"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config:
    """Settings of one livehub process. Field docs double as ``--help`` text."""

    host: str = "0.0.0.0"
    port: int = 8088
    #: the port of the SRS hooks, the heartbeat and ``/metrics`` (LIVEHUB_INTERNAL_PORT); the
    #: public port answers 404 for them. None: everything on ``port`` (``make run``)
    internal_port: int | None = None
    #: the bind address of ``internal_port`` (LIVEHUB_INTERNAL_HOST); None: ``host``
    internal_host: str | None = None
    db_path: str = "livehub.db"
    #: how the SQLite file commits a store write (LIVEHUB_DB_SYNC): ``full`` fsyncs it before
    #: the answer (survives a power loss), ``normal`` survives a process crash only
    db_sync: DbSync = "full"
    #: the hook secret SRS is told (the first of LIVEHUB_HOOK_SECRET)
    hook_secret: str = dataclasses.field(
        default_factory=lambda: secrets.token_urlsafe(32), repr=False
    )
    #: the others of LIVEHUB_HOOK_SECRET (a rotation): hooks signed with them are accepted too
    old_hook_secrets: tuple[str, ...] = dataclasses.field(default=(), repr=False)
    hook_secret_set: bool = False
    admin_token: str | None = dataclasses.field(default=None, repr=False)
    srs_api_url: str = "http://127.0.0.1:1985"
    #: several SRS origins as ``(name, API URL)`` (LIVEHUB_SRS_API_URLS); empty: the one
    #: ``srs_api_url``, named :data:`DEFAULT_ORIGIN`
    srs_api_urls: tuple[tuple[str, str], ...] = ()
    srs_app: str = "live"
    public_host: str = "localhost"
    rtmp_port: int = 1935
    srs_http_port: int = 8080
    srs_api_port: int = 1985
    rtc_port: int = 8000
    reconnect_window: float = 30.0
    reconcile_interval: float = 10.0
    shutdown_timeout: float = 10.0
    #: seconds a new connection on the public port may take to send its first request, and a
    #: kept-alive one its next request once its first bytes came (LIVEHUB_HEADER_TIMEOUT): then
    #: it is closed (0: no deadline but the keep-alive timeout)
    header_timeout: float = 10.0
    #: seconds an idle kept-alive connection stays open (LIVEHUB_KEEPALIVE_TIMEOUT); behind a
    #: proxy it must exceed the proxy's own idle timeout for upstream connections
    keepalive_timeout: float = 75.0
    #: seconds a request's body may take to arrive once its headers are in (LIVEHUB_BODY_TIMEOUT):
    #: then 408 and the connection is closed (a body that never comes held it for good)
    body_timeout: float = 10.0
    cors_origins: tuple[str, ...] = ("*",)
    ws_origins: tuple[str, ...] = ("*",)
    log_level: str = "INFO"
    # signaling limits
    max_msg_size: int = 64 * 1024
    heartbeat: float = 30.0
    rate_per_s: float = 50.0
    rate_burst: int = 200
    chat_rate_per_s: float = 2.0
    chat_rate_burst: int = 5
    presence_limit: int = 100
    max_rooms_per_connection: int = 16
    max_members_per_room: int = 10_000
    max_chat_length: int = 500
    viewer_count_interval: float = 0.2
    send_queue_bytes: int = 1024 * 1024
    max_body_size: int = 16 * 1024
    # relays that cannot amplify (docs/protocol.md)
    #: rooms of at most this many members accept a viewer's relay without ``to``
    broadcast_relay_max_members: int = 10
    #: largest relay payload in bytes (0: only LIVEHUB_MAX_MSG_SIZE limits it)
    max_relay_bytes: int = 16384
    #: relayed bytes (payload x recipients) per second per connection (0: no limit)
    relay_bytes_per_s: int = 262144
    # per-address limits
    #: open WebSockets per client address, IPv6 by /64 (0: no limit)
    max_connections_per_address: int = 100
    #: open TCP connections per client address on the public port, WebSockets included
    #: (LIVEHUB_MAX_SOCKETS_PER_ADDRESS); None: :attr:`sockets_per_address` derives it
    max_sockets_per_address: int | None = None
    #: seconds a kicked peer's address may not join that room again (0: no ban)
    kick_ban_s: float = 300.0
    # who may create rooms, and how history is kept
    #: SHA-256 hex digests of the API keys (LIVEHUB_API_KEYS); empty: anonymous create
    api_key_hashes: frozenset[str] = frozenset()
    create_rate_per_min: int = 30
    #: rooms not ended the whole service may hold (0: no limit): the per-address create rate
    #: alone lets many addresses fill the store
    max_open_rooms: int = 10_000
    trusted_proxies: tuple[Network, ...] = ()
    ended_retention_days: float = 0.0
    preparing_ttl_hours: float = 168.0
    #: seconds between sweeps (reconnect windows due, preparing TTL, retention)
    sweep_interval: float = 5.0
    # cluster mode (issue 9): both set = several livehub processes form one service
    #: PostgreSQL instead of the SQLite file (``postgresql://...``); None: embedded SQLite
    database_url: str | None = dataclasses.field(default=None, repr=False)  # a password
    #: Redis for the bus between nodes and cluster presence (``redis://...``); None: one node
    redis_url: str | None = dataclasses.field(default=None, repr=False)  # a password
    #: MAC key signing the bus's messages (every node the same); None: unsigned
    cluster_key: str | None = dataclasses.field(default=None, repr=False)
    #: the others of LIVEHUB_CLUSTER_KEY (a rotation): messages signed with them are accepted
    old_cluster_keys: tuple[str, ...] = dataclasses.field(default=(), repr=False)
    # webhooks (docs/webhooks.md): no URL, no webhooks
    webhook_urls: tuple[str, ...] = dataclasses.field(default=(), repr=False)  # query tokens
    webhook_secrets: tuple[WebhookSecret, ...] = ()
    webhook_timeout: float = 10.0
    webhook_concurrency: int = 16
    #: seconds between two viewers.updated of one room (per node)
    webhook_viewers_interval: float = 10.0
    #: days a delivered webhook row is kept (0: for ever); failed rows are always kept
    webhook_retention_days: float = 7.0

    #: processes sharing the port (SO_REUSEPORT); more than 1 needs cluster mode
    workers: int = 1
    # private rooms and the stage (issue 18)
    #: the HS256 key of private rooms' viewer tokens (its UTF-8 bytes); None: a random one per
    #: process (embedded mode only: every node must verify every node's tokens)
    viewer_token_secret: str | None = dataclasses.field(default=None, repr=False)
    #: the others of LIVEHUB_VIEWER_TOKEN_SECRET (a rotation): tokens they signed are accepted
    old_viewer_token_secrets: tuple[str, ...] = dataclasses.field(default=(), repr=False)
    #: guests on a room's stage at most (accepted invitations)
    stage_max: int = 6

    # recordings (livehub/domain/recordings.py)
    #: whether rooms created without ``record`` record
    record_default: bool = False
    #: the directory SRS's DVR writes into (srs.conf ``dvr_path``); only files inside it are
    #: accepted from on_dvr
    recordings_dir: str = "recordings"
    #: days a recording is kept (0: for ever)
    recording_retention_days: float = 0.0

    def __post_init__(self) -> None:
        try:
            webhook_settings.check(
                self.webhook_urls,
                self.webhook_secrets,
                self.db_path if self.database_url is None else self.database_url,
            )
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        for field, old in ROTATED.items():
            if getattr(self, old) and getattr(self, field) is None:
                raise ConfigError(f"{old} needs {field}: the first value, the one in use")

    @property
    def hook_secrets(self) -> tuple[str, ...]:
        """Every hook secret accepted: the one SRS is told first."""
        return (self.hook_secret, *self.old_hook_secrets)

    @property
    def viewer_token_secrets(self) -> tuple[str, ...]:
        """Every viewer-token secret accepted, the signing one first; () when unset."""
        if self.viewer_token_secret is None:
            return ()
        return (self.viewer_token_secret, *self.old_viewer_token_secrets)

    @property
    def cluster_keys(self) -> tuple[str, ...]:
        """Every cluster key accepted, the signing one first; () when unset."""
        if self.cluster_key is None:
            return ()
        return (self.cluster_key, *self.old_cluster_keys)

    @property
    def cluster(self) -> bool:
        """Cluster mode: rooms in PostgreSQL and nodes joined through Redis."""
        return self.database_url is not None and self.redis_url is not None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Config:
        """Build a config from ``LIVEHUB_*`` variables; unknown variables are ignored."""
        values: dict[str, Any] = {}
        for name, (field, cast) in _ENV.items():
            raw = env.get(name)
            if raw is None or raw == "":
                continue
            values[field] = cast(name, raw)
        for field, old in ROTATED.items():
            if field in values:
                values[field], *others = values[field]
                values[old] = tuple(others)
        if "hook_secret" in values:
            values["hook_secret_set"] = True
        if "srs_api_url" in values and "srs_api_urls" in values:
            raise ConfigError(
                "LIVEHUB_SRS_API_URL and LIVEHUB_SRS_API_URLS are both set: "
                "give one SRS in the first or every SRS in the second"
            )
        config = cls(**values)
        config.check()
        return config

    def check(self) -> None:
        """Rules between settings; :class:`ConfigError` names the variables."""
        if self.internal_port is not None and self.internal_port == self.port:
            raise ConfigError(
                f"LIVEHUB_INTERNAL_PORT={self.internal_port} equals LIVEHUB_PORT: the internal "
                "port (SRS hooks, heartbeat, metrics) must be another port, or unset"
            )
        if self.internal_host is not None and self.internal_port is None:
            raise ConfigError("LIVEHUB_INTERNAL_HOST needs LIVEHUB_INTERNAL_PORT")
        if self.cluster and self.viewer_token_secret is None:
            raise ConfigError(
                "LIVEHUB_VIEWER_TOKEN_SECRET is required in cluster mode (LIVEHUB_DATABASE_URL "
                "and LIVEHUB_REDIS_URL set): every node must verify the viewer tokens of "
                "private rooms that any node minted"
            )
        if self.workers > 1 and not self.cluster:
            raise ConfigError(
                f"LIVEHUB_WORKERS={self.workers} needs cluster mode: set LIVEHUB_DATABASE_URL "
                "and LIVEHUB_REDIS_URL (one process serves embedded mode: SQLite and the "
                "in-process hub cannot be shared)"
            )

    @property
    def sockets_per_address(self) -> int:
        """The cap on one address's connections to the public port: as set, or the WebSocket
        limit plus :data:`HTTP_SOCKETS_BESIDE_WEBSOCKETS` (0, no cap, when that limit is off),
        so that raising the WebSocket limit for a NAT's audience raises this one with it."""
        if self.max_sockets_per_address is not None:
            return self.max_sockets_per_address
        if not self.max_connections_per_address:
            return 0
        return self.max_connections_per_address + HTTP_SOCKETS_BESIDE_WEBSOCKETS

    @property
    def srs_origins(self) -> tuple[tuple[str, str], ...]:
        """Every SRS origin as ``(name, API URL)``; one named :data:`DEFAULT_ORIGIN` unless
        LIVEHUB_SRS_API_URLS lists several."""
        return self.srs_api_urls or ((DEFAULT_ORIGIN, self.srs_api_url),)

    def replace(self, **changes: Any) -> Config:
        if "hook_secret" in changes:
            changes.setdefault("hook_secret_set", True)
        return dataclasses.replace(self, **changes)


_ENV: dict[str, tuple[str, Callable[[str, str], Any]]] = {
    "LIVEHUB_HOST": ("host", _nonempty),
    "LIVEHUB_PORT": ("port", _port),
    "LIVEHUB_INTERNAL_PORT": ("internal_port", _port),
    "LIVEHUB_INTERNAL_HOST": ("internal_host", _nonempty),
    "LIVEHUB_DB": ("db_path", _nonempty),
    "LIVEHUB_DB_SYNC": ("db_sync", _db_sync),
    "LIVEHUB_HOOK_SECRET": ("hook_secret", _rotated(_hook_secret)),
    "LIVEHUB_ADMIN_TOKEN": ("admin_token", _token),
    "LIVEHUB_SRS_API_URL": ("srs_api_url", _http_url),
    "LIVEHUB_SRS_API_URLS": ("srs_api_urls", _srs_api_urls),
    "LIVEHUB_SRS_APP": ("srs_app", _nonempty),
    "LIVEHUB_PUBLIC_HOST": ("public_host", _nonempty),
    "LIVEHUB_RTMP_PORT": ("rtmp_port", _port),
    "LIVEHUB_SRS_HTTP_PORT": ("srs_http_port", _port),
    "LIVEHUB_SRS_API_PORT": ("srs_api_port", _port),
    "LIVEHUB_RTC_PORT": ("rtc_port", _port),
    "LIVEHUB_RECONNECT_WINDOW": ("reconnect_window", _float),
    "LIVEHUB_RECONCILE_INTERVAL": ("reconcile_interval", _float),
    "LIVEHUB_SHUTDOWN_TIMEOUT": ("shutdown_timeout", _float),
    "LIVEHUB_HEADER_TIMEOUT": ("header_timeout", _float),
    "LIVEHUB_KEEPALIVE_TIMEOUT": ("keepalive_timeout", lambda n, r: _float(n, r, minimum=1)),
    "LIVEHUB_BODY_TIMEOUT": ("body_timeout", lambda n, r: _float(n, r, minimum=0.1)),
    "LIVEHUB_CORS_ORIGINS": ("cors_origins", _list),
    "LIVEHUB_WS_ORIGINS": ("ws_origins", _list),
    "LIVEHUB_LOG_LEVEL": ("log_level", _log_level),
    "LIVEHUB_MAX_MSG_SIZE": ("max_msg_size", lambda n, r: _int(n, r, minimum=1024)),
    "LIVEHUB_HEARTBEAT": ("heartbeat", _float),
    "LIVEHUB_RATE_PER_S": ("rate_per_s", _float),
    "LIVEHUB_RATE_BURST": ("rate_burst", lambda n, r: _int(n, r, minimum=1)),
    "LIVEHUB_CHAT_RATE_PER_S": ("chat_rate_per_s", _float),
    "LIVEHUB_CHAT_RATE_BURST": ("chat_rate_burst", lambda n, r: _int(n, r, minimum=1)),
    "LIVEHUB_PRESENCE_LIMIT": ("presence_limit", lambda n, r: _int(n, r, minimum=1)),
    "LIVEHUB_MAX_ROOMS_PER_CONNECTION": (
        "max_rooms_per_connection",
        lambda n, r: _int(n, r, minimum=1),
    ),
    "LIVEHUB_MAX_MEMBERS_PER_ROOM": ("max_members_per_room", lambda n, r: _int(n, r, minimum=1)),
    "LIVEHUB_MAX_CHAT_LENGTH": ("max_chat_length", lambda n, r: _int(n, r, minimum=1)),
    "LIVEHUB_VIEWER_COUNT_INTERVAL": ("viewer_count_interval", _float),
    "LIVEHUB_SEND_QUEUE_BYTES": ("send_queue_bytes", lambda n, r: _int(n, r, minimum=4096)),
    "LIVEHUB_BROADCAST_RELAY_MAX_MEMBERS": ("broadcast_relay_max_members", _int),
    "LIVEHUB_MAX_RELAY_BYTES": ("max_relay_bytes", _int),
    "LIVEHUB_RELAY_BYTES_PER_S": ("relay_bytes_per_s", _int),
    "LIVEHUB_MAX_CONNECTIONS_PER_ADDRESS": ("max_connections_per_address", _int),
    "LIVEHUB_MAX_SOCKETS_PER_ADDRESS": ("max_sockets_per_address", _int),
    "LIVEHUB_KICK_BAN_S": ("kick_ban_s", _float),
    "LIVEHUB_API_KEYS": ("api_key_hashes", _api_keys),
    "LIVEHUB_CREATE_RATE_PER_MIN": ("create_rate_per_min", _int),
    "LIVEHUB_MAX_OPEN_ROOMS": ("max_open_rooms", _int),
    "LIVEHUB_TRUSTED_PROXIES": ("trusted_proxies", _networks),
    "LIVEHUB_ENDED_RETENTION_DAYS": ("ended_retention_days", _float),
    "LIVEHUB_PREPARING_TTL_HOURS": ("preparing_ttl_hours", _float),
    "LIVEHUB_SWEEP_INTERVAL": ("sweep_interval", lambda n, r: _float(n, r, minimum=0.05)),
    # cluster mode
    "LIVEHUB_DATABASE_URL": ("database_url", _database_url),
    "LIVEHUB_REDIS_URL": ("redis_url", _redis_url),
    "LIVEHUB_CLUSTER_KEY": (
        "cluster_key",
        _rotated(lambda n, r: _secret(n, r, minimum=32)),
    ),
    "LIVEHUB_WORKERS": ("workers", lambda n, r: _int(n, r, minimum=1, maximum=256)),
    # recordings
    "LIVEHUB_RECORD_DEFAULT": ("record_default", _bool),
    "LIVEHUB_RECORDINGS_DIR": ("recordings_dir", _nonempty),
    "LIVEHUB_RECORDING_RETENTION_DAYS": ("recording_retention_days", _float),
    # private rooms and the stage
    "LIVEHUB_VIEWER_TOKEN_SECRET": ("viewer_token_secret", _rotated(_hmac_key)),
    "LIVEHUB_STAGE_MAX": ("stage_max", lambda n, r: _int(n, r, minimum=0, maximum=64)),
}


# -- webhooks: parsed in livehub.webhook_settings, which raises ValueError naming the variable
def _webhook(parse: Callable[[str, str], T]) -> Callable[[str, str], T]:
    def cast(name: str, raw: str) -> T:
        try:
            return parse(name, raw)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    return cast


def _webhook_secrets(name: str, raw: str) -> tuple[WebhookSecret, ...]:
    for position, item in enumerate(raw.split(","), start=1):
        if item.strip():
            _refuse_placeholder(name, item, f": secret {position}")
    return _webhook(webhook_settings.parse_secrets)(name, raw)


_ENV.update(
    {
        "LIVEHUB_WEBHOOK_URLS": ("webhook_urls", _webhook(webhook_settings.parse_urls)),
        "LIVEHUB_WEBHOOK_SECRET": ("webhook_secrets", _webhook_secrets),
        "LIVEHUB_WEBHOOK_TIMEOUT": (
            "webhook_timeout",
            lambda n, r: _float(n, r, minimum=0.1),
        ),
        "LIVEHUB_WEBHOOK_CONCURRENCY": (
            "webhook_concurrency",
            lambda n, r: _int(n, r, minimum=1, maximum=1000),
        ),
        "LIVEHUB_WEBHOOK_VIEWERS_INTERVAL": (
            "webhook_viewers_interval",
            lambda n, r: _float(n, r, minimum=0.1),
        ),
        "LIVEHUB_WEBHOOK_RETENTION_DAYS": ("webhook_retention_days", _float),
    }
)

ENV_VARS: tuple[str, ...] = tuple(_ENV)
