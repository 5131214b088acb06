"""Operability through real processes: Prometheus metrics from the API and from a
prefork worker's exporter, readiness and worker health probes, Flower, and the
logs (structured, naming the job, free of secrets).

Everything runs on a deployment of its own (tests/support/stack.py) with S3
storage on moto's standalone server, so metric values can be checked exactly
and every log line of every process can be read.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import psutil
import pytest
from celery.utils.nodenames import host_format
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import TMP
from tests.support.procs import Service, cometjobs, free_port
from tests.support.receiver import Receiver
from tests.support.s3 import MotoS3
from tests.support.stack import Stack
from tests.support.waiting import wait_for

# One deployment per module (a module-scoped fixture): its tests stay on one xdist worker
# instead of each worker starting its own.
pytestmark = pytest.mark.xdist_group("ops-deployment")

TERMINAL = {"succeeded", "failed", "canceled", "timed_out"}
# Celery writes these from inside its signal handlers, where logging is not safe.
CELERY_SIGNAL_HANDLER_LINE = re.compile(r"worker: (Warm|Cold) shutdown \(MainProcess\)|Waiting gracefully .*")
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def total(samples: Samples, name: str, **labels: str) -> float:
    return sum(
        value for (sample, sample_labels), value in samples.items()
        if sample == name and all(dict(sample_labels).get(k) == v for k, v in labels.items())
    )


def has_series(samples: Samples, name: str) -> bool:
    return any(sample == name for sample, _ in samples)


class Ops:
    """The stack plus what these tests need around it: S3 on moto, scrapes, known secrets."""

    def __init__(self) -> None:
        self.s3 = MotoS3(TMP)
        self.worker_metrics_port = free_port()
        self.scheduler_metrics_port = free_port()
        self.stack = Stack("ops", TMP, _base_env(), overrides={
            "COMETJOBS_ENV": "prod",
            "COMETJOBS_CONSOLE_SECRET": "console-" + uuid.uuid4().hex + uuid.uuid4().hex,
            "COMETJOBS_LOG_FORMAT": "json",
            "COMETJOBS_LOG_LEVEL": "DEBUG",
            "COMETJOBS_S3_ADDRESSING_STYLE": "path",
            **self.s3.standard_env(),  # AWS_* variables, as docker-compose.yml sets them
            # Nothing here relies on the sweeper's nudges; paused consumers must see exact depths.
            "COMETJOBS_QUEUE_NUDGE_AFTER": "300",
        })
        self.env = self.stack.env
        self.secrets: set[str] = {self.stack.emulator_key, self.env["AWS_SECRET_ACCESS_KEY"],
                                  self.env["COMETJOBS_CONSOLE_SECRET"]}
        self.extra: list[Service] = []
        self.worker_node = f"worker-{self.stack.name}@%h"

    def start(self) -> Ops:
        self.s3.start()
        self.env["COMETJOBS_STORAGE_URL"] = f"s3://{self.s3.new_bucket()}/artifacts"
        self.stack.create_database()
        self.stack.start_emulator()
        self.stack.start_api()
        # Only the worker exports on a port; `cometjobs worker` picks its own multiprocess directory
        # (and removes those of workers long gone, such as this one).
        self.gone_worker_dir = Path(self.env["COMETJOBS_DATA_DIR"]) / "metrics" / f"worker-{_dead_pid()}"
        self.gone_worker_dir.mkdir(parents=True)
        (self.gone_worker_dir / "counter_1.db").write_bytes(b"")
        self.stack.env = {**self.env, "COMETJOBS_WORKER_METRICS_PORT": str(self.worker_metrics_port)}
        self.worker = self.stack.start_worker("worker")
        self.stack.env = self.env
        self.stack.start_scheduler("scheduler", "--metrics-port", str(self.scheduler_metrics_port))
        return self

    def stop(self) -> None:
        for service in self.extra:
            service.stop()
        self.stack.stop()
        self.s3.stop()

    def service(self, name: str, args: list[str], **env: str) -> Service:
        started = Service(f"{self.stack.name}-{name}", args, {**self.env, **env}, self.stack.root).start()
        self.extra.append(started)
        return started

    @property
    def http(self) -> httpx.Client:
        return self.stack.http

    def scrape_api(self) -> Samples:
        response = self.http.get("/metrics")
        assert response.status_code == 200
        return parse(response.text)

    def scrape_worker(self) -> Samples:
        response = httpx.get(f"http://127.0.0.1:{self.worker_metrics_port}/metrics", timeout=10)
        assert response.status_code == 200
        return parse(response.text)

    def scrape_scheduler(self) -> Samples:
        response = httpx.get(f"http://127.0.0.1:{self.scheduler_metrics_port}/metrics", timeout=10)
        assert response.status_code == 200
        return parse(response.text)

    def scrape_pipeline(self) -> Samples:
        """The worker's and the scheduler's series, summed: a job's work happens in both
        (submit and collect in the worker, polls and webhook retries in the scheduler)."""
        merged = dict(self.scrape_worker())
        for key, value in self.scrape_scheduler().items():
            merged[key] = merged.get(key, 0.0) + value
        return merged

    def client(self, webhook_url: str | None = None, *extra: str) -> dict[str, Any]:
        made = self.stack.create_client("ops", webhook_url, *extra)
        self.secrets.update({made["api_key"], made["webhook_secret"]})
        return made

    def submit(self, client: dict[str, Any], model: str = "sora-2", prompt: str = "a lighthouse at dawn",
               **fields: Any) -> str:
        response = self.http.post(
            "/v1/jobs", headers=client["headers"], json={"model": model, "input": {"prompt": prompt}, **fields}
        )
        assert response.status_code == 202, response.text
        return response.json()["id"]

    def job(self, client: dict[str, Any], job_id: str) -> dict[str, Any]:
        response = self.http.get(f"/v1/jobs/{job_id}", headers=client["headers"])
        assert response.status_code == 200, response.text
        return response.json()

    def wait_terminal(self, client: dict[str, Any], job_id: str) -> dict[str, Any]:
        return wait_for(
            lambda: (lambda job: job if job["status"] in TERMINAL else None)(self.job(client, job_id)),
            timeout=90, interval=0.2, message=lambda: f"job {job_id} to finish\n{self.stack.logs()}",
        )

    def celery(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "celery", "-A", "workers", *args], env=self.env,
            capture_output=True, text=True, timeout=90,
        )

    def our_logs(self) -> dict[str, str]:
        """Every process of ours that logged (not the emulator or moto: they stand in for others)."""
        services = [*self.stack.services, *self.extra]
        return {s.name: s.log() for s in services if "emulator" not in s.name}


def _dead_pid() -> int:
    pid = 4_000_000
    while psutil.pid_exists(pid):
        pid += 1
    return pid


def _base_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}


@pytest.fixture(scope="module")
def ops() -> Iterator[Ops]:
    deployment = Ops()
    try:
        yield deployment.start()
    finally:
        deployment.stop()


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return total(after, name, **labels) - total(before, name, **labels)


class TestMetricsAfterARealJob:
    def test_api_and_worker_series_describe_the_job(self, ops):
        receiver = Receiver().start()
        try:
            client = ops.client(receiver.url)
            api_before, worker_before = ops.scrape_api(), ops.scrape_pipeline()
            job_id = ops.submit(client, model="sora-2-pro")
            job = ops.wait_terminal(client, job_id)
            assert job["status"] == "succeeded", job
            receiver.wait_for_job(job_id)
            wait_for(
                lambda: delta(worker_before, ops.scrape_pipeline(), "cometjobs_webhook_attempts_total",
                              outcome="success") >= 1,
                timeout=30, message="the webhook attempt to be counted",
            )
            api, worker = ops.scrape_api(), ops.scrape_pipeline()
        finally:
            receiver.stop()

        def api_delta(name: str, **labels: str) -> float:
            return delta(api_before, api, name, **labels)

        def worker_delta(name: str, **labels: str) -> float:
            return delta(worker_before, worker, name, **labels)

        # The API: the job accepted, the request counted by its route template (never the id).
        assert api_delta("cometjobs_jobs_created_total", model="sora-2-pro") == 1
        assert api_delta("cometjobs_http_requests_total", route="/v1/jobs", method="POST", status="202") == 1
        assert api_delta("cometjobs_http_request_duration_seconds_count", route="/v1/jobs", method="POST") == 1
        assert api_delta("cometjobs_http_requests_total", route="/v1/jobs/{job_id}", method="GET", status="200") >= 1
        assert not any(job_id in str(labels) for (_name, labels) in api)

        # The pipeline (worker and scheduler): the job's life, state by state.
        assert worker_delta("cometjobs_jobs_finished_total", model="sora-2-pro", status="succeeded") == 1
        assert worker_delta("cometjobs_job_duration_seconds_count", model="sora-2-pro", status="succeeded") == 1
        took = worker_delta("cometjobs_job_duration_seconds_sum", model="sora-2-pro", status="succeeded")
        assert 0 < took < 90
        for state in ("queued", "submitting", "running", "collecting"):
            assert worker_delta("cometjobs_job_state_duration_seconds_count", model="sora-2-pro", state=state) == 1
        running = worker_delta("cometjobs_job_state_duration_seconds_sum", model="sora-2-pro", state="running")
        assert 0.5 < running < took  # the emulator takes about a second to "generate"

        # Upstream calls by family, endpoint and outcome, with latency.
        assert worker_delta("cometjobs_upstream_requests_total", family="sora", endpoint="create", outcome="ok") == 1
        assert worker_delta("cometjobs_upstream_requests_total", family="sora", endpoint="poll", outcome="ok") >= 1
        assert worker_delta("cometjobs_upstream_requests_total", family="sora", endpoint="content", outcome="ok") == 2
        # The spritesheet the emulator does not have is optional: skipped, not an upstream error.
        assert worker_delta("cometjobs_upstream_requests_total", family="sora", endpoint="content",
                            outcome="skipped") == 1
        assert worker_delta("cometjobs_upstream_requests_total", family="sora", endpoint="content") == 3
        assert worker_delta("cometjobs_jobs_finished_total", model="sora-2-pro", status="succeeded",
                            error_source="none") == 1
        for endpoint in ("create", "poll", "content"):
            assert worker_delta("cometjobs_upstream_request_duration_seconds_count", family="sora",
                                endpoint=endpoint) >= 1
            assert 0 < worker_delta("cometjobs_upstream_request_duration_seconds_sum", family="sora",
                                    endpoint=endpoint) < 60
        assert worker_delta("cometjobs_poll_lag_seconds_count") >= 1
        assert 0 <= worker_delta("cometjobs_poll_lag_seconds_sum") < 60

        # Storage: exactly the bytes of the artifacts, two copies timed.
        stored = sum(a["size_bytes"] for a in job["artifacts"])
        assert stored > 300_000
        assert worker_delta("cometjobs_storage_copied_bytes_total", backend="s3") == stored
        assert worker_delta("cometjobs_storage_copy_duration_seconds_count", backend="s3") == 2

        # The webhook, the Celery tasks that carried the job's work, and the scheduler's poll rounds.
        assert worker_delta("cometjobs_webhook_attempts_total", outcome="success") == 1
        assert worker_delta("cometjobs_webhook_attempt_duration_seconds_count") == 1
        for task in ("cometjobs.submit_job", "cometjobs.collect_job"):
            assert worker_delta("cometjobs_celery_tasks_total", task=task, state="success") >= 1
            assert worker_delta("cometjobs_celery_task_duration_seconds_count", task=task) >= 1
        assert worker_delta("cometjobs_tick_runs_total", tick="poll", outcome="ok") >= 1

    def test_worker_exporter_sums_the_files_of_its_pool_children(self, ops):
        # Self-contained: under xdist this module's tests may not share one deployment.
        if total(ops.scrape_worker(), "cometjobs_celery_tasks_total") == 0:
            client = ops.client()
            ops.wait_terminal(client, ops.submit(client))
        wait_for(lambda: total(ops.scrape_worker(), "cometjobs_celery_tasks_total") > 0, timeout=30,
                 message="a task counted by the worker's exporter")
        main_pid = ops.worker.proc.pid
        directory = Path(ops.env["COMETJOBS_DATA_DIR"]) / "metrics" / f"worker-{main_pid}"
        writers = {int(p.stem.rsplit("_", 1)[-1]) for p in directory.glob("*.db")}
        children = {child.pid for child in psutil.Process(main_pid).children()}
        assert writers & children, (writers, children)  # tasks ran in the prefork children...
        # ...and the main process serves them (counted above)
        assert not ops.gone_worker_dir.exists()


class TestProcessMetrics:
    def test_worker_exports_its_main_process_and_each_pool_child(self, ops):
        samples = ops.scrape_worker()
        main = psutil.Process(ops.worker.proc.pid)
        assert total(samples, "process_resident_memory_bytes") > 0
        assert total(samples, "process_start_time_seconds") == pytest.approx(main.create_time(), abs=2)
        children = {dict(labels)["index"] for (name, labels), _ in samples.items()
                    if name == "cometjobs_worker_child_resident_memory_bytes"}
        assert children == {str(n) for n in range(int(ops.env["COMETJOBS_WORKER_CONCURRENCY"]))}
        assert all(v > 0 for (name, _), v in samples.items() if name == "cometjobs_worker_child_resident_memory_bytes")
        assert has_series(samples, "cometjobs_worker_child_cpu_seconds_total")

    def test_every_process_says_which_build_it_runs(self, ops):
        from importlib.metadata import version

        for samples in (ops.scrape_api(), ops.scrape_worker(), ops.scrape_scheduler()):
            builds = [dict(labels) for (name, labels), value in samples.items()
                      if name == "cometjobs_build_info" and value == 1]
            assert builds and {b["version"] for b in builds} == {version("cometjobs")}
            assert {b["python"] for b in builds} == {".".join(map(str, sys.version_info[:3]))}
        assert total(ops.scrape_scheduler(), "process_resident_memory_bytes") > 0
        assert total(ops.scrape_api(), "process_resident_memory_bytes") > 0


class TestScheduler:
    def test_each_tick_beats_and_one_replica_leads(self, ops):
        import time

        def beats() -> Samples | None:
            samples = ops.scrape_scheduler()
            ticks = {dict(labels)["tick"]: value for (name, labels), value in samples.items()
                     if name == "cometjobs_tick_last_success_timestamp_seconds"}
            return samples if {"poll", "deliver", "sweep", "expire"} <= set(ticks) else None

        samples = wait_for(beats, timeout=30, message="a heartbeat from every tick")
        for tick in ("poll", "deliver", "sweep"):
            assert time.time() - total(samples, "cometjobs_tick_last_success_timestamp_seconds", tick=tick) < 30
            assert total(samples, "cometjobs_tick_runs_total", tick=tick, outcome="ok") >= 1
        assert total(samples, "cometjobs_scheduler_leader") == 1

    def test_health_probe_reads_the_heartbeats(self, ops):
        def probe(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(cometjobs("scheduler-health", *args), env=ops.env, capture_output=True,
                                  text=True, timeout=60)

        healthy = probe("--port", str(ops.scheduler_metrics_port), "--max-age", "30")
        assert healthy.returncode == 0, healthy.stdout + healthy.stderr
        ages = json.loads(healthy.stdout)["seconds_since_last_round"]
        assert set(ages) == {"poll", "deliver"} and all(0 <= age <= 30 for age in ages.values())
        never = probe("--port", str(ops.scheduler_metrics_port), "--tick", "no-such-tick")
        assert (never.returncode, json.loads(never.stdout)["healthy"]) == (1, False)
        nobody = probe("--port", str(free_port()))
        assert (nobody.returncode, json.loads(nobody.stdout)["healthy"]) == (1, False)


class TestGaugesReadAtScrapeTime:
    def test_running_job_and_undelivered_webhook_are_counted_from_postgres(self, ops):
        receiver = Receiver(default=503, headers={"Retry-After": "300"}).start()
        try:
            client = ops.client(receiver.url, "--events", "job.running")
            worker_before = ops.scrape_pipeline()
            job_id = ops.submit(client, prompt="a slow tide [stall]")

            def gauges() -> Samples | None:
                samples = ops.scrape_api()
                running = ops.stack.sql("SELECT count(*) FROM jobs WHERE status = 'running'")[0][0]
                pending = ops.stack.sql("SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'")[0][0]
                ok = (
                    running >= 1 and total(samples, "cometjobs_jobs", state="running") == running
                    and pending >= 1 and total(samples, "cometjobs_webhook_pending_deliveries") == pending
                    and receiver.for_job(job_id)
                )
                return samples if ok else None

            samples = wait_for(gauges, timeout=60, message="a running job and a pending delivery in the gauges")
            assert set(_label_values(samples, "cometjobs_jobs", "state")) == {
                "queued", "submitting", "running", "collecting"}
            age = total(samples, "cometjobs_webhook_oldest_pending_age_seconds")
            assert 0 < age < 120
            assert total(samples, "cometjobs_database_scrape_success") == 1
            wait_for(
                lambda: delta(worker_before, ops.scrape_pipeline(), "cometjobs_webhook_attempts_total",
                              outcome="http_5xx") >= 1,
                timeout=30, message="the failed attempt to be counted",
            )
        finally:
            ops.http.post(f"/v1/jobs/{job_id}/cancel", headers=client["headers"])
            receiver.stop()


def _label_values(samples: Samples, name: str, label: str) -> list[str]:
    return [dict(labels)[label] for (sample, labels), _ in samples.items() if sample == name]


class TestQueueDepth:
    def test_depth_counts_messages_waiting_while_consumers_are_paused(self, ops):
        node = host_format(ops.worker_node)
        paused = ops.celery("control", "cancel_consumer", "submit", "-d", node)
        assert paused.returncode == 0 and "no longer consuming" in paused.stdout, paused.stdout + paused.stderr
        client = ops.client()
        try:
            ids = [ops.submit(client, prompt=f"queued {n}") for n in range(3)]
            samples = wait_for(
                lambda: (lambda s: s if total(s, "cometjobs_queue_depth", queue="submit") == 3 else None)(
                    ops.scrape_api()),
                timeout=30, message="three messages waiting in the submit queue",
            )
            assert set(_label_values(samples, "cometjobs_queue_depth", "queue")) == {
                "submit", "poll", "collect", "webhooks", "maintenance"}
            assert total(samples, "cometjobs_jobs", state="queued") == 3
            assert total(samples, "cometjobs_broker_scrape_success") == 1
        finally:
            resumed = ops.celery("control", "add_consumer", "submit", "-d", node)
            assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        for job_id in ids:
            assert ops.wait_terminal(client, job_id)["status"] == "succeeded"
        assert total(ops.scrape_api(), "cometjobs_queue_depth", queue="submit") == 0


class TestWorkerMetricsDirectory:
    def test_a_starting_worker_discards_metric_files_of_a_previous_run(self, ops):
        directory = ops.stack.root / "stale-metrics"
        directory.mkdir()
        env = {**ops.env, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
        subprocess.run(
            [sys.executable, "-c", "from app.core import metrics; "
             "metrics.TASKS.labels(task='left-over', state='success').inc()"],
            env=env, check=True, timeout=60,
        )
        stale = list(directory.glob("*.db"))
        assert stale
        port = free_port()
        worker = ops.service("idle-worker", cometjobs(
            "worker", "-n", f"idle-{ops.stack.name}@%h", "-Q", f"idle-{ops.stack.name}", "--without-gossip",
            "--without-mingle", "--concurrency", "1",
        ), PROMETHEUS_MULTIPROC_DIR=str(directory), COMETJOBS_WORKER_METRICS_PORT=str(port))
        try:
            worker.wait_log("ready", timeout=90)
            response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
            assert response.status_code == 200
            assert "left-over" not in response.text
            assert not any(path.exists() for path in stale)
        finally:
            worker.stop()


class TestReadiness:
    def test_ready_when_database_broker_and_storage_answer(self, ops):
        response = ops.http.get("/readyz")
        assert response.status_code == 200, response.text
        assert response.json() == {"status": "ok", "checks": {"database": "ok", "broker": "ok", "storage": "ok"}}

    def test_unreachable_broker_is_503_naming_the_broker(self, ops):
        closed = free_port()
        port = free_port()
        api = ops.service("api-no-broker", cometjobs("api", "--port", str(port)),
                          COMETJOBS_BROKER_URL=f"redis://127.0.0.1:{closed}/0")
        try:
            api.wait_http(f"http://127.0.0.1:{port}/healthz")
            assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
            response = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=30)
            assert response.status_code == 503
            assert response.headers["content-type"] == "application/problem+json"
            problem = response.json()
            assert problem["code"] == "dependency_unavailable"
            assert problem["failed"] == ["broker"]
            assert "broker" in problem["detail"]
            assert problem["checks"]["database"] == problem["checks"]["storage"] == "ok"
            assert "onnection" in problem["checks"]["broker"]
            scraped = parse(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text)
            assert total(scraped, "cometjobs_broker_scrape_success") == 0
            assert total(scraped, "cometjobs_database_scrape_success") == 1
        finally:
            api.stop()


class TestWorkerHealth:
    def probe(self, ops: Ops, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(cometjobs("worker-health", *args), env=ops.env, capture_output=True, text=True,
                              timeout=90)

    def test_running_worker_is_healthy(self, ops):
        result = self.probe(ops, "--node", ops.worker_node, "--timeout", "20")
        assert result.returncode == 0, result.stdout + result.stderr
        assert json.loads(result.stdout.strip().splitlines()[-1])["healthy"] is True

    def test_any_worker_on_this_host_counts_without_a_node_name(self, ops):
        result = self.probe(ops, "--timeout", "3")
        assert result.returncode == 0, result.stdout + result.stderr
        replies = json.loads(result.stdout.strip().splitlines()[-1])["replies"]
        assert any(host_format(ops.worker_node) in reply for reply in replies)

    def test_no_answer_from_the_named_worker_is_unhealthy(self, ops):
        result = self.probe(ops, "--node", f"nobody-{uuid.uuid4().hex[:6]}@%h", "--timeout", "2")
        assert result.returncode == 1
        assert json.loads(result.stdout.strip().splitlines()[-1])["healthy"] is False

    def test_unreachable_broker_is_unhealthy_not_a_crash(self, ops):
        env = {**ops.env, "COMETJOBS_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0"}
        result = subprocess.run(cometjobs("worker-health", "--node", ops.worker_node, "--timeout", "2"),
                                env=env, capture_output=True, text=True, timeout=90)
        assert result.returncode == 1
        assert json.loads(result.stdout.strip().splitlines()[-1])["healthy"] is False


class TestFlower:
    def test_flower_shows_the_tasks_of_a_job_and_nothing_else(self, ops):
        from app.core.tasks import TaskName

        port = free_port()
        # Options the way every other subcommand takes them (`--port N`), and tornado's `--address=...`.
        flower = ops.service("flower", cometjobs("flower", "--port", str(port), "--address=127.0.0.1"),
                             FLOWER_UNAUTHENTICATED_API="true")
        try:
            flower.wait_http(f"http://127.0.0.1:{port}/healthcheck")
            client = ops.client()
            job_id = ops.submit(client, prompt="watched by flower")
            assert ops.wait_terminal(client, job_id)["status"] == "succeeded"

            def seen() -> dict[str, Any] | None:
                tasks = httpx.get(f"http://127.0.0.1:{port}/api/tasks", timeout=10).json()
                done = {t["name"] for t in tasks.values() if job_id in (t.get("args") or "")
                        and t.get("state") == "SUCCESS"}
                return tasks if {"cometjobs.submit_job", "cometjobs.collect_job"} <= done else None

            tasks = wait_for(seen, timeout=60, message=lambda: f"flower to see the job's tasks\n{flower.log_tail()}")
            # Job work only: the periodic ticks run in the scheduler and never bury it.
            assert {t["name"] for t in tasks.values()} <= {name.value for name in TaskName}
            workers = httpx.get(f"http://127.0.0.1:{port}/api/workers", params={"refresh": "1"}, timeout=30).json()
            assert host_format(ops.worker_node) in workers
            flower_metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
            assert re.search(r'flower_events_total\{[^}]*task="cometjobs.submit_job"[^}]*type="task-succeeded"',
                             flower_metrics)
        finally:
            flower.stop()


@pytest.fixture(scope="module")
def logged_job(ops: Ops) -> dict[str, Any]:
    """A job run to the end, its artifact fetched through a presigned URL: then the logs are read.

    The caller's endpoint first answers with a redirect to a presigned URL of its own, which
    cometjobs records (and logs) as the reason the attempt failed: a real path on which a
    signature reaches the logger.
    """
    their_signature = uuid.uuid4().hex * 2
    ops.secrets.add(their_signature)
    landing = ("https://hooks.example.com/landing?X-Amz-Algorithm=AWS4-HMAC-SHA256"
               f"&X-Amz-Credential=AKIAOPSCALLER%2F20260101&X-Amz-Signature={their_signature}")
    receiver = Receiver(script=[307], headers={"Location": landing}).start()
    try:
        client = ops.client(receiver.url)
        job_id = ops.submit(client, prompt="a paper boat in the rain")
        job = ops.wait_terminal(client, job_id)
        assert job["status"] == "succeeded", job
        receiver.wait_for_job(job_id, count=2)
        redirect = ops.http.get(f"/v1/jobs/{job_id}/artifacts/video", headers=client["headers"])
        assert redirect.status_code == 307, redirect.text
        signature = parse_qs(urlsplit(redirect.headers["location"]).query)["X-Amz-Signature"][0]
        assert httpx.get(redirect.headers["location"], timeout=30).status_code == 200
        ops.secrets.add(signature)
        # A caller presenting a key that is not valid: its text must not reach the logs either.
        forged = "cj_live_" + uuid.uuid4().hex
        assert ops.http.get("/v1/jobs", headers={"Authorization": f"Bearer {forged}"}).status_code == 401
        ops.secrets.add(forged)
        wait_for(
            lambda: sum("webhook_attempt" in line and job_id in line
                        for text in ops.our_logs().values() for line in text.splitlines()) >= 2,
            timeout=30, message="both webhook attempts to be logged",
        )
        return {"job_id": job_id, "model": job["model"]}
    finally:
        receiver.stop()


class TestLogs:
    def test_no_secret_appears_in_any_log_line(self, ops, logged_job):
        logs = ops.our_logs()
        assert sum(len(text.splitlines()) for text in logs.values()) > 100
        secrets = {s for s in ops.secrets if s}
        assert len(secrets) >= 6  # CometAPI key, S3 secret, API keys, webhook secrets, a URL signature, a forged key
        leaks = [
            f"{name}: {line[:300]}"
            for name, text in logs.items() for line in text.splitlines()
            if any(secret in line for secret in secrets)
        ]
        assert not leaks, "\n".join(leaks[:20])
        redirects = [json.loads(line) for text in logs.values() for line in text.splitlines()
                     if logged_job["job_id"] in line and "redirect 307" in line]
        assert redirects and all("X-Amz-Signature=[REDACTED]" in r["error"] for r in redirects)

    def test_production_logs_are_json_records(self, ops, logged_job):
        for name, text in ops.our_logs().items():
            for line in text.splitlines():
                if line.strip() and not CELERY_SIGNAL_HANDLER_LINE.fullmatch(line):
                    record = json.loads(line)
                    assert {"event", "level", "timestamp"} <= set(record), (name, line)

    def test_every_line_about_a_job_names_it_its_model_and_a_task_or_request(self, ops, logged_job):
        job_id = logged_job["job_id"]
        about: list[dict[str, Any]] = []
        for name, text in ops.our_logs().items():
            for line in text.splitlines():
                if job_id not in line:
                    continue
                record = json.loads(line)
                if record.get("level") == "debug":
                    continue  # diagnostics of libraries (Celery's message dumps); production runs at INFO
                about.append(record)
                assert record.get("job_id") == job_id, (name, line)
                assert record.get("model") == logged_job["model"], (name, line)
                assert record.get("task_id") or record.get("request_id") or record.get("tick"), (name, line)
        statuses = {r.get("status") for r in about if r.get("event") == "job_status"}
        assert statuses == {"submitting", "running", "collecting", "succeeded"}
        assert any(r.get("event") == "webhook_attempt" for r in about)
