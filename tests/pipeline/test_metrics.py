"""What the pipeline counts, read from this process's Prometheus registry: why jobs end
(error source), an optional result the upstream lacks (skipped, not an error), storage
errors (the storage's, not the source's), deliveries that go dead."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from app.storage.backends import LocalStorage
from app.storage.copy import CopyError, copy_stream
from tests.pipeline.test_collect import collecting_job
from tests.pipeline.test_poll import poll_once, running_job
from tests.pipeline.test_webhooks import ATTEMPTS, attempts_until_settled, finished_job
from tests.support.receiver import Receiver


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class TestWhyJobsEnd:
    def test_a_success_has_no_error_source(self, inproc):
        job_id, _client, _ = collecting_job(inproc)
        before = value("cometjobs_jobs_finished_total", model="sora-2", status="succeeded", error_source="none")
        assert inproc.collect(job_id) == "succeeded"
        after = value("cometjobs_jobs_finished_total", model="sora-2", status="succeeded", error_source="none")
        assert after - before == 1

    def test_an_upstream_failure_is_counted_with_its_source(self, inproc):
        job_id = running_job(inproc, [{"status": "failed", "error": {"code": "moderation_blocked"}}])
        labels = {"model": "sora-2", "status": "failed", "error_source": "upstream"}
        before = value("cometjobs_jobs_finished_total", **labels)
        poll_once(inproc, job_id)
        assert inproc.job(job_id).status == "failed"
        assert value("cometjobs_jobs_finished_total", **labels) - before == 1

    def test_a_cancel_is_counted_as_canceled(self, inproc):
        client = inproc.client()
        job_id = inproc.create_job(client)
        labels = {"model": "sora-2", "status": "canceled", "error_source": "canceled"}
        before = value("cometjobs_jobs_finished_total", **labels)
        assert inproc.api().post(f"/v1/jobs/{job_id}/cancel", headers=inproc.headers(client)).status_code == 200
        assert value("cometjobs_jobs_finished_total", **labels) - before == 1


class TestOptionalResults:
    def test_an_optional_variant_the_upstream_does_not_have_is_skipped_not_an_error(self, inproc):
        job_id, _client, _ = collecting_job(inproc)  # thumbnail and spritesheet answer 404
        labels = {"family": "sora", "endpoint": "content"}
        before = {o: value("cometjobs_upstream_requests_total", outcome=o, **labels)
                  for o in ("ok", "skipped", "upstream_http_404")}
        assert inproc.collect(job_id) == "succeeded"
        after = {o: value("cometjobs_upstream_requests_total", outcome=o, **labels) for o in before}
        assert {o: after[o] - before[o] for o in before} == {"ok": 1, "skipped": 2, "upstream_http_404": 0}


class TestStorageErrors:
    def storage_errors(self) -> float:
        return value("cometjobs_storage_errors_total", backend="file", operation="write")

    def test_a_write_the_storage_refuses_is_counted(self, tmp_path: Path):
        not_a_directory = tmp_path / "file"
        not_a_directory.write_bytes(b"")
        before = self.storage_errors()
        with pytest.raises(OSError):
            copy_stream(LocalStorage(not_a_directory), "job/video.mp4", [b"bytes"], "video/mp4")
        assert self.storage_errors() - before == 1

    def test_a_source_that_fails_or_lies_is_not_a_storage_error(self, tmp_path: Path):
        def cut() -> object:
            yield b"half a video"
            raise ConnectionResetError("the upstream went away")

        before = self.storage_errors()
        with pytest.raises(ConnectionResetError):
            copy_stream(LocalStorage(tmp_path), "job/video.mp4", cut(), "video/mp4")  # type: ignore[arg-type]
        with pytest.raises(CopyError):
            copy_stream(LocalStorage(tmp_path), "job/video.mp4", [b"short"], "video/mp4", expected_size=100)
        assert self.storage_errors() == before


class TestDeadDeliveries:
    def test_a_delivery_that_exhausts_its_retries_is_counted_dead_once(self, inproc):
        gone = Receiver().start()
        gone.stop()  # a loopback URL nobody listens on
        client = inproc.client(webhook_url=gone.url)
        job_id = finished_job(inproc, client)
        [delivery] = inproc.deliveries(job_id)
        before = value("cometjobs_webhook_deliveries_settled_total", outcome="dead")
        attempts_until_settled(inproc, delivery.id)
        assert (inproc.delivery(delivery.id).status, inproc.delivery(delivery.id).attempts) == ("dead", ATTEMPTS)
        assert value("cometjobs_webhook_deliveries_settled_total", outcome="dead") - before == 1
