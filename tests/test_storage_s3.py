"""The S3 backend against moto's standalone server over real HTTP: writes (single PUT and
multipart), ranged reads, signed URLs, deletes, readiness, and configuration from the
AWS tools' own variables."""

from __future__ import annotations

import os
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from app.core.settings import Settings
from app.storage.backends import StorageError
from app.storage.s3 import S3Storage
from tests.support.s3 import ACCESS_KEY, SECRET_KEY

MIB = 1024 * 1024
PART = 5 * MIB  # S3's smallest part


def chunks(data: bytes, size: int = 256 * 1024) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.fixture
def bucket(s3_server) -> str:
    return s3_server.new_bucket()


@pytest.fixture
def storage(s3_server, bucket) -> S3Storage:
    settings = Settings(
        s3_endpoint_url=s3_server.endpoint, s3_access_key_id=ACCESS_KEY, s3_secret_access_key=SECRET_KEY,
        s3_region="us-east-1", s3_addressing_style="path", s3_part_bytes=PART,
    )
    return S3Storage.from_url(f"s3://{bucket}/results", settings)


class TestWrites:
    def test_small_object_is_one_put_with_its_content_type(self, storage, s3_server, bucket):
        with storage.writer("c/j/t/thumbnail.webp", "image/webp") as out:
            out.write(b"tiny")
        stored = s3_server.get(bucket, "results/c/j/t/thumbnail.webp")
        assert stored["Body"] == b"tiny"
        assert stored["ContentType"] == "image/webp"
        assert "-" not in stored["ETag"]  # multipart ETags end in -<parts>

    def test_large_object_is_a_multipart_upload(self, storage, s3_server, bucket):
        data = os.urandom(2 * PART + 12345)
        with storage.writer("c/j/t/video.mp4", "video/mp4") as out:
            for piece in chunks(data):
                out.write(piece)
        stored = s3_server.get(bucket, "results/c/j/t/video.mp4")
        assert stored["Body"] == data
        assert stored["ContentType"] == "video/mp4"
        assert stored["ETag"].strip('"').endswith("-3")
        assert s3_server.uploads_in_progress(bucket) == []

    def test_object_of_exactly_whole_parts(self, storage, s3_server, bucket):
        data = os.urandom(2 * PART)
        with storage.writer("k/whole.bin", "application/octet-stream") as out:
            for piece in chunks(data, MIB):
                out.write(piece)
        assert s3_server.get(bucket, "results/k/whole.bin")["Body"] == data


class TestFailedWrites:
    def test_error_midway_through_a_multipart_upload_leaves_nothing(self, storage, s3_server, bucket):
        data = os.urandom(3 * PART)
        with pytest.raises(ConnectionResetError), storage.writer("k/cut.mp4", "video/mp4") as out:
            for piece in chunks(data[: 2 * PART + 1000]):
                out.write(piece)
            assert s3_server.uploads_in_progress(bucket), "parts should be uploading by now"
            raise ConnectionResetError("upstream went away")
        assert s3_server.keys(bucket) == []
        assert s3_server.uploads_in_progress(bucket) == []
        assert storage.size("k/cut.mp4") is None

    def test_error_before_the_first_part_leaves_nothing(self, storage, s3_server, bucket):
        with pytest.raises(RuntimeError), storage.writer("k/small.mp4", "video/mp4") as out:
            out.write(b"x" * 1000)
            raise RuntimeError("boom")
        assert s3_server.keys(bucket) == []


class TestReads:
    DATA = bytes(range(256)) * 4096  # 1 MiB

    @pytest.fixture
    def stored(self, storage) -> str:
        with storage.writer("r/video.mp4", "video/mp4") as out:
            out.write(self.DATA)
        return "r/video.mp4"

    @pytest.mark.parametrize(("start", "end"), [(0, None), (0, 99), (1000, 1000), (5000, None), (1, 2**20 - 2)])
    def test_byte_ranges(self, storage, stored, start, end):
        got = b"".join(storage.read(stored, start, end, chunk=64 * 1024))
        assert got == self.DATA[start : None if end is None else end + 1]

    def test_size_and_missing_objects(self, storage, stored):
        assert storage.size(stored) == len(self.DATA)
        assert storage.size("r/nothing") is None
        with pytest.raises(StorageError):
            b"".join(storage.read("r/nothing"))


