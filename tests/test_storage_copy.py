"""The verified streaming copy on both backends: what arrives is hashed and measured, and a
copy that is cut, short, long or corrupt leaves no object behind."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from app.core.settings import Settings
from app.storage.backends import LocalStorage, Storage, StorageError
from app.storage.copy import CopyError, copy_stream
from app.storage.s3 import S3Storage
from tests.support.s3 import ACCESS_KEY, SECRET_KEY

MIB = 1024 * 1024
DATA = os.urandom(11 * MIB + 4321)  # three 5 MiB parts on S3
SHA = hashlib.sha256(DATA).hexdigest()


@dataclass
class Backend:
    storage: Storage
    visible: Callable[[], list[str]]  # every object a reader could see
    pending: Callable[[], list[str]]  # unfinished writes (invisible, but taking space)


def local_backend(root: Path) -> Backend:
    return Backend(
        LocalStorage(root),
        lambda: sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and ".partial" not in p.parts),
        lambda: sorted(p.name for p in (root / ".partial").glob("*")) if (root / ".partial").exists() else [],
    )


@pytest.fixture(params=["local", "s3"])
def backend(request, tmp_path: Path) -> Backend:
    if request.param == "local":
        return local_backend(tmp_path / "artifacts")
    server = request.getfixturevalue("s3_server")
    bucket = server.new_bucket()
    settings = Settings(s3_endpoint_url=server.endpoint, s3_access_key_id=ACCESS_KEY, s3_secret_access_key=SECRET_KEY,
                        s3_addressing_style="path", s3_part_bytes=5 * MIB)
    return Backend(
        S3Storage.from_url(f"s3://{bucket}/artifacts", settings),
        lambda: server.keys(bucket),
        lambda: [u["Key"] for u in server.uploads_in_progress(bucket)],
    )


def pieces(data: bytes = DATA, size: int = 64 * 1024, cut_at: int | None = None) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        if cut_at is not None and start >= cut_at:
            raise ConnectionResetError("peer closed the connection mid-body")
        yield data[start : start + size]


class TestVerifiedCopy:
    def test_copy_records_size_sha256_and_type(self, backend):
        stored = copy_stream(backend.storage, "cli/job/tok/video.mp4", pieces(), "video/mp4",
                             expected_size=len(DATA), expected_sha256=SHA)
        assert (stored.size_bytes, stored.sha256, stored.content_type) == (len(DATA), SHA, "video/mp4")
        assert b"".join(backend.storage.read(stored.key)) == DATA
        assert backend.pending() == []

    def test_copy_without_an_announced_size_still_measures(self, backend):
        stored = copy_stream(backend.storage, "k/video.mp4", pieces(), "video/mp4")
        assert (stored.size_bytes, stored.sha256) == (len(DATA), SHA)


class TestBadCopiesLeaveNothing:
    def test_connection_cut_midway(self, backend):
        with pytest.raises(ConnectionResetError):
            copy_stream(backend.storage, "k/video.mp4", pieces(cut_at=7 * MIB), "video/mp4", expected_size=len(DATA))
        assert backend.visible() == []
        assert backend.pending() == []

    def test_fewer_bytes_than_announced(self, backend):
        with pytest.raises(CopyError, match="announced"):
            copy_stream(backend.storage, "k/video.mp4", pieces(DATA[:-1]), "video/mp4", expected_size=len(DATA))
        assert backend.visible() == []
        assert backend.pending() == []

    def test_more_bytes_than_announced(self, backend):
        with pytest.raises(CopyError, match="more than"):
            copy_stream(backend.storage, "k/video.mp4", pieces(), "video/mp4", expected_size=6 * MIB)
        assert backend.visible() == []
        assert backend.pending() == []

    def test_checksum_mismatch(self, backend):
        corrupt = DATA[:100] + bytes([DATA[100] ^ 1]) + DATA[101:]
        with pytest.raises(CopyError, match="sha256"):
            copy_stream(backend.storage, "k/video.mp4", pieces(corrupt), "video/mp4",
                        expected_size=len(DATA), expected_sha256=SHA)
        assert backend.visible() == []
        assert backend.pending() == []

    def test_failed_retry_keeps_the_earlier_complete_object(self, backend):
        copy_stream(backend.storage, "k/video.mp4", pieces(), "video/mp4")
        with pytest.raises(ConnectionResetError):
            copy_stream(backend.storage, "k/video.mp4", pieces(os.urandom(len(DATA)), cut_at=6 * MIB), "video/mp4")
        assert b"".join(backend.storage.read("k/video.mp4")) == DATA


class TestDeleting:
    def test_delete_many_removes_only_those(self, backend):
        for name in ("a", "b", "c"):
            copy_stream(backend.storage, f"cli/job/tok/{name}.bin", [name.encode()], "application/octet-stream")
        assert backend.storage.delete_many(["cli/job/tok/a.bin", "cli/job/tok/c.bin", "cli/job/tok/gone.bin"]) == []
        assert [k.rsplit("/", 1)[-1] for k in backend.visible()] == ["b.bin"]

    def test_keys_outside_the_store_are_refused(self, backend):
        with pytest.raises(StorageError):
            copy_stream(backend.storage, "../../etc/passwd", [b"x"], "text/plain")


class TestAbandonedLocalWrites:
    def test_stale_partial_files_are_removed_fresh_ones_kept(self, tmp_path):
        storage = LocalStorage(tmp_path)
        storage.partial.mkdir(parents=True)
        stale, fresh = storage.partial / "old.part", storage.partial / "new.part"
        stale.write_bytes(b"left by a killed worker")
        fresh.write_bytes(b"being written right now")
        os.utime(stale, (0, 0))
        assert storage.abort_abandoned_uploads(timedelta(hours=1)) == 1
        assert not stale.exists() and fresh.exists()


class TestLocalWriteBehind:
    """The local writer flushes to disk behind the writes (every FLUSH_EVERY bytes, on a
    thread); the bytes, the abort path and the closing fsync stay what they were."""

    @pytest.fixture
    def local(self, tmp_path: Path, monkeypatch) -> Backend:
        from app.storage.backends import _FileWriter

        monkeypatch.setattr(_FileWriter, "FLUSH_EVERY", 256 * 1024)  # many flushes within DATA
        return local_backend(tmp_path / "artifacts")

    def test_flushed_along_the_way_the_copy_is_whole(self, local):
        stored = copy_stream(local.storage, "k/video.mp4", pieces(), "video/mp4", expected_size=len(DATA),
                             expected_sha256=SHA)
        assert b"".join(local.storage.read(stored.key)) == DATA
        assert local.pending() == []

    def test_cut_while_flushing_leaves_nothing(self, local):
        with pytest.raises(ConnectionResetError):
            copy_stream(local.storage, "k/video.mp4", pieces(cut_at=9 * MIB), "video/mp4")
        assert local.visible() == []
        assert local.pending() == []
