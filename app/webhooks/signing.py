"""Standard Webhooks signatures (https://www.standardwebhooks.com/).

`webhook-signature` carries one `v1,<base64 HMAC-SHA256>` per active secret,
space-separated, so a receiver holding either the old or the new secret can
verify during a rotation's grace period.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable
from datetime import datetime
from functools import lru_cache

from standardwebhooks import Webhook

USER_AGENT = "cometjobs-webhooks/1"


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


@lru_cache(maxsize=1024)
def _signer(secret: str) -> Webhook:
    return Webhook(secret)


def sign(secrets: Iterable[str], msg_id: str, timestamp: datetime, body: str) -> str:
    return " ".join(_signer(secret).sign(msg_id, timestamp, body) for secret in secrets)


def headers(secrets: Iterable[str], msg_id: str, timestamp: datetime, body: str) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": sign(secrets, msg_id, timestamp, body),
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }
