"""The in-process pipeline layer: the real pipeline functions (`submit`, `poll_due`,
`collect`, `sweep`, `late_check`) against the real test database, with the edges
replaced — a recorded publisher instead of the broker, a scripted CometAPI behind
the clients' own `call(req)` interface, and a clock the test moves.

Nothing of ours is mocked: only what lies outside the process (the broker and the
upstream) and the passage of time.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from app.core.tasks import TaskName
from app.providers.base import UpstreamRequest
from app.providers.http import UpstreamError


@dataclass
class RecordingPublisher:
    """Keeps every published message instead of sending it."""

    sent: list[tuple[TaskName, tuple[Any, ...]]] = field(default_factory=list)
    fail: bool = False
    # Messages "waiting" in every queue, as a Redis broker would report them (None: unknown).
    backlog: int | None = None

    def waiting(self, _task: TaskName) -> int | None:
        return self.backlog

    def publish(self, task: TaskName, args: Sequence[Any]) -> None:
        if self.fail:
            raise ConnectionError("broker down (recorded publisher)")
        self.sent.append((task, tuple(args)))

    def of(self, task: TaskName) -> list[Any]:
        """The first argument of every message of `task`, in order."""
        return [args[0] for name, args in self.sent if name is task]

    def clear(self) -> None:
        self.sent.clear()


class FrozenClock:
    """`utcnow()` for the pipeline: stands still until the test moves it. It starts at the
    real time, so webhook signatures (whose timestamp must be recent) still verify."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


Handler = Callable[[UpstreamRequest, re.Match[str]], Any]


@dataclass
class Call:
    method: str
    path: str
    request: UpstreamRequest | None
    url: str | None = None


class _Streamed:
    def __init__(self, data: bytes, headers: dict[str, str]) -> None:
        self.data = data
        self.headers = headers

    def iter_bytes(self, chunk_size: int | None = None) -> Iterator[bytes]:
        size = chunk_size or 64 * 1024
        for start in range(0, len(self.data), size):
            yield self.data[start : start + size]


class FakeUpstream:
    """CometAPI as a Python object. Routes map (method, path regex) to a handler that
    returns the JSON body, returns bytes (for downloads) or raises `UpstreamError`.
    Every call is recorded. The same object serves the synchronous clients and, via
    `.aio`, the batched poller."""

    def __init__(self) -> None:
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self.calls: list[Call] = []
        self.aio = _AsyncFacade(self)

    def route(self, method: str, pattern: str, handler: Handler | Any) -> FakeUpstream:
        """Newer routes win. A handler that is not callable is the answer itself."""
        fn: Handler = handler if callable(handler) else (lambda _req, _m, body=handler: body)
        self.routes.insert(0, (method, re.compile(pattern + "$"), fn))
        return self

    def _answer(self, method: str, path: str, req: UpstreamRequest) -> Any:
        for route_method, pattern, handler in self.routes:
            match = pattern.match(path)
            if route_method == method and match:
                return handler(req, match)
        raise UpstreamError(f"no route for {method} {path}", status=404, retryable=False)

    def call(self, req: UpstreamRequest) -> Any:
        self.calls.append(Call(req.method, req.path, req))
        return self._answer(req.method, req.path, req)

    @contextmanager
    def stream(self, req: UpstreamRequest | None = None, url: str | None = None) -> Iterator[_Streamed]:
        if req is None:
            assert url is not None
            req = UpstreamRequest("GET", url)
        self.calls.append(Call(req.method, req.path, req, url))
        body = self._answer(req.method, req.path, req)
        data = body if isinstance(body, bytes) else str(body).encode()
        yield _Streamed(data, {"content-length": str(len(data))})

    def count(self, method: str, pattern: str) -> int:
        compiled = re.compile(pattern + "$")
        return sum(1 for c in self.calls if c.method == method and compiled.match(c.path))


class _AsyncFacade:
    def __init__(self, upstream: FakeUpstream) -> None:
        self.upstream = upstream

    async def call(self, req: UpstreamRequest) -> Any:
        return self.upstream.call(req)

    async def aclose(self) -> None:
        pass


