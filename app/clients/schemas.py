"""How a client sees and changes its own settings."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from app.core.numbers import StrictInt
from app.jobs.schemas import EVENT_TYPES, MAX_WEBHOOK_URL, WebhookURL


class ClientOut(BaseModel):
    id: str
    name: str
    webhook_url: str | None
    webhook_events: list[str]
    webhook_disabled_at: datetime | None = Field(description="Set when the default URL answered 410 Gone")
    disabled_webhook_urls: list[str] = Field(description="URLs that answered 410 Gone; nothing is sent to them")
    previous_secret_expires_at: datetime | None
    retention_days: int | None


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
