"""The dispatcher: which queued job may call the upstream next.

A job is submitted only once it holds an upstream slot. A slot is free when its model,
its family and the whole account are each under their cap: the catalogue's
`max_in_flight` and `family_max_in_flight`, and `UPSTREAM_MAX_IN_FLIGHT` for the
account, the model's cap lowered further by what the upstream's 429s taught it
(AIMD: a throttled create halves the model's concurrency, each successful create grows
it by 1/concurrency, so by about one per round of creates). A job holds its slot from
the grant until its upstream task is finished (`models.IN_FLIGHT_SQL`).

The scheduler leader's `dispatch` tick grants free slots fairly: across clients by
start-time fair queuing (each grant advances the client's virtual time by 1/weight; a
client back from idle starts at the system's virtual time, so it cannot bank credit,
and a client with 10,000 queued jobs delays another client's job by one slot turn),
within a client by priority, then age. The grants, the submit nudges and the virtual
times commit together, under a transaction-level advisory lock: two dispatchers (a
leadership hand-over) can never grant the same slot twice.

`DISPATCH=fifo` turns all of this off: every job holds a slot from its creation and is
nudged at once, as before the dispatcher existed (the comparison `make bench-fairness`
prints).
"""

from __future__ import annotations

import heapq
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.core import metrics
from app.core.clock import utcnow
from app.core.db import session_scope
from app.core.queue import enqueue
from app.core.settings import Settings, get_settings
from app.core.tasks import TaskName
from app.jobs import repository as repo
from app.jobs.models import DispatchState, UpstreamLimit
from app.jobs.states import Timeline
from app.providers.base import ModelSpec
from app.providers.registry import catalog

log = structlog.get_logger(__name__)
SYSTEM_VTIME = "system_vtime"
# Transaction-level advisory lock key for a dispatch round ("cometjobs:dispatch").
_LOCK_KEY = 0x636A646973706174


@dataclass
class Capacity:
    """Free slots per model, per family and in total; None: unlimited."""

    model: dict[str, int | None]
    family: dict[str, int | None]
    total: int | None

    def room(self, model: str, family: str) -> bool:
        return all(n is None or n > 0 for n in (self.model.get(model), self.family.get(family), self.total))

    def take(self, model: str, family: str) -> None:
        for bucket, key in ((self.model, model), (self.family, family)):
            if bucket.get(key) is not None:
                bucket[key] = int(bucket[key] or 0) - 1
        if self.total is not None:
            self.total -= 1

    def exhausted(self) -> bool:
        return self.total is not None and self.total <= 0


@dataclass
class _Waiting:
    client_id: str
    weight: int
    vtime: float
    jobs: list[Any] = field(default_factory=list)


def effective_caps(session: Session, specs: dict[str, ModelSpec]) -> dict[str, int | None]:
    """Each model's cap now: the catalogue's, lowered by what 429s taught (None: no cap)."""
    learned: dict[str, float | None] = dict(session.execute(select(UpstreamLimit.model, UpstreamLimit.concurrency)).all())
    caps: dict[str, int | None] = {}
    for model_id, spec in specs.items():
        cap = spec.max_in_flight or None
        taught = learned.get(model_id)
        if taught is not None:
            cap = max(1, math.floor(taught)) if cap is None else min(cap, max(1, math.floor(taught)))
        caps[model_id] = cap
    return caps


def capacity(
    session: Session, settings: Settings, in_flight: dict[str, int], specs: dict[str, ModelSpec] | None = None,
) -> tuple[Capacity, dict[str, Any]]:
    specs = catalog() if specs is None else specs
    caps = effective_caps(session, specs)
    family_caps: dict[str, int | None] = {}
    family_load: Counter[str] = Counter()
    for model_id, count in in_flight.items():
        spec = specs.get(model_id)
        if spec is not None:
            family_load[spec.family] += count
    for spec in specs.values():
        if spec.family_max_in_flight:
            family_caps[spec.family] = spec.family_max_in_flight
        else:
            family_caps.setdefault(spec.family, None)
    total_cap = settings.upstream_max_in_flight or None
    free = Capacity(
        model={m: None if c is None else c - in_flight.get(m, 0) for m, c in caps.items()},
        family={f: None if c is None else c - family_load[f] for f, c in family_caps.items()},
        total=None if total_cap is None else total_cap - sum(in_flight.values()),
    )
    return free, {"caps": caps}


def dispatch() -> dict[str, int]:
    """One round of the leader's `dispatch` tick."""
    settings = get_settings()
    with session_scope() as session:
        return dispatch_in(session, settings, utcnow())


# A quiet round (nothing waits for a slot) refreshes the in-flight and cap gauges this often.
QUIET_GAUGES_EVERY = 1.0
_gauges_at = -math.inf


