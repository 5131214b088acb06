"""What the sync and async clients share: requests, retries' timing, answers to errors."""

from __future__ import annotations

import email.utils
import os
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from cometjobs_client.errors import error_for

RETRY_STATUSES = frozenset({429, 503})
MAX_RETRY_AFTER = 60.0
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
# A long-poll's answer may take its whole `wait`; the read timeout covers it with a margin.
WAIT_SLACK = 15.0
MAX_WAIT = 60


def retry_after_seconds(value: str | None) -> float | None:
    """`Retry-After` as delay-seconds or an HTTP-date (RFC 9110 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


@dataclass
class Retries:
    """Retry 429 and 503 (the server did nothing) up to `attempts` times, waiting what
    `Retry-After` says (capped at `max_delay`), else an exponential backoff with jitter."""

    attempts: int = 3
    base_delay: float = 0.5
    max_delay: float = MAX_RETRY_AFTER

    def delay(self, attempt: int, response: httpx.Response) -> float | None:
        if response.status_code not in RETRY_STATUSES or attempt >= self.attempts:
            return None
        told = retry_after_seconds(response.headers.get("retry-after"))
        if told is not None:
            return min(told, self.max_delay)
        return min(self.base_delay * 2.0**attempt, self.max_delay) * (0.5 + random.random() / 2)


def settings(base_url: str | None, api_key: str | None) -> tuple[str, str]:
    url = base_url or os.environ.get("COMETJOBS_API_URL") or "http://127.0.0.1:8000"
    key = api_key or os.environ.get("COMETJOBS_API_KEY")
    if not key:
        raise ValueError("no API key: pass api_key= or set COMETJOBS_API_KEY")
    return url.rstrip("/"), key


def headers(api_key: str) -> dict[str, str]:
    from cometjobs_client import __version__

    return {"Authorization": f"Bearer {api_key}", "User-Agent": f"cometjobs-client/{__version__}"}


def check(response: httpx.Response) -> httpx.Response:
    if response.status_code >= 400:
        raise error_for(response)
    return response


def drop_none(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def wait_timeout(seconds: int) -> httpx.Timeout:
    return httpx.Timeout(30.0, connect=10.0, read=seconds + WAIT_SLACK)


def remaining(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.monotonic()


# An event stream sends a comment every 15 s: a minute of silence means the connection is gone.
STREAM_TIMEOUT = httpx.Timeout(30.0, connect=10.0, read=60.0)
STREAM_BROKEN = (httpx.ReadTimeout, httpx.ReadError, httpx.RemoteProtocolError)


@dataclass
class SSE:
    event: str = "message"
    id: str | None = None
    data: str = ""


class SSEParser:
    """Server-Sent Events off a stream's lines (the WHATWG event-stream format)."""

    def __init__(self) -> None:
        self._event = SSE()
        self._data: list[str] = []

    def feed(self, line: str) -> SSE | None:
        if not line:
            if not self._data:
                self._event = SSE()
                return None
            done = self._event
            done.data = "\n".join(self._data)
            self._event, self._data = SSE(), []
            return done
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event.event = value
        elif name == "id":
            self._event.id = value
        return None
