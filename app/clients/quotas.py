"""A client's quotas, checked when it submits a job: how many it may have queued
(`max_queued`), how fast it may submit (a token bucket: `rate_per_minute`, holding at
most `rate_burst` tokens), and what its jobs may cost per UTC day (`daily_budget`,
from each model's `price` in the catalogue). Each refusal is a 429 problem with a
stable code and a `Retry-After`.

The token bucket lives in Redis when the broker is Redis (one bucket per client for
every API process, refilled by Redis's own clock); with another broker (the embedded
dev default) each API process keeps its own.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.clients.models import Client, ClientSpend
from app.core.db import upsert_into
from app.core.errors import AppError
from app.core.settings import Settings, get_settings


class QuotaExceeded(AppError):
    status, code, title = 429, "quota_exceeded", "Too many jobs queued"


class RateLimited(AppError):
    status, code, title = 429, "rate_limited", "Too many submissions"


class BudgetExhausted(AppError):
    status, code, title = 429, "budget_exhausted", "Today's budget is spent"


@dataclass(frozen=True)
class Bucket:
    allowed: bool
    remaining: int
    retry_after: float  # seconds until the next token


def burst_of(client: Client) -> int:
    """The bucket's size: as set, else ten seconds' worth (at least one)."""
    if client.rate_burst:
        return client.rate_burst
    return max(1, math.ceil((client.rate_per_minute or 0) / 6))


# Refill by elapsed time, then take a token if there is one; Redis's own clock, so every
# API process agrees. KEYS[1]: the bucket; ARGV: tokens per second, size, take (1 or 0).
_TAKE = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
local rate, size, take = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local held = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(held[1]), tonumber(held[2])
if tokens == nil then tokens, at = size, t end
tokens = math.min(size, tokens + (t - at) * rate)
local allowed = 0
if take == 1 and tokens >= 1 then tokens = tokens - 1; allowed = 1 end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(t))
redis.call('EXPIRE', KEYS[1], math.ceil(size / rate) + 60)
return {allowed, tostring(tokens)}
"""


class RedisBuckets:
    def __init__(self, settings: Settings) -> None:
        import redis

        self.redis = redis.Redis.from_url(settings.broker_url, socket_connect_timeout=1, socket_timeout=2)
        self.prefix = f"{settings.broker_key_prefix}cometjobs:ratelimit:"
        self.script = self.redis.register_script(_TAKE)

    def take(self, client_id: str, per_second: float, size: int, take: bool = True) -> Bucket:
        allowed, tokens = self.script(keys=[self.prefix + client_id], args=[per_second, size, int(take)])
        return _bucket(bool(allowed), float(tokens), per_second)


class LocalBuckets:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.held: dict[str, tuple[float, float]] = {}

    def take(self, client_id: str, per_second: float, size: int, take: bool = True) -> Bucket:
        with self.lock:
            now = time.monotonic()
            tokens, at = self.held.get(client_id, (float(size), now))
            tokens = min(size, tokens + (now - at) * per_second)
            allowed = take and tokens >= 1
            if allowed:
                tokens -= 1
            self.held[client_id] = (tokens, now)
        return _bucket(allowed, tokens, per_second)


def _bucket(allowed: bool, tokens: float, per_second: float) -> Bucket:
    wait = 0.0 if tokens >= 1 else (1 - tokens) / per_second
    return Bucket(allowed, int(tokens), wait)


@lru_cache
def buckets() -> RedisBuckets | LocalBuckets:
    settings = get_settings()
    if settings.broker_url.startswith(("redis://", "rediss://")):
        return RedisBuckets(settings)
    return LocalBuckets()


def rate_headers(client: Client, bucket: Bucket) -> dict[str, str]:
    """RateLimit fields (draft-ietf-httpapi-ratelimit-headers-10): the policy (`q` submissions
    per `w` seconds) and what is left now (`r`, and `t` seconds until the next one)."""
    rate = client.rate_per_minute or 0
    return {
        "RateLimit-Policy": f'"submit";q={math.floor(rate)};w=60',
        "RateLimit": f'"submit";r={bucket.remaining};t={math.ceil(bucket.retry_after)}',
    }


def check_rate(client: Client) -> dict[str, str]:
    """Take a submission token; the RateLimit headers for the answer. Raises RateLimited."""
    if not client.rate_per_minute:
        return {}
    bucket = buckets().take(client.id, client.rate_per_minute / 60, burst_of(client))
    headers = rate_headers(client, bucket)
    if not bucket.allowed:
        retry = max(1, math.ceil(bucket.retry_after))
        raise RateLimited(
            f"at most {client.rate_per_minute:g} submissions a minute (bursts of {burst_of(client)}); "
            f"retry in {retry} s", headers={**headers, "Retry-After": str(retry)},
        )
    return headers


def peek_rate(client: Client) -> Bucket | None:
    if not client.rate_per_minute:
        return None
    return buckets().take(client.id, client.rate_per_minute / 60, burst_of(client), take=False)


def queued_count(session: Session, client_id: str, limit: int | None = None) -> int:
    """The client's jobs waiting to be submitted; counting stops at `limit` (a quota check
    needs to know only whether it is reached)."""
    from app.jobs.models import Job

    waiting = select(Job.id).where(Job.client_id == client_id, Job.status == "queued")
    if limit is not None:
        waiting = waiting.limit(limit)
    return int(session.scalar(select(func.count()).select_from(waiting.subquery())) or 0)


def check_queued(session: Session, client: Client, settings: Settings) -> None:
    if client.max_queued is None:
        return
    if queued_count(session, client.id, client.max_queued) >= client.max_queued:
        retry = max(1, math.ceil(settings.quota_retry_after.total_seconds()))
        raise QuotaExceeded(
            f"{client.max_queued} jobs are already queued (max_queued); submit again when some have started",
            headers={"Retry-After": str(retry)},
        )


def charge(session: Session, client: Client, price: float, now: datetime) -> None:
    """Add a job's price to today's spend, refusing it (nothing recorded: the request's
    transaction rolls back) when that passes the client's daily budget."""
    if client.daily_budget is None or not price:
        return
    day = now.astimezone(UTC).date()
    spent = _add_spend(session, client.id, day, price)
    if spent > client.daily_budget + 1e-9:
        tomorrow = datetime.combine(day + timedelta(days=1), datetime.min.time(), UTC)
        retry = max(1, math.ceil((tomorrow - now).total_seconds()))
        raise BudgetExhausted(
            f"this job ({price:g}) would bring today's spend to {spent:g}, over the daily budget "
            f"of {client.daily_budget:g}; the budget renews at 00:00 UTC", headers={"Retry-After": str(retry)},
        )


def _add_spend(session: Session, client_id: str, day: date, price: float) -> float:
    upsert = upsert_into(session, ClientSpend).values(client_id=client_id, day=day, spent=price)
    upsert = upsert.on_conflict_do_update(
        index_elements=[ClientSpend.client_id, ClientSpend.day],
        set_={"spent": ClientSpend.spent + upsert.excluded.spent},
    ).returning(ClientSpend.spent)
    return float(session.execute(upsert).scalar_one())


def spent_today(session: Session, client_id: str, now: datetime) -> float:
    day = now.astimezone(UTC).date()
    return float(session.scalar(
        select(ClientSpend.spent).where(ClientSpend.client_id == client_id, ClientSpend.day == day)
    ) or 0.0)


__all__ = [
    "BudgetExhausted", "QuotaExceeded", "RateLimited", "charge", "check_queued", "check_rate", "peek_rate",
    "queued_count", "spent_today",
]
