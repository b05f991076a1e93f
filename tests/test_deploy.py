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
import re
from collections.abc import AsyncIterator, Mapping
from pathlib import Path, PurePosixPath
from urllib.parse import SplitResult, parse_qs, urlsplit

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import unused_port

from livehub.app import create_app
from livehub.config import Config, ConfigError, is_placeholder
from tests.conftest import post_as_srs
from tests.deploy_files import (
    _BRACED,
    _VARIABLE,
    HOOKS,
    HOOKS_DIR,
    REPO,
    SHELL,
    SrsConfError,
    app_path,
    compose,
    hook_urls,
    interpolate,
    livehub_config,
    parse_srs_conf,
    service,
    service_env,
    srs_conf,
    vhost,
)

# contract: one hook endpoint for all actions, the heartbeat beside it, health at /healthz
HOOK_PATH = "/api/hooks/srs"
HEARTBEAT_PATH = "/api/hooks/srs/heartbeat"
HEALTH_PATH = "/healthz"


# --- srs.conf: a recursive-descent parser for SRS's nginx-like syntax ---------------------------


# --- docker-compose.yml: interpolation, environment, ports, durations ---------------------------


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


def default_config() -> Config:
    return Config.from_env({})


def srs_hook_urls(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The hook URLs SRS calls under compose: srs.conf's, overridden by its environment."""
    srs = service_env("srs", env)
    return {
        name: srs.get(f"SRS_VHOST_HTTP_HOOKS_{name.upper()}", url)
        for name, url in hook_urls().items()
    }


def srs_heartbeat_url(env: Mapping[str, str] | None = None) -> str:
    return service_env("srs", env).get(
        "SRS_HEARTBEAT_URL", srs_conf().one("heartbeat").value("url")
    )


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


def test_hook_urls_reach_livehub_internal_port_with_its_secret() -> None:
    config = livehub_config()
    route = app_path("srs_hooks")
    assert route == HOOK_PATH
    assert config.internal_port is not None and config.internal_port != config.port
    for name, raw in srs_hook_urls().items():
        url = urlsplit(raw)
        assert url.scheme == "http", name
        assert url.hostname == "livehub" and "livehub" in compose()["services"], name
        assert url.port == config.internal_port, f"{name}: {raw} vs LIVEHUB_INTERNAL_PORT"
        assert url.path == route, f"{name}: {url.path} vs route {route}"
        assert secret_of(url) == config.hook_secret, f"{name}: secret differs from livehub's"


def test_srs_conf_hook_urls_differ_from_compose_only_by_a_refused_placeholder() -> None:
    srs = srs_hook_urls()
    for name, raw in hook_urls().items():
        conf, env = urlsplit(raw), urlsplit(srs[name])
        assert (conf.hostname, conf.port, conf.path) == (env.hostname, env.port, env.path), name
        assert is_placeholder(secret_of(conf)), f"srs.conf's {name} carries a working secret"
    with pytest.raises(ConfigError, match="LIVEHUB_HOOK_SECRET"):
        livehub_config(
            {**SHELL, "LIVEHUB_HOOK_SECRET": secret_of(urlsplit(hook_urls()["on_play"]))}
        )


def test_hook_secret_is_required_url_safe_and_never_a_placeholder() -> None:
    config = livehub_config()
    assert config.hook_secret_set and config.hook_secret == SHELL["LIVEHUB_HOOK_SECRET"]
    # it goes verbatim into SRS's hook URL query and heartbeat path
    assert re.fullmatch(r"[A-Za-z0-9._~-]+", config.hook_secret)
    unset = {key: value for key, value in SHELL.items() if key != "LIVEHUB_HOOK_SECRET"}
    for name in ("livehub", "srs"):
        with pytest.raises(ValueError, match="LIVEHUB_HOOK_SECRET is required"):
            service_env(name, unset)


def test_srs_env_overrides_every_livehub_url_of_srs_conf() -> None:
    env = service_env("srs")
    for name in HOOKS:
        assert f"SRS_VHOST_HTTP_HOOKS_{name.upper()}" in env, name
    assert "SRS_HEARTBEAT_URL" in env


def test_one_variable_changes_the_secret_on_both_sides() -> None:
    shell = {**SHELL, "LIVEHUB_HOOK_SECRET": "Another_secret-value.123~"}
    config = livehub_config(shell)
    assert config.hook_secret == shell["LIVEHUB_HOOK_SECRET"]
    srs_env = service_env("srs", shell)
    for name in HOOKS:
        url = urlsplit(srs_env[f"SRS_VHOST_HTTP_HOOKS_{name.upper()}"])
        assert secret_of(url) == config.hook_secret, name
        assert (url.hostname, url.port, url.path) == ("livehub", config.internal_port, HOOK_PATH)
    heartbeat = urlsplit(srs_env["SRS_HEARTBEAT_URL"])
    assert heartbeat.path == app_path("srs_heartbeat_signed", secret=config.hook_secret)


def test_heartbeat_reaches_livehub_signed_heartbeat_route() -> None:
    heartbeat = srs_conf().one("heartbeat")
    assert heartbeat.value("enabled") == "on"
    assert 0 < float(heartbeat.value("interval")) <= 30
    config = livehub_config()
    for raw in (heartbeat.value("url"), srs_heartbeat_url()):
        url = urlsplit(raw)
        assert (url.scheme, url.hostname, url.port) == ("http", "livehub", config.internal_port)
        head, _, secret = url.path.rpartition("/")
        assert head == app_path("srs_heartbeat") == HEARTBEAT_PATH
        assert url.path == app_path("srs_heartbeat_signed", secret=secret)
        # SRS drops the query of the heartbeat URL: a secret there would be a false promise
        assert not url.query
    conf_secret = urlsplit(heartbeat.value("url")).path.rpartition("/")[2]
    assert is_placeholder(conf_secret)
    assert urlsplit(srs_heartbeat_url()).path.rpartition("/")[2] == config.hook_secret


def test_srs_api_requires_basic_auth_with_no_working_default() -> None:
    auth = srs_conf().one("http_api").one("auth")
    assert auth.value("enabled") == "on"
    # a Basic auth user name cannot contain ':': srs.conf's own values let nobody in
    assert ":" in auth.value("username")
    env = service_env("srs")
    assert env["SRS_HTTP_API_AUTH_USERNAME"] == SHELL["SRS_API_USERNAME"]
    assert env["SRS_HTTP_API_AUTH_PASSWORD"] == SHELL["SRS_API_PASSWORD"]
    url = urlsplit(livehub_config().srs_api_url)
    assert (url.username, url.password) == (SHELL["SRS_API_USERNAME"], SHELL["SRS_API_PASSWORD"])
    for missing in ("SRS_API_USERNAME", "SRS_API_PASSWORD"):
        shell = {key: value for key, value in SHELL.items() if key != missing}
        for name in ("livehub", "srs"):
            with pytest.raises(ValueError, match=f"{missing} is required"):
                service_env(name, shell)


def test_srs_logs_at_warn() -> None:
    """At SRS's default level (trace) every connect and hook line carries the publish token
    and the hook URL (tests/test_srs_security.py reads a real SRS's log)."""
    assert srs_conf().value("srs_log_level") == "warn"


def test_hooks_and_metrics_are_on_the_unpublished_internal_port() -> None:
    config = livehub_config()
    assert config.internal_port is not None
    published_targets = {port.target for port in service_ports("livehub")}
    assert published_targets == {config.port}, "only the public port may be published"


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
    # a shutdown takes at most twice the timeout (docs/operations.md, Shutdown)
    assert grace > 2 * timeout, f"stop_grace_period {grace}s <= 2 x LIVEHUB_SHUTDOWN_TIMEOUT"
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


@dataclasses.dataclass(frozen=True)
class Listeners:
    """Sessions to livehub's public port and to its internal port (LIVEHUB_INTERNAL_PORT)."""

    public: aiohttp.ClientSession
    internal: aiohttp.ClientSession
    config: Config


@pytest.fixture
async def compose_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Listeners]:
    """livehub built from compose's environment and served as ``livehub`` serves it: one app
    on two real loopback ports (only those port numbers are replaced, and the SRS API address,
    by a closed local port, since `srs` does not resolve here). Run from an empty directory so
    the relative LIVEHUB_DB lands there (as with `make run`)."""
    monkeypatch.chdir(tmp_path)
    public_port, internal_port = unused_port(), unused_port()
    config = dataclasses.replace(
        livehub_config(),
        host="127.0.0.1",
        port=public_port,
        internal_port=internal_port,
        srs_api_url="http://127.0.0.1:9",
    )
    runner = web.AppRunner(create_app(config))
    await runner.setup()
    try:
        for port in (public_port, internal_port):
            await web.TCPSite(runner, "127.0.0.1", port).start()
        assert (tmp_path / livehub_config().db_path).exists()
        async with (
            aiohttp.ClientSession(f"http://127.0.0.1:{public_port}") as public,
            aiohttp.ClientSession(f"http://127.0.0.1:{internal_port}") as internal,
        ):
            yield Listeners(public, internal, config)
    finally:
        await runner.cleanup()