class TestSignedUrls:
    def test_signed_get_returns_the_bytes_with_type_and_filename(self, storage):
        data = os.urandom(300_000)
        with storage.writer("s/video.mp4", "video/mp4") as out:
            out.write(data)
        url = storage.presigned_url("s/video.mp4", timedelta(seconds=90), "job_1-video.mp4", "video/mp4")
        assert url is not None
        assert parse_qs(urlsplit(url).query)["X-Amz-Expires"] == ["90"]
        response = httpx.get(url)
        assert response.status_code == 200
        assert response.content == data
        assert response.headers["content-type"] == "video/mp4"
        assert response.headers["content-disposition"] == 'inline; filename="job_1-video.mp4"'

    def test_public_endpoint_is_used_for_signed_urls(self, s3_server, bucket):
        settings = Settings(
            s3_endpoint_url=s3_server.endpoint, s3_public_endpoint_url="https://files.example.com",
            s3_access_key_id=ACCESS_KEY, s3_secret_access_key=SECRET_KEY, s3_addressing_style="path",
        )
        storage = S3Storage.from_url(f"s3://{bucket}/p", settings)
        url = storage.presigned_url("a/b.mp4", timedelta(minutes=5), "b.mp4", "video/mp4")
        assert url.startswith(f"https://files.example.com/{bucket}/p/a/b.mp4?")


class TestDeletes:
    def test_delete_and_delete_many(self, storage, s3_server, bucket):
        for name in ("a", "b", "c"):
            with storage.writer(f"d/{name}", "text/plain") as out:
                out.write(name.encode())
        storage.delete("d/a")
        assert s3_server.keys(bucket) == ["results/d/b", "results/d/c"]
        assert storage.delete_many(["d/b", "d/c", "d/never-existed"]) == []
        assert s3_server.keys(bucket) == []
        storage.delete("d/a")  # deleting twice is fine

    def test_abandoned_multipart_uploads_are_aborted(self, storage, s3_server, bucket):
        # What a worker killed mid-copy leaves behind: an upload never completed.
        s3_server.client.create_multipart_upload(Bucket=bucket, Key="results/x/video.mp4")
        s3_server.client.create_multipart_upload(Bucket=bucket, Key="elsewhere/not-ours.mp4")
        # moto reports every upload as initiated in 2010, so only the prefix rule is testable here.
        assert storage.abort_abandoned_uploads(timedelta(0)) == 1
        assert [u["Key"] for u in s3_server.uploads_in_progress(bucket)] == ["elsewhere/not-ours.mp4"]


class TestConfiguration:
    def test_aws_standard_variables_are_honoured(self, s3_server, bucket, monkeypatch):
        for name, value in s3_server.standard_env().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("AWS_REGION", "eu-west-3")
        monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
        storage = S3Storage.from_url(f"s3://{bucket}/env", Settings(s3_addressing_style="path"))
        assert storage.client.meta.region_name == "eu-west-3"  # boto3 alone reads only AWS_DEFAULT_REGION
        assert storage.client.meta.endpoint_url == s3_server.endpoint
        storage.check()
        with storage.writer("k", "text/plain") as out:
            out.write(b"via AWS_* variables")
        assert s3_server.get(bucket, "env/k")["Body"] == b"via AWS_* variables"

    def test_cometjobs_settings_win_over_aws_variables(self, s3_server, bucket, monkeypatch):
        monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "wrong")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
        monkeypatch.setenv("AWS_REGION", "eu-west-3")
        settings = Settings(s3_endpoint_url=s3_server.endpoint, s3_region="us-east-1", s3_access_key_id=ACCESS_KEY,
                            s3_secret_access_key=SECRET_KEY, s3_addressing_style="path")
        storage = S3Storage.from_url(f"s3://{bucket}", settings)
        assert storage.client.meta.region_name == "us-east-1"
        storage.check()

    def test_readiness_check_names_a_missing_bucket(self, s3_server):
        settings = Settings(s3_endpoint_url=s3_server.endpoint, s3_access_key_id=ACCESS_KEY,
                            s3_secret_access_key=SECRET_KEY, s3_addressing_style="path")
        with pytest.raises(StorageError, match="no-such-bucket"):
            S3Storage.from_url("s3://no-such-bucket/x", settings).check()

    def test_url_without_bucket_is_refused(self):
        with pytest.raises(StorageError):
            S3Storage.from_url("s3:///prefix", Settings())

    def test_key_escaping_the_prefix_is_refused(self, storage):
        with pytest.raises(StorageError), storage.writer("../outside", "text/plain") as out:
            out.write(b"x")

    def test_client_is_rebuilt_after_a_fork(self, storage):
        first = storage.client
        assert storage.client is first
        pid = os.fork()
        if pid == 0:
            os._exit(0 if storage.client is not first else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
