"""Batched polling: each scheduler tick claims every running job whose poll is due,
polls them concurrently over one pooled client (bounded per family), and
writes the results back in bulk. No task per poll, no countdowns."""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.orm import Session

from app.core import metrics
from app.core.aio import run
from app.core.backoff import Backoff
from app.core.clock import utcnow
from app.core.db import session_scope
from app.core.queue import enqueue
from app.core.settings import Settings, get_settings
from app.core.tasks import TaskName
from app.jobs import repository as repo
from app.jobs.notify import job_changed
from app.jobs.states import ErrorSource, JobEvent, JobStatus, Timeline
from app.jobs.transitions import announce_progress, fail, move
from app.providers.base import ModelSpec, PollResult, UnreadableAnswer, UpstreamState
from app.providers.http import UpstreamError, async_client
from app.providers.registry import UnknownModel, adapter_for, get_model
from app.webhooks.repository import last_created

log = structlog.get_logger(__name__)
# Consecutive answers that can never succeed (404, 400, ...) before giving up.
MAX_HARD_POLL_ERRORS = 3


@dataclass
class Outcome:
    row: repo.PollRow
    result: PollResult | None = None
    error: UpstreamError | None = None


def poll_policy(spec: ModelSpec) -> Backoff:
    """Back off from the model's base interval toward its ceiling."""
    return Backoff(base=spec.poll_interval, factor=1.5, cap=spec.poll_interval_max)


def error_policy(spec: ModelSpec) -> Backoff:
    return Backoff(base=spec.poll_interval * 2, factor=2, cap=60.0)


Limits = dict[str, asyncio.Semaphore]


def family_limits(settings: Settings) -> Limits:
    """At most POLL_CONCURRENCY calls in flight per family, however many batches overlap."""
    return defaultdict(lambda: asyncio.Semaphore(settings.poll_concurrency))


async def _poll_rows(rows: list[Any], settings: Settings, limits: Limits | None = None) -> list[Outcome]:
    client = async_client()
    limits = family_limits(settings) if limits is None else limits

    async def one(row: Any) -> list[Outcome]:
        # gather() runs each call in its own task with a copy of the context: this binding stays local.
        structlog.contextvars.bind_contextvars(job_id=row.id, model=row.model)
        spec = get_model(row.model)
        adapter = adapter_for(spec)
        async with limits[spec.family]:
            started = time.perf_counter()
            try:
                body = await client.call(adapter.build_poll(spec, row.upstream_id))
            except UpstreamError as exc:
                metrics.upstream_call(spec.family, "poll", exc.error_code, time.perf_counter() - started)
                return [Outcome(row, error=exc)]
            metrics.upstream_call(spec.family, "poll", "ok", time.perf_counter() - started)
        try:
            return [Outcome(row, result=adapter.parse_poll(spec, row.upstream_id, body))]
        except UnreadableAnswer as exc:
            return [Outcome(row, error=_unreadable(exc))]

    async def batch(chunk: list[Any]) -> list[Outcome]:
        spec = get_model(chunk[0].model)
        adapter = adapter_for(spec)
        ids = [r.upstream_id for r in chunk]
        async with limits[spec.family]:
            started = time.perf_counter()
            try:
                body = await client.call(adapter.build_batch_poll(spec, ids))
            except UpstreamError as exc:
                metrics.upstream_call(spec.family, "batch_poll", exc.error_code, time.perf_counter() - started)
                return [Outcome(r, error=exc) for r in chunk]
            metrics.upstream_call(spec.family, "batch_poll", "ok", time.perf_counter() - started)
        try:
            results = adapter.parse_batch_poll(spec, ids, body)
        except UnreadableAnswer as exc:
            return [Outcome(r, error=_unreadable(exc)) for r in chunk]
        missing = UpstreamError("the task was missing from the batch answer", code="missing_in_batch", retryable=True)
        return [Outcome(r, result=results[r.upstream_id]) if r.upstream_id in results else Outcome(r, error=missing)
                for r in chunk]

    calls = []
    by_family: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for row in rows:
        spec = get_model(row.model)
        adapter = adapter_for(spec)
        if adapter.batch_poll_size > 0:
            by_family[(adapter.family, adapter.batch_key(spec))].append(row)
        else:
            calls.append(one(row))
    for family_rows in by_family.values():
        size = adapter_for(get_model(family_rows[0].model)).batch_poll_size
        calls += [batch(family_rows[i : i + size]) for i in range(0, len(family_rows), size)]
    return [outcome for group in await asyncio.gather(*calls) for outcome in group]


