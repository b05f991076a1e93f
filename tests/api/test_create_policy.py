"""Who may create rooms, over real HTTP: API keys (401/403), the anonymous per-address rate
limit (429 with Retry-After), X-Forwarded-For from trusted proxies only."""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import pytest
from pytest_aiohttp import AiohttpClient

from livehub.app import create_app
from livehub.config import Config, ConfigError
from livehub.domain.admission import CreatePolicy
from livehub.domain.errors import RateLimited
from tests.conftest import ADMIN_TOKEN, Client, make_config

KEY = "key-0123456789abcdef"
OTHER_KEY = "key-fedcba9876543210"


async def start(aiohttp_client: AiohttpClient, **config: Any) -> Client:
    client: Client = await aiohttp_client(create_app(make_config(**config)))
    return client


async def create(client: Client, token: str | None = None, **headers: str) -> Any:
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return await client.post("/api/rooms", json={"title": "t"}, headers=headers)


def keyed(*keys: str) -> frozenset[str]:
    return Config.from_env({"LIVEHUB_API_KEYS": ",".join(keys)}).api_key_hashes


async def test_with_api_keys_creation_needs_one(
    aiohttp_client: AiohttpClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = await start(aiohttp_client, api_key_hashes=keyed(KEY, OTHER_KEY))
    missing = await create(client)
    assert missing.status == 401 and missing.headers["WWW-Authenticate"] == "Bearer"
    assert await missing.json() == {
        "error": "Creating a room needs Authorization: Bearer <API key>",
        "code": "unauthorized",
        "details": None,
    }
    wrong = await create(client, "not-a-key-0123456789")
    assert wrong.status == 403
    assert await wrong.json() == {
        "error": "The API key is not valid",
        "code": "forbidden",
        "details": None,
    }
    for token in (KEY, OTHER_KEY, ADMIN_TOKEN):
        assert (await create(client, token)).status == 201
    # refused attempts created nothing; keys are never logged
    listed = await client.get("/api/rooms")
    assert listed.headers["X-Total-Count"] == "3"
    assert KEY not in caplog.text and OTHER_KEY not in caplog.text


async def test_keyed_creation_is_not_rate_limited(aiohttp_client: AiohttpClient) -> None:
    client = await start(aiohttp_client, api_key_hashes=keyed(KEY), create_rate_per_min=2)
    for _ in range(5):
        assert (await create(client, KEY)).status == 201


async def test_anonymous_creation_is_limited_per_address_with_retry_after(
    aiohttp_client: AiohttpClient,
) -> None:
    client = await start(aiohttp_client, create_rate_per_min=3)
    assert [(await create(client)).status for _ in range(3)] == [201, 201, 201]
    limited = await create(client)
    assert limited.status == 429
    retry_after = int(limited.headers["Retry-After"])
    assert 1 <= retry_after <= 20  # 3 a minute: one more in 20 s at most
    assert await limited.json() == {
        "error": f"Too many rooms created from this address: retry in {retry_after} s",
        "code": "rate_limited",
        "details": {"retryAfter": retry_after},
    }
    assert (await client.get("/api/rooms")).headers["X-Total-Count"] == "3"
    # the admin token is not limited; a wrong bearer is just anonymous
    assert (await create(client, ADMIN_TOKEN)).status == 201
    assert (await create(client, "not-the-admin-token")).status == 429


async def test_zero_rate_means_no_limit(aiohttp_client: AiohttpClient) -> None:
    client = await start(aiohttp_client, create_rate_per_min=0)
    for _ in range(40):
        assert (await create(client)).status == 201


async def test_forwarded_for_is_believed_only_from_trusted_proxies(
    aiohttp_client: AiohttpClient,
) -> None:
    untrusted = await start(aiohttp_client, create_rate_per_min=1)
    assert (await create(untrusted, **{"X-Forwarded-For": "203.0.113.1"})).status == 201
    # a client cannot pick a fresh address: the header is ignored, the peer is 127.0.0.1
    assert (await create(untrusted, **{"X-Forwarded-For": "203.0.113.2"})).status == 429

    proxies = Config.from_env({"LIVEHUB_TRUSTED_PROXIES": "127.0.0.0/8, 10.0.0.7"})
    trusted = await start(
        aiohttp_client, create_rate_per_min=1, trusted_proxies=proxies.trusted_proxies
    )
    first = {"X-Forwarded-For": "203.0.113.1"}
    assert (await create(trusted, **first)).status == 201
    assert (await create(trusted, **first)).status == 429  # the same client, limited
    # the rightmost untrusted hop is the client: what it put before that is not believed
    spoofed = {"X-Forwarded-For": "198.51.100.9, 203.0.113.1, 10.0.0.7"}
    assert (await create(trusted, **spoofed)).status == 429
    other = {"X-Forwarded-For": "198.51.100.9, 203.0.113.2, 10.0.0.7"}
    assert (await create(trusted, **other)).status == 201


async def test_the_openapi_document_describes_keys_pages_and_limits(client: Client) -> None:
    spec = await (await client.get("/api/openapi.json")).json()
    assert spec["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    create_op = spec["paths"]["/api/rooms"]["post"]
    assert create_op["security"] == [{}, {"apiKey": []}]
    assert {"401", "403", "429"} <= set(create_op["responses"])
    assert "Retry-After" in create_op["responses"]["429"]["headers"]
    list_op = spec["paths"]["/api/rooms"]["get"]
    assert set(list_op["responses"]["200"]["headers"]) == {"X-Total-Count", "Link"}
    params = {p["name"]: p for p in list_op["parameters"]}
    assert set(params) == {"status", "limit", "cursor", "visibility"}
    assert params["limit"]["schema"]["maximum"] == 1000
    assert params["limit"]["schema"]["default"] == 100


# -- settings and the policy itself ------------------------------------------------------------


def test_api_keys_are_kept_only_as_hashes() -> None:
    config = Config.from_env({"LIVEHUB_API_KEYS": f" {KEY} ,{OTHER_KEY}"})
    assert config.api_key_hashes == {
        hashlib.sha256(KEY.encode()).hexdigest(),
        hashlib.sha256(OTHER_KEY.encode()).hexdigest(),
    }
    assert KEY not in repr(config)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("LIVEHUB_API_KEYS", "short", "LIVEHUB_API_KEYS: every key must be at least 16"),
        ("LIVEHUB_API_KEYS", " , ", "LIVEHUB_API_KEYS must be a comma-separated list"),
        ("LIVEHUB_CREATE_RATE_PER_MIN", "-1", "LIVEHUB_CREATE_RATE_PER_MIN must be >= 0"),
        ("LIVEHUB_TRUSTED_PROXIES", "10.0.0.1,nope", "LIVEHUB_TRUSTED_PROXIES must list IP"),
        ("LIVEHUB_ENDED_RETENTION_DAYS", "-2", "LIVEHUB_ENDED_RETENTION_DAYS must be a number"),
        ("LIVEHUB_PREPARING_TTL_HOURS", "soon", "LIVEHUB_PREPARING_TTL_HOURS must be a number"),
    ],
)
def test_bad_settings_name_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Config.from_env({name: value})


def test_the_bucket_refills_at_the_rate() -> None:
    now = [0.0]
    policy = CreatePolicy(rate_per_min=2, clock=lambda: now[0])
    policy.check(None, "a")
    policy.check(None, "a")
    with pytest.raises(RateLimited) as info:
        policy.check(None, "a")
    assert info.value.retry_after == 30
    policy.check(None, "b")  # another address has its own bucket
    now[0] = 29.0
    with pytest.raises(RateLimited):
        policy.check(None, "a")
    now[0] = 30.0
    policy.check(None, "a")
