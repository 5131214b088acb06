from __future__ import annotations

import re

from fastapi import APIRouter, Request, UploadFile
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from sqlalchemy.orm import Session

from app.artifacts import links, repository, retention, uploads
from app.artifacts.schemas import DeletedArtifacts, UploadOut
from app.clients.models import Client
from app.core import threads
from app.core.boundary import CheckedRoute
from app.core.clock import utcnow
from app.core.deps import AdminDep, ClientDep, SessionDep
from app.core.errors import AppError, Forbidden, NotFound, ServiceUnavailable, problem_responses
from app.core.settings import get_settings
from app.jobs import service as jobs
from app.jobs.models import Job
from app.storage.backends import StorageError, get_storage

router = APIRouter(tags=["artifacts"], route_class=CheckedRoute)
# One range of at most 18 digits a side (an int64 holds every real offset); anything else
# (several ranges, huge numbers, garbage) is ignored and the whole object served, as
# RFC 9110 allows.
_RANGE = re.compile(r"bytes=(\d{0,18})-(\d{0,18})")


class RangeNotSatisfiable(AppError):
    status, code, title = 416, "range_not_satisfiable", "The requested range is not satisfiable"


class ArtifactDeleted(AppError):
    status, code, title = 410, "artifact_deleted", "The artifact was deleted (retention expiry or an admin)"


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    match = _RANGE.fullmatch(header.strip())
    if not match or (not match.group(1) and not match.group(2)):
        return None
    first, last = match.group(1), match.group(2)
    if first and last and int(last) < int(first):
        return None  # not a valid range-spec (RFC 9110 14.1.1): the header is ignored
    if first:
        start = int(first)
        end = min(int(last), size - 1) if last else size - 1
    else:
        length = int(last)
        if length == 0:
            raise RangeNotSatisfiable(headers={"Content-Range": f"bytes */{size}"})
        start, end = max(0, size - length), size - 1
    if start >= size or start > end:
        raise RangeNotSatisfiable(headers={"Content-Range": f"bytes */{size}"})
    return start, end


@router.get(
    "/v1/jobs/{job_id}/artifacts/{name}",
    operation_id="getArtifact",
    summary="Download an artifact (local disk: streamed with Range support; S3: redirect to a signed URL)",
    responses={
        200: {"description": "The bytes", "content": {"application/octet-stream": {}}},
        206: {"description": "A byte range"},
        307: {"description": "Redirect to a short-lived signed URL"},
        **problem_responses(401, 404, 410, 416, 503),
    },
    response_class=Response,
)
def get_artifact(job_id: str, name: str, request: Request, session: SessionDep, client: ClientDep) -> Response:
    job = jobs.get_owned(session, client, job_id)
    artifact = repository.get(session, job.id, name)
    if artifact is None:
        raise NotFound(f"job {job_id} has no artifact {name!r}")
    if artifact.deleted_at is not None:
        raise ArtifactDeleted(f"artifact {name!r} of job {job_id} was deleted at {artifact.deleted_at.isoformat()}")
    storage = get_storage()
    filename = f"{job.id}-{artifact.storage_key.rsplit('/', 1)[-1]}"
    signed = storage.presigned_url(
        artifact.storage_key, get_settings().artifact_url_ttl, filename, artifact.content_type
    )
    if signed:
        return RedirectResponse(signed, status_code=307, headers={"Cache-Control": "no-store"})
    size = artifact.size_bytes
    headers = {
        "Accept-Ranges": "bytes",
        "ETag": f'"{artifact.sha256}"',
        "Content-Disposition": f'inline; filename="{filename}"',
        "Cache-Control": "private, max-age=3600",
    }
    wanted = request.headers.get("range")
    span = _parse_range(wanted, size) if wanted else None
    if span is None:
        headers["Content-Length"] = str(size)
        chunks = threads.stream_storage(storage.read(artifact.storage_key))
        return StreamingResponse(chunks, media_type=artifact.content_type, headers=headers)
    start, end = span
    headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    headers["Content-Length"] = str(end - start + 1)
    chunks = threads.stream_storage(storage.read(artifact.storage_key, start, end))
    return StreamingResponse(chunks, status_code=206, media_type=artifact.content_type, headers=headers)


@router.post(
    "/v1/uploads",
    status_code=201,
    response_model=UploadOut,
    operation_id="createUpload",
    summary="Upload an input file (e.g. a reference image) to use in a job's input",
    responses=problem_responses(401, 413, 422, 503),
)
async def create_upload(file: UploadFile, session: SessionDep, client: ClientDep) -> UploadOut:
    # Writing to storage may take as long as the network does: not in the endpoints' threads.
    return await threads.run_storage(_store_upload, file, session, client)


def _store_upload(file: UploadFile, session: Session, client: Client) -> UploadOut:
    upload = uploads.create(session, client, file.filename or "upload", file.content_type, file.file)
    session.commit()
    return UploadOut.model_validate(upload, from_attributes=True)


@router.get(
    "/v1/uploads/{upload_id}/content",
    operation_id="getUploadContent",
    summary="An upload's bytes, by a signed expiring link (no API key): how an upstream that only takes "
    "https URLs fetches an uploaded input",
    responses={
        200: {"description": "The bytes", "content": {"application/octet-stream": {}}},
        **problem_responses(403, 404),
    },
    response_class=Response,
)
def get_upload_content(upload_id: str, expires: int, signature: str, session: SessionDep) -> Response:
    if not links.valid(upload_id, expires, signature, utcnow()):
        raise Forbidden("the link's signature is not valid or it has expired", code="invalid_link")
    upload = repository.upload(session, upload_id)
    if upload is None:
        raise NotFound(f"no upload {upload_id}")
    headers = {"Content-Length": str(upload.size_bytes), "Cache-Control": "private, no-store"}
    chunks = threads.stream_storage(get_storage().read(upload.storage_key))
    return StreamingResponse(chunks, media_type=upload.content_type, headers=headers)


@router.delete(
    "/v1/admin/jobs/{job_id}/artifacts",
    response_model=DeletedArtifacts,
    operation_id="deleteJobArtifacts",
    summary="Ops: delete a job's stored results now (the job keeps listing them, without URLs)",
    responses=problem_responses(401, 403, 404, 503),
)
def delete_job_artifacts(job_id: str, session: SessionDep, _admin: AdminDep) -> DeletedArtifacts:
    if session.get(Job, job_id) is None:
        raise NotFound(f"no job {job_id}")
    try:
        deleted = retention.delete_job_artifacts(session, job_id)
    except StorageError as exc:
        raise ServiceUnavailable(str(exc), code="storage_unavailable") from exc
    session.commit()
    return DeletedArtifacts(job_id=job_id, deleted=deleted)
