"""Webhook events: created with the state change that caused them (same
transaction), delivered at least once, in order per job, retried on the
configured schedule, then dead and redeliverable by hand."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import structlog
from sqlalchemy.orm import Session

from app.clients.models import Client
from app.core.db import session_scope, utcnow
from app.core.ids import new_id
from app.core.queue import enqueue
from app.core.settings import Settings, get_settings
from app.webhooks import repository as repo
from app.webhooks import signing, ssrf

log = structlog.get_logger(__name__)
DELIVER_TASK = "cometjobs.deliver_webhook"


@dataclass
class AttemptResult:
    status_code: int | None
    latency_ms: int
    body: str | None
    error: str | None
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def client_secrets(client: Client, now: datetime) -> list[str]:
    secrets = [client.webhook_secret]
    if client.webhook_secret_previous and (
        client.webhook_secret_previous_expires_at is None or client.webhook_secret_previous_expires_at > now
    ):
        secrets.append(client.webhook_secret_previous)
    return secrets


def disabled_urls(client: Client) -> set[str]:
    return set((client.settings or {}).get("disabled_webhook_urls", []))


def create_event(
    session: Session, *, job_id: str, client: Client, url: str | None, event_type: str,
    data: dict[str, Any], now: datetime,
) -> str | None:
    """Insert one event's delivery row; the send is nudged after commit."""
    if not url:
        return None
    delivery_id = new_id("msg")
    body = json.dumps(
        {"id": new_id("evt"), "type": event_type, "created_at": now.isoformat(), "data": data},
        separators=(",", ":"),
    )
    status = repo.DISABLED if url in disabled_urls(client) else repo.PENDING
    repo.insert_delivery(
        session,
        {
            "id": delivery_id, "job_id": job_id, "client_id": client.id,
            "seq": repo.next_seq(session, job_id), "event_id": json.loads(body)["id"],
            "event_type": event_type, "url": url, "payload": body, "status": status,
            "attempts": 0, "next_attempt_at": now if status == repo.PENDING else None,
            "created_at": now, "updated_at": now,
        },
    )
    if status == repo.PENDING:
        enqueue(session, DELIVER_TASK, delivery_id)
    return delivery_id


def _jittered(seconds: float) -> float:
    return seconds * random.uniform(0.9, 1.1)


def next_attempt_delay(settings: Settings, attempts_made: int, retry_after: float | None) -> float | None:
    """Seconds until the next try after `attempts_made` failures, or None when out of tries."""
    schedule = settings.webhook_retry_schedule
    if attempts_made > len(schedule):
        return None
    delay = _jittered(schedule[attempts_made - 1])
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


def _pinned_request(url: str, target: ssrf.Target) -> tuple[str, dict[str, str], dict[str, Any]]:
    """Connect to the checked address while keeping the URL's Host and TLS name."""
    parsed = httpx.URL(url)
    address = f"[{target.address}]" if ":" in target.address else target.address
    pinned = parsed.copy_with(host=address.strip("[]"))
    default_port = 443 if target.scheme == "https" else 80
    host_header = target.host if target.port == default_port else f"{target.host}:{target.port}"
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    return str(pinned), {"host": host_header}, extensions


def _outcome(response: httpx.Response | None, started: float, error: str | None, cap: int) -> AttemptResult:
    latency = int((time.perf_counter() - started) * 1000)
    if response is None:
        return AttemptResult(None, latency, None, error)
    retry_after = None
    if response.status_code in (429, 503) and response.headers.get("retry-after", "").isdigit():
        retry_after = float(response.headers["retry-after"])
    body = response.text[:cap] if response.content else None
    if 300 <= response.status_code < 400:
        error = f"redirect {response.status_code} to {response.headers.get('location', '?')} (not followed)"
    elif response.status_code >= 400:
        error = f"HTTP {response.status_code}"
    return AttemptResult(response.status_code, latency, body, error, retry_after)


def _prepare(settings: Settings, row: Any, secrets: list[str]) -> tuple[str, dict[str, str], dict[str, Any]]:
    target = ssrf.check_at_send(row.url, settings.webhook_allowed_cidrs)
    url, extra_headers, extensions = _pinned_request(row.url, target)
    headers = signing.headers(secrets, row.id, utcnow(), row.payload)
    headers.update(extra_headers)
    return url, headers, extensions


def send_sync(http: httpx.Client, settings: Settings, row: Any, secrets: list[str]) -> AttemptResult:
    started = time.perf_counter()
    try:
        url, headers, extensions = _prepare(settings, row, secrets)
        response = http.post(url, content=row.payload.encode(), headers=headers, extensions=extensions)
        response.read()
    except ssrf.UnsafeURL as exc:
        return _outcome(None, started, f"refused: {exc}", 0)
    except httpx.HTTPError as exc:
        return _outcome(None, started, f"{type(exc).__name__}: {exc}"[:300], 0)
    return _outcome(response, started, None, settings.webhook_response_body_cap)


