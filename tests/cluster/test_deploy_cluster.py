"""The cluster compose file agrees with the nginx config, srs.conf and the app (read, not run:
Docker is not available here), as tests/test_deploy.py does for the single-node stack."""

from __future__ import annotations

import functools
import ipaddress
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from livehub.config import Config, is_placeholder
from tests.deploy_files import (
    HOOKS,
    REPO,
    SHELL,
    Directive,
    app_path,
    hook_urls,
    interpolate,
    parse_srs_conf,
    srs_conf,
)

COMPOSE = REPO / "docker-compose.cluster.yml"
NGINX = REPO / "deploy" / "nginx-cluster.conf"
SRS_CLUSTER = REPO / "deploy" / "srs-cluster.conf"


@functools.cache
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def env_of(name: str, shell: dict[str, str] | None = None) -> dict[str, str]:
    """A service's environment against ``shell`` (default: :data:`SHELL`, the secrets)."""
    raw = compose()["services"][name].get("environment", {})
    return {
        key: interpolate(str(value), SHELL if shell is None else shell)
        for key, value in raw.items()
    }


def nodes() -> list[str]:
    return sorted(name for name in compose()["services"] if name.startswith("livehub"))


def node_config(name: str, shell: dict[str, str] | None = None) -> Config:
    return Config.from_env(env_of(name, shell))


def nginx() -> str:
    # comments out: only directives count
    return re.sub(r"#[^\n]*", "", NGINX.read_text())


def published(service: str) -> dict[int, int]:
    out = {}
    for entry in compose()["services"][service].get("ports", []):
        host, _, target = str(entry).partition(":")
        out[int(target.split("/")[0])] = int(host)
    return out


def test_two_or_more_identical_nodes_in_cluster_mode() -> None:
    assert len(nodes()) >= 2
    configs = [node_config(name) for name in nodes()]  # each is a valid config
    assert all(config == configs[0] for config in configs[1:])
    config = configs[0]
    assert config.database_url is not None and config.redis_url is not None
    assert config.hook_secret == SHELL["LIVEHUB_HOOK_SECRET"]
    assert config.internal_port is not None and config.internal_port != config.port
    assert not any("ports" in compose()["services"][name] for name in nodes())  # proxy only


def test_nodes_reach_postgres_and_redis_with_the_same_credentials() -> None:
    shell = {**SHELL, "POSTGRES_PASSWORD": "Db-password_0123"}
    config = node_config(nodes()[0], shell)
    assert config.database_url is not None and config.redis_url is not None
    db = urlsplit(config.database_url)
    postgres = env_of("postgres", shell)
    assert db.hostname == "postgres" and db.port == 5432
    assert (db.username, db.password, db.path.lstrip("/")) == (
        postgres["POSTGRES_USER"],
        "Db-password_0123",
        postgres["POSTGRES_DB"],
    )
    redis = urlsplit(config.redis_url)
    assert redis.hostname == "redis" and redis.port == 6379
    # Redis asks for a password, the nodes and the health check give it
    command = [str(part) for part in compose()["services"]["redis"]["command"]]
    required = interpolate(command[command.index("--requirepass") + 1], shell)
    assert redis.password == required == SHELL["REDIS_PASSWORD"]
    assert env_of("redis", shell)["REDISCLI_AUTH"] == required
    for name in nodes():
        depends = compose()["services"][name]["depends_on"]
        assert (
            depends["postgres"]["condition"] == depends["redis"]["condition"] == ("service_healthy")
        )
    assert "postgres-data" in compose()["volumes"]
    assert "--save" in compose()["services"]["redis"]["command"]


def test_srs_hooks_go_through_the_proxy_internal_listener_with_the_nodes_secret() -> None:
    shell = {**SHELL, "LIVEHUB_HOOK_SECRET": "one-secret-for-both-sides"}
    config = node_config(nodes()[0], shell)
    srs = env_of("srs", shell)
    for hook in hook_urls():
        url = urlsplit(srs[f"SRS_VHOST_HTTP_HOOKS_{hook.upper()}"])
        assert (url.hostname, url.port) == ("proxy", internal_listen())
        assert url.path == app_path("srs_hooks")
        assert parse_qs(url.query)["secret"] == [config.hook_secret]
    heartbeat = urlsplit(srs["SRS_HEARTBEAT_URL"])
    assert (heartbeat.hostname, heartbeat.port) == ("proxy", internal_listen())
    assert heartbeat.path == app_path("srs_heartbeat_signed", secret=config.hook_secret)
    assert srs["SRS_HTTP_API_AUTH_PASSWORD"] == urlsplit(config.srs_api_url).password


