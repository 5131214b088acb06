"""`Client` (blocking) and `AsyncClient` (asyncio), both on httpx, with the same methods."""

from __future__ import annotations

import asyncio
import builtins
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx

from cometjobs_client import _http
from cometjobs_client._http import Retries, check, drop_none
from cometjobs_client.errors import CometJobsError, WaitTimeout
from cometjobs_client.models import BatchResult, Delivery, Job, JobEvent, ModelInfo

ProgressCallback = Callable[[Job], Any]
JobRef = Job | str


def _job_id(job: JobRef) -> str:
    return job.id if isinstance(job, Job) else job


def _create_body(model: str, input: Mapping[str, Any], **options: Any) -> dict[str, Any]:
    return drop_none({"model": model, "input": dict(input), **options})


def _batch_body(jobs: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    items = []
    for job in jobs:
        item = dict(job)
        item.setdefault("idempotency_key", str(uuid.uuid4()))
        items.append(item)
    return {"jobs": items}


def _artifact_name(job: Job, name: str | None) -> str:
    if name is not None:
        return name
    if not job.artifacts:
        raise CometJobsError(f"job {job.id} has no artifacts (status {job.status})")
    return job.artifacts[0].name


def _target(path: str | Path, name: str) -> Path:
    """A directory (existing, or named with a trailing slash: made) gets the artifact's name."""
    target = Path(path)
    if isinstance(path, str) and path.endswith(("/", "\\")):
        target.mkdir(parents=True, exist_ok=True)
    return target / name if target.is_dir() else target


class Client:
    """The blocking client. `base_url` and `api_key` default to COMETJOBS_API_URL and
    COMETJOBS_API_KEY. Use as a context manager, or call `close()`."""

    def __init__(
        self, base_url: str | None = None, api_key: str | None = None, *,
        timeout: httpx.Timeout | float = _http.DEFAULT_TIMEOUT, retries: Retries | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url, api_key = _http.settings(base_url, api_key)
        self.retries = retries or Retries()
        self._http = httpx.Client(base_url=self.base_url, headers=_http.headers(api_key), timeout=timeout,
                                  transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        attempt = 0
        while True:
            response = self._http.request(method, path, **kwargs)
            delay = self.retries.delay(attempt, response)
            if delay is None:
                return check(response)
            attempt += 1
            time.sleep(delay)

    # Jobs

    def create(
        self, model: str, input: Mapping[str, Any], *, metadata: Mapping[str, Any] | None = None,
        webhook_url: str | None = None, webhook_events: list[str] | None = None, priority: str | None = None,
        idempotency_key: str | None = None, wait: int | None = None,
    ) -> Job:
        """Submit a job. A fresh idempotency key is made when none is given, so the automatic
        retries (and yours, with the same key) never create it twice. `wait=N` (up to 60)
        asks the server to hold the answer until the job ends, for at most N seconds."""
        body = _create_body(model, input, metadata=metadata, webhook_url=webhook_url,
                            webhook_events=webhook_events, priority=priority)
        headers = {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}
        timeout = None
        if wait is not None:
            wait = min(max(0, int(wait)), _http.MAX_WAIT)
            headers["Prefer"] = f"wait={wait}"
            timeout = _http.wait_timeout(wait)
        kwargs: dict[str, Any] = {"json": body, "headers": headers}
        if timeout is not None:
            kwargs["timeout"] = timeout
        return Job.model_validate(self._request("POST", "/v1/jobs", **kwargs).json())

    def create_batch(self, jobs: Iterable[Mapping[str, Any]]) -> BatchResult:
        """Submit up to 100 jobs (each a `create` body; an `idempotency_key` is added where
        missing). Each item succeeds or fails on its own: see `BatchResult.data`."""
        return BatchResult.model_validate(self._request("POST", "/v1/jobs/batch", json=_batch_body(jobs)).json())

    def get(self, job: JobRef, *, wait: int | None = None, etag: str | None = None) -> Job:
        return self._get(job, wait=wait, etag=etag)[0]

    def _get(self, job: JobRef, *, wait: int | None = None, etag: str | None = None) -> tuple[Job, str | None]:
        kwargs: dict[str, Any] = {}
        if wait is not None:
            kwargs = {"params": {"wait": wait}, "timeout": _http.wait_timeout(wait),
                      "headers": {"If-None-Match": etag} if etag else {}}
        response = self._request("GET", f"/v1/jobs/{_job_id(job)}", **kwargs)
        return Job.model_validate(response.json()), response.headers.get("etag")

    def list(self, *, status: str | None = None, model: str | None = None, page_size: int = 50) -> Iterator[Job]:
        """Every job of yours, newest first, fetched a page at a time as you iterate."""
        params = drop_none({"status": status, "model": model, "limit": page_size})
        while True:
            page = self._request("GET", "/v1/jobs", params=params).json()
            yield from (Job.model_validate(item) for item in page["data"])
            if not page.get("next_cursor"):
                return
            params["cursor"] = page["next_cursor"]

    def cancel(self, job: JobRef) -> Job:
        return Job.model_validate(self._request("POST", f"/v1/jobs/{_job_id(job)}/cancel").json())

    def events(self, job: JobRef, *, after: int | None = None, page_size: int = 200) -> Iterator[JobEvent]:
        """The job's timeline, oldest first, a page at a time."""
        while True:
            params = drop_none({"after": after, "limit": page_size})
            data = self._request("GET", f"/v1/jobs/{_job_id(job)}/events", params=params).json()["data"]
            yield from (JobEvent.model_validate(item) for item in data)
            if len(data) < page_size:
                return
            after = data[-1]["id"]

    def deliveries(self, job: JobRef, *, page_size: int = 100) -> Iterator[Delivery]:
        params: dict[str, Any] = {"limit": page_size}
        while True:
            page = self._request("GET", f"/v1/jobs/{_job_id(job)}/deliveries", params=params).json()
            yield from (Delivery.model_validate(item) for item in page["data"])
            if not page.get("next_cursor"):
                return
            params["cursor"] = page["next_cursor"]

    def models(self) -> builtins.list[ModelInfo]:
        return [ModelInfo.model_validate(m) for m in self._request("GET", "/v1/models").json()["data"]]

    def wait(
        self, job: JobRef, *, timeout: float | None = None, on_progress: ProgressCallback | None = None,
    ) -> Job:
        """Block until the job ends, on the server's long-poll (no polling loop): each
        answer comes as soon as the job's status or progress changes. `on_progress(job)` is
        called on every change. Raises `WaitTimeout` after `timeout` seconds (None: forever)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        current, etag = self._get(job)
        while not current.done:
            left = _http.remaining(deadline)
            if left is not None and left <= 0:
                raise WaitTimeout(current, timeout or 0)
            step = _http.MAX_WAIT if left is None else max(0, min(_http.MAX_WAIT, int(left + 0.999)))
            latest, new_tag = self._get(current.id, wait=step, etag=etag)
            if new_tag != etag and on_progress is not None and not latest.done:
                on_progress(latest)
            current, etag = latest, new_tag
        if on_progress is not None:
            on_progress(current)
        return current

    def stream(self, job: JobRef, *, after: int | None = None) -> Iterator[JobEvent | Job]:
        """The job's timeline live (Server-Sent Events): each `JobEvent` as it is written,
        and the `Job` whenever its status or progress changes; ends when the job has ended.
        A dropped connection is resumed where it stopped (`Last-Event-ID`)."""
        timeline = _LiveTimeline(job, after)
        while not timeline.ended:
            try:
                with self._http.stream("GET", timeline.path, headers=timeline.connect(),
                                       timeout=_http.STREAM_TIMEOUT) as response:
                    check(_read_error(response))
                    for line in response.iter_lines():
                        item = timeline.feed(line)
                        if timeline.ended:
                            return
                        if item is not None:
                            yield item
            except _http.STREAM_BROKEN:
                continue

    def download(self, job: JobRef, name: str | None = None, path: str | Path = ".") -> Path:
        """Save an artifact (the first one when `name` is None) to `path` (a file, or a
        directory to save it in under its name). A redirect to object storage is followed
        without the API key; the body is streamed to disk."""
        found = job if isinstance(job, Job) else self.get(job)
        name = _artifact_name(found, name)
        target = _target(path, name)
        url = f"/v1/jobs/{found.id}/artifacts/{name}"
        with self._http.stream("GET", url, follow_redirects=False) as response:
            if response.is_redirect:
                location = response.headers["location"]
                with httpx.stream("GET", location, timeout=self._http.timeout) as storage:
                    return _save(check(_read_error(storage)), target)
            return _save(check(_read_error(response)), target)


class _LiveTimeline:
    """One job's live timeline across reconnects, for both clients: the headers to (re)connect
    with (resuming after the last event seen), and each line read turned into an item."""

    def __init__(self, job: JobRef, after: int | None) -> None:
        self.path = f"/v1/jobs/{_job_id(job)}/events/stream"
        self.last = after
        self.ended = False
        self._parser = _http.SSEParser()

    def connect(self) -> dict[str, str]:
        self._parser = _http.SSEParser()
        headers = {"Accept": "text/event-stream"}
        if self.last is not None:
            headers["Last-Event-ID"] = str(self.last)
        return headers

    def feed(self, line: str) -> JobEvent | Job | None:
        sse = self._parser.feed(line)
        if sse is None:
            return None
        if sse.event == "end":
            self.ended = True
            return None
        if sse.event == "job":
            return Job.model_validate_json(sse.data)
        event = JobEvent.model_validate_json(sse.data)
        self.last = event.id
        return event


def _read_error(response: httpx.Response) -> httpx.Response:
    if response.status_code >= 400:
        response.read()
    return response


def _save(response: httpx.Response, target: Path) -> Path:
    partial = target.with_name(target.name + ".part")
    with partial.open("wb") as out:
        for chunk in response.iter_bytes(1 << 16):
            out.write(chunk)
    partial.replace(target)
    return target


class AsyncClient:
    """The asyncio client: the same methods as `Client`, awaited; iterators are `async for`."""

    def __init__(
        self, base_url: str | None = None, api_key: str | None = None, *,
        timeout: httpx.Timeout | float = _http.DEFAULT_TIMEOUT, retries: Retries | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url, api_key = _http.settings(base_url, api_key)
        self.retries = retries or Retries()
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=_http.headers(api_key), timeout=timeout,
                                       transport=transport)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        attempt = 0
        while True:
            response = await self._http.request(method, path, **kwargs)
            delay = self.retries.delay(attempt, response)
            if delay is None:
                return check(response)
            attempt += 1
            await asyncio.sleep(delay)

    async def create(
        self, model: str, input: Mapping[str, Any], *, metadata: Mapping[str, Any] | None = None,
        webhook_url: str | None = None, webhook_events: list[str] | None = None, priority: str | None = None,
        idempotency_key: str | None = None, wait: int | None = None,
    ) -> Job:
        body = _create_body(model, input, metadata=metadata, webhook_url=webhook_url,
                            webhook_events=webhook_events, priority=priority)
        headers = {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}
        kwargs: dict[str, Any] = {"json": body, "headers": headers}
        if wait is not None:
            wait = min(max(0, int(wait)), _http.MAX_WAIT)
            headers["Prefer"] = f"wait={wait}"
            kwargs["timeout"] = _http.wait_timeout(wait)
        return Job.model_validate((await self._request("POST", "/v1/jobs", **kwargs)).json())

    async def create_batch(self, jobs: Iterable[Mapping[str, Any]]) -> BatchResult:
        response = await self._request("POST", "/v1/jobs/batch", json=_batch_body(jobs))
        return BatchResult.model_validate(response.json())

    async def get(self, job: JobRef, *, wait: int | None = None, etag: str | None = None) -> Job:
        return (await self._get(job, wait=wait, etag=etag))[0]

    async def _get(
        self, job: JobRef, *, wait: int | None = None, etag: str | None = None,
    ) -> tuple[Job, str | None]:
        kwargs: dict[str, Any] = {}
        if wait is not None:
            kwargs = {"params": {"wait": wait}, "timeout": _http.wait_timeout(wait),
                      "headers": {"If-None-Match": etag} if etag else {}}
        response = await self._request("GET", f"/v1/jobs/{_job_id(job)}", **kwargs)
        return Job.model_validate(response.json()), response.headers.get("etag")

    async def list(
        self, *, status: str | None = None, model: str | None = None, page_size: int = 50,
    ) -> AsyncIterator[Job]:
        params = drop_none({"status": status, "model": model, "limit": page_size})
        while True:
            page = (await self._request("GET", "/v1/jobs", params=params)).json()
            for item in page["data"]:
                yield Job.model_validate(item)
            if not page.get("next_cursor"):
                return
            params["cursor"] = page["next_cursor"]

    async def cancel(self, job: JobRef) -> Job:
        return Job.model_validate((await self._request("POST", f"/v1/jobs/{_job_id(job)}/cancel")).json())

    async def events(self, job: JobRef, *, after: int | None = None, page_size: int = 200) -> AsyncIterator[JobEvent]:
        while True:
            params = drop_none({"after": after, "limit": page_size})
            data = (await self._request("GET", f"/v1/jobs/{_job_id(job)}/events", params=params)).json()["data"]
            for item in data:
                yield JobEvent.model_validate(item)
            if len(data) < page_size:
                return
            after = data[-1]["id"]

    async def deliveries(self, job: JobRef, *, page_size: int = 100) -> AsyncIterator[Delivery]:
        params: dict[str, Any] = {"limit": page_size}
        while True:
            page = (await self._request("GET", f"/v1/jobs/{_job_id(job)}/deliveries", params=params)).json()
            for item in page["data"]:
                yield Delivery.model_validate(item)
            if not page.get("next_cursor"):
                return
            params["cursor"] = page["next_cursor"]

    async def models(self) -> builtins.list[ModelInfo]:
        return [ModelInfo.model_validate(m) for m in (await self._request("GET", "/v1/models")).json()["data"]]

    async def wait(
        self, job: JobRef, *, timeout: float | None = None, on_progress: ProgressCallback | None = None,
    ) -> Job:
        deadline = None if timeout is None else time.monotonic() + timeout
        current, etag = await self._get(job)
        while not current.done:
            left = _http.remaining(deadline)
            if left is not None and left <= 0:
                raise WaitTimeout(current, timeout or 0)
            step = _http.MAX_WAIT if left is None else max(0, min(_http.MAX_WAIT, int(left + 0.999)))
            latest, new_tag = await self._get(current.id, wait=step, etag=etag)
            if new_tag != etag and on_progress is not None and not latest.done:
                await _maybe_await(on_progress(latest))
            current, etag = latest, new_tag
        if on_progress is not None:
            await _maybe_await(on_progress(current))
        return current

    async def stream(self, job: JobRef, *, after: int | None = None) -> AsyncIterator[JobEvent | Job]:
        timeline = _LiveTimeline(job, after)
        while not timeline.ended:
            try:
                async with self._http.stream("GET", timeline.path, headers=timeline.connect(),
                                             timeout=_http.STREAM_TIMEOUT) as response:
                    if response.status_code >= 400:
                        await response.aread()
                        check(response)
                    async for line in response.aiter_lines():
                        item = timeline.feed(line)
                        if timeline.ended:
                            return
                        if item is not None:
                            yield item
            except _http.STREAM_BROKEN:
                continue

    async def download(self, job: JobRef, name: str | None = None, path: str | Path = ".") -> Path:
        found = job if isinstance(job, Job) else await self.get(job)
        name = _artifact_name(found, name)
        target = _target(path, name)
        url = f"/v1/jobs/{found.id}/artifacts/{name}"
        async with self._http.stream("GET", url, follow_redirects=False) as response:
            if response.is_redirect:
                async with httpx.AsyncClient(timeout=self._http.timeout) as storage_client, \
                        storage_client.stream("GET", response.headers["location"]) as storage:
                    return await _asave(storage, target)
            return await _asave(response, target)


async def _maybe_await(value: Any) -> None:
    if asyncio.iscoroutine(value):
        await value


async def _asave(response: httpx.Response, target: Path) -> Path:
    if response.status_code >= 400:
        await response.aread()
        check(response)
    partial = target.with_name(target.name + ".part")
    with partial.open("wb") as out:
        async for chunk in response.aiter_bytes(1 << 16):
            out.write(chunk)
    partial.replace(target)
    return target
