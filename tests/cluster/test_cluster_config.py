"""LIVEHUB_DATABASE_URL and LIVEHUB_REDIS_URL: parsed, checked, errors name the variable and
never echo a password."""

from __future__ import annotations

import pytest

from livehub.config import Config, ConfigError, redact_url


def test_cluster_mode_is_off_by_default() -> None:
    config = Config.from_env({})
    assert (config.database_url, config.redis_url) == (None, None)


@pytest.mark.parametrize(
    ("database_url", "redis_url"),
    [
        ("postgresql://livehub:Xq9-db-pass@db:5432/livehub", "redis://redis:6379/0"),
        ("postgres://db/livehub", "rediss://:Xq9-redis-pass@redis.example:6380/1"),
        ("postgresql:///livehub?host=/run/postgresql", "unix:///run/redis/redis.sock?db=0"),
    ],
)
def test_cluster_urls_are_read(database_url: str, redis_url: str) -> None:
    config = Config.from_env(
        {
            "LIVEHUB_DATABASE_URL": f" {database_url} ",
            "LIVEHUB_REDIS_URL": redis_url,
            "LIVEHUB_VIEWER_TOKEN_SECRET": "viewer-token-secret-0123456789-abcdef",
        }
    )
    assert (config.database_url, config.redis_url) == (database_url, redis_url)


def test_cluster_mode_needs_the_viewer_token_secret() -> None:
    """Every node verifies tokens any node minted: a random key per process would not do."""
    cluster = {"LIVEHUB_DATABASE_URL": "postgresql://db/livehub", "LIVEHUB_REDIS_URL": "redis://r"}
    with pytest.raises(ConfigError, match="LIVEHUB_VIEWER_TOKEN_SECRET is required"):
        Config.from_env(cluster)
    secret = "a viewer-token secret in ünïcode; long enough"  # a comma separates secrets
    config = Config.from_env({**cluster, "LIVEHUB_VIEWER_TOKEN_SECRET": secret})
    assert config.viewer_token_secret == secret
    assert Config.from_env({}).viewer_token_secret is None  # embedded: random per process
    with pytest.raises(ConfigError, match="LIVEHUB_VIEWER_TOKEN_SECRET must be at least 32 bytes"):
        Config.from_env({"LIVEHUB_VIEWER_TOKEN_SECRET": "short"})


def test_stage_max_is_read_and_checked() -> None:
    assert Config.from_env({}).stage_max == 6
    assert Config.from_env({"LIVEHUB_STAGE_MAX": "2"}).stage_max == 2
    for bad in ("-1", "65", "many"):
        with pytest.raises(ConfigError, match="LIVEHUB_STAGE_MAX"):
            Config.from_env({"LIVEHUB_STAGE_MAX": bad})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LIVEHUB_DATABASE_URL", "mysql://root:hunter22@db/livehub"),
        ("LIVEHUB_DATABASE_URL", "livehub.db"),
        ("LIVEHUB_DATABASE_URL", "postgresql://u:hunter22@db:99999/livehub"),
        ("LIVEHUB_DATABASE_URL", "postgresql://"),
        ("LIVEHUB_REDIS_URL", "http://:hunter22@redis:6379"),
        ("LIVEHUB_REDIS_URL", "redis://"),
        ("LIVEHUB_REDIS_URL", "redis:6379"),
        ("LIVEHUB_REDIS_URL", "redis://:hunter22@redis:port/0"),
    ],
)
def test_bad_cluster_urls_name_the_variable_and_hide_the_password(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name) as raised:
        Config.from_env({name: value})
    assert "hunter22" not in str(raised.value)


def test_the_debug_log_redacts_cluster_urls() -> None:
    assert redact_url("postgresql://livehub:hunter22@db:5432/livehub") == (
        "postgresql://livehub:***@db:5432/livehub"
    )
    assert redact_url("redis://:hunter22@redis:6379/0") == "redis://:***@redis:6379/0"


def test_workers_default_to_one_and_need_cluster_mode_beyond() -> None:
    assert Config.from_env({}).workers == 1
    cluster = {
        "LIVEHUB_DATABASE_URL": "postgresql://db/livehub",
        "LIVEHUB_REDIS_URL": "redis://r",
        "LIVEHUB_VIEWER_TOKEN_SECRET": "viewer-token-secret-0123456789-abcdef",
    }
    config = Config.from_env({**cluster, "LIVEHUB_WORKERS": "4"})
    assert (config.workers, config.cluster) == (4, True)
    assert Config.from_env({"LIVEHUB_WORKERS": "1"}).cluster is False
    for partial in (
        {},
        {"LIVEHUB_DATABASE_URL": cluster["LIVEHUB_DATABASE_URL"]},
        {"LIVEHUB_REDIS_URL": cluster["LIVEHUB_REDIS_URL"]},
    ):
        with pytest.raises(ConfigError, match="LIVEHUB_WORKERS=2 needs cluster mode"):
            Config.from_env({**partial, "LIVEHUB_WORKERS": "2"})


@pytest.mark.parametrize("value", ["0", "-1", "two", "257", "1.5"])
def test_bad_workers_name_the_variable(value: str) -> None:
    with pytest.raises(ConfigError, match="LIVEHUB_WORKERS"):
        Config.from_env({"LIVEHUB_WORKERS": value})


def test_sweep_interval_is_read_and_checked() -> None:
    assert Config.from_env({}).sweep_interval == 5.0
    assert Config.from_env({"LIVEHUB_SWEEP_INTERVAL": "0.5"}).sweep_interval == 0.5
    for value in ("0", "x", "nan"):
        with pytest.raises(ConfigError, match="LIVEHUB_SWEEP_INTERVAL"):
            Config.from_env({"LIVEHUB_SWEEP_INTERVAL": value})


def test_the_cluster_key_is_read_checked_and_never_echoed() -> None:
    key = "0123456789abcdef" * 2
    assert Config.from_env({}).cluster_key is None
    assert Config.from_env({"LIVEHUB_CLUSTER_KEY": f" {key} "}).cluster_key == key
    with pytest.raises(ConfigError) as short:
        Config.from_env({"LIVEHUB_CLUSTER_KEY": "too-short-key"})
    assert "LIVEHUB_CLUSTER_KEY" in str(short.value)
    assert "too-short-key" not in str(short.value)
