"""The logging pipeline as a real process configures it: JSON in production, a
console in dev, job fields on every record (ours and the libraries'), and secrets
redacted wherever they hide (fields, messages, tracebacks, warnings)."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

COMETAPI_KEY = "sk-live-" + uuid.uuid4().hex
API_KEY = "cj_live_" + uuid.uuid4().hex
WEBHOOK_SECRET = "whsec_" + "QUJD" * 8
SIGNATURE = uuid.uuid4().hex * 2
DB_PASSWORD = "pw-" + uuid.uuid4().hex
S3_SECRET = "s3-" + uuid.uuid4().hex

SCRIPT = textwrap.dedent(f"""
    import logging, warnings
    import structlog
    from app.core.logging import configure_logging
    from app.core.settings import get_settings

    settings = get_settings()
    configure_logging(settings.effective_log_format, settings.log_level)
    log = structlog.get_logger("app.jobs.submit")
    structlog.contextvars.bind_contextvars(task_id="task-1", job_id="job_01TEST", model="sora-2")

    log.info("job_status", status="running")
    log.info("calling upstream", api_key={API_KEY!r}, webhook_secret={WEBHOOK_SECRET!r},
             headers={{"Authorization": "Bearer {COMETAPI_KEY}"}})
    log.info("the key is {COMETAPI_KEY} and the secret {S3_SECRET}")
    logging.getLogger("celery.app.trace").info(
        "Task %s succeeded: %s", "cometjobs.collect_job",
        "https://bucket.s3.amazonaws.com/a.mp4?X-Amz-Credential=AKIA%2Fx&X-Amz-Signature={SIGNATURE}")
    logging.getLogger("sqlalchemy.pool").warning(
        "cannot connect to postgresql+psycopg://app:{DB_PASSWORD}@db/cometjobs")
    try:
        raise RuntimeError("upstream said: Incorrect API key provided: {COMETAPI_KEY}")
    except RuntimeError:
        log.exception("submit_crashed")
    warnings.warn("deprecated call with Bearer {API_KEY}")
    logging.getLogger("httpx").info("HTTP Request: POST https://api.cometapi.com/v1/videos")
    logging.getLogger("botocore.auth").debug("Signature: {SIGNATURE}")
