"""Retrying a database write that must not be lost to a short outage.

After an upstream call succeeds, its outcome (an upstream id, downloaded
artifacts) exists only in this process until it is written down. A database
blip at that moment must delay the write, not discard the outcome.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

import structlog
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from tenacity import (
    RetryCallState,
    retry,
    retry_if_exception,
    stop_after_delay,
    wait_exponential_jitter,
)

P = ParamSpec("P")
T = TypeVar("T")
log = structlog.get_logger(__name__)


def database_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, OperationalError | PoolTimeoutError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    log.warning("database_write_retry", attempt=state.attempt_number, error=type(error).__name__)


def with_db_retry(fn: Callable[P, T], max_seconds: float) -> Callable[P, T]:
    return retry(
        retry=retry_if_exception(database_unavailable),
        stop=stop_after_delay(max_seconds),
        wait=wait_exponential_jitter(multiplier=0.2, max=3),
        before_sleep=_log_retry,
        reraise=True,
    )(fn)
