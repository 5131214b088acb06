from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.clock import utcnow
from app.core.db import Base


class Artifact(Base):
    """A result copied into our storage; written only once the object is complete."""

    __tablename__ = "artifacts"
    __table_args__ = (
        UniqueConstraint("job_id", "name"),
        # Only what expiry still has to delete: the walk does not grow with every artifact ever expired.
        Index("ix_artifacts_expires_at", "expires_at",
              postgresql_where=text("deleted_at IS NULL AND expires_at IS NOT NULL"),
              sqlite_where=text("deleted_at IS NULL AND expires_at IS NOT NULL")),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(80))
    storage_key: Mapped[str] = mapped_column(String(500))
    content_type: Mapped[str] = mapped_column(String(120))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]
    deleted_at: Mapped[datetime | None]


class Upload(Base):
    """A caller-supplied input file (e.g. a Sora `input_reference` image)."""

    __tablename__ = "uploads"
    __table_args__ = (Index("ix_uploads_client_id", "client_id"), Index("ix_uploads_created_at", "created_at"))

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    filename: Mapped[str] = mapped_column(String(255))
    storage_key: Mapped[str] = mapped_column(String(500))
    content_type: Mapped[str] = mapped_column(String(120))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
