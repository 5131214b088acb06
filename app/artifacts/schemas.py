"""How artifacts and uploads look to callers."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class ArtifactOut(BaseModel):
    name: str
    content_type: str
    size_bytes: int
    sha256: str
    url: str | None = Field(
        description="Fetch with your API key; each fetch streams the bytes or redirects to a fresh "
        "short-lived signed URL, so this URL itself works until `expires_at`. Null once deleted."
    )
    expires_at: datetime | None = Field(
        None, description="When the stored copy is deleted under the retention policy (the client's "
        "`retention_days`, else the service default); null: kept until deleted by an admin."
    )
    deleted_at: datetime | None = Field(None, description="When the stored copy was deleted (expiry or an admin).")


class DeletedArtifacts(BaseModel):
    job_id: str
    deleted: list[str] = Field(description="Names of the artifacts deleted now (empty if none were left)")


class UploadOut(BaseModel):
    id: str
    filename: str
    content_type: str
    size_bytes: int
    sha256: str
    width: int | None
    height: int | None
    created_at: datetime
