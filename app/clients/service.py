"""Clients: create one (the only time its API key is visible), authenticate
requests by the key's hash, rotate the webhook secret with a grace period."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.clients.models import Client
from app.core.clock import utcnow
from app.core.ids import new_id
from app.webhooks.signing import new_secret

KEY_PREFIX = "cj_live_"


def hash_key(api_key: str) -> str:
    # Keys carry 256 random bits, so a fast hash is as strong as a slow one here.
    return hashlib.sha256(api_key.encode()).hexdigest()


@dataclass
class NewClient:
    client: Client
    api_key: str


def create(
    session: Session, name: str, *, webhook_url: str | None = None, is_admin: bool = False,
    webhook_events: list[str] | None = None, api_key: str | None = None,
) -> NewClient:
    key = api_key or KEY_PREFIX + secrets.token_urlsafe(32)
    client = Client(
        id=new_id("cli"),
        name=name,
        api_key_hash=hash_key(key),
        api_key_hint=key[: len(KEY_PREFIX) + 4],
        is_admin=is_admin,
        webhook_url=webhook_url,
        webhook_secret=new_secret(),
        webhook_events=webhook_events or [],
        settings={},
    )
    session.add(client)
    session.flush()
    return NewClient(client, key)


def authenticate(session: Session, api_key: str) -> Client | None:
    return session.scalar(select(Client).where(Client.api_key_hash == hash_key(api_key)))


def get_by_name(session: Session, name: str) -> Client | None:
    return session.scalar(select(Client).where(Client.name == name).order_by(Client.created_at.desc()).limit(1))


def rotate_webhook_secret(session: Session, client: Client, grace: timedelta) -> str:
    """A new secret signs from now on; the old one keeps signing too until the grace ends."""
    client.webhook_secret_previous = client.webhook_secret
    client.webhook_secret_previous_expires_at = utcnow() + grace
    client.webhook_secret = new_secret()
    session.flush()
    return client.webhook_secret


def rotate_api_key(session: Session, client: Client) -> str:
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    client.api_key_hash = hash_key(key)
    client.api_key_hint = key[: len(KEY_PREFIX) + 4]
    session.flush()
    return key
