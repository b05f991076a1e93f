"""Secrets rotated without downtime: ``LIVEHUB_HOOK_SECRET``, ``LIVEHUB_VIEWER_TOKEN_SECRET``
and ``LIVEHUB_CLUSTER_KEY`` take ``new,old`` (a comma-separated list). The first is the one
livehub uses (tells SRS, signs with); every one of them is accepted. Each value passes the
checks a single value passes; errors name the setting and the position, never the value."""

from __future__ import annotations

import pytest

from livehub.config import MAX_ROTATED_SECRETS, Config, ConfigError

HOOK_NEW = "hook-secret-new-0123456789"
HOOK_OLD = "hook-secret-old-0123456789"
VIEWER_NEW = "viewer-token-secret-new-0123456789-abcdef"
VIEWER_OLD = "viewer-token-secret-old-0123456789-abcdef"
CLUSTER_NEW = "cluster-key-new-0123456789-abcdefghij"
CLUSTER_OLD = "cluster-key-old-0123456789-abcdefghij"
CLUSTER = {"LIVEHUB_DATABASE_URL": "postgresql://db/livehub", "LIVEHUB_REDIS_URL": "redis://r"}


def test_one_value_is_read_as_before() -> None:
    config = Config.from_env(
        {
            "LIVEHUB_HOOK_SECRET": HOOK_NEW,
            "LIVEHUB_VIEWER_TOKEN_SECRET": VIEWER_NEW,
            "LIVEHUB_CLUSTER_KEY": CLUSTER_NEW,
        }
    )
    assert config.hook_secret == HOOK_NEW and config.hook_secrets == (HOOK_NEW,)
    assert config.viewer_token_secret == VIEWER_NEW
    assert config.viewer_token_secrets == (VIEWER_NEW,)
    assert config.cluster_key == CLUSTER_NEW and config.cluster_keys == (CLUSTER_NEW,)
    unset = Config.from_env({})
    assert (unset.viewer_token_secrets, unset.cluster_keys) == ((), ())
    assert unset.hook_secrets == (unset.hook_secret,)


def test_new_and_old_are_read_in_order_the_first_is_the_one_in_use() -> None:
    config = Config.from_env(
        {
            **CLUSTER,
            "LIVEHUB_HOOK_SECRET": f" {HOOK_NEW} , {HOOK_OLD} ",
            "LIVEHUB_VIEWER_TOKEN_SECRET": f"{VIEWER_NEW},{VIEWER_OLD}",
            "LIVEHUB_CLUSTER_KEY": f"{CLUSTER_NEW},{CLUSTER_OLD}",
        }
    )
    assert config.hook_secret == HOOK_NEW and config.hook_secret_set
    assert config.hook_secrets == (HOOK_NEW, HOOK_OLD)
    assert config.viewer_token_secret == VIEWER_NEW
    assert config.viewer_token_secrets == (VIEWER_NEW, VIEWER_OLD)
    assert config.cluster_key == CLUSTER_NEW
    assert config.cluster_keys == (CLUSTER_NEW, CLUSTER_OLD)


