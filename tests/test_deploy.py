"""The deployment files agree with each other and with the app.

Docker cannot run here, so instead of starting the stack these tests read ``Dockerfile``,
``.dockerignore``, ``docker-compose.yml`` (PyYAML) and ``srs.conf`` (a small parser below) and
check every value that one of them states and another relies on: the hook URLs SRS calls, the
secret both sides hold, the ports SRS listens on, publishes and livehub hands out in its URLs,
the health check, the shutdown budget. App facts (route paths, config defaults and validation)
come from the app itself, and real requests prove that livehub, configured exactly as compose
configures it, accepts the hook URLs of srs.conf.
"""

from __future__ import annotations

import configparser
import dataclasses
import functools
import ipaddress
import json
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import SplitResult, parse_qs, urlsplit

import pytest
import yaml
from pytest_aiohttp import AiohttpClient

from livehub.app import create_app
from livehub.config import Config
from tests.conftest import Client, post_as_srs

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LIVEHUB_SHARED", REPO.parent / "shared"))
HOOKS_DIR = SHARED / "srs-hooks"

HOOKS = ("on_publish", "on_unpublish", "on_play", "on_stop", "on_dvr")
# contract: one hook endpoint for all actions, the heartbeat beside it, health at /healthz
HOOK_PATH = "/api/hooks/srs"
HEARTBEAT_PATH = "/api/hooks/srs/heartbeat"
HEALTH_PATH = "/healthz"


# --- srs.conf: a recursive-descent parser for SRS's nginx-like syntax ---------------------------


class SrsConfError(ValueError):
    """srs.conf is not well formed; the message names the line."""


@dataclasses.dataclass(frozen=True)
class Directive:
    """``name args...;`` (``block`` is None) or ``name args... { ... }``."""

    name: str
    args: tuple[str, ...]
    block: tuple[Directive, ...] | None = None
    line: int = 0

    def all(self, name: str) -> list[Directive]:
        return [child for child in self.block or () if child.name == name]

    def get(self, name: str) -> Directive | None:
        found = self.all(name)
        assert len(found) <= 1, f"{self.name}: {name} appears {len(found)} times"
        return found[0] if found else None

    def one(self, name: str) -> Directive:
        found = self.get(name)
        assert found is not None, f"{self.name}: no {name}"
        return found

    def value(self, name: str) -> str:
        """The single argument of the child directive ``name``."""
        child = self.one(name)
        assert child.block is None and len(child.args) == 1, f"{name}: {child.args}"
        return child.args[0]


@dataclasses.dataclass(frozen=True)
class _Token:
    kind: str  # "word", ";", "{", "}"
    text: str
    line: int


def _tokenize(text: str) -> Iterator[_Token]:
    """SRS's reader: ``#`` starts a comment at the start of a token, quotes group a word, a word
    ends at whitespace, ``;`` or ``{``."""
    i, line, n = 0, 1, len(text)
    while i < n:
        ch = text[i]
        if ch == "\n":
            line += 1
            i += 1
        elif ch.isspace():
            i += 1
        elif ch == "#":
            while i < n and text[i] != "\n":
                i += 1
        elif ch in ";{}":
            yield _Token(ch, ch, line)
            i += 1
        elif ch in "\"'":
            end = text.find(ch, i + 1)
            if end < 0:
                raise SrsConfError(f"line {line}: unterminated quote")
            yield _Token("word", text[i + 1 : end], line)
            line += text.count("\n", i, end)
            i = end + 1
        else:
            start = i
            while i < n and not text[i].isspace() and text[i] not in ";{":
                i += 1
            yield _Token("word", text[start:i], line)


