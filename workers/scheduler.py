"""The scheduler: a deployment's periodic work, in processes of its own.

    tick      every                    runs on        does
    poll      POLL_TICK                every replica  claims due polls, asks the upstream, writes back
    deliver   WEBHOOK_TICK             every replica  sends due webhook deliveries (retries)
    dispatch  DISPATCH_TICK            the leader     grants free upstream slots, fairly (app/jobs/dispatch.py)
    sweep     SWEEP_INTERVAL           the leader     nudges overdue jobs, judges lost leases, deadlines
    expire    ARTIFACT_EXPIRY_TICK     the leader     deletes results past their retention
    purge     RETENTION_TICK           the leader     deletes finished jobs and uploads past theirs
    gauges    GAUGES_TICK              the leader     counts what the metrics show (jobs per state, ...)

A tick is a loop in this process, not a Celery message: it costs no broker traffic,
never shows in Flower, never runs twice at once within a process, cannot be starved
by job work in the worker pool (nor starve it), and does a bounded amount of work per
round (each tick has a batch size and a time budget; a tick that spent its budget
runs again at once). Poll and deliver claim their rows with `FOR UPDATE SKIP LOCKED`,
so every replica shares them; sweep and expire run on one replica at a time, the
holder of a leadership lock (`app/core/leader.py`). Run two or more replicas: when
the leader dies, another takes over within `SCHEDULER_LEADER_CHECK`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from app.artifacts import retention
from app.core import aio, metrics, queue
from app.core.leader import Leadership, leadership
from app.core.settings import Settings, get_settings
from app.jobs import dispatch, gauges, poller, sweeper
from app.jobs import retention as job_retention
from app.webhooks import service as webhooks

log = structlog.get_logger("cometjobs.scheduler")
# A tick that keeps failing (the database is down) logs its error this often, not every round.
ERROR_LOG_EVERY = 30.0


@dataclass(frozen=True)
class Tick:
    name: str
    interval: float
    run: Callable[[Settings], Awaitable[dict[str, int]]]
    leader_only: bool = False


async def _sweep(_settings: Settings) -> dict[str, int]:
    return await asyncio.to_thread(sweeper.sweep)


async def _expire(_settings: Settings) -> dict[str, int]:
    return await asyncio.to_thread(retention.expire_due)


async def _purge(_settings: Settings) -> dict[str, int]:
    return await asyncio.to_thread(job_retention.purge_due)


async def _dispatch(_settings: Settings) -> dict[str, int]:
    return await asyncio.to_thread(dispatch.dispatch)


async def _gauges(_settings: Settings) -> dict[str, int]:
    return await asyncio.to_thread(gauges.refresh)


def default_ticks(settings: Settings) -> list[Tick]:
    ticks = [
        Tick("poll", settings.poll_tick.total_seconds(), poller.poll_tick),
        Tick("deliver", settings.webhook_tick.total_seconds(), webhooks.deliver_tick),
        Tick("sweep", settings.sweep_interval.total_seconds(), _sweep, leader_only=True),
        Tick("expire", settings.artifact_expiry_tick.total_seconds(), _expire, leader_only=True),
        Tick("gauges", settings.gauges_tick.total_seconds(), _gauges, leader_only=True),
        Tick("purge", settings.retention_tick.total_seconds(), _purge, leader_only=True),
    ]
    if settings.dispatch == "fair":
        ticks.append(Tick("dispatch", settings.dispatch_tick.total_seconds(), _dispatch, leader_only=True))
    return ticks


class Scheduler:
    def __init__(self, settings: Settings, ticks: list[Tick] | None = None,
                 lock: Leadership | None = None) -> None:
        self.settings = settings
        self.ticks = ticks if ticks is not None else default_ticks(settings)
        self.lock = lock or leadership(settings, "scheduler")
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.stopping = asyncio.Event()
        self.leading = asyncio.Event()

    async def run(self) -> None:
        log.info("scheduler_started", replica=self.name, ticks=[t.name for t in self.ticks])
        try:
            await asyncio.gather(self._lead(), *(self._loop(tick) for tick in self.ticks))
        finally:
            await asyncio.to_thread(self.lock.release)
            metrics.SCHEDULER_LEADER.set(0)
            await aio.close_resources()
            log.info("scheduler_stopped", replica=self.name)

    def stop(self) -> None:
        self.stopping.set()
        self.leading.set()  # wakes leader-only loops so they can see the stop

    async def _lead(self) -> None:
        check = self.settings.scheduler_leader_check.total_seconds()
        while not self.stopping.is_set():
            if self.leading.is_set():
                if not await asyncio.to_thread(self.lock.still_held):
                    self.leading.clear()
                    metrics.SCHEDULER_LEADER.set(0)
                    log.warning("scheduler_lost_leadership", replica=self.name)
            elif await asyncio.to_thread(self.lock.try_acquire):
                self.leading.set()
                metrics.SCHEDULER_LEADER.set(1)
                log.info("scheduler_leading", replica=self.name)
            await self._sleep(check)

    async def _loop(self, tick: Tick) -> None:
        failing_since: float | None = None
        last_error_log = 0.0
        while not self.stopping.is_set():
            if tick.leader_only and not self.leading.is_set():
                await self.leading.wait()
                continue
            started = time.monotonic()
            # Every line a round writes (a job's status, an attempt) names the tick that wrote it.
            structlog.contextvars.bind_contextvars(tick=tick.name, replica=self.name)
            try:
                stats = await tick.run(self.settings)
            except Exception as exc:  # the tick's next round retries; the row state is in Postgres
                metrics.tick_ran(tick.name, time.monotonic() - started, ok=False)
                now = time.monotonic()
                if failing_since is None or now - last_error_log >= ERROR_LOG_EVERY:
                    log.warning("tick_failed", tick=tick.name, error=f"{type(exc).__name__}: {exc}"[:500],
                                exc_info=failing_since is None)
                    last_error_log = now
                failing_since = failing_since or now
                stats = {}
            else:
                metrics.tick_ran(tick.name, time.monotonic() - started, ok=True)
                if failing_since is not None:
                    log.info("tick_recovered", tick=tick.name, failed_for_s=round(time.monotonic() - failing_since, 1))
                    failing_since = None
                if any(v for k, v in stats.items() if k != "budget_spent"):
                    log.debug("tick", tick=tick.name, **stats)
            if stats.get("budget_spent"):
                await asyncio.sleep(0)  # more is due: go again, letting the other ticks in first
                continue
            await self._sleep(tick.interval - (time.monotonic() - started))

    async def _sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        try:
            async with asyncio.timeout(seconds):
                await self.stopping.wait()
        except TimeoutError:
            pass


def serve(metrics_port: int = 0, metrics_host: str = "0.0.0.0") -> None:
    """Run a scheduler replica until SIGTERM or SIGINT."""
    settings = get_settings()
    # Ticks nudge job work (a collect, the next webhook of a job) through the broker.
    queue.install(queue.producer(settings))
    if metrics_port > 0:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr=metrics_host)

    async def main() -> None:
        scheduler = Scheduler(settings)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, scheduler.stop)
        await scheduler.run()

    asyncio.run(main())


__all__ = ["Scheduler", "Tick", "default_ticks", "serve"]
