"""`cometjobs smoke --live`: the cheapest documented job of each family, run against the
real CometAPI through the whole pipeline, with a table of what happened.

It is for operators, never for CI: it spends money. It runs the pipeline in this
process (validation and job rows in the configured database, then the dispatcher's
round, `submit`, the batched poller, `collect` and the sweeper called directly, its queue messages kept in
memory instead of sent to the broker), so it needs the database and storage a
deployment uses and nothing else. It is safe beside running workers: every step is
leased, so whichever process gets to a job first does that step.

A hidden `--emulator` switch runs the same thing against a CometAPI emulator (never
against CometAPI itself), for tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from app.core.settings import PLACEHOLDER_SECRETS, Settings

CONFIRMATION = "--live"
COMETAPI_HOST = "https://api.cometapi.com"

# Per family, the cheapest job built only from documented calls and fields (for the
# unverified families, the cheapest job there is: a smoke run is how they get checked).
SMOKE_JOBS: dict[str, tuple[str, dict[str, Any]]] = {
    # the create page's advice for a first request: the shortest, smallest clip
    "sora": ("sora-2", {"prompt": "A paper airplane glides across a desk.", "seconds": 4, "size": "1280x720"}),
    "veo": ("veo3-fast", {"prompt": "A paper airplane glides across a desk.", "size": "16x9"}),
    # an image costs less than any Kling video
    "kling": ("kling-image", {"prompt": "A paper boat floating on calm water at sunrise.", "n": 1,
                              "aspect_ratio": "1:1"}),
    # the 5-second image to video, from the image CometAPI's own example uses
    "runway": ("runway-gen4-turbo", {
        "image": "https://cdn.britannica.com/70/234870-050-D4D024BB/Orange-colored-cat-yawns-displaying-teeth.jpg",
        "prompt": "The cat yawns", "duration": 5}),
    "midjourney": ("midjourney", {"prompt": "a paper boat floating on calm water at sunrise --v 6.1"}),
    "suno": ("suno-v4", {"gpt_description_prompt": "a short calm piano piece about a paper boat"}),
    "flux": ("flux-dev", {"prompt": "A paper boat floating on calm water at sunrise.", "width": 512, "height": 512}),
    "replicate": ("black-forest-labs/flux-schnell", {"input": {"prompt": "A paper boat on calm water",
                                                               "num_outputs": 1}}),
    "bria": ("bria-generate", {"prompt": "A paper boat floating on calm water at sunrise.", "aspect_ratio": "1:1"}),
    "seedream": ("doubao-seedream-4-0", {"prompt": "A paper boat floating on calm water at sunrise.", "size": "1K"}),
    "gpt_image": ("gpt-image-1", {"prompt": "A paper boat floating on calm water at sunrise.", "size": "1024x1024",
                                  "quality": "low"}),
    "seedance": ("doubao-seedance-1-0-lite-t2v", {"prompt": "A paper boat floating on calm water",
                                                  "duration": 5, "resolution": "480p"}),
    "minimax": ("minimax-t2v-01-director", {"prompt": "A paper boat floating on calm water", "duration": 6}),
}


class Refused(Exception):
    """Why the smoke test will not run."""


@dataclass
class Row:
    family: str
    model: str
    outcome: str
    seconds: float
    upstream: str


def check_allowed(settings: Settings, live: bool, emulator: bool) -> None:
    key = settings.cometapi_key.get_secret_value().strip() if settings.cometapi_key else ""
    on_cometapi = settings.cometapi_base_url.rstrip("/") == COMETAPI_HOST
    if emulator:
        if on_cometapi:
            raise Refused("--emulator runs against an emulator only, and COMETJOBS_COMETAPI_BASE_URL is CometAPI's")
        return
    if not live:
        raise Refused(f"this runs paid jobs on the real CometAPI; say so with {CONFIRMATION}")
    if key.lower() in PLACEHOLDER_SECRETS:
        raise Refused("COMETJOBS_COMETAPI_KEY is not set to a real CometAPI key")


def families(wanted: Sequence[str]) -> list[str]:
    unknown = sorted(set(wanted) - set(SMOKE_JOBS))
    if unknown:
        raise Refused(f"unknown family {', '.join(unknown)}; choose from {', '.join(sorted(SMOKE_JOBS))}")
    return list(wanted) or sorted(SMOKE_JOBS)


def run(chosen: list[str], timeout: float, tick: float = 2.0, say: Callable[[str], None] = print) -> list[Row]:
    """Create one job per family, drive the pipeline until all are done (or `timeout`
    seconds pass), and return a row per family."""
    from app.clients.service import create as create_client
    from app.core import queue
    from app.core.db import session_scope
    from app.core.errors import AppError
    from app.core.tasks import TaskName
    from app.jobs import service
    from app.jobs.collector import collect
    from app.jobs.dispatch import dispatch
    from app.jobs.poller import poll_due
    from app.jobs.schemas import JobCreate
    from app.jobs.submit import submit
    from app.jobs.sweeper import sweep

    outbox = _Outbox()
    previous = queue.install(outbox)
    try:
        with session_scope() as session:
            client = create_client(session, f"smoke-{datetime.now(UTC):%Y%m%dT%H%M%S}").client
        jobs: dict[str, str] = {}
        refused: dict[str, Row] = {}
        for family in chosen:
            model, job_input = SMOKE_JOBS[family]
            try:
                with session_scope() as session:
                    jobs[family] = service.create(session, client, JobCreate(model=model, input=job_input), None).job.id
            except AppError as exc:  # e.g. the model was retired from the catalogue
                refused[family] = Row(family, model, f"refused: {exc.detail or exc.code}"[:90], 0.0, "-")
                continue
            say(f"{family}: {model} as {jobs[family]}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not _all_done(jobs.values()):
            dispatch()  # fair dispatch grants the slots (a no-op under FIFO)
            for task, job_id in outbox.take():
                if task is TaskName.SUBMIT_JOB:
                    submit(job_id)
                elif task is TaskName.COLLECT_JOB:
                    collect(job_id)
            poll_due()
            sweep()
            if not outbox.pending:
                time.sleep(tick)  # a live upstream takes seconds to minutes: no point asking more often
        rows = refused | {family: _row(family, job_id) for family, job_id in jobs.items()}
        return [rows[family] for family in chosen]
    finally:
        queue.install(previous)


class _Outbox:
    """The queue messages this process would have sent, handled here instead."""

    def __init__(self) -> None:
        self.pending: list[tuple[Any, str]] = []

    def publish(self, task: Any, args: Sequence[Any]) -> None:
        if args:
            self.pending.append((task, str(args[0])))

    def take(self) -> list[tuple[Any, str]]:
        taken, self.pending = self.pending, []
        return taken


def _all_done(job_ids: Any) -> bool:
    from app.core.db import session_scope
    from app.jobs import repository
    from app.jobs.states import TERMINAL, JobStatus

    with session_scope() as session:
        jobs = [repository.get(session, job_id) for job_id in job_ids]
        return all(job is not None and JobStatus(job.status) in TERMINAL for job in jobs)


def _row(family: str, job_id: str) -> Row:
    from app.artifacts import repository as artifacts
    from app.core.db import session_scope
    from app.jobs import repository

    with session_scope() as session:
        job = repository.get(session, job_id)
        assert job is not None  # made by this run
        stored = artifacts.for_jobs(session, [job_id])[job_id]
        events = list(repository.events_for(session, job_id, None, 1000))
    request_ids = [e.data.get("request_id") for e in events if e.type == "upstream_error" and e.data.get("request_id")]
    if job.status == "succeeded":
        outcome = f"succeeded ({len(stored)} artifact{'s' if len(stored) != 1 else ''})"
    elif job.status in ("failed", "canceled", "timed_out"):
        outcome = f"{job.status}: {job.error_code} {job.error_message or ''}".strip()
    else:
        outcome = f"still {job.status} (timed out waiting)"
    ended = job.completed_at or datetime.now(UTC)
    upstream = " / ".join(filter(None, [job.upstream_id, *request_ids[-1:]])) or "-"
    return Row(family, job.model, outcome[:90], round((ended - job.created_at).total_seconds(), 1), upstream)


def table(rows: list[Row]) -> str:
    header = ("family", "model", "outcome", "seconds", "upstream id / request id")
    cells = [header] + [(r.family, r.model, r.outcome, f"{r.seconds:.1f}", r.upstream) for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip()
             for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)
