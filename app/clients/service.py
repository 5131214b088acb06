"""Clients: create one (the only time its API key is visible), authenticate
requests by the key's hash, rotate the webhook secret with a grace period."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from app.clients.models import Client
from app.clients.schemas import ClientUpdate, LimitsOut
from app.core.clock import utcnow
from app.core.errors import NotFound, ValidationFailed
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


@dataclass(frozen=True)
class Limits:
    """A client's share and quotas (None: unlimited); see `set_limits`."""

    weight: int = 1
    max_queued: int | None = None
    rate_per_minute: float | None = None
    rate_burst: int | None = None
    daily_budget: float | None = None


def create(
    session: Session, name: str, *, webhook_url: str | None = None, is_admin: bool = False,
    webhook_events: list[str] | None = None, api_key: str | None = None, weight: int = 1,
    max_queued: int | None = None, rate_per_minute: float | None = None, rate_burst: int | None = None,
    daily_budget: float | None = None,
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
        weight=weight,
        max_queued=max_queued,
        rate_per_minute=rate_per_minute,
        rate_burst=rate_burst,
        daily_budget=daily_budget,
    )
    session.add(client)
    session.flush()
    return NewClient(client, key)


def authenticate(session: Session, api_key: str) -> Client | None:
    """The client holding this key, unless it was revoked."""
    return session.scalar(
        select(Client).where(Client.api_key_hash == hash_key(api_key), Client.revoked_at.is_(None))
    )


class KeyCache:
    """Recently authenticated keys and their client rows (detached, read-only), for
    `AUTH_CACHE_TTL`: the gateway's hot path answers most requests without a key
    lookup. A change made through this process (PATCH /v1/client, a secret rotation)
    is seen at once; one made elsewhere (another API process, `cometjobs clients
    revoke`) within the TTL."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._entries: dict[str, tuple[float, Client]] = {}

    def get(self, api_key: str) -> Client | None:
        entry = self._entries.get(hash_key(api_key))
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def put(self, api_key: str, client: Client) -> None:
        if self.ttl <= 0:
            return
        if len(self._entries) > 10_000:  # keys are few; this bounds a flood of bad ones
            self._entries.clear()
        self._entries[hash_key(api_key)] = (time.monotonic() + self.ttl, client)

    def forget(self, client_id: str) -> None:
        for key, (_expires, client) in list(self._entries.items()):
            if client.id == client_id:
                self._entries.pop(key, None)


@lru_cache
def key_cache() -> KeyCache:
    return KeyCache(get_settings().auth_cache_ttl.total_seconds())


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
        "weight": client.weight, "max_queued": client.max_queued, "rate_per_minute": client.rate_per_minute,
        "rate_burst": client.rate_burst, "daily_budget": client.daily_budget,
    }


def revoke(session: Session, client: Client) -> bool:
    """The client's API key stops working at once; False if it already was revoked.
    Its jobs run on and their webhooks are still sent."""
    if client.revoked_at is not None:
        return False
    client.revoked_at = utcnow()
    session.flush()
    return True


def limits_out(session: Session, client: Client) -> LimitsOut:
    from app.clients import quotas
    from app.jobs.models import IN_FLIGHT_SQL, Job

    bucket = quotas.peek_rate(client)
    in_flight = session.scalar(
        select(func.count()).select_from(Job).where(Job.client_id == client.id, text(IN_FLIGHT_SQL))
    )
    return LimitsOut(
        weight=client.weight, max_queued=client.max_queued, queued=quotas.queued_count(session, client.id),
        in_flight=int(in_flight or 0), rate_per_minute=client.rate_per_minute,
        rate_burst=quotas.burst_of(client) if client.rate_per_minute else None,
        rate_remaining=bucket.remaining if bucket else None, daily_budget=client.daily_budget,
        spent_today=quotas.spent_today(session, client.id, utcnow()),
    )


def set_limits(session: Session, client: Client, **limits: Any) -> Client:
    """An operator's change to a client's share or quotas (`cometjobs clients update`)."""
    for name, value in limits.items():
        if name not in _LIMIT_FIELDS:
            raise ValueError(f"not a limit: {name}")
        setattr(client, name, value)
    session.flush()
    return client


_LIMIT_FIELDS = {"weight", "max_queued", "rate_per_minute", "rate_burst", "daily_budget"}


def update(session: Session, client_id: str, body: ClientUpdate) -> Client:
    """Apply a PATCH: only the fields sent change. Setting a URL again re-enables it;
    `disabled_webhook_urls` can only shrink (a URL is disabled by its own 410)."""
    fields = body.model_dump(exclude_unset=True)
    # Locked: a worker may be disabling a URL (410) right now.
    client = session.get(Client, client_id, with_for_update=True, populate_existing=True)
    if client is None:
        raise NotFound(f"no client {client_id}")
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
    return client


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