def path_and_query(raw: str) -> str:
    url = urlsplit(raw)
    return f"{url.path}?{url.query}" if url.query else url.path


async def test_livehub_accepts_every_srs_hook_url_on_the_internal_port_only(
    compose_server: Listeners,
) -> None:
    for name, url in srs_hook_urls().items():
        body = shared_fixture(f"{name}.json")
        status, reply = await post_as_srs(compose_server.internal, path_and_query(url), body)
        # authorized: SRS's reply contract (HTTP 200, integer code); on_play/on_publish of an
        # unknown stream are refused with a non-zero code, which is not what this checks
        assert status == 200, (name, status, reply)
        assert isinstance(reply, dict) and type(reply.get("code")) is int, (name, reply)
        # the same request on the public port: not found, in the one error shape
        status, reply = await post_as_srs(compose_server.public, path_and_query(url), body)
        assert (status, reply["code"], reply["details"]) == (404, "not_found", None), name


async def test_livehub_refuses_a_wrong_missing_or_placeholder_hook_secret(
    compose_server: Listeners,
) -> None:
    body = shared_fixture("on_play.json")
    url = urlsplit(srs_hook_urls()["on_play"])
    placeholder = secret_of(urlsplit(hook_urls()["on_play"]))  # srs.conf's own
    for target in (
        f"{url.path}?secret=wrong-secret-0123456789",
        f"{url.path}?secret={placeholder}",
        url.path,
    ):
        status, reply = await post_as_srs(compose_server.internal, target, body)
        assert status == 403 and reply["code"] == "bad_hook_secret", (target, status, reply)


