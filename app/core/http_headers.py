"""HTTP header values both our clients (CometAPI and webhook receivers) interpret."""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime

# A server asking for more than a day is honoured only up to a day.
RETRY_AFTER_CAP = 86400.0


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """`Retry-After` as delay-seconds or an HTTP-date (RFC 9110 10.2.3), capped at a day."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        when = when if when.tzinfo else when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return min(max(0.0, seconds), RETRY_AFTER_CAP)
