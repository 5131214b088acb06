"""One retry policy for every wait: submit retries, poll intervals, poll errors,
collect retries, downloads and webhook attempts differ only in their numbers."""

from __future__ import annotations

import random
from dataclasses import dataclass

# Spread waits by ±10% so workers that failed together do not retry together.
JITTER = 0.1


def jittered(seconds: float, spread: float = JITTER) -> float:
    return seconds * random.uniform(1 - spread, 1 + spread)


@dataclass(frozen=True)
class Backoff:
    """Attempt n (from 1) waits `base * factor**(n-1)`, at most `cap`, jittered; or,
    with a `schedule`, its n-th entry (jittered). A `Retry-After` longer than the
    wait wins as it is: the server named the instant."""

    base: float = 1.0
    factor: float = 2.0
    cap: float = 60.0
    schedule: tuple[float, ...] = ()

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        n = max(1, attempt)
        if self.schedule:
            wait = jittered(self.schedule[min(n, len(self.schedule)) - 1])
        else:
            wait = jittered(min(self.cap, self.base * self.factor ** (n - 1)))
        if retry_after is not None:
            wait = max(wait, retry_after)
        return wait

    def exhausted(self, attempt: int) -> bool:
        """With a schedule: True once `attempt` tries have used every entry."""
        return bool(self.schedule) and attempt > len(self.schedule)


__all__ = ["JITTER", "Backoff", "jittered"]