def _unreadable(exc: Exception) -> UpstreamError:
    return UpstreamError(f"unreadable poll answer: {exc}", code="bad_response", retryable=True)


def poll_due() -> dict[str, int]:
    """`poll_tick` for callers without an event loop of their own."""
    return run(poll_tick(get_settings()))


async def poll_tick(settings: Settings) -> dict[str, int]:
    """One tick: claim, poll and write back batches until nothing is due (or the tick's
    budget is spent). Database work runs in threads while the next batch's HTTP calls
    are in flight, so the poller spends its time waiting on the upstream. `budget_spent`
    in the answer says work was left for the next tick."""
    stats: dict[str, int] = defaultdict(int)
    await _pipeline(settings, stats)
    return dict(stats)


def _claim_batch(settings: Settings) -> list[repo.PollRow]:
    now = utcnow()
    with session_scope() as session:
        rows = list(repo.claim_due_polls(session, now, now + settings.poll_lease, settings.poll_batch_size))
    claimed_at = utcnow()
    for row in rows:
        if row.claimed_due_at is not None:
            metrics.POLL_LAG.observe(max(0.0, (claimed_at - row.claimed_due_at).total_seconds()))
    return rows


def _in_thread(loop: asyncio.AbstractEventLoop, fn: Any, *args: Any) -> asyncio.Future[Any]:
    """Run `fn` in the default executor with this task's context (its log fields)."""
    return loop.run_in_executor(None, contextvars.copy_context().run, fn, *args)


async def _pipeline(settings: Settings, stats: dict[str, int]) -> None:
    loop = asyncio.get_running_loop()
    budget_end = time.monotonic() + settings.poll_budget.total_seconds()
    limits = family_limits(settings)
    polling: list[asyncio.Task[None]] = []
    writes: list[asyncio.Future[Counter[str]]] = []

    async def poll_and_write(known: list[Any], retired: list[Any]) -> None:
        outcomes = await _poll_rows(known, settings, limits) if known else []
        writes.append(_in_thread(loop, _write_back, outcomes, retired, settings))

    claiming = _in_thread(loop, _claim_batch, settings)
    while True:
        rows = await claiming
        if not rows:
            break
        full = len(rows) == settings.poll_batch_size
        more = full and time.monotonic() < budget_end
        if full and not more:
            stats["budget_spent"] = 1
        if more:
            # Claimed sets are disjoint (each claim pushes due_at to its lease), so the next
            # batch can be claimed while this one is being polled.
            claiming = _in_thread(loop, _claim_batch, settings)
        known, retired = [], []
        for row in rows:
            try:
                get_model(row.model)
                known.append(row)
            except UnknownModel:
                retired.append(row)
        stats["polled"] += len(known)
        # Two batches overlap, so the tail of one does not leave the connections idle;
        # the family limits keep the calls in flight bounded all the same.
        polling.append(asyncio.create_task(poll_and_write(known, retired)))
        if len(polling) >= 2:
            await polling.pop(0)
        if not more:
            break
    await asyncio.gather(*polling)
    for counts in await asyncio.gather(*writes):
        stats.update(counts)


@dataclass
class _WriteBack:
    """What one batch of poll outcomes changes, gathered before it is written."""

    now: datetime
    schedules: list[dict[str, Any]] = field(default_factory=list)
    changes: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    progressed: list[str] = field(default_factory=list)
    stats: Counter[str] = field(default_factory=Counter)


def _write_back(outcomes: list[Outcome], retired: list[repo.PollRow], settings: Settings) -> Counter[str]:
    batch = _WriteBack(utcnow())
    with session_scope() as session:
        for row in retired:
            fail(session, row.id, expected=[JobStatus.RUNNING], now=batch.now, code="model_unavailable",
                 message=f"model {row.model} is no longer configured", source=ErrorSource.VALIDATION)
        for outcome in outcomes:
            spec = get_model(outcome.row.model)
            if outcome.error is not None:
                _poll_failed(session, batch, outcome.row, spec, outcome.error)
            elif outcome.result is not None:
                _poll_answered(session, batch, outcome.row, spec, outcome.result, settings)
        repo.apply_poll_updates(session, batch.schedules, batch.changes)
        # Waiters hear of new progress; event streams also of new timeline rows (upstream errors).
        job_changed(session, set(batch.progressed) | {event["job_id"] for event in batch.events})
        repo.add_events(session, batch.events)
        _progress_events(session, batch.progressed, batch.now)
    return batch.stats


