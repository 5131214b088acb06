"""Narrow workarounds for library bugs, each with the failure it prevents."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def tolerate_restore_after_disconnect() -> None:
    """kombu's Redis QoS restores or acknowledges messages through a channel whose
    connection is already released, and the worker dies with "Unrecoverable error:
    AttributeError('NoneType' object has no attribute 'hostname')" (seen here when Redis
    restarts; cf. celery/kombu#582, #970). A skipped ack or restore leaves the message in
    Redis's unacked index, restored after the visibility timeout; every task is idempotent
    and the sweeper re-drives every job from Postgres anyway. Skipping is safe; dying is not.
    """
    from kombu.transport import redis as kombu_redis

    for name in ("restore_unacked", "ack", "reject"):
        original = getattr(kombu_redis.QoS, name)
        if getattr(original, "_cometjobs_patched", False):
            continue
        setattr(kombu_redis.QoS, name, _tolerant(name, original))


def _tolerant(name: str, original: Any) -> Any:
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return original(self, *args, **kwargs)
        except AttributeError as exc:
            log.warning("kombu %s skipped on a torn-down Redis connection: %s", name, exc)
            return None

    setattr(method, "_cometjobs_patched", True)  # noqa: B010 - marks the wrapper for idempotent patching
    method.__name__ = name
    return method