async def test_livehub_accepts_the_signed_heartbeat_on_the_internal_port_only(
    compose_server: Listeners,
) -> None:
    path = urlsplit(srs_heartbeat_url()).path
    body = shared_fixture("heartbeat.json")
    status, reply = await post_as_srs(compose_server.internal, path, body)
    assert (status, reply) == (200, {"code": 0})
    status, reply = await post_as_srs(compose_server.public, path, body)
    assert status == 404, reply
    # unsigned, or signed with srs.conf's placeholder: refused
    conf_path = urlsplit(srs_conf().one("heartbeat").value("url")).path
    for target in (HEARTBEAT_PATH, conf_path):
        status, reply = await post_as_srs(compose_server.internal, target, body)
        assert (status, reply["code"]) == (403, "bad_hook_secret"), target


async def test_metrics_only_on_the_internal_port(compose_server: Listeners) -> None:
    async with compose_server.internal.get("/metrics") as resp:
        assert resp.status == 200 and "livehub_" in await resp.text()
    async with compose_server.public.get("/metrics") as resp:
        assert resp.status == 404
        assert (await resp.json())["code"] == "not_found"
    # a wrong method does not tell the hooks exist there (405 would)
    for path in (HOOK_PATH, HEARTBEAT_PATH, "/metrics"):
        async with compose_server.public.put(path) as resp:
            assert resp.status == 404, path
        async with compose_server.internal.put(path) as resp:
            assert resp.status == 405, path
    # the public API is not served on the internal port, health checks on both
    async with compose_server.internal.get("/api/rooms") as resp:
        assert resp.status == 404
    for session in (compose_server.public, compose_server.internal):
        async with session.get(HEALTH_PATH) as resp:
            assert resp.status == 200