def dispatch_in(session: Session, settings: Settings, now: datetime) -> dict[str, int]:
    global _gauges_at
    waiting = repo.any_waiting(session, now)
    if not waiting and time.monotonic() - _gauges_at < QUIET_GAUGES_EVERY:
        return {"granted": 0}  # one probe, no lock: most rounds of an idle deployment
    if waiting and session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(_LOCK_KEY)))
    in_flight = repo.in_flight_counts(session)
    free, info = capacity(session, settings, in_flight)
    _publish_gauges(in_flight, info["caps"])
    _gauges_at = time.monotonic()
    if not waiting or free.exhausted():
        return {"granted": 0}
    # Grants run ahead of the workers by DISPATCH_MAX_PENDING at most: a slot granted now is
    # a submit message now, and one the workers cannot start soon only lengthens the queue.
    budget = min(settings.dispatch_batch_size, settings.dispatch_max_pending - repo.pending_submits(session))
    if budget <= 0:
        return {"granted": 0, "workers_busy": 1}
    candidates = repo.waiting_candidates(session, now, per_client=min(budget, 64))
    if not candidates:
        return {"granted": 0}
    chosen = _choose(session, candidates, free, budget)
    if not chosen:
        return {"granted": 0, "waiting": len(candidates)}
    granted = repo.grant_slots(session, [row.id for row, _client in chosen], now, now + settings.queue_nudge_after)
    waited_events = []
    for row, _client in chosen:
        if row.id not in granted:
            continue
        enqueue(session, TaskName.SUBMIT_JOB, row.id)
        waited = (now - max(row.created_at, row.due_at or row.created_at)).total_seconds()
        if waited >= max(1.0, 2 * settings.dispatch_tick.total_seconds()):
            cap = info["caps"].get(row.model)
            waited_events.append({
                "job_id": row.id, "type": Timeline.SLOT_WAIT.value, "status": None, "created_at": now,
                "message": f"waited {waited:.1f} s for an upstream slot",
                "data": {"waited_s": round(waited, 3), "model": row.model, "in_flight": in_flight.get(row.model, 0),
                         "cap": cap},
            })
    repo.add_events(session, waited_events)
    return {"granted": len(granted), "waiting": len(candidates) - len(granted)}


def _publish_gauges(in_flight: dict[str, int], caps: dict[str, int | None]) -> None:
    # Every model's count, 0 included: a model whose last task just ended reads 0, not its old count.
    for model in caps.keys() | in_flight.keys():
        metrics.UPSTREAM_IN_FLIGHT.labels(model=model).set(in_flight.get(model, 0))
    for model, cap in caps.items():
        metrics.UPSTREAM_CAP.labels(model=model).set(-1 if cap is None else cap)


def _choose(session: Session, candidates: list[Any], free: Capacity, budget: int) -> list[tuple[Any, str]]:
    """Start-time fair queuing over the clients, each client's jobs in priority then age order."""
    by_client: dict[str, _Waiting] = {}
    for row in candidates:
        waiting = by_client.setdefault(row.client_id, _Waiting(row.client_id, max(1, row.weight), row.fair_vtime))
        waiting.jobs.append(row)
    system = _system_vtime(session)
    heap: list[tuple[float, str]] = []
    for waiting in by_client.values():
        # Back from idle: start now, not where it stopped (no banked credit).
        waiting.vtime = max(waiting.vtime, system)
        heapq.heappush(heap, (waiting.vtime, waiting.client_id))
    chosen: list[tuple[Any, str]] = []
    while heap and len(chosen) < budget and not free.exhausted():
        vtime, client_id = heapq.heappop(heap)
        waiting = by_client[client_id]
        pick = next((i for i, job in enumerate(waiting.jobs) if free.room(job.model, job.family)), None)
        if pick is None:
            continue  # nothing of this client fits what is free this round
        job = waiting.jobs.pop(pick)
        free.take(job.model, job.family)
        chosen.append((job, client_id))
        system = vtime
        waiting.vtime = vtime + 1.0 / waiting.weight
        if waiting.jobs:
            heapq.heappush(heap, (waiting.vtime, client_id))
    if chosen:
        repo.set_client_vtimes(session, {c: w.vtime for c, w in by_client.items()})
        _set_system_vtime(session, system)
    return chosen


def _system_vtime(session: Session) -> float:
    value = session.scalar(select(DispatchState.value).where(DispatchState.name == SYSTEM_VTIME))
    return float(value or 0.0)


def _set_system_vtime(session: Session, value: float) -> None:
    state = session.get(DispatchState, SYSTEM_VTIME)
    if state is None:
        session.add(DispatchState(name=SYSTEM_VTIME, value=value))
    else:
        state.value = value
    session.flush()


def throttled(session: Session, model: str, now: datetime) -> float:
    """A create answered 429: halve the model's concurrency (multiplicative decrease),
    starting from what is in flight when nothing was learned yet."""
    in_flight = repo.in_flight_counts(session).get(model, 0)
    # The row first, if missing (a worker throttled at the same moment waits here for ours and
    # then finds it), then locked: a plain insert of a row both lacked fails one of them.
    repo.ensure_upstream_limit(session, model, now)
    limit = session.get(UpstreamLimit, model, with_for_update=True, populate_existing=True)
    assert limit is not None
    current = limit.concurrency if limit.concurrency is not None else max(1, in_flight)
    lowered = max(1.0, math.floor(current / 2))
    limit.concurrency, limit.throttled_at, limit.updated_at = lowered, now, now
    session.flush()
    metrics.UPSTREAM_THROTTLED.labels(model=model).inc()
    log.info("upstream_throttled", model=model, concurrency=lowered)
    return lowered


def created(session: Session, model: str, now: datetime) -> None:
    """A create succeeded: grow a learned concurrency by 1/concurrency (additive increase),
    and forget it once it reaches the catalogue's cap, or twice what is in flight."""
    limit = session.get(UpstreamLimit, model, with_for_update=True)
    if limit is None or limit.concurrency is None:
        return
    grown = limit.concurrency + 1.0 / limit.concurrency
    try:
        cap = catalog()[model].max_in_flight
    except KeyError:
        cap = 0
    ceiling = cap or 2 * max(1, repo.in_flight_counts(session).get(model, 0))
    limit.concurrency = None if grown >= ceiling else grown
    limit.updated_at = now
    session.flush()


__all__ = ["Capacity", "capacity", "created", "dispatch", "dispatch_in", "effective_caps", "throttled"]
