from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import Boolean, Date, Float, ForeignKey, Integer, String, Text
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
    # Fair share and quotas: its share of scarce upstream slots (weighted round robin),
    # and what it may have queued, submit per minute (a token bucket of `rate_burst`)
    # and spend per UTC day. None: no limit.
    weight: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    max_queued: Mapped[int | None] = mapped_column(Integer)
    rate_per_minute: Mapped[float | None] = mapped_column(Float)
    rate_burst: Mapped[int | None] = mapped_column(Integer)
    daily_budget: Mapped[float | None] = mapped_column(Float)
    # The dispatcher's virtual time for this client (start-time fair queuing).
    fair_vtime: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    # Set by `cometjobs clients revoke`: the API key stops authenticating at once.
    revoked_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    @property
    def disabled_webhook_urls(self) -> set[str]:
        """URLs that answered 410 Gone: nothing is sent to them until re-enabled."""
        return set((self.settings or {}).get("disabled_webhook_urls", []))


class ClientSpend(Base):
    """What a client's accepted jobs cost on one UTC day, against its `daily_budget`."""

    __tablename__ = "client_spend"

    client_id: Mapped[str] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    spent: Mapped[float] = mapped_column(Float, default=0.0)
