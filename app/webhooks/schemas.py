"""How webhook deliveries look to callers."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

DeliveryState = Literal["none", "pending", "retrying", "delivered", "dead", "disabled", "canceled", "superseded"]


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
    status: str = Field(description="pending, delivered, dead, canceled, disabled (410) or superseded")
    state: str = Field(description="`status`, except `retrying` while a failed delivery waits for its next attempt")
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    attempt_log: list[AttemptOut]


class DeliveryList(BaseModel):
    data: list[DeliveryOut]


class BulkRedeliver(BaseModel):
    start: datetime = Field(description="Dead deliveries created at or after this instant")
    end: datetime = Field(description="... and before this one")
    client_id: str | None = None


class BulkRedeliverResult(BaseModel):
    redelivered: int
    ids: list[str]
    skipped: list[str] = Field(description="Dead deliveries left alone because their URL is disabled (410)")