async def send_async(http: httpx.AsyncClient, settings: Settings, row: Any, secrets: list[str]) -> AttemptResult:
    started = time.perf_counter()
    try:
        url, headers, extensions = _prepare(settings, row, secrets)
        response = await http.post(url, content=row.payload.encode(), headers=headers, extensions=extensions)
    except ssrf.UnsafeURL as exc:
        return _outcome(None, started, f"refused: {exc}", 0)
    except httpx.HTTPError as exc:
        return _outcome(None, started, f"{type(exc).__name__}: {exc}"[:300], 0)
    return _outcome(response, started, None, settings.webhook_response_body_cap)


def record(session: Session, settings: Settings, row: Any, result: AttemptResult, now: datetime) -> str:
    """Store the attempt and move the delivery on; returns its new status."""
    repo.add_attempts(
        session,
        [{
            "id": new_id("att"), "delivery_id": row.id, "attempt": row.attempts,
            "started_at": now - timedelta(milliseconds=result.latency_ms),
            "status_code": result.status_code, "latency_ms": result.latency_ms,
            "response_body": result.body, "error": result.error,
        }],
    )
    base = {"last_status_code": result.status_code, "last_error": result.error, "updated_at": now}
    if result.ok:
        status = repo.DELIVERED
        values = {**base, "status": status, "delivered_at": now, "next_attempt_at": None}
    elif result.status_code == 410:
        status = repo.DISABLED
        values = {**base, "status": status, "next_attempt_at": None}
        _disable_url(session, row.client_id, row.url, now)
    else:
        delay = next_attempt_delay(settings, row.attempts, result.retry_after)
        if delay is None:
            status = repo.DEAD
            values = {**base, "status": status, "next_attempt_at": None}
        else:
            status = repo.PENDING
            values = {**base, "next_attempt_at": now + timedelta(seconds=delay)}
    if not repo.finish(session, row.id, row.attempts, values):
        return "superseded"
    if status != repo.PENDING:
        for next_id in repo.next_pending_for_jobs(session, [row.job_id]):
            enqueue(session, DELIVER_TASK, next_id)
    log.info(
        "webhook_attempt", delivery_id=row.id, job_id=row.job_id, attempt=row.attempts,
        status_code=result.status_code, outcome=status, latency_ms=result.latency_ms, error=result.error,
    )
    return status


def _disable_url(session: Session, client_id: str, url: str, now: datetime) -> None:
    client = session.get(Client, client_id, with_for_update=True)
    if client is None:
        return
    settings = dict(client.settings or {})
    urls = set(settings.get("disabled_webhook_urls", []))
    urls.add(url)
    settings["disabled_webhook_urls"] = sorted(urls)
    client.settings = settings
    if url == client.webhook_url:
        client.webhook_disabled_at = now
    log.warning("webhook_endpoint_disabled", client_id=client_id, reason="410 Gone")


_sync_http: tuple[int, httpx.Client] | None = None


def sync_http() -> httpx.Client:
    import os

    global _sync_http
    if _sync_http is None or _sync_http[0] != os.getpid():
        settings = get_settings()
        _sync_http = (
            os.getpid(),
            httpx.Client(timeout=settings.webhook_timeout.total_seconds(), follow_redirects=False),
        )
    return _sync_http[1]


def deliver_one(delivery_id: str) -> str:
    """Send one delivery now if it is due and first in line for its job."""
    settings = get_settings()
    now = utcnow()
    with session_scope() as session:
        rows = repo.claim(session, now, now + settings.webhook_lease, 1, delivery_id)
        if not rows:
            return "not_due"
        row = rows[0]
        client = session.get(Client, row.client_id)
        secrets = client_secrets(client, now) if client else []
    result = send_sync(sync_http(), settings, row, secrets)
    with session_scope() as session:
        return record(session, settings, row, result, utcnow())


def deliver_due() -> dict[str, int]:
    """Claim due deliveries in batches and send them concurrently over one pooled client."""
    from app.core.aio import run

    settings = get_settings()
    counts: dict[str, int] = defaultdict(int)
    deadline = time.monotonic() + settings.poll_budget.total_seconds()
    while time.monotonic() < deadline:
        now = utcnow()
        with session_scope() as session:
            rows = repo.claim(session, now, now + settings.webhook_lease, settings.webhook_batch_size)
            if not rows:
                break
            clients = {c.id: c for c in session.query(Client).filter(Client.id.in_({r.client_id for r in rows}))}
            secrets = {cid: client_secrets(c, now) for cid, c in clients.items()}
        results = run(_send_batch(settings, rows, secrets))
        with session_scope() as session:
            finished = utcnow()
            for row, result in zip(rows, results, strict=True):
                counts[record(session, settings, row, result, finished)] += 1
        if len(rows) < settings.webhook_batch_size:
            break
    return dict(counts)


async def _send_batch(settings: Settings, rows: Any, secrets: dict[str, list[str]]) -> list[AttemptResult]:
    from app.core.aio import webhook_client

    http = webhook_client()
    limit = asyncio.Semaphore(settings.poll_concurrency)

    async def one(row: Any) -> AttemptResult:
        async with limit:
            return await send_async(http, settings, row, secrets.get(row.client_id, []))

    return list(await asyncio.gather(*(one(r) for r in rows)))


def redeliver(session: Session, delivery_ids: list[str]) -> int:
    now = utcnow()
    count = repo.reopen(session, delivery_ids, now)
    for delivery_id in delivery_ids:
        enqueue(session, DELIVER_TASK, delivery_id)
    return count
