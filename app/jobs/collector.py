"""Copy a finished job's results into our storage, then mark it succeeded.

The collector holds a lease (token + expiry, renewed while bytes flow). The
artifact rows and the move to `succeeded` commit together, guarded by the
lease, so a copy that is interrupted or loses its lease records nothing; the
sweeper re-drives it and the next attempt overwrites the same keys.
"""

from __future__ import annotations

import mimetypes
import time
from datetime import timedelta
from typing import Any

import structlog

from app.artifacts import repository as artifacts
from app.artifacts.retention import expiry_for
from app.clients.models import Client
from app.core import metrics
from app.core.backoff import Backoff
from app.core.clock import utcnow
from app.core.db import session_scope
from app.core.ids import new_id
from app.core.retry import with_db_retry
from app.core.settings import Settings, get_settings
from app.jobs import repository as repo
from app.jobs.models import Job
from app.jobs.states import ErrorSource, JobStatus, Timeline
from app.jobs.transitions import fail, move
from app.providers.base import ArtifactSource, UnreadableAnswer
from app.providers.http import UpstreamError, sync_client
from app.providers.registry import UnknownModel, adapter_for, get_model
from app.storage.backends import StorageError, get_storage
from app.storage.copy import CopyError, StoredObject, copy_stream

log = structlog.get_logger(__name__)


class LeaseLost(Exception):
    pass


def _claim(job_id: str, token: str) -> Job | None:
    now = utcnow()
    with session_scope() as session:
        if not repo.claim_collect(session, job_id, token, now, now + get_settings().collect_lease):
            return None
        return repo.get(session, job_id)


def _heartbeat(job_id: str, token: str) -> None:
    now = utcnow()
    with session_scope() as session:
        if not repo.extend_lease(session, job_id, JobStatus.COLLECTING, token, now + get_settings().collect_lease):
            raise LeaseLost(job_id)


def _extension(source: ArtifactSource, content_type: str) -> str:
    guess = mimetypes.guess_extension(content_type.split(";")[0].strip()) if content_type else None
    return {".jpe": ".jpg", ".jpeg": ".jpg"}.get(guess or "", guess or ".bin")


def _copy_one(job: Job, source: ArtifactSource, token: str) -> StoredObject | None:
    settings = get_settings()
    storage = get_storage()
    if source.data is not None:
        content_type = source.content_type or "application/octet-stream"
        key = f"{job.storage_prefix}/{source.name}{_extension(source, content_type)}"
        inline = copy_stream(storage, key, (source.data,), content_type, expected_size=len(source.data))
        metrics.STORAGE_BYTES.labels(backend=storage.scheme).inc(inline.size_bytes)
        return inline
    started = time.perf_counter()
    last_beat = [time.monotonic()]

    def beat(_size: int) -> None:
        if time.monotonic() - last_beat[0] >= settings.collect_lease.total_seconds() / 4:
            _heartbeat(job.id, token)
            last_beat[0] = time.monotonic()

    try:
        with sync_client().stream(source.request, source.url) as response:
            content_type = (response.headers.get("content-type") or source.content_type or "application/octet-stream")
            content_type = content_type.split(";")[0].strip()
            length = response.headers.get("content-length")
            encoded = response.headers.get("content-encoding", "identity") != "identity"
            expected = int(length) if length and length.isdigit() and not encoded else None
            key = f"{job.storage_prefix}/{source.name}{_extension(source, content_type)}"
            stored = copy_stream(
                storage, key, response.iter_bytes(settings.download_chunk_bytes or None), content_type,
                expected_size=expected, on_progress=beat,
            )
    except UpstreamError as exc:
        # An optional result the upstream does not have (Sora's spritesheet) is no upstream error.
        skipped = source.optional and exc.status in (400, 404, 405, 410, 415, 422)
        metrics.upstream_call(job.family, "content", "skipped" if skipped else exc.error_code,
                              time.perf_counter() - started)
        if skipped:
            return None
        raise
    metrics.upstream_call(job.family, "content", "ok", time.perf_counter() - started)
    metrics.STORAGE_BYTES.labels(backend=storage.scheme).inc(stored.size_bytes)
    metrics.STORAGE_COPY_SECONDS.labels(backend=storage.scheme).observe(time.perf_counter() - started)
    return stored


def collect(job_id: str) -> str:
    settings = get_settings()
    token = new_id("lease")
    job = _claim(job_id, token)
    if job is None:
        return "skipped"
    structlog.contextvars.bind_contextvars(job_id=job_id, model=job.model)
    try:
        spec = get_model(job.model)
        sources = adapter_for(spec).parse_poll(spec, job.upstream_id or "", job.upstream_payload or {}).outputs
    except UnknownModel:
        return _give_up(job, token, "model_unavailable", f"model {job.model} is no longer configured",
                        ErrorSource.VALIDATION)
    except UnreadableAnswer as exc:
        return _give_up(job, token, "upstream_result_unavailable", f"the stored answer cannot be read: {exc}",
                        ErrorSource.UPSTREAM)
    stored: list[tuple[ArtifactSource, StoredObject]] = []
    try:
        for source in sources:
            obj = _copy_with_retries(job, source, token, settings)
            if obj is not None:
                stored.append((source, obj))
    except LeaseLost:
        _discard(stored)
        return "lease_lost"
    except (UpstreamError, CopyError, StorageError, OSError) as exc:
        _discard(stored)
        return _retry_or_fail(job, token, exc, settings)
    if not stored:
        return _retry_or_fail(job, token, CopyError("the upstream offered no result to copy"), settings)
    # The objects are stored; a database blip must delay recording them, not waste them.
    return with_db_retry(_finish, settings.collect_lease.total_seconds() * 0.8)(job, token, stored)


