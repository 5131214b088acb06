"""Webhook events: created with the state change that caused them (same
transaction), delivered at least once, in order per job, retried on the
configured schedule, then dead and redeliverable by hand."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import structlog
from pydantic import TypeAdapter
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.clients.models import Client
from app.core import metrics
from app.core.aio import run
from app.core.backoff import Backoff
from app.core.clock import utcnow
from app.core.db import session_scope
from app.core.errors import Conflict, FieldError
from app.core.http_headers import retry_after_seconds
from app.core.ids import new_id
from app.core.queue import enqueue
from app.core.settings import Settings, get_settings
from app.core.tasks import TaskName
from app.jobs.states import JobEvent
from app.webhooks import repository as repo
from app.webhooks import signing, ssrf
from app.webhooks.transport import WebhookClient, shared_client

log = structlog.get_logger(__name__)
STALE = "stale"


@dataclass(frozen=True)
class Outgoing:
    """A claimed delivery: what to send, and the claim (attempt number and lease)."""

    id: str
    job_id: str
    client_id: str
    url: str
    payload: str
    event_type: str
    attempt: int
    lease: datetime


@dataclass
class AttemptResult:
    status_code: int | None
    latency_ms: int
    body: str | None
    error: str | None
    retry_after: float | None = None
    started_at: datetime = field(default_factory=utcnow)

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


# A body stays under Express's default raw-body limit (100 kB): metadata is at most
# 64 KiB (settings) and the rest of a job is a few KiB, so only a long input (prompts
# run to 32,000 characters) can push it over; then `data.input` is left out.
MAX_BODY_BYTES = 96 * 1024
_TIMESTAMP: TypeAdapter[datetime] = TypeAdapter(datetime)


def timestamp(value: datetime) -> str:
    """RFC 3339 in UTC with `Z`, as every timestamp in the API and in `data` is written."""
    return str(_TIMESTAMP.dump_python(value.astimezone(UTC), mode="json"))


def envelope(event_id: str, event_type: str, seq: int, now: datetime, data: dict[str, Any]) -> str:
    """The event's body: compact UTF-8 JSON, at most MAX_BODY_BYTES."""
    event: dict[str, Any] = {"id": event_id, "type": event_type, "seq": seq, "created_at": timestamp(now),
                             "data": data}
    body = _compact(event)
    if len(body.encode()) > MAX_BODY_BYTES and data.get("input"):
        event |= {"data": {**data, "input": {}}, "omitted": ["input"]}
        body = _compact(event)
    return body


def _compact(event: dict[str, Any]) -> str:
    body = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
    try:
        body.encode()
    except UnicodeEncodeError:  # a lone surrogate (from an upstream's text) has no UTF-8: escape it
        body = json.dumps(event, separators=(",", ":"))
    return body


def create_event(
    session: Session, *, job_id: str, client: Client, url: str | None, event_type: str,
    data: dict[str, Any], now: datetime,
) -> str | None:
    """Insert one event's delivery row; the send is nudged after commit."""
    if not url:
        return None
    delivery_id = new_id("msg")
    event_id = new_id("evt")
    status = repo.DISABLED if url in client.disabled_webhook_urls else repo.PENDING
    if status == repo.PENDING and event_type != JobEvent.RUNNING:
        # A progress snapshot never sent is stale once a newer one, or the final one, exists.
        repo.supersede_unsent(session, job_id, JobEvent.PROGRESS, now)
    seq = repo.next_seq(session, job_id)
    body = envelope(event_id, event_type, seq, now, data)
    repo.insert_delivery(
        session,
        {
            "id": delivery_id, "job_id": job_id, "client_id": client.id,
            "seq": seq, "event_id": event_id,
            "event_type": event_type, "url": url, "payload": body, "status": status,
            "attempts": 0, "next_attempt_at": now if status == repo.PENDING else None,
            "created_at": now, "updated_at": now,
        },
    )
    if status == repo.PENDING:
        enqueue(session, TaskName.DELIVER_WEBHOOK, delivery_id)
    return delivery_id


def url_disabled(client: Client, url: str, what: str, other_ways: str = "") -> Conflict:
    """`409 webhook_url_disabled`, with the request that enables `url` again and changes
    nothing else (setting `webhook_url` would also replace the client's default URL)."""
    others = sorted(client.disabled_webhook_urls - {url})
    fix = json.dumps({"disabled_webhook_urls": others})
    message = f"{url} is disabled (410 Gone)" + (f"; {other_ways}" if other_ways else "")
    return Conflict(
        f"{what} {url} answered 410 Gone and is disabled for this client. To send to it again, "
        f"remove it from the disabled list: PATCH /v1/client {fix}",
        code="webhook_url_disabled",
        errors=[FieldError(field="webhook_url", message=message, code="webhook_url_disabled")],
    )