""")

SECRETS = [COMETAPI_KEY, API_KEY, WEBHOOK_SECRET, SIGNATURE, DB_PASSWORD, S3_SECRET]


def run(env: dict[str, str]) -> list[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("COMETJOBS_LOG")}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], env={**base, **env}, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return [line for line in result.stderr.splitlines() if line.strip()]


def production(**extra: str) -> dict[str, str]:
    return {
        "COMETJOBS_ENV": "prod", "COMETJOBS_COMETAPI_KEY": COMETAPI_KEY,
        "COMETJOBS_S3_SECRET_ACCESS_KEY": S3_SECRET, "COMETJOBS_LOG_LEVEL": "DEBUG",
        "COMETJOBS_CONSOLE_SECRET": "console-" + "s" * 40, **extra,
    }


class TestFormat:
    def test_production_writes_one_json_object_per_record(self):
        records = [json.loads(line) for line in run(production())]
        events = [r["event"] for r in records]
        assert "job_status" in events and "submit_crashed" in events
        for record in records:
            assert {"event", "level", "timestamp", "logger"} <= set(record)

    def test_dev_writes_a_readable_console(self):
        lines = run({"COMETJOBS_ENV": "dev", "COMETJOBS_COMETAPI_KEY": COMETAPI_KEY})
        status = next(line for line in lines if "job_status" in line)
        assert not status.startswith("{")
        assert "job_id=job_01TEST" in status and "status=running" in status


class TestJobFields:
    def test_records_of_ours_and_of_libraries_carry_the_bound_job_fields(self):
        records = [json.loads(line) for line in run(production())]
        celery = next(r for r in records if r["logger"] == "celery.app.trace")
        ours = next(r for r in records if r["event"] == "job_status")
        for record in (celery, ours):
            assert (record["job_id"], record["model"], record["task_id"]) == ("job_01TEST", "sora-2", "task-1")


class TestSecrets:
    def test_no_secret_survives_in_fields_messages_tracebacks_or_warnings(self):
        lines = run(production())
        leaks = [line for line in lines for secret in SECRETS if secret in line]
        assert not leaks, leaks
        records = [json.loads(line) for line in lines]
        calling = next(r for r in records if r["event"] == "calling upstream")
        assert calling["api_key"] == calling["webhook_secret"] == "[REDACTED]"
        assert calling["headers"] == {"Authorization": "[REDACTED]"}
        crashed = next(r for r in records if r["event"] == "submit_crashed")
        assert "RuntimeError: upstream said: Incorrect API key provided: [REDACTED]" in crashed["exception"]
        signed = next(r for r in records if r["logger"] == "celery.app.trace")
        assert "X-Amz-Signature=[REDACTED]" in signed["event"] and "X-Amz-Credential=[REDACTED]" in signed["event"]
        assert any("app:[REDACTED]@db" in r["event"] for r in records)
        assert any(r["logger"] == "py.warnings" and "Bearer [REDACTED]" in r["event"] for r in records)

    def test_chatty_http_and_aws_libraries_stay_quiet_even_at_debug(self):
        loggers = {json.loads(line)["logger"] for line in run(production())}
        assert "httpx" not in loggers and "botocore.auth" not in loggers

    def test_console_output_is_redacted_too(self):
        lines = run({"COMETJOBS_ENV": "dev", "COMETJOBS_COMETAPI_KEY": COMETAPI_KEY,
                     "COMETJOBS_S3_SECRET_ACCESS_KEY": S3_SECRET})
        assert "submit_crashed" in "\n".join(lines)
        assert not [line for line in lines for secret in SECRETS if secret in line]


@pytest.fixture
def access_lines() -> Iterator[Callable[[str], list[dict[str, Any]]]]:
    """The log stream of an in-process app, reconfigured onto a buffer: `access_lines(level)`
    sets the level and returns the access lines written so far."""
    from app.core.logging import configure_logging
    from app.core.settings import get_settings

    buffer = io.StringIO()

    def lines(level: str = "INFO") -> list[dict[str, Any]]:
        if level:
            configure_logging("json", level, force=True)
            [handler] = logging.getLogger().handlers
            assert isinstance(handler, logging.StreamHandler)
            handler.setStream(buffer)
        return [json.loads(line) for line in buffer.getvalue().splitlines() if '"http_request"' in line]

    yield lines
    settings = get_settings()
    configure_logging(settings.effective_log_format, settings.log_level, force=True)


class TestAccessLine:
    """One JSON line per request, written past the logging machinery (`log_access`)
    but in the pipeline's shape, on its stream, at its level."""

    def test_each_request_writes_one_line_with_route_status_duration_and_request_id(self, api, access_lines):
        access_lines("INFO")
        response = api.get("/v1/jobs/job_0000", headers={"X-Request-ID": "trace-42"})
        assert response.status_code == 401
        [line] = access_lines("")
        assert line["route"] == "/v1/jobs/{job_id}" and line["method"] == "GET" and line["status"] == 401
        assert line["request_id"] == "trace-42" and line["logger"] == "cometjobs.api" and line["level"] == "info"
        assert isinstance(line["duration_ms"], float) and line["timestamp"].endswith("Z")

    def test_a_request_id_that_is_a_secret_is_echoed_but_logged_redacted(self, api, access_lines):
        access_lines("INFO")
        response = api.get("/v1/jobs", headers={"X-Request-ID": API_KEY})
        assert response.headers["x-request-id"] == API_KEY  # the caller's own, back to the caller
        [line] = access_lines("")
        assert API_KEY not in json.dumps(line) and line["request_id"] == "cj_live_[REDACTED]"

    def test_a_level_above_info_writes_none(self, api, access_lines):
        access_lines("WARNING")
        assert api.get("/v1/jobs").status_code == 401
        assert access_lines("") == []
