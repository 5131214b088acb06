"""How webhook deliveries look to callers."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, Field

from app.core.numbers import StrictInt

DeliveryState = Literal[
    "none", "pending", "retrying", "delivered", "dead", "failed", "disabled", "canceled", "superseded"
]


class WebhookStateOut(BaseModel):
    state: DeliveryState
    event_type: str | None = None
    attempts: int = 0
    next_attempt_at: datetime | None = None
    last_status_code: int | None = None
    last_error: str | None = None


class AttemptOut(BaseModel):
    attempt: int
    started_at: datetime
    status_code: int | None
    latency_ms: int | None
    response_body: str | None
    error: str | None


class DeliveryOut(BaseModel):
    id: str = Field(description="The `webhook-id` header value; stable across retries")
    event_id: str
    event_type: str
    url: str
    status: str = Field(description="pending, delivered, dead, failed (a 4xx that is not "
                        "retried), canceled, disabled (410) or superseded")
    state: str = Field(description="`status`, except `retrying` while a failed delivery waits for its next attempt")
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    attempt_log: list[AttemptOut] = Field(description="The latest attempts (at most 20; `attempts` counts them all)")


class DeliveryList(BaseModel):
    data: list[DeliveryOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last one")


def _date_time_text(value: object) -> object:
    if not isinstance(value, str):
        raise ValueError("must be an RFC 3339 date-time string")  # not a Unix time, as pydantic would take
    return value


DateTimeText = Annotated[datetime, BeforeValidator(_date_time_text)]


class BulkRedeliver(BaseModel):
    start: DateTimeText = Field(description="Dead deliveries created at or after this instant")
    end: DateTimeText = Field(description="... and before this one")
    client_id: str | None = Field(None, max_length=64)
    limit: StrictInt = Field(1000, ge=1, le=10_000, description="At most this many, oldest first")


class BulkRedeliverResult(BaseModel):
    redelivered: int
    ids: list[str]
    skipped: list[str] = Field(description="Dead deliveries left alone because their URL is disabled (410)")
    more: bool = Field(False, description="More dead deliveries are in the range: call again for the next batch")