class _Parser:
    def __init__(self, text: str) -> None:
        self._tokens = list(_tokenize(text))
        self._pos = 0

    def parse(self) -> Directive:
        return Directive("root", (), self._directives(nested=False))

    def _directives(self, *, nested: bool) -> tuple[Directive, ...]:
        found: list[Directive] = []
        while self._pos < len(self._tokens):
            token = self._tokens[self._pos]
            self._pos += 1
            if token.kind == "}":
                if not nested:
                    raise SrsConfError(f"line {token.line}: unexpected '}}'")
                return tuple(found)
            if token.kind != "word":
                raise SrsConfError(f"line {token.line}: unexpected {token.kind!r}")
            found.append(self._directive(token))
        if nested:
            raise SrsConfError("unexpected end of file, expecting '}'")
        return tuple(found)

    def _directive(self, name: _Token) -> Directive:
        args: list[str] = []
        while self._pos < len(self._tokens):
            token = self._tokens[self._pos]
            self._pos += 1
            if token.kind == "word":
                args.append(token.text)
            elif token.kind == ";":
                return Directive(name.text, tuple(args), None, name.line)
            elif token.kind == "{":
                return Directive(name.text, tuple(args), self._directives(nested=True), name.line)
            else:
                raise SrsConfError(f"line {token.line}: unexpected '}}' in {name.text}")
        raise SrsConfError(f"line {name.line}: {name.text}: expecting ';' or '{{'")


def parse_srs_conf(text: str) -> Directive:
    return _Parser(text).parse()


# --- docker-compose.yml: interpolation, environment, ports, durations ---------------------------

_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^}]*)\}|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)
_BRACED = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>.*))?", re.S)


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's ``$VAR``, ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``, ``${VAR:?err}``,
    ``${VAR:+alt}`` and ``$$`` (no nesting), resolved against ``env``."""

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        if match["named"]:
            return env.get(match["named"], "")
        braced = _BRACED.fullmatch(match["braced"])
        if braced is None:
            raise ValueError(f"invalid interpolation: {match[0]!r}")
        current = env.get(braced["name"])
        op, arg = braced["op"], braced["arg"] or ""
        is_set = current is not None and (current != "" or not (op or "").startswith(":"))
        if op is None:
            return current or ""
        if op.endswith("-"):
            return current if is_set and current is not None else arg
        if op.endswith("+"):
            return arg if is_set else ""
        if not is_set:  # ? and :?
            raise ValueError(f"{braced['name']} is required: {arg}")
        return current or ""

    return _VARIABLE.sub(substitute, value)


@functools.cache
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return data


def service(name: str) -> dict[str, Any]:
    services: dict[str, Any] = compose()["services"]
    assert name in services, f"docker-compose.yml has no service {name!r}"
    svc: dict[str, Any] = services[name]
    return svc


def service_env(name: str, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """A service's environment with compose's interpolation applied; by default against an empty
    shell environment, i.e. every ``${VAR:-default}`` resolves to its default."""
    raw = service(name).get("environment", {})
    items: list[tuple[str, Any]]
    if isinstance(raw, list):
        items = [tuple(entry.split("=", 1)) if "=" in entry else (entry, None) for entry in raw]
    else:
        items = list(raw.items())
    resolved: dict[str, str] = {}
    for key, value in items:
        if value is None:  # passed through from the shell: unset here
            continue
        text = str(value).lower() if isinstance(value, bool) else str(value)
        resolved[key] = interpolate(text, env or {})
    return resolved


@dataclasses.dataclass(frozen=True)
class Port:
    published: int
    target: int
    protocol: str


def service_ports(name: str) -> list[Port]:
    ports: list[Port] = []
    for entry in service(name).get("ports", []):
        if isinstance(entry, dict):
            ports.append(
                Port(int(entry["published"]), int(entry["target"]), entry.get("protocol", "tcp"))
            )
            continue
        spec, _, protocol = str(entry).partition("/")
        parts = spec.split(":")
        assert len(parts) in (2, 3), f"{name}: port {entry!r} publishes no fixed host port"
        ports.append(Port(int(parts[-2]), int(parts[-1]), protocol or "tcp"))
    return ports


def published(name: str, target: int, protocol: str = "tcp") -> int:
    """The host port at which ``name``'s container port ``target`` is reachable."""
    matches = [
        p.published for p in service_ports(name) if (p.target, p.protocol) == (target, protocol)
    ]
    assert matches, f"{name}: container port {target}/{protocol} is not published"
    return matches[0]


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|us|m|s)")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6}