def _poll_failed(session: Session, batch: _WriteBack, row: repo.PollRow, spec: ModelSpec, err: UpstreamError) -> None:
    batch.stats["errors"] += 1
    now = batch.now
    batch.events.append({
        "job_id": row.id, "type": Timeline.UPSTREAM_ERROR.value, "status": None, "message": err.message[:500],
        "data": {"stage": "poll", **err.as_event()}, "created_at": now,
    })
    errors = row.poll_errors + 1
    if not err.retryable and errors >= MAX_HARD_POLL_ERRORS:
        fail(session, row.id, expected=[JobStatus.RUNNING], now=now, code="upstream_poll_failed",
             message=f"polling {row.upstream_id} kept failing: {err.message}", source=ErrorSource.UPSTREAM)
        return
    retry_after = None if err.retry_after is None else max(1.0, err.retry_after)
    due = now + timedelta(seconds=error_policy(spec).delay(errors, retry_after))
    _still_running(batch, row, spec, row.progress, row.upstream_status, errors, due)


def _poll_answered(
    session: Session, batch: _WriteBack, row: repo.PollRow, spec: ModelSpec, result: PollResult, settings: Settings
) -> None:
    now = batch.now
    if result.state is UpstreamState.SUCCEEDED:
        batch.stats["succeeded"] += 1
        if move(
            session, row.id, expected=[JobStatus.RUNNING], to=JobStatus.COLLECTING, now=now,
            values={"progress": 100, "upstream_status": result.raw_status, "upstream_payload": result.payload,
                    "due_at": now + settings.queue_nudge_after, "timeout_at": None, "lease_token": None,
                    "nudges": 0},
        ):
            enqueue(session, TaskName.COLLECT_JOB, row.id)
    elif result.state is UpstreamState.FAILED:
        batch.stats["failed"] += 1
        fail(
            session, row.id, expected=[JobStatus.RUNNING], now=now, code=result.error_code or "generation_failed",
            message=result.error_message or f"upstream reported {result.raw_status}", source=ErrorSource.UPSTREAM,
            values={"upstream_status": result.raw_status, "upstream_payload": result.payload},
        )
    else:
        progress = row.progress if result.progress is None else max(row.progress, result.progress)
        due = now + timedelta(seconds=poll_policy(spec).delay(row.poll_count))  # this poll counted at its claim
        _still_running(batch, row, spec, progress, result.raw_status, 0, due)


def _still_running(
    batch: _WriteBack, row: repo.PollRow, spec: ModelSpec, progress: int, raw_status: str | None, errors: int,
    due: datetime,
) -> None:
    """The next poll always; the job's row only when the upstream told us something new
    (more progress, which also moves the stall deadline, or another status)."""
    now = batch.now
    progressed = progress != row.progress
    batch.schedules.append({
        "b_id": row.id, "b_due_at": due, "b_poll_errors": errors,
        "b_stall_at": now + timedelta(seconds=spec.stall_deadline) if progressed else row.stall_at,
    })
    if progressed or raw_status != row.upstream_status:
        batch.changes.append({
            "b_id": row.id, "b_progress": progress, "b_upstream_status": raw_status,
            "b_progress_at": now if progressed else row.progress_at, "b_updated_at": now,
        })
    if progressed:
        batch.progressed.append(row.id)


def _progress_events(session: Session, job_ids: list[str], now: datetime) -> None:
    """`job.progress` for subscribers of still-running jobs (a cancel may have won the row),
    at most one per job per COMETJOBS_WEBHOOK_PROGRESS_INTERVAL. One query finds the
    subscribers among the jobs that progressed; nobody subscribed, nothing more is read."""
    subscribed = repo.progress_subscribers(session, job_ids)
    if not subscribed:
        return
    last = last_created(session, subscribed, JobEvent.PROGRESS)
    interval = get_settings().webhook_progress_interval
    for job_id in subscribed:
        if job_id not in last or now - last[job_id] >= interval:
            job = repo.get(session, job_id)
            if job is not None:
                announce_progress(session, job, now)
