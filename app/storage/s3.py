"""S3-compatible object storage (AWS S3, MinIO, Cloudflare R2) through boto3.

Settings left unset fall back to what the AWS tools read themselves:
`AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID` /
`AWS_SECRET_ACCESS_KEY` (or a profile, or an instance role), and the region
from `AWS_REGION`, then `AWS_DEFAULT_REGION` (boto3 itself reads only the latter).

A writer sends an object smaller than one part as a single PUT, and anything
larger as a multipart upload with a few parts in flight (memory is bounded by
parts, never by the object); on any error the upload is aborted, so no partial
object ever becomes visible.
"""

from __future__ import annotations

import bisect
import io
import itertools
import os
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from urllib.parse import urlsplit

import boto3
import structlog
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from app.core.settings import Settings, get_settings
from app.storage.backends import ObjectWriter, Storage, StorageError, safe_key

log = structlog.get_logger(__name__)
_MISSING = {"404", "NoSuchKey", "NotFound"}
_DELETE_BATCH = 1000  # the most keys one DeleteObjects call accepts


@contextmanager
def _translated(action: str, key: str = "") -> Iterator[None]:
    try:
        yield
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "?")
        raise StorageError(f"s3 {action} {key} failed: {code}: {exc}") from exc
    except BotoCoreError as exc:
        raise StorageError(f"s3 {action} {key} failed: {exc}") from exc


@dataclass(frozen=True)
class S3Options:
    endpoint_url: str | None
    public_endpoint_url: str | None
    region: str | None
    access_key_id: str | None
    secret_access_key: str | None = field(repr=False)
    addressing_style: str
    part_bytes: int
    upload_concurrency: int

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Options:
        secret = settings.s3_secret_access_key
        return cls(
            endpoint_url=settings.s3_endpoint_url or None,
            public_endpoint_url=settings.s3_public_endpoint_url or None,
            region=settings.s3_region or os.environ.get("AWS_REGION") or None,
            access_key_id=settings.s3_access_key_id or None,
            secret_access_key=secret.get_secret_value() if secret else None,
            addressing_style=settings.s3_addressing_style,
            part_bytes=settings.s3_part_bytes,
            upload_concurrency=settings.s3_upload_concurrency,
        )


class _PartBody(io.RawIOBase):
    """A part's chunks read as one seekable file: nothing is copied into a second buffer."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks
        self._ends = list(itertools.accumulate(len(c) for c in chunks))
        self._size = self._ends[-1] if self._ends else 0
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = min(max(0, base + offset), self._size)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        out = memoryview(buffer).cast("B")
        done = 0
        while done < len(out) and self._pos < self._size:
            index = bisect.bisect_right(self._ends, self._pos)
            offset = self._pos - (self._ends[index] - len(self._chunks[index]))
            piece = memoryview(self._chunks[index])[offset : offset + len(out) - done]
            out[done : done + len(piece)] = piece
            done += len(piece)
            self._pos += len(piece)
        return done


class _S3Writer:
    """Collects one part at a time; the first full part starts a multipart upload, and up
    to `concurrency` parts upload in the background while the next one fills, so memory
    stays under (concurrency + 1) parts whatever the object's size."""

    def __init__(
        self, client: Any, bucket: str, key: str, content_type: str, part_bytes: int, concurrency: int
    ) -> None:
        self._client = client
        self._bucket = bucket
        self._key = key
        self._content_type = content_type
        self._part_bytes = part_bytes
        self._concurrency = concurrency
        self._chunks: list[bytes] = []
        self._filled = 0
        self._upload_id: str | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._slots = threading.BoundedSemaphore(concurrency)
        self._pending: list[Future[tuple[int, str]]] = []

    def write(self, chunk: bytes) -> None:
        self._chunks.append(bytes(chunk) if not isinstance(chunk, bytes) else chunk)
        self._filled += len(chunk)
        if self._filled >= self._part_bytes:
            self._send_part()

    def _send_part(self) -> None:
        if self._upload_id is None:
            with _translated("create multipart upload", self._key):
                created = self._client.create_multipart_upload(
                    Bucket=self._bucket, Key=self._key, ContentType=self._content_type
                )
            self._upload_id = created["UploadId"]
            self._pool = ThreadPoolExecutor(self._concurrency, thread_name_prefix="s3-part")
        self._raise_failed()
        self._slots.acquire()  # backpressure: the download waits while every slot uploads
        body = _PartBody(self._chunks)
        self._chunks, self._filled = [], 0
        assert self._pool is not None
        future = self._pool.submit(self._upload_part, len(self._pending) + 1, body)
        future.add_done_callback(lambda _done: self._slots.release())
        self._pending.append(future)

    def _upload_part(self, number: int, body: _PartBody) -> tuple[int, str]:
        with _translated(f"upload part {number}", self._key):
            sent = self._client.upload_part(
                Bucket=self._bucket, Key=self._key, UploadId=self._upload_id, PartNumber=number, Body=body
            )
        return number, sent["ETag"]

    def _raise_failed(self) -> None:
        for future in self._pending:
            if future.done() and future.exception() is not None:
                future.result()

    def close(self) -> None:
        if self._upload_id is None:
            with _translated("put", self._key):
                self._client.put_object(
                    Bucket=self._bucket, Key=self._key, Body=b"".join(self._chunks), ContentType=self._content_type
                )
            return
        if self._filled:
            self._send_part()
        parts = [{"PartNumber": number, "ETag": etag} for number, etag in (f.result() for f in self._pending)]
        with _translated("complete multipart upload", self._key):
            self._client.complete_multipart_upload(
                Bucket=self._bucket, Key=self._key, UploadId=self._upload_id, MultipartUpload={"Parts": parts}
            )
        self._shutdown()

    def _shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def abort(self) -> None:
        self._chunks, self._filled = [], 0
        # Parts still uploading could outlive an abort issued now and linger (S3's advice).
        self._shutdown()
        if self._upload_id is None:
            return
        try:
            self._client.abort_multipart_upload(Bucket=self._bucket, Key=self._key, UploadId=self._upload_id)
        except (BotoCoreError, ClientError) as exc:
            # Never visible either way; the expiry task aborts abandoned uploads later.
            log.warning("s3_abort_failed", key=self._key, error=repr(exc))