def duration(text: str) -> float:
    """Compose durations, e.g. ``20s``, ``1m30s``, ``500ms``, in seconds."""
    parts = _DURATION.findall(text)
    assert parts and "".join(n + u for n, u in parts) == text, f"bad duration {text!r}"
    return sum(float(n) * _UNITS[u] for n, u in parts)


# --- Dockerfile and .dockerignore ---------------------------------------------------------------


@functools.cache
def dockerfile() -> tuple[tuple[str, str], ...]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in (REPO / "Dockerfile").read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, rest = (pending + stripped).partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        pending = ""
    return tuple(instructions)


def final_stage() -> list[tuple[str, str]]:
    instructions = list(dockerfile())
    starts = [i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM"]
    assert starts, "Dockerfile has no FROM"
    return instructions[starts[-1] :]


def instruction(keyword: str) -> list[str]:
    return [rest for kw, rest in final_stage() if kw == keyword]


def _glob_regex(pattern: str) -> str:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return out


def dockerignored(path: str) -> bool:
    """Docker's rule: the last matching pattern wins; a pattern matches a path or any of its
    parent directories; ``!`` re-includes."""
    lines = (REPO / ".dockerignore").read_text().splitlines()
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for line in lines:
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        regex = _glob_regex(pattern.lstrip("!").strip().strip("/"))
        if any(re.fullmatch(regex, prefix) for prefix in prefixes):
            excluded = not negate
    return excluded


# --- what the app says -------------------------------------------------------------------------


@functools.cache
def srs_conf() -> Directive:
    return parse_srs_conf((REPO / "srs.conf").read_text())


def vhost() -> Directive:
    found = [d for d in srs_conf().all("vhost") if d.args == ("__defaultVhost__",)]
    assert len(found) == 1, "srs.conf needs exactly one vhost __defaultVhost__"
    return found[0]


def hook_urls() -> dict[str, str]:
    hooks = vhost().one("http_hooks")
    return {name: hooks.value(name) for name in HOOKS if hooks.get(name) is not None}


def livehub_config(env: Mapping[str, str] | None = None) -> Config:
    """The Config livehub builds in its container from compose's environment."""
    return Config.from_env(service_env("livehub", env))


def default_config() -> Config:
    return Config.from_env({})


def app_path(route: str) -> str:
    app = create_app(livehub_config())
    return str(app.router[route].url_for())


def secret_of(url: SplitResult) -> str:
    values = parse_qs(url.query).get("secret", [])
    assert len(values) == 1, f"{url.geturl()}: needs exactly one secret parameter"
    return values[0]


# === the parsers themselves =====================================================================

SAMPLE = """
# comment
listen 1935;   # trailing comment
http_api { enabled on; listen 1985; }
vhost __defaultVhost__ {
    http_hooks {
        on_play http://a:1/x?secret=s#frag http://b/y;
    }
    heartbeat { device_id "srs 1"; }
}
"""


def test_srs_conf_parser_reads_directives_blocks_quotes_and_comments() -> None:
    root = parse_srs_conf(SAMPLE)
    assert [d.name for d in root.block or ()] == ["listen", "http_api", "vhost"]
    assert root.value("listen") == "1935"
    assert root.one("http_api").value("listen") == "1985"
    host = root.one("vhost")
    assert host.args == ("__defaultVhost__",)
    # '#' inside a word is part of it, as in SRS; several URLs are several arguments
    assert host.one("http_hooks").one("on_play").args == (
        "http://a:1/x?secret=s#frag",
        "http://b/y",
    )
    assert host.one("heartbeat").value("device_id") == "srs 1"


@pytest.mark.parametrize(
    "text",
    ["listen 1935", "vhost x { listen 1;", "listen 1; }", "{ listen 1; }", "a 'b;", "vhost { ;"],
)
def test_srs_conf_parser_rejects_malformed_input(text: str) -> None:
    with pytest.raises(SrsConfError):
        parse_srs_conf(text)


def test_interpolation_follows_compose() -> None:
    env = {"SET": "v", "EMPTY": ""}
    assert interpolate("${SET:-d}/${EMPTY:-d}/${UNSET:-d}", env) == "v/d/d"
    assert interpolate("${EMPTY-d}/${UNSET-d}/$SET/${SET}/$$SET", env) == "/d/v/v/$SET"
    assert interpolate("${SET:+alt}/${UNSET:+alt}", env) == "alt/"
    with pytest.raises(ValueError, match="UNSET is required"):
        interpolate("${UNSET:?set it}", env)


def test_dockerignore_matcher() -> None:
    assert dockerignored(".git/HEAD")
    assert not dockerignored("livehub/app.py")
    assert dockerignored("livehub/__pycache__/app.cpython-311.pyc")


# === srs.conf <-> docker-compose.yml <-> app ====================================================


def test_all_four_hooks_are_configured_and_enabled() -> None:
    hooks = vhost().one("http_hooks")
    assert hooks.value("enabled") == "on"
    assert set(hook_urls()) == set(HOOKS)


def test_hook_urls_reach_livehub_service_hook_route_with_its_secret() -> None:
    config = livehub_config()
    route = app_path("srs_hooks")
    assert route == HOOK_PATH
    for name, raw in hook_urls().items():
        url = urlsplit(raw)
        assert url.scheme == "http", name
        assert url.hostname == "livehub" and "livehub" in compose()["services"], name
        assert url.port == config.port, f"{name}: {raw} vs LIVEHUB_PORT {config.port}"
        assert url.path == route, f"{name}: {url.path} vs route {route}"
        assert secret_of(url) == config.hook_secret, f"{name}: secret differs from compose"


def test_hook_secret_is_set_url_safe_and_the_documented_default() -> None:
    config = livehub_config()
    assert config.hook_secret_set
    assert config.hook_secret == "change-me-hook-secret"
    # it goes verbatim into SRS's hook URL query
    assert re.fullmatch(r"[A-Za-z0-9._~-]+", config.hook_secret)


def test_srs_env_overrides_equal_srs_conf_hook_urls_by_default() -> None:
    env = service_env("srs")
    for name, url in hook_urls().items():
        key = f"SRS_VHOST_HTTP_HOOKS_{name.upper()}"
        assert env.get(key) == url, f"{key} must equal srs.conf's {name} with the default secret"


def test_one_variable_changes_the_secret_on_both_sides() -> None:
    shell = {"LIVEHUB_HOOK_SECRET": "Another_secret-value.123~"}
    config = livehub_config(shell)
    assert config.hook_secret == shell["LIVEHUB_HOOK_SECRET"]
    srs_env = service_env("srs", shell)
    for name in HOOKS:
        url = urlsplit(srs_env[f"SRS_VHOST_HTTP_HOOKS_{name.upper()}"])
        assert secret_of(url) == config.hook_secret, name
        assert (url.hostname, url.port, url.path) == ("livehub", config.port, HOOK_PATH), name


def test_heartbeat_reaches_livehub_heartbeat_route() -> None:
    heartbeat = srs_conf().one("heartbeat")
    assert heartbeat.value("enabled") == "on"
    assert 0 < float(heartbeat.value("interval")) <= 30
    url = urlsplit(heartbeat.value("url"))
    assert (url.scheme, url.hostname, url.port) == ("http", "livehub", livehub_config().port)
    assert url.path == app_path("srs_heartbeat") == HEARTBEAT_PATH
    # SRS drops the query of the heartbeat URL: a secret there would be a false promise
    assert not url.query


def test_publishers_without_viewers_are_not_kicked() -> None:
    publish = vhost().get("publish")
    assert publish is None or publish.get("kickoff_for_idle") is None
    assert "SRS_VHOST_PUBLISH_KICKOFF_FOR_IDLE" not in service_env("srs")


# every SRS listener and its protocol; "" is the top-level RTMP `listen`
LISTENERS = {
    "": "tcp",  # RTMP
    "http_api": "tcp",  # API + WHIP/WHEP
    "http_server": "tcp",  # FLV/HLS
    "rtc_server": "udp",  # WebRTC media
    "srt_server": "udp",  # SRT
}


def srs_listen(section: str) -> int:
    block = srs_conf() if not section else srs_conf().one(section)
    if section:
        assert block.value("enabled") == "on", section
    return int(block.value("listen"))


def test_srs_listeners_are_published_by_compose() -> None:
    targets = set()
    for section, protocol in LISTENERS.items():
        port = srs_listen(section)
        published("srs", port, protocol)
        targets.add((port, protocol))
    required = {(1935, "tcp"), (1985, "tcp"), (8080, "tcp"), (8000, "udp")}
    assert required <= targets
    assert required <= {(p.target, p.protocol) for p in service_ports("srs")}


def test_srs_dvr_writes_into_the_recordings_volume_livehub_reads_at_the_same_path() -> None:
    dvr = vhost().one("dvr")
    assert (dvr.value("enabled"), dvr.value("dvr_plan")) == ("on", "session")
    dvr_path = PurePosixPath(dvr.value("dvr_path"))
    assert dvr_path.suffix == ".mp4"
    recordings = PurePosixPath(livehub_config().recordings_dir)
    # files directly in the directory: livehub (not root) must be able to delete them
    assert dvr_path.parent == recordings, (dvr_path, recordings)

    def mounted(name: str) -> dict[str, str]:
        mounts = [str(v).split(":") for v in service(name).get("volumes", [])]
        return {m[1]: m[0] for m in mounts if m[0] in (compose().get("volumes") or {})}

    assert mounted("srs").get(str(recordings)) == mounted("livehub").get(str(recordings))
    assert mounted("livehub").get(str(recordings)) is not None


def test_srs_service_runs_our_conf_read_only() -> None:
    srs = service("srs")
    assert str(srs["image"]).startswith("ossrs/srs:")
    command = srs["command"]
    assert isinstance(command, list) and command[:2] == ["./objs/srs", "-c"], command
    conf = PurePosixPath("/usr/local/srs") / command[2]
    mounts = [str(v).split(":") for v in srs.get("volumes", [])]
    matching = [m for m in mounts if len(m) == 3 and PurePosixPath(m[1]) == conf]
    assert matching, f"{conf} is not mounted"
    source, _, mode = matching[0]
    assert (REPO / source).resolve() == REPO / "srs.conf"
    assert mode == "ro"


def test_webrtc_candidate_comes_from_compose() -> None:
    assert srs_conf().one("rtc_server").value("candidate") == "$CANDIDATE"
    candidate = service_env("srs").get("CANDIDATE")
    assert candidate, "compose must give SRS a CANDIDATE default"
    ipaddress.ip_address(candidate)  # browsers (Firefox) need an IP, not a name
    assert "${CANDIDATE" in str(service("srs")["environment"]["CANDIDATE"])


def test_livehub_env_builds_a_valid_config_with_the_contract_defaults() -> None:
    env = service_env("livehub")
    assert all(key.startswith("LIVEHUB_") for key in env)
    config = livehub_config()  # raises ConfigError if any value is invalid
    default = default_config()
    assert config.port == default.port == 8088
    assert published("livehub", config.port) == config.port
    assert env["LIVEHUB_PUBLIC_HOST"] == "localhost" == default.public_host
    assert "${PUBLIC_HOST" in str(service("livehub")["environment"]["LIVEHUB_PUBLIC_HOST"])


def test_livehub_reaches_srs_api_inside_the_compose_network() -> None:
    url = urlsplit(livehub_config().srs_api_url)
    assert url.hostname == "srs" and "srs" in compose()["services"]
    assert url.port == srs_listen("http_api")


def test_public_ports_in_livehub_config_are_the_ones_compose_publishes() -> None:
    config = livehub_config()
    assert config.rtmp_port == published("srs", srs_listen(""))
    assert config.srs_api_port == published("srs", srs_listen("http_api"))
    assert config.srs_http_port == published("srs", srs_listen("http_server"))
    assert config.rtc_port == published("srs", srs_listen("rtc_server"), "udp")


def test_database_is_relative_and_lands_in_the_volume() -> None:
    config = livehub_config()
    db = PurePosixPath(config.db_path)
    assert config.db_path != ":memory:" and not db.is_absolute(), config.db_path
    workdir = PurePosixPath(instruction("WORKDIR")[-1])
    target = workdir / db
    mounts = [str(v).split(":") for v in service("livehub").get("volumes", [])]
    volumes = [PurePosixPath(m[1]) for m in mounts if m[0] in (compose().get("volumes") or {})]
    assert any(v in target.parents for v in volumes), f"{target} is not on a named volume"
    assert any(
        f'"{v}"' in rest or rest == str(v) for v in volumes for rest in instruction("VOLUME")
    )


def test_stop_grace_period_exceeds_shutdown_timeout() -> None:
    grace = duration(str(service("livehub")["stop_grace_period"]))
    timeout = livehub_config().shutdown_timeout
    assert grace > timeout, f"stop_grace_period {grace}s <= LIVEHUB_SHUTDOWN_TIMEOUT {timeout}s"
    assert service("livehub").get("restart") and service("srs").get("restart")


# === Dockerfile ================================================================================


def health_url(command: list[str]) -> SplitResult:
    found = re.search(r"https?://[^\s'\"]+", " ".join(command))
    assert found, f"no URL in health check {command}"
    return urlsplit(found[0])


def dockerfile_healthcheck() -> list[str]:
    (rest,) = instruction("HEALTHCHECK")
    found = re.search(r"\bCMD\s+(\[.*\])\s*$", rest)
    assert found, f"HEALTHCHECK needs an exec-form CMD: {rest}"
    command: list[str] = json.loads(found[1])
    return command


def test_dockerfile_runs_livehub_as_non_root_from_slim_python() -> None:
    for keyword, rest in dockerfile():
        if keyword == "FROM":
            assert rest.split()[0].startswith("python:3.11-slim"), rest
    users = instruction("USER")
    assert users, "the runtime stage needs a USER"
    assert users[-1].split(":")[0] not in ("root", "0")
    assert instruction("WORKDIR")[-1] == "/app"
    assert json.loads(instruction("CMD")[-1]) == ["livehub"]
    scripts = configparser.ConfigParser()
    scripts.read(REPO / "setup.cfg")
    entry_points = scripts["options.entry_points"]["console_scripts"]
    assert re.search(r"^\s*livehub\s*=", entry_points, re.M), "no `livehub` console script"


def test_dockerfile_exposes_and_checks_the_livehub_port() -> None:
    port = livehub_config().port
    exposed = {int(p.split("/")[0]) for rest in instruction("EXPOSE") for p in rest.split()}
    assert port in exposed
    command = dockerfile_healthcheck()
    assert "curl" not in command and "python" in command[0]
    url = health_url(command)
    assert (url.hostname, url.port, url.path) == ("127.0.0.1", port, HEALTH_PATH)
    assert app_path("healthz") == HEALTH_PATH


def test_compose_healthcheck_matches_the_dockerfile() -> None:
    test = service("livehub")["healthcheck"]["test"]
    assert isinstance(test, list) and test[0] == "CMD"
    assert health_url(test[1:]) == health_url(dockerfile_healthcheck())


def test_dockerignore_keeps_what_the_dockerfile_copies_and_drops_the_rest() -> None:
    sources: list[str] = []
    for keyword, rest in dockerfile():
        if keyword == "COPY" and "--from" not in rest:
            sources += rest.split()[:-1]
    assert sources
    for source in sources:
        assert (REPO / source).exists(), f"COPY {source}: missing"
        assert not dockerignored(source.rstrip("/")), f"COPY {source}: .dockerignore drops it"
    for kept in ("livehub/__init__.py", "livehub/static/index.html", "setup.cfg"):
        assert not dockerignored(kept), kept
    for dropped in (
        ".git/HEAD",
        ".venv/bin/python",
        "tests/test_deploy.py",
        "tests/e2e/node_modules/playwright-core/package.json",
        "data/livehub.db",
        "livehub.db-wal",
    ):
        assert dockerignored(dropped), dropped


# === real requests to the app as compose configures it ==========================================


def shared_fixture(name: str) -> bytes:
    path = HOOKS_DIR / name
    if not path.exists():
        pytest.skip(f"reference fixture {path} is not available")
    return path.read_bytes().strip()


@pytest.fixture
async def compose_client(
    aiohttp_client: AiohttpClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Client:
    """livehub built from compose's environment, run from an empty directory so the relative
    LIVEHUB_DB lands there (as with `make run`); only the SRS API address is replaced, by a
    closed local port, since `srs` does not resolve here."""
    monkeypatch.chdir(tmp_path)
    config = dataclasses.replace(livehub_config(), srs_api_url="http://127.0.0.1:9")
    client = await aiohttp_client(create_app(config))
    assert (tmp_path / config.db_path).exists()
    return client


def path_and_query(raw: str) -> str:
    url = urlsplit(raw)
    return f"{url.path}?{url.query}" if url.query else url.path


async def test_livehub_accepts_every_srs_conf_hook_url(compose_client: Client) -> None:
    for name, url in hook_urls().items():
        status, body = await post_as_srs(
            compose_client, path_and_query(url), shared_fixture(f"{name}.json")
        )
        # authorized: SRS's reply contract (HTTP 200, integer code); on_play/on_publish of an
        # unknown stream are refused with a non-zero code, which is not what this checks
        assert status == 200, (name, status, body)
        assert isinstance(body, dict) and type(body.get("code")) is int, (name, body)


async def test_livehub_refuses_a_wrong_or_missing_hook_secret(compose_client: Client) -> None:
    body = shared_fixture("on_play.json")
    url = urlsplit(hook_urls()["on_play"])
    for target in (f"{url.path}?secret=wrong-secret-0123456789", url.path):
        status, reply = await post_as_srs(compose_client, target, body)
        assert status in (401, 403), (target, status, reply)


async def test_livehub_accepts_the_srs_conf_heartbeat(compose_client: Client) -> None:
    url = srs_conf().one("heartbeat").value("url")
    status, body = await post_as_srs(
        compose_client, urlsplit(url).path, shared_fixture("heartbeat.json")
    )
    assert status == 200, body


async def test_healthcheck_url_answers(compose_client: Client) -> None:
    resp = await compose_client.get(health_url(dockerfile_healthcheck()).path)
    assert resp.status == 200, await resp.text()


async def test_urls_handed_out_use_the_ports_compose_publishes(compose_client: Client) -> None:
    resp = await compose_client.post("/api/rooms", json={"title": "deploy check"})
    assert resp.status == 201, await resp.text()
    room = await resp.json()
    host = livehub_config().public_host
    expected = {
        "rtmp": published("srs", srs_listen("")),
        "api": published("srs", srs_listen("http_api")),
        "http": published("srs", srs_listen("http_server")),
        "srt": published("srs", srs_listen("srt_server"), "udp"),
    }
    urls = {
        "rtmp": [room["publish"]["rtmpUrl"], room["publish"]["obsServer"]],
        "api": [room["publish"]["whipUrl"], room["playUrls"]["whep"]],
        "http": [room["playUrls"]["flv"], room["playUrls"]["hls"]],
        "srt": [room["publish"]["srtUrl"]],
    }
    for kind, links in urls.items():
        for link in links:
            url = urlsplit(link)
            assert (url.hostname, url.port) == (host, expected[kind]), (kind, link)
