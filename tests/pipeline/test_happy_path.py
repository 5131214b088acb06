"""The whole pipeline in-process: submit, poll, collect, in milliseconds."""

from __future__ import annotations

from app.core.tasks import TaskName
from tests.support.inprocess import SoraScript


def test_a_job_goes_from_queued_to_succeeded_with_its_artifact(inproc):
    SoraScript(inproc.upstream, polls=[{"status": "in_progress", "progress": 40}, {"status": "completed"}])
    client = inproc.client()
    job_id = inproc.create_job(client)
    assert inproc.publisher.of(TaskName.SUBMIT_JOB) == []  # it waits for the dispatcher's slot
    assert inproc.dispatch()["granted"] == 1
    assert inproc.publisher.of(TaskName.SUBMIT_JOB) == [job_id]

    job = inproc.run_until_settled(job_id)

    assert job.status == "succeeded"
    assert [e.status for e in inproc.timeline(job_id) if e.type == "status"] == [
        "queued", "submitting", "running", "collecting", "succeeded"]
    assert inproc.upstream.count("POST", r"/v1/videos") == 1