class SoraScript:
    """A Sora upstream whose polls answer from a script, one entry per poll (the last
    entry repeats). Entries are retrieve bodies, or exceptions to raise."""

    def __init__(self, upstream: FakeUpstream, polls: list[Any] | None = None, video: bytes = b"\x00mp4") -> None:
        self.polls = list(polls or [{"status": "completed", "progress": 100}])
        self.created = 0
        upstream.route("POST", r"/v1/videos", self._create)
        upstream.route("GET", r"/v1/videos/(?P<id>[^/]+)", self._poll)
        upstream.route("GET", r"/v1/videos/(?P<id>[^/]+)/content", self._content(video))

    def _create(self, _req: UpstreamRequest, _match: re.Match[str]) -> dict[str, Any]:
        self.created += 1
        return {"id": f"video_{self.created}", "object": "video", "status": "queued", "progress": 0}

    def _poll(self, _req: UpstreamRequest, match: re.Match[str]) -> dict[str, Any]:
        entry = self.polls.pop(0) if len(self.polls) > 1 else self.polls[0]
        if isinstance(entry, BaseException):
            raise entry
        return {"id": match["id"], "object": "video", **entry}

    @staticmethod
    def _content(video: bytes) -> Handler:
        def content(req: UpstreamRequest, _match: re.Match[str]) -> bytes:
            variant = (req.params or {}).get("variant")
            if variant:
                raise UpstreamError("no such variant", status=404, retryable=False)
            return video

        return content


@dataclass
class Caller:
    """A client row and its API key (shown once, at creation)."""

    model: Any
    api_key: str

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)


