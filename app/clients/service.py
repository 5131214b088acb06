"""Clients: create one (the only time its API key is visible), authenticate
requests by the key's hash, rotate the webhook secret with a grace period."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.clients.models import Client
from app.clients.schemas import ClientUpdate
from app.core.clock import utcnow
from app.core.errors import ValidationFailed
from app.core.ids import new_id
from app.core.settings import get_settings
from app.webhooks import ssrf
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
    """The client holding this key, unless it was revoked."""
    return session.scalar(
        select(Client).where(Client.api_key_hash == hash_key(api_key), Client.revoked_at.is_(None))
    )


def get_by_name(session: Session, name: str) -> Client | None:
    return session.scalar(select(Client).where(Client.name == name).order_by(Client.created_at.desc()).limit(1))


class AmbiguousClient(Exception):
    """Several clients carry the name: the caller must pick one by id."""

    def __init__(self, name: str, ids: list[str]) -> None:
        super().__init__(f"{len(ids)} clients are named {name!r}: {', '.join(ids)}; name one by its id")
        self.ids = ids


def find(session: Session, name_or_id: str) -> Client | None:
    """A client by id, or by name when exactly one client has it."""
    by_id = session.get(Client, name_or_id)
    if by_id is not None:
        return by_id
    named = list(session.scalars(select(Client).where(Client.name == name_or_id).order_by(Client.created_at)))
    if len(named) > 1:
        raise AmbiguousClient(name_or_id, [c.id for c in named])
    return named[0] if named else None


def all_clients(session: Session) -> list[Client]:
    return list(session.scalars(select(Client).order_by(Client.created_at, Client.id)))


def describe(client: Client) -> dict[str, Any]:
    """What ops may see of a client (the CLI's `clients list`, the console): never a key or
    a secret. A dict, so new fields (limits, budgets) join without breaking readers."""
    return {
        "name": client.name, "id": client.id, "admin": client.is_admin,
        "created": client.created_at.isoformat() if client.created_at else None,
        "revoked": client.revoked_at.isoformat() if client.revoked_at else None,
        "webhook_url": client.webhook_url, "api_key_hint": client.api_key_hint,
    }


def revoke(session: Session, client: Client) -> bool:
    """The client's API key stops working at once; False if it already was revoked.
    Its jobs run on and their webhooks are still sent."""
    if client.revoked_at is not None:
        return False
    client.revoked_at = utcnow()
    session.flush()
    return True


def update(session: Session, client: Client, body: ClientUpdate) -> None:
    """Apply a PATCH: only the fields sent change. Setting a URL again re-enables it;
    `disabled_webhook_urls` can only shrink (a URL is disabled by its own 410)."""
    fields = body.model_dump(exclude_unset=True)
    session.refresh(client, with_for_update=True)  # a worker may be disabling a URL (410) right now
    disabled = client.disabled_webhook_urls
    if fields.get("webhook_url"):
        try:
            ssrf.check_at_submit(fields["webhook_url"], get_settings().webhook_allowed_cidrs)
        except ssrf.UnsafeURL as exc:
            raise ValidationFailed.field("webhook_url", str(exc), "unsafe_url") from None
        disabled.discard(fields["webhook_url"])
    if fields.get("disabled_webhook_urls") is not None:
        disabled &= set(fields["disabled_webhook_urls"])
    client.settings = {**(client.settings or {}), "disabled_webhook_urls": sorted(disabled)}
    if "webhook_url" in fields:
        client.webhook_url = fields["webhook_url"]
    if client.webhook_url not in disabled:
        client.webhook_disabled_at = None
    if "webhook_events" in fields:
        client.webhook_events = list(fields["webhook_events"] or [])
    if "retention_days" in fields:
        client.retention_days = fields["retention_days"]
    session.flush()


def rotate_webhook_secret(session: Session, client: Client, grace: timedelta) -> str:
    """A new secret signs from now on; the old one keeps signing too until the grace ends."""
    client.webhook_secret_previous = client.webhook_secret
    client.webhook_secret_previous_expires_at = utcnow() + grace
    client.webhook_secret = new_secret()
    session.flush()
    return client.webhook_secret


def rotate_api_key(session: Session, client: Client) -> str:
    """A new API key; the old one stops working at once. A revoked client is restored
    with the new key (the leaked one stays dead): the way back after a revoke."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    client.api_key_hash = hash_key(key)
    client.api_key_hint = key[: len(KEY_PREFIX) + 4]
    client.revoked_at = None
    session.flush()
    return key
