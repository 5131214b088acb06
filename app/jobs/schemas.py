from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.jobs.states import JobEvent, JobStatus

EVENT_TYPES = Literal[JobEvent.RUNNING, JobEvent.PROGRESS]


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="A model id from GET /v1/models, e.g. `sora-2`.", examples=["sora-2"])
    input: dict[str, Any] = Field(description="The model's input; its schema depends on `model`.")
    webhook_url: str | None = Field(None, description="Where to POST events. Defaults to the client's URL.")
    webhook_events: list[EVENT_TYPES] | None = Field(
        None, description="Non-terminal events to receive for this job, besides the terminal ones."
    )
    metadata: dict[str, Any] = Field(default_factory=dict, description="Your own data, echoed back.")


class JobError(BaseModel):
    code: str
    message: str
    source: str | None = Field(None, description="validation, upstream, storage, timeout or canceled")


class ArtifactOut(BaseModel):
    name: str
    content_type: str
    size_bytes: int
    sha256: str
    url: str | None = Field(
        description="Fetch with your API key; each fetch streams the bytes or redirects to a fresh "
        "short-lived signed URL, so this URL itself works until `expires_at`. Null once deleted."
    )
    expires_at: datetime | None = Field(
        None, description="When the stored copy is deleted under the retention policy (the client's "
        "`retention_days`, else the service default); null: kept until deleted by an admin."
    )
    deleted_at: datetime | None = Field(None, description="When the stored copy was deleted (expiry or an admin).")


class UpstreamOut(BaseModel):
    id: str | None
    status: str | None


class WebhookStateOut(BaseModel):
    state: Literal["none", "pending", "retrying", "delivered", "dead", "disabled", "canceled"]
    event_type: str | None = None
    attempts: int = 0
    next_attempt_at: datetime | None = None
    last_status_code: int | None = None
    last_error: str | None = None


class JobOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    object: Literal["job"] = "job"
    model: str
    family: str
    kind: str
    status: JobStatus
    progress: int
    input: dict[str, Any]
    metadata: dict[str, Any]
    error: JobError | None
    artifacts: list[ArtifactOut]
    upstream: UpstreamOut
    webhook: WebhookStateOut | None = None
    parent_job_id: str | None = None
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None


class JobList(BaseModel):
    data: list[JobOut]
    next_cursor: str | None


class JobEventOut(BaseModel):
    id: int
    type: str
    status: str | None
    message: str | None
    data: dict[str, Any]
    created_at: datetime


class JobEventList(BaseModel):
    data: list[JobEventOut]