class S3Storage(Storage):
    scheme = "s3"

    def __init__(self, bucket: str, prefix: str, options: S3Options) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.options = options
        self._lock = threading.Lock()
        self._clients: tuple[int, Any, Any] | None = None

    @classmethod
    def from_url(cls, url: str, settings: Settings | None = None) -> S3Storage:
        parts = urlsplit(url)
        if not parts.netloc:
            raise StorageError(f"storage URL {url!r} names no bucket; use s3://bucket/prefix")
        return cls(parts.netloc, parts.path, S3Options.from_settings(settings or get_settings()))

    def _make_client(self, endpoint_url: str | None) -> Any:
        opts = self.options
        session = boto3.session.Session(
            aws_access_key_id=opts.access_key_id,
            aws_secret_access_key=opts.secret_access_key,
            region_name=opts.region,
        )
        config = Config(
            signature_version="s3v4",
            s3=cast(Any, {"addressing_style": opts.addressing_style}),
            connect_timeout=5,
            read_timeout=60,
            retries={"mode": "standard", "max_attempts": 5},
            max_pool_connections=32,
        )
        return session.client("s3", endpoint_url=endpoint_url, config=config)

    def _pair(self) -> tuple[Any, Any]:
        """(client, presigner) for this process: boto3's connection pools must not cross a fork."""
        current = self._clients
        if current is None or current[0] != os.getpid():
            with self._lock:
                current = self._clients
                if current is None or current[0] != os.getpid():
                    client = self._make_client(self.options.endpoint_url)
                    public = self.options.public_endpoint_url
                    presigner = self._make_client(public) if public else client
                    current = self._clients = (os.getpid(), client, presigner)
        return current[1], current[2]

    @property
    def client(self) -> Any:
        return self._pair()[0]

    def object_key(self, key: str) -> str:
        safe = safe_key(key)
        return f"{self.prefix}/{safe}" if self.prefix else safe

    @contextmanager
    def writer(self, key: str, content_type: str) -> Iterator[ObjectWriter]:
        opts = self.options
        out = _S3Writer(
            self.client, self.bucket, self.object_key(key), content_type, opts.part_bytes, opts.upload_concurrency
        )
        try:
            yield out
            out.close()
        except BaseException:
            out.abort()
            raise

    def read(self, key: str, start: int = 0, end: int | None = None, chunk: int = 1 << 20) -> Iterator[bytes]:
        extra = {}
        if start or end is not None:
            extra["Range"] = f"bytes={start}-{'' if end is None else end}"
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self.object_key(key), **extra)["Body"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _MISSING:
                raise StorageError(f"no object {key}") from None
            raise StorageError(f"s3 get {key} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"s3 get {key} failed: {exc}") from exc
        try:
            with _translated("read", key):
                yield from body.iter_chunks(chunk)
        finally:
            body.close()

    def size(self, key: str) -> int | None:
        try:
            return int(self.client.head_object(Bucket=self.bucket, Key=self.object_key(key))["ContentLength"])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _MISSING:
                return None
            raise StorageError(f"s3 head {key} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"s3 head {key} failed: {exc}") from exc

    def delete(self, key: str) -> None:
        with _translated("delete", key):
            self.client.delete_object(Bucket=self.bucket, Key=self.object_key(key))

    def delete_many(self, keys: Sequence[str]) -> list[str]:
        ours = {self.object_key(k): k for k in keys}
        failed = []
        names = list(ours)
        for start in range(0, len(names), _DELETE_BATCH):
            batch = [{"Key": name} for name in names[start : start + _DELETE_BATCH]]
            with _translated("delete objects"):
                answer = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
            for error in answer.get("Errors", []):
                if error.get("Code") not in _MISSING:
                    log.warning("s3_delete_failed", key=error.get("Key"), code=error.get("Code"))
                    failed.append(ours.get(error.get("Key", ""), error.get("Key", "")))
        return failed

    def presigned_url(self, key: str, expires: timedelta, filename: str, content_type: str) -> str | None:
        presigner = self._pair()[1]
        with _translated("presign", key):
            return cast(str, presigner.generate_presigned_url(
                "get_object",
                Params={
                    "Bucket": self.bucket,
                    "Key": self.object_key(key),
                    "ResponseContentType": content_type,
                    "ResponseContentDisposition": f'inline; filename="{filename}"',
                },
                ExpiresIn=max(1, int(expires.total_seconds())),
            ))

    def abort_abandoned_uploads(self, older_than: timedelta) -> int:
        cutoff = datetime.now(UTC) - older_than
        aborted = 0
        paginator = self.client.get_paginator("list_multipart_uploads")
        with _translated("list multipart uploads"):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=f"{self.prefix}/" if self.prefix else ""):
                for upload in page.get("Uploads", []):
                    if upload["Initiated"] <= cutoff:
                        self.client.abort_multipart_upload(
                            Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                        )
                        aborted += 1
        return aborted

    def check(self) -> None:
        with _translated("head bucket", self.bucket):
            self.client.head_bucket(Bucket=self.bucket)