def retry_policy(settings: Settings) -> Backoff:
    return Backoff(schedule=tuple(settings.webhook_retry_schedule))


def next_attempt_delay(settings: Settings, attempts_made: int, retry_after: float | None) -> float | None:
    """Seconds until the next try after `attempts_made` attempts, or None when out of tries."""
    policy = retry_policy(settings)
    return None if policy.exhausted(attempts_made) else policy.delay(attempts_made, retry_after)


async def _read_capped(response: aiohttp.ClientResponse, cap: int) -> bytes:
    # Whatever is left unread is never read: the connection is closed instead of reused.
    data = bytearray()
    while len(data) < cap:
        chunk = await response.content.read(cap - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data)


def _text(data: bytes) -> str | None:
    # Postgres text cannot hold NUL.
    return data.decode("utf-8", "replace").replace("\x00", "") if data else None


async def send(http: WebhookClient, settings: Settings, item: Outgoing, secrets: list[str]) -> AttemptResult:
    """One attempt: signed now, 2xx within the timeout or it failed. Never raises."""
    started_at = utcnow()
    started = time.perf_counter()
    timeout = settings.webhook_timeout.total_seconds()

    def failed(error: str) -> AttemptResult:
        return AttemptResult(None, int((time.perf_counter() - started) * 1000), None, error[:500], None, started_at)

    try:
        ssrf.precheck(item.url, settings.webhook_allowed_cidrs)
        headers = signing.headers(secrets, item.id, started_at, item.payload)
        headers["accept-encoding"] = "identity"
        # The session's total timeout (`webhook_timeout`) covers connect, send and the read.
        async with http.post(item.url, data=item.payload.encode(), headers=headers) as response:
            body = await _read_capped(response, settings.webhook_response_body_cap)
    except ssrf.UnsafeURL as exc:
        return failed(f"refused: {exc}")
    except TimeoutError:
        return failed(f"timed out after {timeout:g} s")
    except aiohttp.ClientError as exc:
        return failed(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
    except Exception as exc:  # a failed attempt whatever broke; the batch carries on
        log.warning("webhook_send_error", delivery_id=item.id, error=repr(exc))
        return failed(f"{type(exc).__name__}: {exc}")
    latency = int((time.perf_counter() - started) * 1000)
    code = response.status
    error = None
    if 300 <= code < 400:
        error = f"redirect {code} to {response.headers.get('location', '?')} (redirects are not followed)"
    elif not 200 <= code < 300:
        error = f"HTTP {code}"
    retry_after = None if error is None else retry_after_seconds(response.headers.get("retry-after"), utcnow())
    return AttemptResult(code, latency, _text(body), error, retry_after, started_at)


# 4xx answers that may succeed later (RFC 9110 and 6585: timeout, conflict, too early,
# too many requests); any other 4xx says the receiver will never take this event.
RETRYABLE_4XX = frozenset({408, 409, 425, 429})


def refused_for_good(status_code: int | None) -> bool:
    return status_code is not None and 400 <= status_code < 500 and status_code not in RETRYABLE_4XX


def _next_state(settings: Settings, item: Outgoing, result: AttemptResult, now: datetime) -> tuple[str, datetime | None]:
    if result.ok:
        return repo.DELIVERED, None
    if result.status_code == 410:
        return repo.DISABLED, None
    if refused_for_good(result.status_code):
        return repo.FAILED, None
    delay = next_attempt_delay(settings, item.attempt, result.retry_after)
    if delay is None:
        return repo.DEAD, None
    return repo.PENDING, now + timedelta(seconds=delay)


def record(
    session: Session, settings: Settings, finished: Sequence[tuple[Outgoing, AttemptResult]], now: datetime
) -> list[str]:
    """Store the attempts and move each delivery on; returns their new statuses, or
    "stale" where the delivery moved on meanwhile (canceled, redelivered, lease lost)."""
    updates = []
    metrics.webhook_attempts([(r.status_code, r.error, r.latency_ms) for _item, r in finished])
    for item, result in finished:
        status, next_at = _next_state(settings, item, result, now)
        updates.append({
            "id": item.id, "attempt": item.attempt, "lease": item.lease, "status": status, "next": next_at,
            "code": result.status_code, "error": result.error, "delivered": now if status == repo.DELIVERED else None,
            "attempt_id": new_id("att"), "started_at": result.started_at, "latency_ms": result.latency_ms,
            "body": result.body,
        })
    kept = repo.record_outcomes(session, updates, now)
    outcomes: list[str] = []
    settled: list[str] = []
    debug = logging.getLogger(__name__).isEnabledFor(logging.DEBUG)
    for (item, result), update in zip(finished, updates, strict=True):
        outcome = str(update["status"]) if item.id in kept else STALE
        if outcome == repo.DISABLED:
            _disable_url(session, item.client_id, item.url, now)
        if outcome in repo.SETTLED:
            settled.append(item.job_id)
        outcomes.append(outcome)
        # A first-time success is routine (its attempt row and the metrics have it); every
        # failure and every recovery gets a line. Checking the level first skips the log
        # pipeline's cost in the common case.
        routine = outcome == repo.DELIVERED and item.attempt == 1
        level = logging.DEBUG if routine else logging.WARNING if outcome == repo.DEAD else logging.INFO
        if level > logging.DEBUG or debug:
            log.log(
                level, "webhook_attempt", delivery_id=item.id, job_id=item.job_id, model=_model_of(item.payload),
                event_type=item.event_type, attempt=item.attempt, status_code=result.status_code,
                outcome=outcome, latency_ms=result.latency_ms, error=result.error,
            )
    metrics.webhook_settled(session, outcomes)
    # The job's next event was waiting for this one.
    for next_id in repo.next_pending_for_jobs(session, settled):
        enqueue(session, TaskName.DELIVER_WEBHOOK, next_id)
    return outcomes


def _model_of(payload: str) -> str | None:
    try:
        data = json.loads(payload).get("data") or {}
    except (ValueError, AttributeError):
        return None
    return data.get("model") if isinstance(data, dict) else None


def _disable_url(session: Session, client_id: str, url: str, now: datetime) -> None:
    """410 Gone: nothing more goes to this URL for this client until it is enabled again."""
    client = session.get(Client, client_id, with_for_update=True, populate_existing=True)
    if client is None:
        return
    settings = dict(client.settings or {})
    settings["disabled_webhook_urls"] = sorted({*settings.get("disabled_webhook_urls", []), url})
    client.settings = settings
    if url == client.webhook_url:
        client.webhook_disabled_at = now
    stopped = repo.disable_pending_for_url(session, client_id, url, now)
    session.flush()
    log.warning("webhook_endpoint_disabled", client_id=client_id, url=url, reason="410 Gone",
                pending_disabled=stopped, default_url=url == client.webhook_url)


def _claim(
    settings: Settings, limit: int, delivery_id: str | None = None
) -> tuple[list[Outgoing], dict[str, list[str]]]:
    now = utcnow()
    lease = now + settings.webhook_lease
    with session_scope() as session:
        rows = repo.claim(session, now, lease, limit, delivery_id)
        if not rows:
            return [], {}
        clients = session.scalars(select(Client).where(Client.id.in_({r.client_id for r in rows})))
        secrets = {c.id: client_secrets(c, now) for c in clients}
    items = [
        Outgoing(r.id, r.job_id, r.client_id, r.url, r.payload, r.event_type, r.attempts, lease) for r in rows
    ]
    return items, secrets


def _record(settings: Settings, finished: Sequence[tuple[Outgoing, AttemptResult]]) -> list[str]:
    with session_scope() as session:
        return record(session, settings, finished, utcnow())


def _release(items: Sequence[Outgoing]) -> None:
    with session_scope() as session:
        repo.release(session, [{"id": i.id, "attempt": i.attempt, "lease": i.lease} for i in items], utcnow())


def deliver_one(delivery_id: str) -> str:
    """Send one delivery now if it is due and first in line for its job."""
    settings = get_settings()
    items, secrets = _claim(settings, 1, delivery_id)
    if not items:
        return "not_due"
    item = items[0]

    async def go() -> AttemptResult:
        return await send(shared_client(), settings, item, secrets.get(item.client_id, []))

    return _record(settings, [(item, run(go()))])[0]


def deliver_due() -> dict[str, int]:
    """Send every due delivery, keeping up to `webhook_concurrency` in flight, for at
    most `webhook_budget`. Claims and records run in a thread, so sending never pauses."""
    return run(deliver_tick(get_settings()))


async def deliver_tick(settings: Settings) -> dict[str, int]:
    """One tick: send what is due for at most `webhook_budget`."""
    return await _Pump(settings).run()


class _Pump:
    """Claims take up to a batch at a time and keep it in hand while up to
    `webhook_concurrency` sends run; outcomes are recorded in groups, one
    transaction each, at least every 0.2 s. Claims and records run in a thread,
    at most one of each at a time, while the loop goes on sending. A claimed
    delivery still waiting for a slot after half its lease is handed back rather
    than sent late (its lease could lapse mid-send and another worker send it too)."""

    RECORD_EVERY = 0.2

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.http = shared_client()
        self.capacity, self.batch = settings.webhook_concurrency, settings.webhook_batch_size
        # The next claim runs while the last one is being sent.
        self.window = max(self.capacity, self.batch) + self.batch
        self.deadline = time.monotonic() + settings.webhook_budget.total_seconds()
        self.patience = settings.webhook_lease.total_seconds() / 2
        self.counts: dict[str, int] = defaultdict(int)
        self.queue: deque[tuple[Outgoing, list[str], float]] = deque()
        self.finished: list[tuple[Outgoing, AttemptResult]] = []
        self.sending: set[asyncio.Task[None]] = set()
        self.claiming: asyncio.Task[None] | None = None
        self.recording: asyncio.Task[None] | None = None
        self.wake = asyncio.Event()
        self.exhausted = False
        self.oldest = 0.0

    async def run(self) -> dict[str, int]:
        try:
            while True:
                self.wake.clear()
                self._reap()
                now = time.monotonic()
                self._claim_more(now)
                self._record_finished(now)
                await self._hand_back_late(now)
                self._start_sends()
                if self._done(now):
                    if not self.exhausted:
                        self.counts["budget_spent"] = 1
                    return dict(self.counts)
                try:
                    async with asyncio.timeout(0.05):
                        await self.wake.wait()
                except TimeoutError:
                    pass
        finally:
            # Only on an error: claims not recorded lapse with their lease and are retried then.
            for task in (*self.sending, self.claiming, self.recording):
                if task is not None:
                    task.cancel()

    def _reap(self) -> None:
        """Forget a finished claim or record (re-raising its error, if any)."""
        if self.claiming is not None and self.claiming.done():
            self.claiming.result()
            self.claiming = None
        if self.recording is not None and self.recording.done():
            self.recording.result()
            self.recording = None

    def _claim_more(self, now: float) -> None:
        room = min(self.window - len(self.queue) - len(self.sending), self.batch)
        if self.claiming is None and not self.exhausted and room >= self.batch and now < self.deadline:
            self.claiming = asyncio.create_task(self._take(room))

    def _record_finished(self, now: float) -> None:
        due = len(self.finished) >= self.window or not self.sending or now - self.oldest > self.RECORD_EVERY
        if self.recording is None and self.finished and due:
            group, self.finished = self.finished, []
            self.recording = asyncio.create_task(self._store(group))

    async def _hand_back_late(self, now: float) -> None:
        late = []
        while self.queue and now - self.queue[0][2] > self.patience:
            late.append(self.queue.popleft()[0])
        if late:  # the slots are taken by slow receivers: leave the rest to other workers
            await asyncio.to_thread(_release, late)
            self.exhausted = True

    def _start_sends(self) -> None:
        while self.queue and len(self.sending) < self.capacity:
            item, secrets, _claimed = self.queue.popleft()
            task = asyncio.create_task(self._send(item, secrets))
            self.sending.add(task)
            task.add_done_callback(self.sending.discard)

    def _done(self, now: float) -> bool:
        idle = not (self.queue or self.sending or self.finished or self.claiming or self.recording)
        return idle and (self.exhausted or now >= self.deadline)

    async def _send(self, item: Outgoing, secrets: list[str]) -> None:
        result = await send(self.http, self.settings, item, secrets)
        if not self.finished:
            self.oldest = time.monotonic()
        self.finished.append((item, result))
        self.wake.set()

    async def _take(self, limit: int) -> None:
        items, secrets = await asyncio.to_thread(_claim, self.settings, limit)
        self.exhausted = self.exhausted or len(items) < limit
        claimed = time.monotonic()
        self.queue.extend((item, secrets.get(item.client_id, []), claimed) for item in items)
        self.wake.set()

    async def _store(self, group: list[tuple[Outgoing, AttemptResult]]) -> None:
        for outcome in await asyncio.to_thread(_record, self.settings, group):
            self.counts[outcome] += 1
        self.wake.set()


def redeliver(session: Session, delivery_ids: Sequence[str]) -> list[str]:
    """Send finished deliveries again (same `webhook-id`, same body, freshly signed).
    A delivery still pending, or whose URL is disabled by a 410, is skipped."""
    targets = repo.targets(session, delivery_ids)
    clients = {
        c.id: c for c in session.scalars(select(Client).where(Client.id.in_({t.client_id for t in targets})))
    }
    allowed = [t.id for t in targets if t.client_id in clients and t.url not in clients[t.client_id].disabled_webhook_urls]
    reopened = repo.reopen(session, allowed, utcnow())
    for delivery_id in reopened:
        enqueue(session, TaskName.DELIVER_WEBHOOK, delivery_id)
    return reopened
