from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Response
from fastapi.sse import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool

from app.clients.models import Client
from app.core.boundary import CheckedRoute
from app.core.db import open_session, read_session
from app.core.deps import ClientDep, SessionDep, finish_reading
from app.core.errors import NotFound, ValidationFailed, as_problem, problem_responses
from app.core.responses import model_json
from app.jobs import repository as repo
from app.jobs import service, stream, waiting
from app.jobs.schemas import (
    JobBatchCreate,
    JobBatchOut,
    JobBatchResult,
    JobCreate,
    JobEventList,
    JobEventOut,
    JobList,
    JobOut,
)
from app.jobs.states import TERMINAL, JobStatus
from app.jobs.views import list_owned, load_out, to_out, view_owned

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], route_class=CheckedRoute)


@router.post(
    "",
    status_code=202,
    response_model=JobOut,
    operation_id="createJob",
    summary="Submit a generation job",
    responses={
        200: {"model": JobOut, "description": "With `Prefer: wait=N`: the job ended within N seconds"},
        **problem_responses(401, 409, 422, 429, 503, notes={
            409: "`idempotency_in_progress`: a request with this Idempotency-Key is running; `webhook_url_disabled`: "
            "the job's webhook URL (its own, or the client's default) answered 410 Gone and is disabled, so the job "
            "would never be notified; `detail` gives the `PATCH /v1/client` that enables it again",
        }),
    },
)
async def create_job(
    body: JobCreate,
    client: ClientDep,
    idempotency_key: Annotated[str | None, Header(
        alias="Idempotency-Key", min_length=1, max_length=255,
        description="Same key and same body: the same job again. 1-255 characters.",
    )] = None,
    prefer: Annotated[str | None, Header(
        max_length=256,
        description="`wait=N` (RFC 7240, N up to 60): answer `200` with the finished job if it ends "
        "within N seconds, else `202` as usual; `Preference-Applied: wait=N` says it was honoured.",
    )] = None,
) -> Response:
    out, headers = await run_in_threadpool(_create, body, client, idempotency_key)
    wait = preferred_wait(prefer)
    if wait is None:
        return model_json(out, 202, headers)
    headers["Preference-Applied"] = f"wait={wait}"
    if out.status in TERMINAL:  # a replayed key whose job already ended
        return model_json(out, 200, headers)
    done = await waiting.wait_until(out.id, _reader(client.id, out.id), _ended, wait)
    if done is not None and done.status in TERMINAL:
        return model_json(done, 200, headers)
    return model_json(done or out, 202, headers)


def _create(body: JobCreate, client: Client, idempotency_key: str | None) -> tuple[JobOut, dict[str, str]]:
    # The session lives and ends in this worker thread: no dependency to set up and tear
    # down on the event loop (bench-api: a tenth of POST's time went there).
    with open_session() as session:
        accepted = service.create(session, client, body, idempotency_key)
        # The answer is built inside the transaction and the commit is the last database call:
        # a client that gets an error was not charged a job, and one that gets 202 has one.
        # A new job has no artifacts and no deliveries yet: nothing to read back.
        out = load_out(session, accepted.job) if accepted.replayed else to_out(accepted.job, [])
        session.commit()
    headers = {"Location": f"/v1/jobs/{out.id}", **accepted.headers}
    if accepted.replayed:
        headers["Idempotent-Replayed"] = "true"
    return out, headers


def preferred_wait(prefer: str | None) -> int | None:
    """`wait=N` from a Prefer header (RFC 7240 section 4.3), capped at 60; None without one."""
    for preference in (prefer or "").split(","):
        name, _, value = preference.split(";")[0].strip().partition("=")
        if name.strip().lower() == "wait":
            value = value.strip().strip('"')
            return min(int(value), waiting.MAX_WAIT) if value.isdigit() else None
    return None


def _ended(job: JobOut) -> bool:
    return job.status in TERMINAL


