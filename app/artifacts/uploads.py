"""Caller-supplied input files (reference images), stored before the job exists."""

from __future__ import annotations

import io
import secrets
from typing import BinaryIO

from PIL import Image, UnidentifiedImageError
from sqlalchemy.orm import Session

from app.artifacts import repository
from app.artifacts.models import Upload
from app.clients.models import Client
from app.core.clock import utcnow
from app.core.errors import PayloadTooLarge, ValidationFailed
from app.core.ids import new_id
from app.core.settings import get_settings
from app.storage.backends import get_storage
from app.storage.copy import copy_stream

IMAGE_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}


def get_for_client(session: Session, client_id: str, upload_id: str) -> Upload | None:
    return repository.upload_for_client(session, client_id, upload_id)


def sniff_image(head: bytes) -> tuple[str, int, int] | None:
    """(content type, width, height) from the bytes, or None if not an image we know."""
    try:
        with Image.open(io.BytesIO(head)) as image:
            content_type = IMAGE_FORMATS.get(image.format or "")
            if content_type is None:
                return None
            return content_type, image.width, image.height
    except (UnidentifiedImageError, OSError, ValueError):
        return None


def create(session: Session, client: Client, filename: str, declared_type: str | None, source: BinaryIO) -> Upload:
    limit = get_settings().max_upload_bytes
    data = source.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"uploads are limited to {limit} bytes")
    if not data:
        raise ValidationFailed.field("file", "the file is empty", "empty")
    sniffed = sniff_image(data)
    content_type = sniffed[0] if sniffed else (declared_type or "application/octet-stream")
    upload_id = new_id("upl")
    key = f"{client.id}/uploads/{upload_id}/{secrets.token_urlsafe(12)}"
    stored = copy_stream(get_storage(), key, [data], content_type)
    upload = Upload(
        id=upload_id,
        client_id=client.id,
        filename=(filename or "upload")[:255],
        storage_key=key,
        content_type=content_type,
        size_bytes=stored.size_bytes,
        sha256=stored.sha256,
        width=sniffed[1] if sniffed else None,
        height=sniffed[2] if sniffed else None,
        created_at=utcnow(),
    )
    session.add(upload)
    session.flush()
    return upload