@pytest.mark.parametrize(
    ("name", "new", "old", "why"),
    [
        ("LIVEHUB_HOOK_SECRET", HOOK_NEW, "short", "at least 16 characters"),
        ("LIVEHUB_HOOK_SECRET", HOOK_NEW, "not/url-safe-0123456789", "URL-safe"),
        ("LIVEHUB_HOOK_SECRET", HOOK_NEW, "change-me-hook-secret", "placeholder"),
        ("LIVEHUB_VIEWER_TOKEN_SECRET", VIEWER_NEW, "short-viewer-secret", "at least 32 bytes"),
        ("LIVEHUB_VIEWER_TOKEN_SECRET", VIEWER_NEW, "changeme" * 5, "placeholder"),
        ("LIVEHUB_CLUSTER_KEY", CLUSTER_NEW, "short-cluster-key", "at least 32 characters"),
        ("LIVEHUB_CLUSTER_KEY", CLUSTER_NEW, "change-me-cluster-key-0123456789ab", "placeholder"),
    ],
)
def test_every_value_is_checked_and_the_error_names_its_position_not_the_value(
    name: str, new: str, old: str, why: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        Config.from_env({name: f"{new},{old}"})
    message = str(raised.value)
    assert message.startswith(f"{name}: value 2 ") and why in message, message
    assert old not in message and new not in message
    with pytest.raises(ConfigError) as raised:
        Config.from_env({name: f"{old},{new}"})
    assert str(raised.value).startswith(f"{name}: value 1 ")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LIVEHUB_HOOK_SECRET", HOOK_NEW),
        ("LIVEHUB_VIEWER_TOKEN_SECRET", VIEWER_NEW),
        ("LIVEHUB_CLUSTER_KEY", CLUSTER_NEW),
    ],
)
def test_a_value_given_twice_and_too_many_values_are_refused(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Config.from_env({name: f"{value}, {value}"})
    assert str(raised.value) == f"{name}: values 1 and 2 are the same"
    many = [f"{value}-{n}" for n in range(MAX_ROTATED_SECRETS + 1)]
    assert Config.from_env({name: ",".join(many[:-1])})  # the maximum is accepted
    with pytest.raises(ConfigError) as raised:
        Config.from_env({name: ",".join(many)})
    assert str(raised.value) == (
        f"{name}: at most {MAX_ROTATED_SECRETS} values (the one in use first, then the old ones)"
    )
    with pytest.raises(ConfigError, match=name):
        Config.from_env({name: " , "})


def test_cluster_mode_still_needs_the_viewer_token_secret() -> None:
    with pytest.raises(ConfigError, match="LIVEHUB_VIEWER_TOKEN_SECRET is required"):
        Config.from_env(CLUSTER)
    config = Config.from_env({**CLUSTER, "LIVEHUB_VIEWER_TOKEN_SECRET": VIEWER_NEW})
    assert config.viewer_token_secrets == (VIEWER_NEW,)


def test_old_values_without_one_in_use_are_refused() -> None:
    """Built in code (tests, tools), the extra values need the one in use."""
    with pytest.raises(ConfigError, match="old_cluster_keys needs cluster_key"):
        Config(old_cluster_keys=(CLUSTER_OLD,))
    with pytest.raises(ConfigError, match="old_viewer_token_secrets needs viewer_token_secret"):
        Config(old_viewer_token_secrets=(VIEWER_OLD,))


def test_the_debug_config_dump_leaves_the_old_values_out() -> None:
    from livehub.__main__ import SECRET_FIELDS

    for field in ("old_hook_secrets", "old_viewer_token_secrets", "old_cluster_keys"):
        assert field in SECRET_FIELDS


def test_the_config_repr_shows_none_of_the_rotated_secrets() -> None:
    config = Config.from_env(
        {
            "LIVEHUB_HOOK_SECRET": f"{HOOK_NEW},{HOOK_OLD}",
            "LIVEHUB_VIEWER_TOKEN_SECRET": f"{VIEWER_NEW},{VIEWER_OLD}",
            "LIVEHUB_CLUSTER_KEY": f"{CLUSTER_NEW},{CLUSTER_OLD}",
        }
    )
    shown = repr(config)
    for secret in (HOOK_NEW, HOOK_OLD, VIEWER_NEW, VIEWER_OLD, CLUSTER_NEW, CLUSTER_OLD):
        assert secret not in shown


def test_the_config_repr_shows_no_other_secret_either() -> None:
    """The admin token, the engines' URLs (their passwords) and the webhook URLs (tokens in
    their queries) stay out of the repr too: a logged or printed config leaks none of them."""
    config = Config.from_env(
        {
            "LIVEHUB_ADMIN_TOKEN": "admin-token-0123456789-abcdef",
            "LIVEHUB_DATABASE_URL": "postgresql://livehub:pg-password-0123456789@db/livehub",
            "LIVEHUB_REDIS_URL": "redis://:redis-password-0123456789@redis:6379/0",
            "LIVEHUB_VIEWER_TOKEN_SECRET": VIEWER_NEW,
            "LIVEHUB_WEBHOOK_URLS": "https://hooks.example/in?token=hook-url-token-0123456789",
            "LIVEHUB_WEBHOOK_SECRET": "whsec_" + "A" * 32,
        }
    )
    shown = repr(config)
    for secret in (
        "admin-token-0123456789",
        "pg-password-0123456789",
        "redis-password-0123456789",
        "hook-url-token-0123456789",
    ):
        assert secret not in shown
