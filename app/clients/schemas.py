"""How a client sees and changes its own settings."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from app.core.numbers import StrictInt
from app.jobs.schemas import EVENT_TYPES, MAX_WEBHOOK_URL, WebhookURL


class LimitsOut(BaseModel):
    """Fair share and quotas (set by an operator: `cometjobs clients update`), with usage now."""

    weight: int = Field(description="Share of scarce upstream slots against other clients (weighted round robin)")
    max_queued: int | None = Field(description="Jobs that may wait to be submitted at once; null: no limit")
    queued: int = Field(description="Jobs waiting to be submitted now")
    in_flight: int = Field(description="Jobs holding an upstream slot now")
    rate_per_minute: float | None = Field(description="Submissions a minute (a token bucket); null: no limit")
    rate_burst: int | None = Field(description="Submissions that may arrive at once (the bucket's size)")
    rate_remaining: int | None = Field(description="Submissions the bucket holds now")
    daily_budget: float | None = Field(description="What jobs may cost per UTC day (each model's `price`)")
    spent_today: float


class ClientOut(BaseModel):
    id: str
    name: str
    webhook_url: str | None
    webhook_events: list[str]
    webhook_disabled_at: datetime | None = Field(description="Set when the default URL answered 410 Gone")
    disabled_webhook_urls: list[str] = Field(description="URLs that answered 410 Gone; nothing is sent to them")
    previous_secret_expires_at: datetime | None
    retention_days: int | None
    limits: LimitsOut | None = Field(None, description="Shown by GET /v1/client")


class ClientUpdate(BaseModel):
    webhook_url: WebhookURL | None = Field(
        None, description=f"New default webhook URL (at most {MAX_WEBHOOK_URL} characters); also re-enables "
        "a URL disabled by 410"
    )
    webhook_events: list[EVENT_TYPES] | None = Field(None, max_length=2)
    disabled_webhook_urls: list[WebhookURL] | None = Field(
        None, max_length=1000,
        description="Remove a URL from this list to send to it again (e.g. `[]` re-enables all)",
    )
    retention_days: StrictInt | None = Field(None, ge=1, le=3650)


class SecretRotation(BaseModel):
    webhook_secret: str
    previous_secret_expires_at: datetime
