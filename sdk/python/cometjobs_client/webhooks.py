"""Verify a webhook's Standard Webhooks signature and read it as a typed event."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError as _Invalid

from cometjobs_client.errors import WebhookVerificationError
from cometjobs_client.models import WebhookEvent


def verify_webhook(payload: bytes | str, headers: Mapping[str, str], secret: str | Iterable[str]) -> WebhookEvent:
    """The event, if `webhook-signature` matches `payload` under `secret` (`whsec_...`;
    pass both secrets while a rotation's grace period lasts) and `webhook-timestamp` is
    within 5 minutes; else `WebhookVerificationError`. Pass the raw body, not re-encoded JSON."""
    secrets = [secret] if isinstance(secret, str) else list(secret)
    lowered = {k.lower(): v for k, v in headers.items()}
    body = payload.decode() if isinstance(payload, bytes) else payload
    last: Exception | None = None
    for candidate in secrets:
        try:
            Webhook(candidate).verify(body, lowered)
        except _Invalid as exc:
            last = exc
            continue
        return WebhookEvent.model_validate_json(body)
    raise WebhookVerificationError(str(last) if last else "no secret given")