async def test_healthcheck_url_answers(compose_server: Listeners) -> None:
    url = health_url(dockerfile_healthcheck())
    assert url.port == livehub_config().port  # the public port, which compose publishes
    async with compose_server.public.get(url.path) as resp:
        assert resp.status == 200, await resp.text()


async def test_urls_handed_out_use_the_ports_compose_publishes(
    compose_server: Listeners,
) -> None:
    async with compose_server.public.post("/api/rooms", json={"title": "deploy check"}) as resp:
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


# === no default secrets in any shipped file =====================================================

COMPOSE_FILES = ("docker-compose.yml", "docker-compose.cluster.yml")
#: shell variables that hold a secret (compose must require them, never default them)
SECRET_VARIABLE = re.compile(r"SECRET|PASSWORD|TOKEN|_KEY\b|KEYS\b")
#: shell variables whose default may be empty (optional: unset means the feature is off)
OPTIONAL_SECRETS = {"LIVEHUB_ADMIN_TOKEN"}


def compose_variables(text: str) -> list[tuple[str, str | None, str]]:
    """``(name, operator, argument)`` of every ``${...}`` in a compose file (comments left
    out: they show shell commands)."""
    found = []
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    for match in _VARIABLE.finditer(text):
        if match["braced"] is not None:
            braced = _BRACED.fullmatch(match["braced"])
            assert braced is not None, match[0]
            found.append((braced["name"], braced["op"], braced["arg"] or ""))
        elif match["named"]:
            found.append((match["named"], None, ""))
    return found


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_compose_requires_every_secret_and_defaults_none(name: str) -> None:
    variables = compose_variables((REPO / name).read_text())
    secrets = [v for v in variables if SECRET_VARIABLE.search(v[0])]
    assert {v[0] for v in secrets} >= {"LIVEHUB_HOOK_SECRET", "SRS_API_PASSWORD"}
    for variable, op, arg in secrets:
        if variable in OPTIONAL_SECRETS:
            assert op in (":-", "-") and arg == "", (variable, op, arg)
            continue
        assert op == ":?" and arg.strip(), f"{name}: ${{{variable}}} must be ${{VAR:?explain}}"
    # the user names too: compose starts with none of them unset
    assert ("SRS_API_USERNAME", ":?") in {(v[0], v[1]) for v in variables}


def env_example() -> dict[str, str]:
    values = {}
    for line in (REPO / ".env.example").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f".env.example: {line!r} is not NAME=value"
            values[key.strip()] = value.strip()
    return values


def test_env_example_documents_every_compose_variable_with_refused_placeholders() -> None:
    example = env_example()
    for name in COMPOSE_FILES:
        for variable, _, _ in compose_variables((REPO / name).read_text()):
            if variable.startswith("LIVEHUB_") and variable not in example:
                # livehub settings with a default (LIVEHUB_LOG_LEVEL): docs/operations.md
                assert not SECRET_VARIABLE.search(variable), variable
                continue
            assert variable in example, f"{name}: {variable} is not in .env.example"
    for variable, value in example.items():
        if SECRET_VARIABLE.search(variable) and variable not in OPTIONAL_SECRETS:
            assert is_placeholder(value), f".env.example: {variable} looks like a real secret"
    # copied as it is, the example starts nothing: livehub names the placeholder
    with pytest.raises(ConfigError, match="LIVEHUB_HOOK_SECRET is a placeholder"):
        livehub_config(example)


