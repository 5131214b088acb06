"""One webhook attempt against a real HTTP receiver on loopback: signing, the
SSRF checks (at submit and at send time), timeouts, redirects, Retry-After
and the response-body cap. No database: these call the sender directly."""

from __future__ import annotations

import asyncio
import ipaddress
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from app.core.http_headers import retry_after_seconds
from app.core.settings import Settings, get_settings
from app.webhooks import signing, ssrf
from app.webhooks.service import (
    AttemptResult,
    Outgoing,
    next_attempt_delay,
    send,
)
from app.webhooks.transport import make_client
from tests.helpers import verify_signature
from tests.support.receiver import Receiver

LOOPBACK = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")]
PAYLOAD = '{"id":"evt_1","type":"job.succeeded","data":{"id":"job_1"}}'


def settings(**overrides: object) -> Settings:
    return get_settings().model_copy(update=overrides)


def attempt(url: str, secrets: list[str], allowed: list = LOOPBACK, **overrides: object) -> AttemptResult:
    conf = settings(webhook_allowed_cidrs=allowed, **overrides)
    item = Outgoing("msg_1", "job_1", "cli_1", url, PAYLOAD, "job.succeeded", 1, datetime.now(UTC))

    async def go() -> AttemptResult:
        async with make_client(conf.webhook_allowed_cidrs, conf.webhook_timeout.total_seconds(), 4) as http:
            return await send(http, conf, item, secrets)

    return asyncio.run(go())


@pytest.fixture
def secret() -> str:
    return signing.new_secret()


class TestSigning:
    def test_standard_webhooks_verifies_and_the_id_is_the_delivery(self, receiver, secret):
        result = attempt(receiver.url, [secret])
        assert result.ok and result.status_code == 200 and result.error is None
        [hook] = receiver.requests
        assert hook.headers["webhook-id"] == "msg_1"
        assert hook.headers["content-type"] == "application/json"
        assert Webhook(secret).verify(hook.body, hook.headers) == {"id": "evt_1", "type": "job.succeeded",
                                                                   "data": {"id": "job_1"}}
        assert verify_signature(secret, hook.headers, hook.body)

    def test_each_active_secret_signs(self, receiver, secret):
        other = signing.new_secret()
        attempt(receiver.url, [secret, other])
        [hook] = receiver.requests
        assert len(hook.headers["webhook-signature"].split()) == 2
        for key in (secret, other):
            Webhook(key).verify(hook.body, hook.headers)
        with pytest.raises(WebhookVerificationError):
            Webhook(signing.new_secret()).verify(hook.body, hook.headers)

    def test_a_tampered_body_fails_verification(self, receiver, secret):
        attempt(receiver.url, [secret])
        [hook] = receiver.requests
        assert not verify_signature(secret, hook.headers, hook.body.replace(b"job_1", b"job_2"))


class TestOutcomes:
    def test_redirect_is_a_failure_and_is_not_followed(self, receiver, secret):
        receiver.script = [(302, {"location": f"http://127.0.0.1:{receiver.port}/elsewhere"})]
        result = attempt(receiver.url, [secret])
        assert not result.ok
        assert result.status_code == 302
        assert "redirect 302" in result.error and "/elsewhere" in result.error
        assert [r.path for r in receiver.requests] == ["/hook"]

    def test_5xx_is_a_failure_with_its_body_kept(self, receiver, secret):
        receiver.default, receiver.body = 503, b"down for maintenance"
        result = attempt(receiver.url, [secret])
        assert (result.status_code, result.error, result.body) == (503, "HTTP 503", "down for maintenance")

    def test_response_body_is_capped(self, receiver, secret):
        receiver.body = b"x" * 100_000
        result = attempt(receiver.url, [secret], webhook_response_body_cap=100)
        assert result.ok
        assert result.body == "x" * 100

    def test_nul_bytes_in_the_body_are_dropped(self, receiver, secret):
        receiver.default, receiver.body = 500, b"bad\x00body"
        assert attempt(receiver.url, [secret]).body == "badbody"

    def test_no_answer_within_the_timeout_is_a_failure(self, receiver, secret):
        result = attempt(receiver.hold_url, [secret], webhook_timeout=timedelta(seconds=0.5))
        receiver.release()
        assert result.status_code is None
        assert result.error == "timed out after 0.5 s"
        assert len(receiver.requests) == 1

    def test_connection_refused_is_a_failure(self, secret):
        down = Receiver().start()
        url = down.url
        down.stop()
        result = attempt(url, [secret])
        assert result.status_code is None
        assert "Cannot connect to host" in result.error

    def test_retry_after_seconds_is_read_from_a_failure(self, receiver, secret):
        receiver.script = [(429, {"retry-after": "120"})]
        result = attempt(receiver.url, [secret])
        assert result.retry_after == 120


