"""All SQL about stored results (artifacts) and caller uploads."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from app.artifacts.models import Artifact, Upload
from app.core.ids import new_id

_OF_JOBS = (
    select(Artifact)
    .where(Artifact.job_id.in_(bindparam("ids", expanding=True)))
    .order_by(Artifact.job_id, Artifact.created_at)
)


def for_jobs(session: Session, job_ids: Iterable[str]) -> dict[str, list[Artifact]]:
    ids = list(job_ids)
    out: dict[str, list[Artifact]] = {i: [] for i in ids}
    if not ids:
        return out
    for artifact in session.scalars(_OF_JOBS, {"ids": ids}):
        out[artifact.job_id].append(artifact)
    return out


def get(session: Session, job_id: str, name: str) -> Artifact | None:
    return session.scalar(select(Artifact).where(Artifact.job_id == job_id, Artifact.name == name))


def add(
    session: Session, *, job_id: str, name: str, storage_key: str, content_type: str, size_bytes: int,
    sha256: str, now: datetime, expires_at: datetime | None,
) -> None:
    session.add(Artifact(
        id=new_id("art"), job_id=job_id, name=name, storage_key=storage_key, content_type=content_type,
        size_bytes=size_bytes, sha256=sha256, created_at=now, expires_at=expires_at,
    ))


def live_for_job_locked(session: Session, job_id: str) -> Sequence[Artifact]:
    return session.scalars(
        select(Artifact)
        .where(Artifact.job_id == job_id, Artifact.deleted_at.is_(None))
        .order_by(Artifact.name)
        .with_for_update()
    ).all()


def claim_expired(session: Session, now: datetime, limit: int) -> Sequence[Artifact]:
    """Expired artifacts not yet deleted, locked; other runners skip them."""
    return session.scalars(
        select(Artifact)
        .where(Artifact.expires_at <= now, Artifact.deleted_at.is_(None))
        .order_by(Artifact.expires_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()


def upload_for_client(session: Session, client_id: str, upload_id: str) -> Upload | None:
    return session.scalar(select(Upload).where(Upload.id == upload_id, Upload.client_id == client_id))


def upload(session: Session, upload_id: str) -> Upload | None:
    """Any client's upload: only for a request a signed link has authorised."""
    return session.get(Upload, upload_id)