def _reader(client_id: str, job_id: str) -> Callable[[], Awaitable[JobOut | None]]:
    async def read() -> JobOut | None:
        return await run_in_threadpool(_read_owned, client_id, job_id)

    return read


def _read_owned(client_id: str, job_id: str) -> JobOut | None:
    with read_session() as session:
        return view_owned(session, client_id, job_id)


def state_tag(job: JobOut) -> str:
    """The job's status and progress as a weak ETag: what a waiter has already seen."""
    return f'W/"{job.status.value}.{job.progress}"'


@router.post(
    "/batch",
    response_model=JobBatchOut,
    operation_id="createJobBatch",
    summary="Submit up to 100 jobs at once, each judged on its own",
    description="The body's shape is all or nothing: a malformed item (a wrong type, a missing "
    "`idempotency_key`, more than 100 items) is a 422 for the whole request and creates nothing. "
    "After that each item is accepted or refused on its own, as a `POST /v1/jobs` with its own "
    "`Idempotency-Key` would be (unknown model, bad input, unsafe webhook URL, a quota: each costs "
    "one submission of the client's rate): `data[i]` holds its status and either the job or the "
    "problem+json. Accepted jobs are committed together, then published. Send the same batch "
    "again to retry the refused items: accepted ones replay (status 200).",
    responses=problem_responses(401, 409, 422, 503),
)
def create_job_batch(body: JobBatchCreate, session: SessionDep, client: ClientDep) -> Response:
    outcomes = service.create_batch(session, client, body.jobs)
    results = []
    for outcome in outcomes:
        accepted = outcome.accepted
        if accepted is not None:
            out = load_out(session, accepted.job) if accepted.replayed else to_out(accepted.job, [])
            results.append(JobBatchResult(index=outcome.index, idempotency_key=outcome.key,
                                          status=200 if accepted.replayed else 202, job=out))
        else:
            assert outcome.error is not None
            results.append(JobBatchResult(index=outcome.index, idempotency_key=outcome.key,
                                          status=outcome.error.status, error=as_problem(outcome.error),
                                          retry_after=_retry_after(outcome.error.headers)))
    session.commit()
    created = sum(1 for r in results if r.status == 202)
    replayed = sum(1 for r in results if r.status == 200)
    batch = JobBatchOut(data=results, created=created, replayed=replayed, failed=len(results) - created - replayed)
    headers = next((o.accepted.headers for o in reversed(outcomes) if o.accepted and o.accepted.headers), {})
    return model_json(batch, 200, headers)


def _retry_after(headers: dict[str, str] | None) -> int | None:
    value = (headers or {}).get("Retry-After")
    return int(value) if value and value.isdigit() else None


@router.get(
    "",
    response_model=JobList,
    operation_id="listJobs",
    summary="List your jobs, newest first",
    responses=problem_responses(401, 422, 503),
)
def list_jobs(
    client: ClientDep,
    status: JobStatus | None = None,
    model: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(
        max_length=64, pattern=r"^job_[0-9A-Za-z]+$", description="`next_cursor` from the previous page",
    )] = None,
) -> Response:
    with read_session() as session:
        jobs = list_owned(
            session, client.id, status=status.value if status else None, model=model, limit=limit + 1,
            before_id=cursor,
        )
    page = jobs[:limit]
    return model_json(JobList(data=page, next_cursor=page[-1].id if len(jobs) > limit else None))