class TestRetryAfter:
    NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    @pytest.mark.parametrize(("header", "seconds"), [
        ("30", 30.0), (" 7 ", 7.0), ("1.5", 1.5), ("-5", 0.0), ("10000000", 86400.0),
        (format_datetime(datetime(2026, 1, 1, 12, 2, tzinfo=UTC), usegmt=True), 120.0),
        ("Thu, 01 Jan 2026 11:00:00 GMT", 0.0),
        ("soon", None), ("", None), (None, None), ("nan", None),
    ])
    def test_both_forms_are_understood(self, header, seconds):
        assert retry_after_seconds(header, self.NOW) == seconds

    def test_it_lengthens_the_scheduled_delay_but_never_shortens_it(self):
        conf = settings(webhook_retry_schedule=[10, 20])
        assert next_attempt_delay(conf, 1, 100) == 100
        assert 9 <= next_attempt_delay(conf, 1, 1) <= 11
        assert 18 <= next_attempt_delay(conf, 2, None) <= 22
        assert next_attempt_delay(conf, 3, 100) is None


class TestSsrfAtSubmit:
    @pytest.mark.parametrize("url", [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/",
        "http://[::ffff:169.254.169.254]/",
        "http://[64:ff9b::a9fe:a9fe]/",       # NAT64 form of the metadata address
        "http://[2002:a9fe:a9fe::1]/",        # 6to4 form
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://0.0.0.0:8080/",
    ])
    def test_link_local_and_metadata_are_always_refused(self, url):
        everything = [ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")]
        with pytest.raises(ssrf.UnsafeURL):
            ssrf.check_at_submit(url, everything)

    @pytest.mark.parametrize("url", [
        "http://127.0.0.1:8000/", "http://10.1.2.3/", "http://[::1]/", "http://192.168.0.10/",
        "http://2130706433/",                  # 127.0.0.1 as one decimal number
        "http://localhost/",
    ])
    def test_private_and_loopback_need_the_allowlist(self, url):
        with pytest.raises(ssrf.UnsafeURL, match="COMETJOBS_WEBHOOK_ALLOWED_CIDRS"):
            ssrf.check_at_submit(url, [])
        ssrf.check_at_submit(url, [*LOOPBACK, ipaddress.ip_network("10.0.0.0/8"),
                                   ipaddress.ip_network("192.168.0.0/16")])

    @pytest.mark.parametrize("url", ["ftp://example.com/", "http://user:pw@example.com/", "http:///nohost",
                                     "http://example.com:99999/"])
    def test_malformed_urls_are_refused(self, url):
        with pytest.raises(ssrf.UnsafeURL):
            ssrf.check_at_submit(url, [])

    def test_a_public_address_passes(self):
        ssrf.check_at_submit("https://93.184.215.14/hooks", [])


class TestSsrfAtSend:
    def test_a_name_resolving_to_a_refused_address_is_refused_when_connecting(self, receiver, secret):
        result = attempt(f"http://localhost:{receiver.port}/hook", [secret], allowed=[])
        assert result.status_code is None
        assert result.error.startswith("refused: ") and "is a private or loopback address" in result.error
        assert receiver.requests == []

    def test_a_literal_address_is_checked_again_when_sent(self, receiver, secret):
        result = attempt(receiver.url, [secret], allowed=[])
        assert result.error.startswith("refused: 127.0.0.1 is a private or loopback address")
        assert receiver.requests == []

    def test_the_same_name_is_reached_when_allowed(self, receiver, secret):
        assert attempt(f"http://localhost:{receiver.port}/hook", [secret]).ok
        assert receiver.requests[0].headers["host"] == f"localhost:{receiver.port}"
