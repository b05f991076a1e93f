"""Standard Webhooks signatures (https://www.standardwebhooks.com/).

``webhook-signature`` is ``v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>``, one such
entry per secret, space-separated: during a rotation receivers holding either secret verify.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from livehub.webhook_settings import WebhookSecret


def message_id(delivery_id: int) -> str:
    """The ``webhook-id``: stable across the retries of one delivery, so receivers dedupe."""
    return f"msg_{delivery_id}"


class Signer:
    def __init__(self, secrets: tuple[WebhookSecret, ...]) -> None:
        if not secrets:
            raise ValueError("a signer needs at least one secret")
        self._keys = tuple(secret.key for secret in secrets)

    def signature(self, msg_id: str, timestamp: int, body: str) -> str:
        content = f"{msg_id}.{timestamp}.{body}".encode()
        return " ".join(
            "v1," + base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
            for key in self._keys
        )

    def headers(self, msg_id: str, timestamp: int, body: str) -> dict[str, str]:
        """The three Standard Webhooks headers for one attempt."""
        return {
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": self.signature(msg_id, timestamp, body),
        }
