from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.artifacts.schemas import ArtifactOut
from app.core.errors import Problem
from app.core.settings import get_settings
from app.jobs.states import JobEvent, JobStatus
from app.webhooks.schemas import WebhookStateOut

EVENT_TYPES = Literal[JobEvent.RUNNING, JobEvent.PROGRESS]
MAX_WEBHOOK_URL = 2048
WebhookURL = Annotated[str, Field(max_length=MAX_WEBHOOK_URL)]


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(
        max_length=128, description="A model id from GET /v1/models, e.g. `sora-2`.", examples=["sora-2"]
    )
    input: dict[str, Any] = Field(description="The model's input; its schema depends on `model`.")
    webhook_url: WebhookURL | None = Field(
        None, description=f"Where to POST events (http or https, at most {MAX_WEBHOOK_URL} characters). "
        "Defaults to the client's URL."
    )
    webhook_events: list[EVENT_TYPES] | None = Field(
        None, max_length=2, description="Non-terminal events to receive for this job, besides the terminal ones. "
        "Replaces the client's list for this job; `[]` opts the job out of them. Left out: the client's list "
        "as it is now (a later `PATCH /v1/client` does not change submitted jobs).",
    )
    priority: Literal["high", "normal", "low"] = Field(
        "normal", description="When upstream slots are scarce: the order among this client's own waiting jobs "
        "(then oldest first). Other clients' jobs are not affected: they share slots by weight.",
    )
    metadata: dict[str, Any] = Field(
        default_factory=dict,
        description="Your own data, echoed back: at most 16 KiB as compact JSON (COMETJOBS_MAX_METADATA_BYTES).",
    )

    @field_validator("metadata")
    @classmethod
    def _metadata_size(cls, value: dict[str, Any]) -> dict[str, Any]:
        if value:
            limit = get_settings().max_metadata_bytes
            size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
            if size > limit:
                raise ValueError(f"is {size} bytes as JSON; at most {limit} are kept")
        return value


class JobError(BaseModel):
    code: str
    message: str
    source: str | None = Field(None, description="validation, upstream, storage, timeout or canceled")


class UpstreamOut(BaseModel):
    id: str | None
    status: str | None


class JobOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    object: Literal["job"] = "job"
    model: str
    family: str
    kind: str
    status: JobStatus
    priority: Literal["high", "normal", "low"] = "normal"
    progress: int
    input: dict[str, Any]
    metadata: dict[str, Any]
    error: JobError | None
    artifacts: list[ArtifactOut]
    upstream: UpstreamOut
    webhook_events: list[str] = Field(
        default_factory=list, description="The non-terminal events this job sends besides the terminal one, "
        "fixed when it was submitted"
    )
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


MAX_BATCH = 100


class JobBatchItem(JobCreate):
    idempotency_key: str = Field(
        min_length=1, max_length=255,
        description="This item's own Idempotency-Key: sending the batch again replays the items that were "
        "accepted and retries the ones that were not. The same key used by `POST /v1/jobs` names the same job.",
    )

    def job_create(self) -> JobCreate:
        return JobCreate.model_construct(**{name: getattr(self, name) for name in JobCreate.model_fields})


class JobBatchCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    jobs: list[JobBatchItem] = Field(
        min_length=1, max_length=MAX_BATCH,
        description=f"1 to {MAX_BATCH} jobs. The request's shape is checked all or nothing (a 422 creates "
        "nothing); each item's meaning (model, input, webhook URL, quotas) is judged on its own.",
    )


class JobBatchResult(BaseModel):
    index: int = Field(description="The item's position in `jobs`, from 0")
    idempotency_key: str
    status: int = Field(description="202 created, 200 an earlier job replayed by its key, else the error's status")
    job: JobOut | None = None
    error: Problem | None = Field(
        None, description="The problem+json the item would have had as a `POST /v1/jobs` of its own"
    )
    retry_after: int | None = Field(None, description="For a 429: seconds before this item may succeed")


class JobBatchOut(BaseModel):
    data: list[JobBatchResult]
    created: int
    replayed: int
    failed: int
