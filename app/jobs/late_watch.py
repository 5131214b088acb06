"""The late watch: a job that timed out while its upstream task was still running may
still finish upstream (the caller was charged for it). The sweeper hands such jobs a check
every `LATE_WATCH_INTERVAL` for `LATE_WATCH` after the timeout; each check polls the
upstream once. A late success or failure is written to the job's timeline, with the
upstream's result links (short-lived, as upstream links are), so support can recover
the work. The job itself stays `timed_out`: a terminal job never changes, and its one
terminal webhook was already sent."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import structlog

from app.core.clock import utcnow
from app.core.db import session_scope
from app.core.settings import get_settings
from app.jobs import repository as repo
from app.jobs.states import JobStatus, Timeline
from app.providers.base import ArtifactSource, UnreadableAnswer, UpstreamState
from app.providers.http import UpstreamError, sync_client
from app.providers.registry import UnknownModel, adapter_for, get_model

log = structlog.get_logger(__name__)


def _where(source: ArtifactSource) -> dict[str, str]:
    """Where a result lives: a plain link, or the CometAPI path that serves it."""
    if source.url:
        return {"name": source.name, "url": source.url}
    assert source.request is not None
    return {"name": source.name, "upstream_path": source.request.path}


def late_check(job_id: str) -> str:
    """Poll a watched timed-out job's upstream task once; returns what was found."""
    settings = get_settings()
    with session_scope() as session:
        job = repo.get(session, job_id)
        if job is None or job.status != JobStatus.TIMED_OUT or job.due_at is None or not job.upstream_id:
            return "skipped"
        model, upstream_id, timed_out_at = job.model, job.upstream_id, job.completed_at
    try:
        spec = get_model(model)
    except UnknownModel:  # retired: nothing can read its answers any more
        _end_watch(job_id)
        return "model_unavailable"
    adapter = adapter_for(spec)
    if not adapter.pollable:  # a synchronous family: nothing to poll, so nothing to watch
        _end_watch(job_id)
        return "not_pollable"
    try:
        result = adapter.parse_poll(spec, upstream_id, sync_client().call(adapter.build_poll(spec, upstream_id)))
    except UpstreamError as exc:  # keep watching: the next check may get through
        log.info("late_check_failed", error_code=exc.error_code, error=str(exc)[:300])
        return "upstream_error"
    except UnreadableAnswer as exc:
        log.info("late_check_failed", error=str(exc)[:300])
        return "unreadable"

    now = utcnow()
    found: tuple[Timeline, str, dict[str, Any]] | None = None
    if result.state is UpstreamState.SUCCEEDED:
        found = (Timeline.LATE_SUCCESS, "the upstream finished the task after the job timed out", {
            "upstream_status": result.raw_status,
            "outputs": [_where(o) for o in result.outputs if o.url or o.request],
        })
    elif result.state is UpstreamState.FAILED:
        found = (Timeline.LATE_FAILURE, f"the upstream failed the task after the job timed out: {result.error_message}",
                 {"upstream_status": result.raw_status, "error_code": result.error_code})
    elif timed_out_at is None or now >= timed_out_at + settings.late_watch:
        found = (Timeline.LATE_WATCH_ENDED, "the upstream had not finished the task when the late watch ended",
                 {"upstream_status": result.raw_status, "progress": result.progress})
    if found is None:
        return "still_running"
    if _end_watch(job_id, found, now):
        log.warning(found[0], upstream_status=result.raw_status)
    return found[0]


def _end_watch(
    job_id: str, finding: tuple[Timeline, str, dict[str, Any]] | None = None, now: datetime | None = None
) -> bool:
    """Stop watching, writing the finding to the timeline. Guarded: when two checks of
    one job race, only the first ends the watch and writes."""
    with session_scope() as session:
        if not repo.guarded_update(session, job_id, [JobStatus.TIMED_OUT], {"due_at": None}, due_is_set=True):
            return False
        if finding is not None:
            kind, message, data = finding
            repo.add_event(session, job_id, kind, now or utcnow(), message=message, data=data)
    return True
