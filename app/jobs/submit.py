"""Submit a job upstream, at most once.

The job is leased in `submitting` (with a token and an expiry) before the
create call. If this worker dies during the call, the lease expires and the
sweeper fails the job with `upstream_submit_unknown` instead of resubmitting:
a second create call could bill twice. Errors the upstream answered with a
retryable status (nothing was created) go back to `queued` with backoff.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import httpx
import structlog

from app.artifacts import links, uploads
from app.core import metrics
from app.core.backoff import Backoff, jittered
from app.core.clock import utcnow
from app.core.db import session_scope
from app.core.ids import new_id
from app.core.queue import enqueue
from app.core.retry import with_db_retry
from app.core.settings import Settings, get_settings
from app.core.tasks import TaskName
from app.jobs import dispatch
from app.jobs import repository as repo
from app.jobs.models import Job
from app.jobs.states import ErrorSource, JobStatus, Timeline
from app.jobs.transitions import fail, move
from app.providers.base import InputFile, ModelSpec, PollResult, UnreadableAnswer, UpstreamState
from app.providers.http import UpstreamError, sync_client
from app.providers.registry import UnknownModel, adapter_for, get_model
from app.storage.backends import get_storage
from app.webhooks import ssrf

log = structlog.get_logger(__name__)


class InputUnavailable(Exception):
    pass


def retry_policy(settings: Settings) -> Backoff:
    return Backoff(base=settings.submit_retry_base.total_seconds(), cap=settings.submit_retry_cap.total_seconds())


def first_poll_at(spec: ModelSpec, now: datetime) -> datetime:
    return now + timedelta(seconds=jittered(spec.poll_first_delay))


@contextmanager
def _resolved_files(pairs: list[tuple[str, str]], client_id: str, settings: Settings) -> Iterator[list[InputFile]]:
    files: list[InputFile] = []
    for field, ref in pairs:
        if ref.startswith("upl_"):
            with session_scope() as session:
                upload = uploads.get_for_client(session, client_id, ref)
            if upload is None:
                raise InputUnavailable(f"{field}: upload {ref} no longer exists")
            data = b"".join(get_storage().read(upload.storage_key))
            files.append(InputFile(field, upload.filename, upload.content_type, partial(io.BytesIO, data)))
        else:
            data, content_type = _fetch_reference(ref, settings)
            name = ref.rsplit("/", 1)[-1].split("?")[0] or "reference"
            files.append(InputFile(field, name, content_type, partial(io.BytesIO, data)))
    yield files


def _linked_uploads(pairs: list[tuple[str, str]], client_id: str, settings: Settings) -> list[InputFile]:
    """Uploads the upstream fetches itself: signed https links to our API (adapter.input_links)."""
    if pairs and not links.https_available(settings):
        raise InputUnavailable("COMETJOBS_PUBLIC_BASE_URL is not https; the upstream takes uploads only as https links")
    files = []
    for field, ref in pairs:
        with session_scope() as session:
            upload = uploads.get_for_client(session, client_id, ref)
        if upload is None:
            raise InputUnavailable(f"{field}: upload {ref} no longer exists")
        key = upload.storage_key
        files.append(InputFile(field, upload.filename, upload.content_type,
                               partial(_read_upload, key),
                               url=links.signed_url(upload.id, utcnow(), settings)))
    return files


def _read_upload(key: str) -> io.BytesIO:
    return io.BytesIO(b"".join(get_storage().read(key)))


def _fetch_reference(url: str, settings: Settings) -> tuple[bytes, str]:
    try:
        ssrf.check_at_send(url, settings.webhook_allowed_cidrs)
        with httpx.Client(timeout=30, follow_redirects=False) as http, http.stream("GET", url) as response:
            if response.status_code != 200:
                raise InputUnavailable(f"input_reference: {url} answered HTTP {response.status_code}")
            data = b""
            for chunk in response.iter_bytes():
                data += chunk
                if len(data) > settings.max_upload_bytes:
                    raise InputUnavailable(f"input_reference: larger than {settings.max_upload_bytes} bytes")
    except ssrf.UnsafeURL as exc:
        raise InputUnavailable(f"input_reference: {exc}") from None
    except httpx.HTTPError as exc:
        raise InputUnavailable(f"input_reference: cannot fetch {url}: {type(exc).__name__}") from None
    sniffed = uploads.sniff_image(data)
    if sniffed is None:
        raise InputUnavailable("input_reference: the URL did not return a PNG, JPEG or WebP image")
    return data, sniffed[0]


def submit(job_id: str) -> str:
    settings = get_settings()
    now = utcnow()
    token = new_id("lease")
    with session_scope() as session:
        job = repo.get(session, job_id)
        if job is None or job.status != JobStatus.QUEUED:
            return "skipped"
        # No "not yet due" check here: only the dispatcher's grant (or the sweeper's nudge of a
        # granted job) sends this, once any backoff has passed. Without a slot, no create call.
        claimed = move(
            session, job_id, expected=[JobStatus.QUEUED], to=JobStatus.SUBMITTING, now=now,
            values={
                "lease_token": token,
                "due_at": now + settings.submit_lease,
                "submit_attempts": Job.submit_attempts + 1,
                "nudges": 0,
            },
            where=[Job.slot_at.is_not(None)],
        )
        job = repo.get(session, job_id) if claimed else None
        if job is None:
            return "skipped"
        parent = repo.get(session, job.parent_job_id) if job.parent_job_id else None
    structlog.contextvars.bind_contextvars(job_id=job_id, model=job.model)
    try:
        spec = get_model(job.model)
    except UnknownModel:
        return _fail(job, token, "model_unavailable", f"model {job.model} is no longer configured",
                     ErrorSource.VALIDATION)
    adapter = adapter_for(spec)
    started = time.perf_counter()
    try:
        with _resolved_files(adapter.input_files(spec, job.input), job.client_id, settings) as files:
            files += _linked_uploads(adapter.input_links(spec, job.input), job.client_id, settings)
            request = adapter.build_create(spec, job.input, files, parent)
            _cover_call(job_id, token, request, settings)
            body = sync_client().call(request)
        created = adapter.parse_create(spec, body)
    except InputUnavailable as exc:
        return _fail(job, token, "input_unavailable", str(exc), ErrorSource.VALIDATION)
    except UpstreamError as exc:
        metrics.upstream_call(spec.family, "create", exc.error_code, time.perf_counter() - started)
        return with_db_retry(_upstream_error, _write_window(settings))(job, token, exc, settings)
    except UnreadableAnswer as exc:
        metrics.upstream_call(spec.family, "create", "bad_response", time.perf_counter() - started)
        return _fail(
            job, token, "upstream_submit_unknown",
            f"the create call answered but its response could not be read ({exc}); not resubmitted",
            ErrorSource.UPSTREAM,
        )
    metrics.upstream_call(spec.family, "create", "ok", time.perf_counter() - started)
    # The upstream task exists now; only this process knows its id until it is written.
    accepted = with_db_retry(_accepted, _write_window(settings))
    return accepted(job, token, spec, created.upstream_id, created.immediate, body)


def _cover_call(job_id: str, token: str, request: Any, settings: Settings) -> None:
    """A create call that declares its own, longer timeout (synchronous image models) gets a
    lease that outlives it; otherwise the sweeper would judge a slow call a dead worker.
    (Calls on the default timeout are covered by SUBMIT_LEASE > UPSTREAM_READ_TIMEOUT.)"""
    if request.timeout is None:
        return
    longest = request.timeout + settings.upstream_connect_timeout.total_seconds() + 10
    if longest <= settings.submit_lease.total_seconds():
        return
    with session_scope() as session:
        repo.guarded_update(
            session, job_id, [JobStatus.SUBMITTING], {"due_at": utcnow() + timedelta(seconds=longest)},
            lease_token=token,
        )


def _write_window(settings: Settings) -> float:
    """Keep retrying a write-back for most of the lease: past it the sweeper judges the job."""
    return max(1.0, settings.submit_lease.total_seconds() * 0.8)


def _accepted(job: Job, token: str, spec: Any, upstream_id: str, immediate: PollResult | None, body: Any) -> str:
    now = utcnow()
    with session_scope() as session:
        common = {"upstream_id": upstream_id, "submitted_at": now, "lease_token": None}
        if immediate is not None and immediate.state is UpstreamState.SUCCEEDED:
            moved = move(
                session, job.id, expected=[JobStatus.SUBMITTING], to=JobStatus.COLLECTING, now=now,
                lease_token=token, message=f"upstream {upstream_id} answered with the result",
                values={**common, "progress": 100, "upstream_status": immediate.raw_status,
                        "upstream_payload": body if isinstance(body, dict) else {"data": body},
                        "due_at": now + get_settings().queue_nudge_after, "timeout_at": None},
            )
            if moved:
                enqueue(session, TaskName.COLLECT_JOB, job.id)
        elif immediate is not None and immediate.state is UpstreamState.FAILED:
            moved = fail(
                session, job.id, expected=[JobStatus.SUBMITTING], now=now, lease_token=token,
                code=immediate.error_code or "generation_failed",
                message=immediate.error_message or "the upstream reported a failure",
                source=ErrorSource.UPSTREAM, values={**common, "upstream_status": immediate.raw_status},
            )
        else:
            moved = move(
                session, job.id, expected=[JobStatus.SUBMITTING], to=JobStatus.RUNNING, now=now, lease_token=token,
                message=f"submitted as {upstream_id}",
                values={**common, "upstream_status": (body or {}).get("status") if isinstance(body, dict) else None,
                        "due_at": None, "progress_at": now, "timeout_at": job.deadline_at},
            )
            if moved:
                repo.schedule_polls(session, job.id, first_poll_at(spec, now),
                                    now + timedelta(seconds=spec.stall_deadline))
        if get_settings().dispatch == "fair":
            dispatch.created(session, job.model, now)
        metrics.QUEUE_WAIT.labels(client=job.client_id).observe(max(0.0, (now - job.created_at).total_seconds()))
        if not moved:
            # Canceled (or judged lost) while the call was in flight: keep the orphan on record.
            repo.add_event(
                session, job.id, Timeline.UPSTREAM_ORPHAN, now,
                message=f"upstream task {upstream_id} was created after the job left submitting",
                data={"upstream_id": upstream_id},
            )
            return "orphaned"
    return "submitted"


def _upstream_error(job: Job, token: str, exc: UpstreamError, settings: Settings) -> str:
    now = utcnow()
    with session_scope() as session:
        repo.add_event(session, job.id, Timeline.UPSTREAM_ERROR, now, message=exc.message,
                       data={"stage": "submit", **exc.as_event()})
        if not exc.certain_not_processed:
            fail(
                session, job.id, expected=[JobStatus.SUBMITTING], now=now, lease_token=token,
                code="upstream_submit_unknown", source=ErrorSource.UPSTREAM,
                message=f"the create call's outcome is unknown ({exc.message}); "
                "not resubmitted, to avoid a duplicate charge",
            )
            return "failed"
        fair = settings.dispatch == "fair"
        if exc.status == 429 and fair:
            # Throttled: nothing was created, and the upstream said it is full. The model's
            # concurrency halves, the job gives its slot back and waits for another; a throttle
            # is not an attempt: only the queue deadline ends a job that keeps meeting 429s.
            concurrency = dispatch.throttled(session, job.model, now)
            delay = retry_policy(settings).delay(1, exc.retry_after)
            move(
                session, job.id, expected=[JobStatus.SUBMITTING], to=JobStatus.QUEUED, now=now, lease_token=token,
                values={"due_at": now + timedelta(seconds=delay), "lease_token": None, "slot_at": None,
                        "submit_attempts": Job.submit_attempts - 1},
                message=f"throttled by the upstream (429): {job.model} now takes {concurrency:g} at a time; "
                f"waiting for a slot",
            )
            return "throttled"
        if exc.retryable and job.submit_attempts < settings.submit_max_attempts:
            delay = retry_policy(settings).delay(job.submit_attempts, exc.retry_after)
            # Fair dispatch: the slot goes back and the retry waits its turn for another.
            move(
                session, job.id, expected=[JobStatus.SUBMITTING], to=JobStatus.QUEUED, now=now, lease_token=token,
                values={"due_at": now + timedelta(seconds=delay), "lease_token": None,
                        **({"slot_at": None} if fair else {})},
                message=f"create call failed ({exc.error_code}); retrying in {delay:.1f}s",
            )
            return "retry"
        fail(
            session, job.id, expected=[JobStatus.SUBMITTING], now=now, lease_token=token,
            code=exc.code or exc.error_code, message=exc.message, source=ErrorSource.UPSTREAM,
        )
    return "failed"


def _fail(job: Job, token: str, code: str, message: str, source: ErrorSource) -> str:
    with session_scope() as session:
        fail(session, job.id, expected=[JobStatus.SUBMITTING], now=utcnow(), lease_token=token,
             code=code, message=message, source=source)
    return "failed"
