"""``LIVEHUB_WEBHOOK_*``: parsed with errors naming the variable and never the secret; signatures
verified by the ``standardwebhooks`` package."""

from __future__ import annotations

import base64
import json
import re
import time
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook

from livehub.config import Config, ConfigError
from livehub.webhook_settings import WebhookSecret, endpoint_label
from livehub.webhooks.signing import Signer
from tests.webhooks.conftest import OLD_SECRET, SECRET, secret

URLS = "https://hooks.example.com/livehub, http://10.0.0.5:9000/in"


def test_urls_and_secrets_from_the_environment() -> None:
    config = Config.from_env(
        {
            "LIVEHUB_WEBHOOK_URLS": URLS,
            "LIVEHUB_WEBHOOK_SECRET": f"{SECRET}, {OLD_SECRET}",
            "LIVEHUB_WEBHOOK_TIMEOUT": "2.5",
            "LIVEHUB_WEBHOOK_CONCURRENCY": "4",
        }
    )
    assert config.webhook_urls == ("https://hooks.example.com/livehub", "http://10.0.0.5:9000/in")
    assert config.webhook_secrets == (secret(SECRET), secret(OLD_SECRET))
    assert (config.webhook_timeout, config.webhook_concurrency) == (2.5, 4)
    # the config's repr (logged at DEBUG) shows no key
    assert SECRET.removeprefix("whsec_") not in repr(config)
    assert "livehub-test-webhook-secret" not in repr(config)


def test_unset_means_no_webhooks() -> None:
    config = Config.from_env({})
    assert (config.webhook_urls, config.webhook_secrets) == ((), ())
    assert (config.webhook_viewers_interval, config.webhook_retention_days) == (10.0, 7.0)


def test_presence_interval_retention_and_the_postgresql_outbox_from_the_environment() -> None:
    config = Config.from_env(
        {
            "LIVEHUB_WEBHOOK_URLS": "http://a.example/x",
            "LIVEHUB_WEBHOOK_SECRET": SECRET,
            "LIVEHUB_WEBHOOK_VIEWERS_INTERVAL": "2.5",
            "LIVEHUB_WEBHOOK_RETENTION_DAYS": "0",
            # cluster mode: the outbox is in PostgreSQL, so no database file is needed
            "LIVEHUB_DB": ":memory:",
            "LIVEHUB_DATABASE_URL": "postgresql://livehub@db.example/livehub",
        }
    )
    assert (config.webhook_viewers_interval, config.webhook_retention_days) == (2.5, 0.0)


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"LIVEHUB_WEBHOOK_URLS": "ftp://example.com/x"}, "LIVEHUB_WEBHOOK_URLS"),
        ({"LIVEHUB_WEBHOOK_URLS": "example.com/hooks"}, "LIVEHUB_WEBHOOK_URLS"),
        ({"LIVEHUB_WEBHOOK_URLS": " , "}, "LIVEHUB_WEBHOOK_URLS"),
        ({"LIVEHUB_WEBHOOK_URLS": "http://a.example/x,http://a.example/x"}, "LIVEHUB_WEBHOOK_URLS"),
        ({"LIVEHUB_WEBHOOK_URLS": "http://a.example/x"}, "LIVEHUB_WEBHOOK_SECRET"),
        ({"LIVEHUB_WEBHOOK_SECRET": "s3cr3t-without-prefix"}, "LIVEHUB_WEBHOOK_SECRET"),
        ({"LIVEHUB_WEBHOOK_SECRET": "whsec_not base64!"}, "LIVEHUB_WEBHOOK_SECRET"),
        ({"LIVEHUB_WEBHOOK_SECRET": "whsec_" + "c2hvcnQ="}, "LIVEHUB_WEBHOOK_SECRET"),
        ({"LIVEHUB_WEBHOOK_SECRET": f"{SECRET},{SECRET},{SECRET}"}, "LIVEHUB_WEBHOOK_SECRET"),
        ({"LIVEHUB_WEBHOOK_TIMEOUT": "0"}, "LIVEHUB_WEBHOOK_TIMEOUT"),
        ({"LIVEHUB_WEBHOOK_CONCURRENCY": "0"}, "LIVEHUB_WEBHOOK_CONCURRENCY"),
        ({"LIVEHUB_WEBHOOK_VIEWERS_INTERVAL": "0"}, "LIVEHUB_WEBHOOK_VIEWERS_INTERVAL"),
        ({"LIVEHUB_WEBHOOK_VIEWERS_INTERVAL": "often"}, "LIVEHUB_WEBHOOK_VIEWERS_INTERVAL"),
        ({"LIVEHUB_WEBHOOK_RETENTION_DAYS": "-1"}, "LIVEHUB_WEBHOOK_RETENTION_DAYS"),
        (
            {
                "LIVEHUB_WEBHOOK_URLS": "http://a.example/x",
                "LIVEHUB_WEBHOOK_SECRET": SECRET,
                "LIVEHUB_DB": ":memory:",
            },
            "LIVEHUB_DB",
        ),
    ],
)
def test_bad_values_name_the_variable_and_not_the_secret(
    env: dict[str, str], variable: str
) -> None:
    with pytest.raises(ConfigError) as error:
        Config.from_env(env)
    message = str(error.value)
    assert variable in message
    for value in env.values():
        if "whsec_" in value or "s3cr3t" in value:
            assert value not in message