def test_the_proxy_balances_every_node_without_stickiness_and_upgrades_websockets() -> None:
    conf = nginx()
    upstream = re.search(r"upstream\s+livehub\s*\{([^}]*)\}", conf)
    assert upstream is not None
    servers = re.findall(r"server\s+([\w.-]+):(\d+)", upstream[1])
    assert sorted(host for host, _ in servers) == nodes()
    assert {int(port) for _, port in servers} == {node_config(n).port for n in nodes()}
    assert not re.search(r"\b(ip_hash|hash|sticky)\b", upstream[1])
    assert "proxy_pass http://livehub;" in conf
    assert "proxy_http_version 1.1;" in conf
    assert "proxy_set_header Upgrade $http_upgrade;" in conf
    assert "proxy_set_header Connection $connection_upgrade;" in conf
    timeout = int(re.search(r"proxy_read_timeout\s+(\d+)s;", conf)[1])  # type: ignore[index]
    assert timeout > node_config(nodes()[0]).heartbeat
    listen = proxy_listen()
    assert published("proxy") == {listen: listen}  # the internal listener is not published
    assert internal_listen() not in published("proxy")
    assert int(re.search(r"client_max_body_size\s+(\d+)k;", conf)[1]) * 1024 >= (  # type: ignore[index]
        node_config(nodes()[0]).max_body_size
    )


def test_the_proxy_never_logs_query_strings() -> None:
    conf = nginx()
    formats = re.findall(r"log_format\s+(\w+)\s+'([^;]*)'\s*;", conf)
    assert formats, "an explicit log format, not nginx's default (which logs $request)"
    for _, fmt in formats:
        assert not re.search(r"\$(request|request_uri|args|query_string)\b", fmt)
        # the heartbeat's secret is its last path segment: $uri would log it
        assert not re.search(r"\$uri\b", fmt)
    mask = re.search(r"map\s+\$uri\s+\$loggable_uri\s*\{([^}]*)\}", conf)
    assert mask is not None and "~^/api/hooks/srs/heartbeat/" in mask[1]
    for access_log in re.findall(r"access_log\s+([^;]+);", conf):
        assert access_log.split()[-1] in {name for name, _ in formats} or access_log == "off"


def test_nodes_stop_within_their_grace_period() -> None:
    for name in nodes():
        grace = str(compose()["services"][name]["stop_grace_period"])
        # a shutdown takes at most twice the timeout (docs/operations.md, Shutdown)
        assert float(grace.rstrip("s")) > 2 * node_config(name).shutdown_timeout


# -- SRS: hooks and heartbeats through the proxy (deploy/srs-cluster.conf) --------------------


@functools.cache
def srs_cluster_conf() -> Directive:
    return parse_srs_conf(SRS_CLUSTER.read_text())


def cluster_vhost() -> Directive:
    [vhost] = [d for d in srs_cluster_conf().all("vhost") if d.args == ("__defaultVhost__",)]
    return vhost


def proxy_listen() -> int:
    """The proxy's public listener (the first ``listen``)."""
    return int(re.search(r"\blisten\s+(\d+)\s*;", nginx())[1])  # type: ignore[index]


def internal_listen() -> int:
    """The proxy's internal listener: the server block whose upstream is the nodes' internal
    port."""
    ports = [int(port) for port in re.findall(r"\blisten\s+(\d+)\s*;", nginx())]
    assert len(ports) == 2, ports
    return ports[1]


def test_srs_runs_the_cluster_conf() -> None:
    srs = compose()["services"]["srs"]
    assert "./deploy/srs-cluster.conf:/usr/local/srs/conf/livehub.conf:ro" in srs["volumes"]
    assert srs["command"] == ["./objs/srs", "-c", "conf/livehub.conf"]


