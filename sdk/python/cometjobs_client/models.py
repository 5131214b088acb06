"""What the API returns, as typed models. Unknown fields are kept (`extra="allow"`), so a
newer server never breaks an older client."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

JobStatus = Literal["queued", "submitting", "running", "collecting", "succeeded", "failed", "canceled", "timed_out"]
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "canceled", "timed_out"})


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")


class JobError(_Model):
    code: str
    message: str
    source: str | None = None


class Artifact(_Model):
    name: str
    content_type: str
    size_bytes: int
    sha256: str
    url: str | None = None
    expires_at: datetime | None = None
    deleted_at: datetime | None = None


class Upstream(_Model):
    id: str | None = None
    status: str | None = None


class WebhookState(_Model):
    state: str
    event_type: str | None = None
    attempts: int = 0
    next_attempt_at: datetime | None = None
    last_status_code: int | None = None
    last_error: str | None = None


class Job(_Model):
    id: str
    object: str = "job"
    model: str
    family: str
    kind: str
    status: JobStatus
    priority: str = "normal"
    progress: int
    input: dict[str, Any]
    metadata: dict[str, Any] = {}
    error: JobError | None = None
    artifacts: list[Artifact] = []
    upstream: Upstream | None = None
    webhook: WebhookState | None = None
    parent_job_id: str | None = None
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None = None

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"


class JobEvent(_Model):
    id: int
    type: str
    status: str | None = None
    message: str | None = None
    data: dict[str, Any] = {}
    created_at: datetime


class DeliveryAttempt(_Model):
    attempt: int
    started_at: datetime
    status_code: int | None = None
    latency_ms: int | None = None
    response_body: str | None = None
    error: str | None = None


class Delivery(_Model):
    id: str
    event_id: str
    event_type: str
    url: str
    status: str
    state: str
    attempts: int
    next_attempt_at: datetime | None = None
    last_status_code: int | None = None
    last_error: str | None = None
    created_at: datetime
    delivered_at: datetime | None = None
    attempt_log: list[DeliveryAttempt] = []


class ModelInfo(_Model):
    id: str
    family: str
    kind: str


class FieldError(_Model):
    field: str
    message: str
    code: str


class Problem(_Model):
    """RFC 9457 problem details with cometjobs' stable `code`."""

    type: str = "about:blank"
    title: str = ""
    status: int
    code: str = "unknown"
    detail: str | None = None
    instance: str | None = None
    errors: list[FieldError] | None = None
    request_id: str | None = None


class BatchItemResult(_Model):
    index: int
    idempotency_key: str
    status: int
    job: Job | None = None
    error: Problem | None = None
    retry_after: int | None = None

    @property
    def ok(self) -> bool:
        return self.job is not None


class BatchResult(_Model):
    data: list[BatchItemResult]
    created: int
    replayed: int
    failed: int


class WebhookEvent(_Model):
    """A verified webhook: `type` is e.g. `job.succeeded`, `data` the job."""

    id: str
    type: str
    created_at: datetime
    data: Job
