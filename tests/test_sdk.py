"""The Python client (sdk/python, `cometjobs_client`) against the real API process."""

from __future__ import annotations

import asyncio
import hashlib

import httpx
import pytest
from cometjobs_client import (
    AsyncClient,
    AuthenticationError,
    Client,
    Job,
    JobEvent,
    NotFound,
    RateLimited,
    Retries,
    ValidationError,
    WaitTimeout,
    WebhookVerificationError,
    verify_webhook,
)

from tests.conftest import API_PORT
from tests.support.waiting import wait_for

URL = f"http://127.0.0.1:{API_PORT}"
# A worker may run in this session: a prompt that stalls upstream keeps these jobs unfinished.
PROMPT = {"prompt": "a paper boat [stall]"}


class CountingTransport(httpx.HTTPTransport):
    """The real transport, counting what goes over it."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(f"{request.method} {request.url.path}")
        return super().handle_request(request)


@pytest.fixture
def caller(api_service, emulator, make_client):  # emulator: reset, so a stalled job stays stalled
    return make_client()


@pytest.fixture
def sdk(caller):
    with Client(URL, caller["api_key"]) as client:
        yield client


class TestAgainstTheApi:
    def test_create_get_list_cancel_and_events(self, sdk):
        created = [sdk.create("sora-2", {"prompt": f"boat {i} [stall]"}, metadata={"n": i}) for i in range(5)]
        assert created[0].status == "queued" and created[0].metadata == {"n": 0}
        assert sdk.get(created[0].id).id == created[0].id
        listed = list(sdk.list(page_size=2))  # three pages
        assert [j.id for j in listed] == [j.id for j in reversed(created)]
        assert [j.id for j in sdk.list(model="sora-2")] == [j.id for j in reversed(created)]
        assert list(sdk.list(status="succeeded")) == []
        canceled = sdk.cancel(created[0])
        assert canceled.status == "canceled" and canceled.done and canceled.error.code == "canceled"
        statuses = [e.status for e in sdk.events(created[0], page_size=1) if e.type == "status"]
        assert statuses[0] == "queued" and statuses[-1] == "canceled"

    def test_the_automatic_idempotency_key_and_an_explicit_one(self, sdk):
        first = sdk.create("sora-2", PROMPT, idempotency_key="order-1")
        assert sdk.create("sora-2", PROMPT, idempotency_key="order-1").id == first.id
        assert sdk.create("sora-2", PROMPT).id != sdk.create("sora-2", PROMPT).id

    def test_errors_are_typed_and_carry_the_problem(self, sdk, caller):
        with pytest.raises(ValidationError) as bad:
            sdk.create("no-such-model", PROMPT)
        assert bad.value.status == 422 and bad.value.code == "validation_error"
        assert bad.value.errors[0].field == "model" and bad.value.errors[0].code == "unknown_model"
        with pytest.raises(NotFound) as missing:
            sdk.get("job_nope")
        assert missing.value.code == "not_found" and missing.value.request_id
        with pytest.raises(AuthenticationError), Client(URL, "wrong-key") as other:
            other.get("job_nope")

    def test_429_is_retried_after_retry_after_then_raised(self, make_client, api_service):
        tight = make_client("tight", rate_per_minute=1, rate_burst=1)
        transport = CountingTransport()
        with Client(URL, tight["api_key"], transport=transport, retries=Retries(attempts=2, max_delay=0.01)) as sdk:
            sdk.create("sora-2", PROMPT)
            with pytest.raises(RateLimited) as limited:
                sdk.create("sora-2", PROMPT)
        assert limited.value.code == "rate_limited" and limited.value.retry_after >= 1
        assert transport.sent.count("POST /v1/jobs") == 1 + 3

    def test_batch_adds_keys_and_reports_each_item(self, sdk):
        result = sdk.create_batch([{"model": "sora-2", "input": PROMPT}, {"model": "nope", "input": PROMPT}])
        assert (result.created, result.failed) == (1, 1)
        assert result.data[0].ok and result.data[0].job.status == "queued"
        assert result.data[1].error.code == "validation_error" and len(result.data[1].idempotency_key) == 36

    def test_stream_yields_the_timeline_and_the_job_until_the_end(self, sdk):
        job = sdk.create("sora-2", PROMPT)
        sdk.cancel(job)
        items = list(sdk.stream(job))
        events = [i for i in items if isinstance(i, JobEvent)]
        assert events[-1].status == "canceled"
        assert [i.status for i in items if isinstance(i, Job)][-1] == "canceled"
        assert [e.id for e in sdk.stream(job, after=events[0].id) if isinstance(e, JobEvent)] == [
            e.id for e in events[1:]]

    def test_wait_gives_up_with_the_job_as_last_seen(self, sdk):
        job = sdk.create("sora-2", PROMPT)
        with pytest.raises(WaitTimeout) as late:
            sdk.wait(job, timeout=1)
        assert not late.value.job.done

    def test_prefer_wait_answers_202_with_a_job_still_queued(self, sdk):
        assert not sdk.create("sora-2", PROMPT, wait=0).done

    def test_the_async_client(self, caller):
        async def scenario() -> list[str]:
            async with AsyncClient(URL, caller["api_key"]) as client:
                job = await client.create("sora-2", PROMPT)
                assert (await client.get(job.id)).id == job.id
                await client.cancel(job)
                done = await client.wait(job, timeout=5)
                assert done.status == "canceled"
                listed = [j.id async for j in client.list(page_size=1)]
                statuses = [e.status async for e in client.events(job) if e.type == "status"]
                streamed = [i async for i in client.stream(job)]
                assert isinstance(streamed[-1], Job) and streamed[-1].status == "canceled"
                return listed + [statuses[0] or "", statuses[-1] or ""]

        assert asyncio.run(scenario())[1:] == ["queued", "canceled"]


class TestWholePipeline:
    def test_wait_with_progress_download_and_a_verified_webhook(self, http, make_client, receiver, tmp_path):
        caller = make_client(webhook_url=receiver.url)
        seen: list[tuple[str, int]] = []
        with Client(URL, caller["api_key"]) as sdk:
            job = sdk.create("sora-2", {"prompt": "a lighthouse", "seconds": 4}, webhook_events=["job.progress"])
            done = sdk.wait(job, timeout=60, on_progress=lambda j: seen.append((j.status, j.progress)))
            assert done.succeeded, done
            assert seen[-1] == ("succeeded", 100) and len(seen) >= 2
            path = sdk.download(done, "video", tmp_path)
            assert path == tmp_path / "video"
            video = next(a for a in done.artifacts if a.name == "video")
            assert hashlib.sha256(path.read_bytes()).hexdigest() == video.sha256
        hook = wait_for(lambda: next((h for h in receiver.for_job(done.id) if h.json["type"] == "job.succeeded"), None),
                        timeout=30, message="the job.succeeded webhook")
        with Client(URL, caller["api_key"]) as sdk:
            deliveries = list(sdk.deliveries(done, page_size=1))  # a page per delivery
            assert "job.succeeded" in {d.event_type for d in deliveries}
            assert "sora-2" in {m.id for m in sdk.models()}
        event = verify_webhook(hook.body, hook.headers, caller["webhook_secret"])
        assert event.type == "job.succeeded" and event.data.id == done.id and event.data.succeeded
        with pytest.raises(WebhookVerificationError):
            verify_webhook(hook.body + b" ", hook.headers, caller["webhook_secret"])


def test_verify_webhook_takes_either_secret_while_a_rotation_lasts():
    import base64
    import json
    import os
    from datetime import UTC, datetime

    from standardwebhooks import Webhook

    old, new = ("whsec_" + base64.b64encode(os.urandom(32)).decode() for _ in range(2))
    now = datetime.now(UTC)
    job = {"id": "job_1", "model": "sora-2", "family": "sora", "kind": "video", "status": "succeeded",
           "progress": 100, "input": {}, "created_at": now.isoformat(), "updated_at": now.isoformat()}
    body = json.dumps({"id": "evt_1", "type": "job.succeeded", "created_at": now.isoformat(), "data": job})
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(int(now.timestamp())),
               "webhook-signature": Webhook(new).sign("msg_1", now, body)}
    event = verify_webhook(body.encode(), headers, [old, new])
    assert event.type == "job.succeeded" and event.data.succeeded and event.data.artifacts == []
    with pytest.raises(WebhookVerificationError):
        verify_webhook(body, headers, old)