DOWNLOAD_TRIES = 4
DOWNLOAD_RETRY = Backoff(base=0.6, factor=2)


def _copy_with_retries(job: Job, source: ArtifactSource, token: str, settings: Settings) -> StoredObject | None:
    """Retry one download a few times in place (429s, 5xx, cut connections) before
    giving up the whole attempt: a flaky upstream should not cost every artifact again.
    A wait never exceeds a quarter of the lease, so the lease outlives it."""
    for attempt in range(1, DOWNLOAD_TRIES + 1):
        try:
            return _copy_one(job, source, token)
        except (UpstreamError, CopyError) as exc:
            retryable = isinstance(exc, CopyError) or exc.retryable
            if not retryable or attempt == DOWNLOAD_TRIES:
                raise
            retry_after = exc.retry_after if isinstance(exc, UpstreamError) else None
            time.sleep(min(DOWNLOAD_RETRY.delay(attempt, retry_after), settings.collect_lease.total_seconds() / 4))
    return None


def _finish(job: Job, token: str, stored: list[tuple[ArtifactSource, StoredObject]]) -> str:
    now = utcnow()
    with session_scope() as session:
        client = session.get(Client, job.client_id)
        expires = expiry_for(client, now)
        for source, obj in stored:
            artifacts.add(
                session, job_id=job.id, name=source.name, storage_key=obj.key, content_type=obj.content_type,
                size_bytes=obj.size_bytes, sha256=obj.sha256, now=now, expires_at=expires,
            )
        session.flush()
        moved = move(
            session, job.id, expected=[JobStatus.COLLECTING], to=JobStatus.SUCCEEDED, now=now,
            lease_token=token, values={"progress": 100, "upstream_payload": _compact(job.upstream_payload)},
            message=f"stored {len(stored)} artifact(s)",
            data={"artifacts": [{"name": s.name, "size_bytes": o.size_bytes} for s, o in stored]},
        )
        if not moved:
            session.rollback()
    if not moved:
        _discard(stored)
        return "superseded"
    return "succeeded"


_KEEP_CHARS = 2048


def _compact(payload: Any) -> Any:
    """The upstream answer without inline results (b64 images can be megabytes): once the
    bytes are in storage, the row keeps only what support needs to read."""
    if isinstance(payload, dict):
        return {k: _compact(v) for k, v in payload.items()}
    if isinstance(payload, list):
        return [_compact(v) for v in payload]
    if isinstance(payload, str) and len(payload) > _KEEP_CHARS:
        return f"<{len(payload)} characters, stored as an artifact>"
    return payload


def _discard(stored: list[tuple[ArtifactSource, StoredObject]]) -> None:
    storage = get_storage()
    for _source, obj in stored:
        try:
            storage.delete(obj.key)
        except Exception as exc:  # leftovers are harmless: keys are unguessable and unreferenced
            log.warning("discard_failed", key=obj.key, error=repr(exc))


def _give_up(job: Job, token: str, code: str, message: str, source: ErrorSource) -> str:
    with session_scope() as session:
        fail(session, job.id, expected=[JobStatus.COLLECTING], now=utcnow(), lease_token=token,
             code=code, message=message, source=source)
    return "failed"


def retry_policy(settings: Settings) -> Backoff:
    return Backoff(base=settings.collect_retry_base.total_seconds(), cap=settings.collect_lease.total_seconds())


def _retry_or_fail(job: Job, token: str, exc: Exception, settings: Settings) -> str:
    now = utcnow()
    upstream = exc if isinstance(exc, UpstreamError) else None
    message = (upstream.message if upstream else str(exc)) or type(exc).__name__
    with session_scope() as session:
        repo.add_event(
            session, job.id, Timeline.COLLECT_ERROR, now, message=message[:500],
            data={"attempt": job.collect_attempts, "error": type(exc).__name__,
                  **(upstream.as_event() if upstream else {})},
        )
        if (upstream and not upstream.retryable) or job.collect_attempts >= settings.collect_max_attempts:
            fail(
                session, job.id, expected=[JobStatus.COLLECTING], now=now, lease_token=token,
                code="upstream_result_unavailable" if upstream else "storage_copy_failed",
                source=ErrorSource.UPSTREAM if upstream else ErrorSource.STORAGE,
                message=f"could not copy the result after {job.collect_attempts} attempt(s): {message}",
            )
            return "failed"
        delay = retry_policy(settings).delay(job.collect_attempts)
        repo.release_lease(session, job.id, JobStatus.COLLECTING, token, now, now + timedelta(seconds=delay))
    return "retry"
