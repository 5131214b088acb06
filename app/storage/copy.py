"""Streaming copies into storage, hashed and measured on the way."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from app.core import metrics
from app.storage.backends import Storage


class CopyError(Exception):
    """The bytes that arrived are not the bytes announced; nothing was stored."""


@dataclass
class StoredObject:
    key: str
    size_bytes: int
    sha256: str
    content_type: str


def copy_stream(
    storage: Storage,
    key: str,
    chunks: Iterable[bytes],
    content_type: str,
    *,
    expected_size: int | None = None,
    expected_sha256: str | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> StoredObject:
    digest = hashlib.sha256()
    size = 0
    # Which side failed decides the metric: the storage's own errors (opening, writing,
    # completing the object) are counted; the source's (a cut download) and CopyError are not.
    body_error: BaseException | None = None
    write_failed = False
    try:
        with storage.writer(key, content_type) as out:
            try:
                for chunk in chunks:
                    if not chunk:
                        continue
                    digest.update(chunk)
                    try:
                        out.write(chunk)
                    except BaseException:
                        write_failed = True
                        raise
                    size += len(chunk)
                    if expected_size is not None and size > expected_size:
                        raise CopyError(f"received more than the announced {expected_size} bytes")
                    if on_progress is not None:
                        on_progress(size)
                if expected_size is not None and size != expected_size:
                    raise CopyError(f"received {size} bytes, announced {expected_size}")
                if expected_sha256 is not None and digest.hexdigest() != expected_sha256.lower():
                    raise CopyError("sha256 of the received bytes does not match the announced digest")
            except BaseException as exc:
                body_error = exc
                raise
    except Exception as exc:
        if write_failed or (exc is not body_error and not isinstance(exc, CopyError)):
            metrics.STORAGE_ERRORS.labels(backend=storage.scheme, operation="write").inc()
        raise
    return StoredObject(key=key, size_bytes=size, sha256=digest.hexdigest(), content_type=content_type)
