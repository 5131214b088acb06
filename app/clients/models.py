from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.clock import utcnow
from app.core.db import Base, JSONType


class Client(Base):
    """An internal caller: its hashed API key, webhook endpoint and secrets."""

    __tablename__ = "clients"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    api_key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    api_key_hint: Mapped[str] = mapped_column(String(24))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    webhook_url: Mapped[str | None] = mapped_column(Text)
    webhook_secret: Mapped[str] = mapped_column(String(120))
    webhook_secret_previous: Mapped[str | None] = mapped_column(String(120))
    webhook_secret_previous_expires_at: Mapped[datetime | None]
    webhook_disabled_at: Mapped[datetime | None]
    webhook_events: Mapped[list[str]] = mapped_column(JSONType, default=list)
    retention_days: Mapped[int | None] = mapped_column(Integer)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Set by `cometjobs clients revoke`: the API key stops authenticating at once.
    revoked_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    @property
    def disabled_webhook_urls(self) -> set[str]:
        """URLs that answered 410 Gone: nothing is sent to them until re-enabled."""
        return set((self.settings or {}).get("disabled_webhook_urls", []))