def test_env_example_placeholders_are_refused_in_every_url_too() -> None:
    from tests.cluster.test_deploy_cluster import node_config, nodes

    example = env_example()
    real = {**example, "LIVEHUB_HOOK_SECRET": SHELL["LIVEHUB_HOOK_SECRET"]}
    with pytest.raises(ConfigError, match="LIVEHUB_SRS_API_URL's password is a placeholder"):
        livehub_config(real)
    real["SRS_API_PASSWORD"] = SHELL["SRS_API_PASSWORD"]
    livehub_config(real)  # nothing else is secret in the single-node stack
    with pytest.raises(ConfigError, match="LIVEHUB_DATABASE_URL's password is a placeholder"):
        node_config(nodes()[0], real)
    real["POSTGRES_PASSWORD"] = SHELL["POSTGRES_PASSWORD"]
    with pytest.raises(ConfigError, match="LIVEHUB_REDIS_URL's password is a placeholder"):
        node_config(nodes()[0], real)
    real["REDIS_PASSWORD"] = SHELL["REDIS_PASSWORD"]
    # the key that signs private rooms' viewer tokens: anyone could mint them with the example
    with pytest.raises(ConfigError, match="LIVEHUB_VIEWER_TOKEN_SECRET is a placeholder"):
        node_config(nodes()[0], real)
    real["LIVEHUB_VIEWER_TOKEN_SECRET"] = SHELL["LIVEHUB_VIEWER_TOKEN_SECRET"]
    node_config(nodes()[0], real)  # every example replaced: it starts


def test_dotenv_is_git_ignored() -> None:
    ignored = [line.strip() for line in (REPO / ".gitignore").read_text().splitlines()]
    assert ".env" in ignored
    assert ".env.example" not in ignored
    assert dockerignored(".env")


#: where a shipped file writes a secret's value: a hook or heartbeat URL, a URL's userinfo
#: password, an SRS or Redis password directive, VAR=value
_SECRET_SPOTS = (
    re.compile(r"[?&](?:secret|token|password)=([^&\s;'\"`)<>,]+)"),
    re.compile(r"/api/hooks/srs/heartbeat/([^\s;'\"`)<>]+)"),
    re.compile(r"://[^/\s:@'\"`]*:([^@\s/'\"`]+)@"),
    re.compile(r"^\s*(?:password|requirepass)\s+\"?([^;\"\s]+)"),
    re.compile(r"\b(?:LIVEHUB_HOOK_SECRET|LIVEHUB_ADMIN_TOKEN|[A-Z_]*PASSWORD)=([^\s'\"`;]+)"),
)


def _templated(value: str) -> bool:
    """A value that is no value: a variable, an elision, a <placeholder>, SRS's locked one."""
    return (
        value.startswith(("$", "<", "…", "...", "{", "%", "unset:"))
        or value in ("", "***", "…")
        or value.endswith(("…", "..."))
        or is_placeholder(value)
    )


def secret_values(line: str) -> list[str]:
    return [v.strip() for spot in _SECRET_SPOTS for v in spot.findall(line) if not _templated(v)]


def test_the_secret_scanner_finds_working_secrets_and_passes_placeholders() -> None:
    assert secret_values("on_play http://livehub:8089/api/hooks/srs?secret=Xy7-real_secret0;")
    assert secret_values("url http://proxy:8089/api/hooks/srs/heartbeat/Xy7-real_secret0;")
    assert secret_values("LIVEHUB_REDIS_URL: redis://:Xy7realpass@redis:6379/0")
    assert secret_values("        password    Xy7realpass;")
    assert secret_values("export LIVEHUB_HOOK_SECRET=Xy7-real_secret0")
    for line in (
        "on_play http://livehub:8089/api/hooks/srs?secret=change-me-hook-secret;",
        "postgresql://livehub:${POSTGRES_PASSWORD:?set it}@postgres:5432/livehub",
        "postgresql://user:password@host:5432/livehub and user:pw@srs-b:1985",
        'password    "unset:SRS_HTTP_API_AUTH_PASSWORD";',
        "rtmp://localhost/live/<streamKey>?secret=<token>",
        "export LIVEHUB_HOOK_SECRET=$(python3 -c 'import secrets')",
    ):
        assert not secret_values(line), line


def shipped_text_files() -> list[Path]:
    files = [REPO / name for name in (*COMPOSE_FILES, "srs.conf", ".env.example", "README.md")]
    files += sorted((REPO / "deploy").glob("*.conf")) + sorted((REPO / "docs").glob("*.md"))
    return files


def test_no_shipped_file_carries_a_working_secret() -> None:
    offenders = []
    for path in shipped_text_files():
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            offenders += [f"{path.relative_to(REPO)}:{number}: {v}" for v in secret_values(line)]
    assert not offenders, "secrets livehub would accept:\n" + "\n".join(offenders)
