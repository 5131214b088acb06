"""The ops console's pages (server-rendered, Jinja2) and its two actions, cancel and
redeliver, which call the jobs' and webhooks' services like the API does."""

from __future__ import annotations

import json
from collections.abc import AsyncIterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

import structlog
from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.sse import EventSourceResponse, ServerSentEvent
from fastapi.templating import Jinja2Templates

from app.artifacts import repository as artifacts_repo
from app.clients.models import Client
from app.clients.service import authenticate
from app.console import auth, repository
from app.console.auth import ConsoleUser
from app.core.clock import utcnow
from app.core.deps import SessionDep
from app.core.errors import Conflict, NotFound
from app.jobs import service as jobs_service
from app.jobs import stream
from app.jobs.endpoints import resume_after
from app.jobs.models import Job
from app.jobs.states import TERMINAL
from app.webhooks import repository as webhooks_repo
from app.webhooks import service as webhooks_service

log = structlog.get_logger("cometjobs.console")
router = APIRouter(prefix="/console", include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")

# The job timeline stream the job page follows (static/console.js, followTimeline): the
# session-authenticated twin of GET /v1/jobs/{id}/events/stream, whose bearer key a
# browser's EventSource cannot send.
TIMELINE_STREAM: str | None = "/console/jobs/{job_id}/events/stream"

# Nothing on a console page comes from elsewhere (no CDN, no inline script); previews of
# artifacts may be redirects to signed S3 URLs, hence any origin for images and media.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src * data:; "
    "media-src *; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
NOTICES = {
    "canceled": "The job was canceled.",
    "redelivered": "The delivery was queued to be sent again.",
    "job_terminal": "The job had already finished: nothing to cancel.",
    "delivery_pending": "That delivery is still pending: it is sent on its own schedule.",
    "webhook_url_disabled": "That URL answered 410 Gone and is disabled; the client must enable it again "
    "(PATCH /v1/client) before a redelivery.",
    "not_found": "No such job or delivery.",
}
STATES = (*repository.ACTIVE_STATES, *repository.TERMINAL_STATES)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    s = int(seconds)
    if s >= 86400:
        return f"{s // 86400}d {s % 86400 // 3600}h"
    if s >= 3600:
        return f"{s // 3600}h {s % 3600 // 60}m"
    if s >= 60:
        return f"{s // 60}m {s % 60}s"
    return f"{s}s"


def _when(value: datetime | None) -> str:
    if value is None:
        return "–"
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


templates.env.filters.update(age=_age, when=_when, pretty=_pretty)


def _page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    notice = request.query_params.get("notice")
    context.setdefault("notice", NOTICES.get(notice or ""))
    context.setdefault("notice_kind", "ok" if notice in ("canceled", "redelivered") else "error")
    response = templates.TemplateResponse(request, name, context, status_code=status)
    response.headers.update(SECURITY_HEADERS)
    return response


def _user(request: Request, session: SessionDep) -> ConsoleUser:
    return auth.current_user(request, session)


UserDep = Annotated[ConsoleUser, Depends(_user)]
Field = Annotated[str | None, Form()]


def _back(url: str, notice: str | None = None) -> RedirectResponse:
    # 303: the browser follows a POST's answer with a GET (a reload does not re-post).
    return RedirectResponse(f"{url}?{urlencode({'notice': notice})}" if notice else url, status_code=303)


# -- signing in ---------------------------------------------------------------------------


def _safe_next(target: str | None) -> str:
    # Only a console page: an open redirect would lend our sign-in to phishing.
    if target and target.startswith("/console") and not target.startswith("//") and "\\" not in target:
        return target
    return "/console"


def _login_page(request: Request, status: int = 200, error: str | None = None, next_url: str = "/console") -> Response:
    token, new = auth.login_token(request)
    response = _page(request, "login.html", status, csrf_token=token, error=error, next_url=_safe_next(next_url))
    if new:
        auth.remember_login_token(response, token)
    return response


@router.get("/login")
def login_form(request: Request, session: SessionDep, next: str | None = None) -> Response:
    try:
        auth.current_user(request, session)
        return RedirectResponse(_safe_next(next), status_code=303)
    except auth.NotSignedIn:
        return _login_page(request, next_url=next or "/console")


@router.post("/login")
def login(
    request: Request, session: SessionDep, api_key: Field = None, csrf_token: Field = None, next: Field = None,
) -> Response:
    auth.check_login_token(request, csrf_token)
    client = authenticate(session, (api_key or "").strip()) if api_key else None
    if client is None or not client.is_admin:
        log.warning("console_sign_in_refused", reason="not an admin key" if client else "unknown key")
        return _login_page(request, 401, "That is not a valid admin API key.", next or "/console")
    log.info("console_sign_in", client_id=client.id, client=client.name)
    response = RedirectResponse(_safe_next(next), status_code=303)
    auth.start_session(response, client)
    return response


@router.post("/logout")
def logout(user: UserDep, csrf_token: Field = None) -> Response:
    auth.check_csrf(user, csrf_token)
    response = RedirectResponse("/console/login", status_code=303)
    auth.end_session(response)
    return response


# -- overview -----------------------------------------------------------------------------


def _overview(session: SessionDep) -> dict[str, Any]:
    from app.health.metrics import queue_depths

    now = datetime.now(UTC)
    data = repository.overview(session, now)
    data["queues"] = queue_depths()
    data["generated_at"] = now.isoformat()
    return data


@router.get("")
def overview(request: Request, session: SessionDep, user: UserDep) -> Response:
    return _page(request, "overview.html", user=user, active="overview", data=_overview(session), active_states=repository.ACTIVE_STATES,
                 terminal_states=repository.TERMINAL_STATES)


@router.get("/overview.json")
def overview_json(session: SessionDep, _user: UserDep) -> Response:
    return JSONResponse(_overview(session), headers={"Cache-Control": "no-store"})


# -- jobs ---------------------------------------------------------------------------------


def _moment(name: str, value: str | None, problems: list[str]) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        problems.append(f"{name}: not a date and time ({value[:40]!r}); ignored")
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


Filter = Annotated[str | None, Query(max_length=200)]


@router.get("/jobs")
def jobs(
    request: Request, session: SessionDep, user: UserDep, client: Filter = None, model: Filter = None,
    status: Filter = None, code: Filter = None, since: Filter = None, until: Filter = None, q: Filter = None,
    before: Filter = None,
) -> Response:
    problems: list[str] = []
    if status and status not in STATES:
        problems.append(f"status: {status[:40]!r} is not a job status; ignored")
        status = None
    wanted = repository.JobFilter(
        client=client or None, model=model or None, status=status or None, code=code or None, q=q or None,
        before=before or None,
        since=_moment("since", since, problems), until=_moment("until", until, problems),
    )
    rows, next_cursor = repository.jobs(session, wanted)
    next_url = f"/console/jobs?{urlencode({**wanted.as_query(), 'before': next_cursor})}" if next_cursor else None
    return _page(request, "jobs.html", user=user, active="jobs", rows=rows, wanted=wanted, next_url=next_url, problems=problems,
                 states=STATES, models=repository.models(session),
                 clients=sorted({row["client"].name for row in repository.clients(session, utcnow())}))


def _job_or_404(session: SessionDep, job_id: str) -> tuple[Job, Client]:
    job = session.get(Job, job_id)
    owner = session.get(Client, job.client_id) if job is not None else None
    if job is None or owner is None:
        raise NotFound(f"no job {job_id}")
    return job, owner


@router.get("/jobs/{job_id}")
def job_page(request: Request, job_id: str, session: SessionDep, user: UserDep) -> Response:
    try:
        job, owner = _job_or_404(session, job_id)
    except NotFound:
        return _page(request, "missing.html", 404, user=user, what=f"job {job_id}")
    artifacts = artifacts_repo.for_jobs(session, [job.id]).get(job.id, [])
    timeline = repository.timeline(session, job.id)
    return _page(
        request, "job.html", user=user, active="jobs", job=job, owner=owner, artifacts=artifacts,
        timeline=timeline, polls=repository.polls(session, job.id, timeline),
        deliveries=repository.deliveries(session, job.id),
        can_cancel=job.status not in {s.value for s in TERMINAL},
        stream_url=TIMELINE_STREAM.format(job_id=job.id) if TIMELINE_STREAM else None,
    )


@router.get("/jobs/{job_id}/events/stream", response_class=EventSourceResponse)
async def timeline_stream(
    job_id: str, _user: UserDep, after: Annotated[int | None, Depends(resume_after)],
) -> AsyncIterable[ServerSentEvent]:
    async for event in stream.timeline(None, job_id, after):
        yield event


@router.get("/jobs/{job_id}/artifacts/{name}")
def artifact(job_id: str, name: str, request: Request, session: SessionDep, _user: UserDep) -> Response:
    """The public download endpoint's answer (Range, signed S3 redirects, 410), on behalf of
    the job's owner."""
    from app.artifacts.endpoints import get_artifact

    _job, owner = _job_or_404(session, job_id)
    return get_artifact(job_id, name, request, session, owner)


@router.post("/jobs/{job_id}/cancel")
def cancel(job_id: str, session: SessionDep, user: UserDep, csrf_token: Field = None) -> Response:
    auth.check_csrf(user, csrf_token)
    page = f"/console/jobs/{job_id}"
    try:
        _job, owner = _job_or_404(session, job_id)
        jobs_service.cancel(session, owner, job_id)
    except NotFound:
        return _back("/console/jobs", "not_found")
    except Conflict as exc:
        session.rollback()
        return _back(page, exc.code)
    session.commit()
    log.info("console_cancel", job_id=job_id, by=user.client.name)
    return _back(page, "canceled")


@router.post("/jobs/{job_id}/deliveries/{delivery_id}/redeliver")
def redeliver(job_id: str, delivery_id: str, session: SessionDep, user: UserDep, csrf_token: Field = None) -> Response:
    auth.check_csrf(user, csrf_token)
    page = f"/console/jobs/{job_id}"
    delivery = webhooks_repo.get(session, delivery_id)
    owner = session.get(Client, delivery.client_id) if delivery is not None else None
    if delivery is None or delivery.job_id != job_id or owner is None:
        return _back(page, "not_found")
    if not webhooks_service.redeliver(session, [delivery_id]):
        # The service skipped it; say why.
        session.rollback()
        return _back(page, "webhook_url_disabled" if delivery.url in owner.disabled_webhook_urls
                     else "delivery_pending")
    session.commit()
    log.info("console_redeliver", job_id=job_id, delivery_id=delivery_id, by=user.client.name)
    return _back(page, "redelivered")


# -- clients ------------------------------------------------------------------------------


@router.get("/clients")
def clients(request: Request, session: SessionDep, user: UserDep) -> Response:
    rows = repository.clients(session, utcnow())
    return _page(request, "clients.html", user=user, active="clients", rows=rows, states=STATES)