def test_endpoint_label_keeps_only_scheme_host_and_port() -> None:
    assert endpoint_label("https://u:pw@hooks.example.com/T0/B1/XyZ?token=t") == (
        "https://hooks.example.com"
    )
    assert endpoint_label("http://[::1]:8080/x") == "http://[::1]:8080"


def test_signatures_verify_with_standardwebhooks_for_each_secret() -> None:
    signer = Signer((secret(SECRET), secret(OLD_SECRET)))
    body = '{"type":"room.live","timestamp":"2026-11-30T13:00:00.000Z","data":{"seq":1}}'
    now = int(time.time())
    headers = signer.headers("msg_7", now, body)
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert headers["webhook-timestamp"] == str(now)
    for key in (SECRET, OLD_SECRET):
        assert Webhook(key).verify(body, headers) == {
            "type": "room.live",
            "timestamp": "2026-11-30T13:00:00.000Z",
            "data": {"seq": 1},
        }
    # a secret it does not hold, a changed body, a changed id: refused
    other = "whsec_" + base64.b64encode(b"x" * 32).decode()
    for key, data, sent in (
        (other, body, headers),
        (SECRET, body.replace("1}", "2}"), headers),
        (SECRET, body, {**headers, "webhook-id": "msg_8"}),
    ):
        with pytest.raises(Exception, match="signature"):
            Webhook(key).verify(data, sent)


def test_the_spec_example_signature() -> None:
    # the Standard Webhooks reference test vector
    spec_secret = WebhookSecret(base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"))
    signature = Signer((spec_secret,)).signature(
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1614265330,
        '{"test": 2432232314}',
    )
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_the_example_in_the_docs_is_signed_right() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "webhooks.md").read_text()
    request = doc.split("```http\n")[1].split("```")[0]
    head, body = request.split("\n\n", 1)
    headers = dict(line.split(": ", 1) for line in head.splitlines()[1:])
    doc_secret = re.search(r"example secret `(whsec_[^`]+)`", doc)
    assert doc_secret is not None
    signer = Signer((secret(doc_secret.group(1)),))
    signed = signer.headers(headers["webhook-id"], int(headers["webhook-timestamp"]), body.strip())
    assert signed["webhook-signature"] == headers["webhook-signature"]
    data = json.loads(body)["data"]
    assert "publish" not in data and "ownerToken" not in data and data["seq"] == 2
