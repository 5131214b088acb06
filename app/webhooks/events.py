"""The webhook events as the OpenAPI 3.1 `webhooks` describe them: one per event type,
each a signed `POST` of the same envelope (`webhooks.service.envelope` writes it)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Header
from pydantic import BaseModel, Field

from app.jobs.schemas import JobOut
from app.jobs.states import JobEvent


class _Event(BaseModel):
    id: str = Field(description="The event's id (`evt_...`); the same on every retry and redelivery")
    seq: int = Field(
        description="The job's event number: grows with each event of that job and is the same on every retry "
        "and redelivery. Ignore an event whose `seq` is not above the last one you applied for the job."
    )
    created_at: datetime = Field(description="When the event happened (RFC 3339, UTC, `Z`)")
    data: JobOut = Field(description="The job as `GET /v1/jobs/{id}` returns it at that moment, without `webhook`")
    omitted: list[Literal["input"]] | None = Field(
        None, description="Present when the body would have passed 96 KiB: `data.input` is sent as `{}`"
    )


class JobRunningEvent(_Event):
    type: Literal[JobEvent.RUNNING]


class JobProgressEvent(_Event):
    type: Literal[JobEvent.PROGRESS]


class JobSucceededEvent(_Event):
    type: Literal[JobEvent.SUCCEEDED]


class JobFailedEvent(_Event):
    type: Literal[JobEvent.FAILED]


class JobCanceledEvent(_Event):
    type: Literal[JobEvent.CANCELED]


class JobTimedOutEvent(_Event):
    type: Literal[JobEvent.TIMED_OUT]


WebhookId = Annotated[str, Header(
    alias="webhook-id", description="The delivery's id (`msg_...`): the same on every attempt; deduplicate on it")]
WebhookTimestamp = Annotated[str, Header(
    alias="webhook-timestamp", description="Unix seconds when this attempt was signed (fresh on every attempt)")]
WebhookSignature = Annotated[str, Header(
    alias="webhook-signature",
    description="Space-separated `v1,<base64 HMAC-SHA256>` of `{webhook-id}.{webhook-timestamp}.{raw body}`, "
    "one per active secret (two during a rotation's grace period); Standard Webhooks")]

RESPONSES: dict[int | str, dict[str, str]] = {
    200: {"description": "Any 2xx within 10 s: delivered. Answer 2xx to events you ignore too."},
    410: {"description": "Gone: the URL is disabled for the client; nothing more is sent to it until it is "
                         "enabled again"},
    "4XX": {"description": "Any other 4xx except 408, 409, 425 and 429: this event is `failed`, not retried; "
                           "the job's next event follows"},
    "5XX": {"description": "Retried on the schedule (as are 408, 409, 425, 429, timeouts and network errors)"},
}

EVENTS: dict[JobEvent, tuple[type[_Event], str]] = {
    JobEvent.RUNNING: (JobRunningEvent, "If subscribed: the upstream started working on the job."),
    JobEvent.PROGRESS: (JobProgressEvent, "If subscribed: the job's progress changed (at most one per job per "
                        "`COMETJOBS_WEBHOOK_PROGRESS_INTERVAL`; one never sent is replaced by a newer one)."),
    JobEvent.SUCCEEDED: (JobSucceededEvent, "The job ended with its artifacts stored (`data.artifacts`; their "
                         "URLs need the API key). Exactly one terminal event per job."),
    JobEvent.FAILED: (JobFailedEvent, "The job ended with an error (`data.error`)."),
    JobEvent.CANCELED: (JobCanceledEvent, "The job was canceled; its unsent `job.running` and `job.progress` "
                        "are dropped."),
    JobEvent.TIMED_OUT: (JobTimedOutEvent, "The job passed a deadline (`data.error`)."),
}


def _receiver(model: type[_Event]) -> Callable[..., None]:
    def receive(body: _Event, webhook_id: WebhookId, webhook_timestamp: WebhookTimestamp,
                webhook_signature: WebhookSignature) -> None:
        """Only documents the request; cometjobs sends it."""

    receive.__annotations__["body"] = model
    return receive


def install(webhooks: APIRouter) -> None:
    """Add every event to the app's `webhooks` (OpenAPI 3.1)."""
    for event, (model, description) in EVENTS.items():
        webhooks.add_api_route(
            str(event), _receiver(model), methods=["POST"], operation_id=f"webhook_{event.replace('.', '_')}",
            summary=str(event), description=description + SIGNED, responses=RESPONSES, status_code=200,
            response_model=None,
        )


SIGNED = (
    "\n\nSigned per Standard Webhooks (verify the raw body bytes). Delivered at least once, in order per job; "
    "deduplicate on `webhook-id` and order by `seq`."
)