class Pipeline:
    """The pipeline's entry points and the records they write, for one test."""

    def __init__(self, publisher: RecordingPublisher, upstream: FakeUpstream, clock: FrozenClock) -> None:
        self.publisher = publisher
        self.upstream = upstream
        self.clock = clock

    def client(self, name: str = "svc", **kwargs: Any) -> Caller:
        from app.clients.service import create
        from app.core.db import session_scope

        with session_scope() as session:
            made = create(session, name, **kwargs)
            return Caller(made.client, made.api_key)

    @staticmethod
    def headers(caller: Caller) -> dict[str, str]:
        return {"Authorization": f"Bearer {caller.api_key}"}

    def delivery(self, delivery_id: str) -> Any:
        from app.core.db import session_scope
        from app.webhooks import repository

        with session_scope() as session:
            return repository.get(session, delivery_id)

    def attempts(self, delivery_id: str) -> list[Any]:
        from app.core.db import session_scope
        from app.webhooks import repository

        with session_scope() as session:
            return repository.attempts_for(session, [delivery_id])[delivery_id]

    def create_job(self, client: Any, model: str = "sora-2", input: dict[str, Any] | None = None,
                   **fields: Any) -> str:
        from app.core.db import session_scope
        from app.jobs import service
        from app.jobs.schemas import JobCreate

        key = fields.pop("idempotency_key", None)
        body = JobCreate(model=model, input=input or {"prompt": "a paper boat in the rain"}, **fields)
        owner = client.model if isinstance(client, Caller) else client
        with session_scope() as session:
            # As a request would: the client as it is now (a PATCH may have changed it).
            fresh = session.get(type(owner), owner.id, populate_existing=True)
            return service.create(session, fresh, body, key).job.id

    def job(self, job_id: str) -> Any:
        from app.core.db import session_scope
        from app.jobs import repository

        with session_scope() as session:
            return repository.get(session, job_id)

    def schedule(self, job_id: str) -> Any:
        """The running job's poll schedule (`job_polls`), None once it left `running`."""
        from app.core.db import session_scope
        from app.jobs import repository

        with session_scope() as session:
            return repository.poll_schedule(session, job_id)

    def job_artifacts(self, job_id: str) -> list[Any]:
        from sqlalchemy import select

        from app.artifacts.models import Artifact
        from app.core.db import session_scope

        with session_scope() as session:
            return list(session.scalars(select(Artifact).where(Artifact.job_id == job_id)))

    def upload_key(self, upload_id: str) -> str:
        from app.artifacts.models import Upload
        from app.core.db import session_scope

        with session_scope() as session:
            return session.get(Upload, upload_id).storage_key  # type: ignore[union-attr]

    @staticmethod
    def storage_has(key: str) -> bool:
        from app.storage.backends import get_storage

        return get_storage().size(key) is not None

    def timeline(self, job_id: str) -> list[Any]:
        from app.core.db import session_scope
        from app.jobs import repository

        with session_scope() as session:
            return list(repository.events_for(session, job_id, None, 1000))

    def deliveries(self, job_id: str) -> list[Any]:
        from app.core.db import session_scope
        from app.webhooks import repository

        with session_scope() as session:
            return list(repository.for_job(session, job_id))

    @staticmethod
    @contextmanager
    def statements() -> Iterator[list[str]]:
        """The SQL statements this process sends to the database meanwhile, in order."""
        from sqlalchemy import event

        from app.core.db import get_engine

        sent: list[str] = []

        def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            sent.append(statement)

        event.listen(get_engine(), "before_cursor_execute", record)
        try:
            yield sent
        finally:
            event.remove(get_engine(), "before_cursor_execute", record)

    def dispatch(self) -> dict[str, int]:
        from app.jobs.dispatch import dispatch

        return dispatch()

    def submit(self, job_id: str) -> str:
        """Submit the job now, as the worker would after the dispatcher's nudge (granting it
        a slot first if it has none)."""
        from app.core.db import session_scope
        from app.jobs import repository
        from app.jobs.submit import submit

        with session_scope() as session:
            repository.grant_slots(session, [job_id], self.clock.now, self.clock.now)
        return submit(job_id)

    def poll(self) -> dict[str, int]:
        from app.jobs.poller import poll_due

        return poll_due()

    def collect(self, job_id: str) -> str:
        from app.jobs.collector import collect

        return collect(job_id)

    def sweep(self) -> dict[str, int]:
        from app.jobs.sweeper import sweep

        return sweep()

    def deliver(self, advance: float = 0.0) -> dict[str, int]:
        """Let `advance` seconds pass, then send every webhook delivery that is due."""
        from app.webhooks.service import deliver_due

        self.clock.advance(advance)
        return deliver_due()

    def deliver_nudged(self) -> list[str]:
        """Send what the after-commit nudges asked for (the worker's `deliver_webhook`)."""
        from app.webhooks.service import deliver_one

        ids = self.publisher.of(TaskName.DELIVER_WEBHOOK)
        self.publisher.sent[:] = [m for m in self.publisher.sent if m[0] is not TaskName.DELIVER_WEBHOOK]
        return [deliver_one(i) for i in ids]

    def api(self) -> Any:
        """The gateway in-process (ASGI), publishing to this test's recorder."""
        from fastapi.testclient import TestClient

        from app.main import create_app

        return TestClient(create_app(publisher=self.publisher), raise_server_exceptions=False)

    def late_check(self, job_id: str) -> str:
        from app.jobs.late_watch import late_check

        return late_check(job_id)

    def run_until_settled(self, job_id: str, max_steps: int = 50, step: float = 1.0) -> Any:
        """Drive a job the way the workers would — follow each published message, then
        let time pass and tick — until it is terminal."""
        from app.jobs.states import TERMINAL, JobStatus

        for _ in range(max_steps):
            job = self.job(job_id)
            if JobStatus(job.status) in TERMINAL:
                return job
            for task, args in list(self.publisher.sent):
                if task is TaskName.SUBMIT_JOB:
                    self.publisher.sent.remove((task, args))
                    self.submit(args[0])
                elif task is TaskName.COLLECT_JOB:
                    self.publisher.sent.remove((task, args))
                    self.collect(args[0])
            self.clock.advance(step)
            self.dispatch()
            self.poll()
            self.sweep()
        raise AssertionError(f"job {job_id} did not settle in {max_steps} steps: {self.job(job_id).status}")