@router.get(
    "/{job_id}",
    response_model=JobOut,
    operation_id="getJob",
    summary="Get one job",
    responses=problem_responses(401, 404, 503),
)
async def get_job(
    job_id: str,
    client: ClientDep,
    wait: Annotated[int | None, Query(
        ge=0, le=waiting.MAX_WAIT,
        description="Long-poll: answer as soon as the job's status or progress changes, or after this "
        "many seconds (at most 60) with the job as it is. A finished job is answered at once.",
    )] = None,
    if_none_match: Annotated[str | None, Header(
        alias="If-None-Match", max_length=128,
        description="With `wait`: the `ETag` of the job you last saw; a job already different from it "
        "is answered at once (no change is missed between two waits).",
    )] = None,
) -> Response:
    read = _reader(client.id, job_id)
    if wait is None:
        out = await read()
    else:
        seen: list[str | None] = [if_none_match.strip() if if_none_match else None]

        def changed(job: JobOut) -> bool:
            tag = state_tag(job)
            if seen[0] is None:
                seen[0] = tag
            return tag != seen[0] or job.status in TERMINAL

        out = await waiting.wait_until(job_id, read, changed, wait)
    if out is None:
        raise NotFound(f"no job {job_id}")
    return model_json(out, headers={"ETag": state_tag(out)})


@router.post(
    "/{job_id}/cancel",
    response_model=JobOut,
    operation_id="cancelJob",
    summary="Cancel a job that has not finished",
    responses=problem_responses(401, 404, 409, 503),
)
def cancel_job(job_id: str, session: SessionDep, client: ClientDep) -> JobOut:
    out = load_out(session, service.cancel(session, client, job_id))
    session.commit()
    return out


@router.get(
    "/{job_id}/events",
    response_model=JobEventList,
    operation_id="listJobEvents",
    summary="The job's timeline: state changes and upstream errors",
    responses=problem_responses(401, 404, 503),
)
def list_events(
    job_id: str,
    session: SessionDep,
    client: ClientDep,
    after: Annotated[int | None, Query(ge=0, le=2**63 - 1, description="Only events with a larger id")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> JobEventList:
    service.get_owned(session, client, job_id)
    events = repo.events_for(session, job_id, after, limit)
    out = JobEventList(data=[JobEventOut.model_validate(e, from_attributes=True) for e in events])
    finish_reading(session)
    return out


async def _streamed_job(job_id: str, client: ClientDep) -> str:
    """The caller's client id, once its job is known to exist: a 404 must be answered before
    the stream's 200 goes out."""
    if await run_in_threadpool(_read_owned, client.id, job_id) is None:
        raise NotFound(f"no job {job_id}")
    return client.id


def resume_after(
    last_event_id: Annotated[str | None, Header(
        alias="Last-Event-ID", max_length=32, description="Resume after this timeline event id",
    )] = None,
    after: Annotated[int | None, Query(ge=0, le=2**63 - 1, description="Only events with a larger id")] = None,
) -> int | None:
    """Where a stream resumes: `Last-Event-ID` (sent by a reconnecting EventSource) wins over
    `after`. A dependency, so a bad value is a 422 before the stream's 200."""
    if last_event_id is None or not last_event_id.strip():
        return after
    value = last_event_id.strip()
    if not value.isdigit() or int(value) > 2**63 - 1:
        raise ValidationFailed.field("Last-Event-ID", "must be the id of a timeline event (an integer)", "invalid")
    return int(value)


@router.get(
    "/{job_id}/events/stream",
    response_class=EventSourceResponse,
    operation_id="streamJobEvents",
    summary="The job's timeline as Server-Sent Events, live, resumable with Last-Event-ID",
    description="`text/event-stream`. Each timeline event comes as an unnamed event whose `id` is the "
    "event's id and whose `data` is the event as `GET /v1/jobs/{id}/events` shows it; a reconnecting "
    "client sends `Last-Event-ID` (or `?after=`) and gets only what it missed. A named `job` event "
    "carries the job whenever its status or progress changes, and a named `end` event closes the "
    "stream once the job has ended and its whole timeline was sent. A comment line every 15 s keeps "
    "idle connections open. A stream lasts at most 60 s, then closes without `end`: reconnect with "
    "`Last-Event-ID`.",
    responses=problem_responses(401, 404, 422, 503),
)
async def stream_events(
    job_id: str,
    client_id: Annotated[str, Depends(_streamed_job)],
    after: Annotated[int | None, Depends(resume_after)],
) -> AsyncIterable[ServerSentEvent]:
    async for event in stream.timeline(client_id, job_id, after):
        yield event