def test_every_livehub_url_of_the_srs_cluster_conf_goes_through_the_proxy() -> None:
    hooks = cluster_vhost().one("http_hooks")
    assert hooks.value("enabled") == "on"
    srs = env_of("srs")
    for name in HOOKS:
        url = urlsplit(hooks.value(name))
        assert (url.scheme, url.hostname, url.port) == ("http", "proxy", internal_listen())
        assert url.path == app_path("srs_hooks")
        # a placeholder livehub refuses; compose's override differs by the secret only
        [secret] = parse_qs(url.query)["secret"]
        assert is_placeholder(secret)
        override = srs[f"SRS_VHOST_HTTP_HOOKS_{name.upper()}"]
        assert override == hooks.value(name).replace(secret, SHELL["LIVEHUB_HOOK_SECRET"])
    heartbeat = srs_cluster_conf().one("heartbeat")
    assert heartbeat.value("enabled") == "on"
    url = urlsplit(heartbeat.value("url"))
    assert (url.scheme, url.hostname, url.port) == ("http", "proxy", internal_listen())
    secret = url.path.rpartition("/")[2]
    assert url.path == app_path("srs_heartbeat_signed", secret=secret) and not url.query
    assert is_placeholder(secret)
    assert srs["SRS_HEARTBEAT_URL"] == heartbeat.value("url").replace(
        secret, SHELL["LIVEHUB_HOOK_SECRET"]
    )


def _without_livehub_urls(directive: Directive) -> tuple[object, ...]:
    """A directive tree with line numbers dropped and livehub's host made neutral."""
    args = tuple(
        re.sub(r"^http://(livehub|proxy):8089/", "http://LIVEHUB/", a) for a in directive.args
    )
    block = None
    if directive.block is not None:
        block = tuple(_without_livehub_urls(child) for child in directive.block)
    return (directive.name, args, block)


def test_the_srs_cluster_conf_is_srs_conf_but_for_where_livehub_is() -> None:
    """One SRS set-up: the cluster's conf cannot drift from the single node's."""
    assert _without_livehub_urls(srs_cluster_conf()) == _without_livehub_urls(srs_conf())
    assert "http://livehub:" not in SRS_CLUSTER.read_text()


# -- the network: the nodes believe the proxy, and only it ------------------------------------


def test_nodes_trust_the_proxy_network_and_only_it() -> None:
    [subnet] = [
        ipaddress.ip_network(entry["subnet"])
        for entry in compose()["networks"]["cluster"]["ipam"]["config"]
    ]
    for name in nodes():
        assert node_config(name).trusted_proxies == (subnet,)
        assert subnet.is_private
    for name, service in compose()["services"].items():
        assert service.get("networks") == ["cluster"], name


def test_the_proxy_does_not_serve_node_metrics() -> None:
    conf = nginx()
    blocks = re.findall(r"location\s*=\s*/metrics\s*\{([^}]*)\}", conf)
    assert len(blocks) == 2 and all("return 404;" in block for block in blocks)


def test_the_internal_listener_reaches_every_node_internal_port() -> None:
    conf = nginx()
    upstream = re.search(r"upstream\s+livehub_internal\s*\{([^}]*)\}", conf)
    assert upstream is not None
    servers = re.findall(r"server\s+([\w.-]+):(\d+)", upstream[1])
    assert sorted(host for host, _ in servers) == nodes()
    assert {int(port) for _, port in servers} == {node_config(n).internal_port for n in nodes()}
    assert "proxy_pass http://livehub_internal;" in conf


def test_nginx_accepts_the_config(tmp_path: Path) -> None:
    """``nginx -t`` on deploy/nginx-cluster.conf, node host names pointed at loopback (nginx
    resolves upstream names while testing; the compose network is not here)."""
    binary = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None
    )
    if binary is None:
        pytest.skip("nginx is not installed (Debian: apt-get install nginx-light)")
    text = NGINX.read_text()
    for name in nodes():
        text = re.sub(rf"\bserver\s+{name}:", "server 127.0.0.1:", text)
    conf = tmp_path / "nginx.conf"
    conf.write_text(text)
    result = subprocess.run(
        [
            binary,
            "-t",
            "-p",
            str(tmp_path),
            "-c",
            str(conf),
            "-g",
            f"pid {tmp_path}/nginx.pid; error_log {tmp_path}/error.log;",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr
