"""Shared fixtures: a real Postgres database, a real Redis (namespaced per run),
the CometAPI emulator, and real API, Celery worker and scheduler processes.

Everything is configured through COMETJOBS_* variables set here, before the
application is imported, so the test process and every child agree.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.support.emulator import Emulator as BaseEmulator
from tests.support.procs import Service, cometjobs, free_port
from tests.support.receiver import Receiver

RUN = uuid.uuid4().hex[:8]
PG_HOST = os.environ.get("COMETJOBS_TEST_PG_HOST", "127.0.0.1")
PG_PORT = os.environ.get("COMETJOBS_TEST_PG_PORT", "5432")
PG_USER = os.environ.get("COMETJOBS_TEST_PG_USER", "postgres")
REDIS_URL = os.environ.get("COMETJOBS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
DB_NAME = f"cj_test_{RUN}"
TMP = Path(tempfile.mkdtemp(prefix=f"cometjobs-test-{RUN}-"))
EMULATOR_PORT = free_port()
API_PORT = free_port()
EMULATOR_KEY = "emulator-test-key-7f3a"
HERE = Path(__file__).parent

TEST_ENV = {
    "COMETJOBS_ENV": "test",
    "COMETJOBS_DATA_DIR": str(TMP / "data"),
    "COMETJOBS_DATABASE_URL": f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/{DB_NAME}",
    "COMETJOBS_BROKER_URL": REDIS_URL,
    "COMETJOBS_BROKER_KEY_PREFIX": f"cjtest-{RUN}:",
    "COMETJOBS_STORAGE_URL": (TMP / "artifacts").as_uri(),
    "COMETJOBS_COMETAPI_BASE_URL": f"http://127.0.0.1:{EMULATOR_PORT}",
    "COMETJOBS_COMETAPI_KEY": EMULATOR_KEY,
    "COMETJOBS_PUBLIC_BASE_URL": f"http://127.0.0.1:{API_PORT}",
    "COMETJOBS_WEBHOOK_ALLOWED_CIDRS": "127.0.0.0/8,::1/128",
    "COMETJOBS_WEBHOOK_RETRY_SCHEDULE": "0.3,0.6,1",
    "COMETJOBS_MODELS_FILE": str(HERE / "models.toml"),
    "COMETJOBS_LOG_FORMAT": "json",
    "COMETJOBS_POLL_TICK": "0.3",
    "COMETJOBS_WEBHOOK_TICK": "0.3",
    "COMETJOBS_WEBHOOK_PROGRESS_INTERVAL": "2",
    "COMETJOBS_SWEEP_INTERVAL": "0.5",
    "COMETJOBS_DISPATCH_TICK": "0.1",
    "COMETJOBS_LATE_WATCH": "30",
    "COMETJOBS_LATE_WATCH_INTERVAL": "1",
    "COMETJOBS_QUEUE_NUDGE_AFTER": "2",
    # Past this a job in `submitting` is judged lost (upstream_submit_unknown): on a loaded
    # 2-core machine a worker can stall for seconds, so not too short.
    "COMETJOBS_SUBMIT_LEASE": "20",
    "COMETJOBS_SUBMIT_RETRY_BASE": "0.2",
    "COMETJOBS_COLLECT_LEASE": "6",
    "COMETJOBS_COLLECT_RETRY_BASE": "0.2",
    "COMETJOBS_POLL_LEASE": "10",
    "COMETJOBS_POLL_BUDGET": "2",
    "COMETJOBS_WORKER_CONCURRENCY": "3",
    # Scrapes read the database every time, so a test sees the state it just made
    # (the cache itself: tests/pipeline/test_gauges.py).
    "COMETJOBS_METRICS_DB_CACHE": "0",
}
os.environ.update(TEST_ENV)
(TMP / "data").mkdir(parents=True, exist_ok=True)



_UNGROUPED = pytest.StashKey[bool]()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`--dist loadgroup` sends a group's tests to one worker by renaming their ids
    (`...@group`). When a pytest release breaks that, the groups spread over every worker,
    each builds the group's stack, and nothing fails but the suite's time: such tests fail."""
    if not getattr(config.option, "loadgroup", False):  # set on xdist workers under --dist loadgroup
        return
    for item in items:
        if item.get_closest_marker("xdist_group") and "@" not in item.nodeid:
            item.stash[_UNGROUPED] = True


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.stash.get(_UNGROUPED, False):
        pytest.fail("--dist loadgroup did not group this xdist_group test (see the pytest pin in pyproject.toml)",
                    pytrace=False)


def _pg_admin() -> psycopg.Connection:
    return psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", autocommit=True)


@pytest.fixture(scope="session")
def database() -> Iterator[str]:
    with _pg_admin() as conn:
        conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    from app.core.migrate import upgrade

    upgrade()
    yield TEST_ENV["COMETJOBS_DATABASE_URL"]
    from app.core.db import reset_engine

    reset_engine()
    with _pg_admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    import redis

    try:
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(f"{TEST_ENV['COMETJOBS_BROKER_KEY_PREFIX']}*"))
        if keys:
            client.delete(*keys)
    except Exception:
        pass
    shutil.rmtree(TMP, ignore_errors=True)


TABLES = "webhook_attempts, webhook_deliveries, artifacts, uploads, job_events, jobs, clients"


@pytest.fixture
def clean(database: str) -> None:
    # A running worker may hold row locks the TRUNCATE waits behind (or deadlocks
    # with); those transactions are short, so try again.
    for attempt in range(20):
        try:
            with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=DB_NAME, autocommit=True) as conn:
                conn.execute("SET lock_timeout = '2s'")
                conn.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
            return
        except (psycopg.errors.DeadlockDetected, psycopg.errors.LockNotAvailable):
            if attempt == 19:
                raise


class Emulator(BaseEmulator):
    def __init__(self, url: str) -> None:
        super().__init__(url, EMULATOR_KEY)


@pytest.fixture(scope="session")
def emulator_service() -> Iterator[Service]:
    service = Service(
        "emulator",
        cometjobs("emulator", "--port", str(EMULATOR_PORT), "--api-key", EMULATOR_KEY),
        dict(os.environ), TMP,
    ).start()
    service.wait_http(f"http://127.0.0.1:{EMULATOR_PORT}/_emulator/health")
    yield service
    service.stop()


@pytest.fixture
def emulator(emulator_service: Service) -> Emulator:
    control = Emulator(f"http://127.0.0.1:{EMULATOR_PORT}")
    control.reset()
    return control


def start_worker(name: str, *extra: str, env: dict[str, str] | None = None, plain_celery: bool = False) -> Service:
    options = ["--loglevel", "INFO", "-n", f"{name}-{RUN}@%h", "--without-gossip", "--without-mingle", *extra]
    args = (
        [sys.executable, "-m", "celery", "-A", "workers", "worker", *options]
        if plain_celery else cometjobs("worker", *options)
    )
    service = Service(name, args, env or dict(os.environ), TMP).start()
    service.wait_log("ready", timeout=60)
    return service


def start_scheduler(env: dict[str, str] | None = None, name: str = "scheduler") -> Service:
    service = Service(name, cometjobs("scheduler"), env or dict(os.environ), TMP).start()
    service.wait_log("scheduler_started", timeout=60)
    return service


@pytest.fixture(scope="session")
def pipeline(database: str, emulator_service: Service) -> Iterator[dict[str, Service]]:
    """A real Celery worker (started the plain `celery -A workers` way) and a scheduler."""
    worker = start_worker("worker", plain_celery=True)
    scheduler = start_scheduler()
    yield {"worker": worker, "scheduler": scheduler}
    scheduler.stop()
    worker.stop()


@pytest.fixture(scope="session")
def api_service(database: str) -> Iterator[Service]:
    service = Service("api", cometjobs("api", "--port", str(API_PORT)), dict(os.environ), TMP).start()
    service.wait_http(f"http://127.0.0.1:{API_PORT}/healthz")
    yield service
    service.stop()


@pytest.fixture
def api(own_db: str) -> Iterator[httpx.Client]:
    """The ASGI app in-process, for API behaviour that needs no worker. On the private
    database: the session's worker and scheduler (`pipeline`) act on the shared one, and
    would take a test's jobs and run them on (a job ended under a test that expects it
    queued, an artifact overwritten by the emulator's video)."""
    from fastapi.testclient import TestClient

    from app.main import create_app

    with TestClient(create_app(), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def http(clean: None, api_service: Service, pipeline: dict[str, Service], emulator: Emulator) -> Iterator[httpx.Client]:
    """A real socket to the API process, with the worker, scheduler and emulator running."""
    with httpx.Client(base_url=f"http://127.0.0.1:{API_PORT}", timeout=30) as client:
        yield client


class NewClient(dict):
    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self['api_key']}"}


@pytest.fixture
def make_client(clean: None):  # type: ignore[no-untyped-def]
    from app.clients.service import create
    from app.core.db import session_scope

    def make(name: str = "svc", webhook_url: str | None = None, **kwargs: object) -> NewClient:
        with session_scope() as session:
            made = create(session, name, webhook_url=webhook_url, **kwargs)  # type: ignore[arg-type]
            return NewClient(
                id=made.client.id, api_key=made.api_key, webhook_secret=made.client.webhook_secret, name=name
            )

    return make


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver().start()
    yield rec
    rec.stop()


@pytest.fixture(scope="session")
def s3_server():  # type: ignore[no-untyped-def]
    """moto's standalone S3 server, a real process on loopback (tests/support/s3.py)."""
    from tests.support.s3 import MotoS3

    server = MotoS3(TMP).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def private_database(database: str) -> Iterator[str]:
    """A second migrated database for in-process tests: the shared worker and scheduler of
    this session (`pipeline`) act on the first one, and would race these tests."""
    name = f"{DB_NAME}_own"
    with _pg_admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = TEST_ENV["COMETJOBS_DATABASE_URL"].rsplit("/", 1)[0] + f"/{name}"
    from app.core.migrate import upgrade

    upgrade(url)
    yield url
    with _pg_admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def _using_database(url: str) -> Iterator[None]:
    from app.core.db import reset_engine
    from app.core.settings import get_settings

    shared = os.environ["COMETJOBS_DATABASE_URL"]
    os.environ["COMETJOBS_DATABASE_URL"] = url
    get_settings.cache_clear()
    reset_engine()
    try:
        yield
    finally:
        os.environ["COMETJOBS_DATABASE_URL"] = shared
        get_settings.cache_clear()
        reset_engine()


@pytest.fixture
def own_db(private_database: str) -> Iterator[str]:
    """This test's engine points at the private database, emptied first."""
    with _using_database(private_database):
        with psycopg.connect(private_database.replace("postgresql+psycopg", "postgresql"), autocommit=True) as conn:
            conn.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
        yield private_database


@pytest.fixture
def inproc(own_db: str):  # type: ignore[no-untyped-def]
    """The in-process pipeline (tests/support/inprocess.py): recorded publisher,
    scripted upstream, frozen clock, private database."""
    from app.core import aio, queue
    from app.core.clock import use_clock
    from app.providers.http import use_upstream
    from tests.support.inprocess import FakeUpstream, FrozenClock, Pipeline, RecordingPublisher

    publisher, upstream, clock = RecordingPublisher(), FakeUpstream(), FrozenClock()
    previous = queue.install(publisher)
    try:
        with use_clock(clock), use_upstream(upstream, upstream.aio):
            yield Pipeline(publisher, upstream, clock)
    finally:
        queue.install(previous)
        aio.shutdown()  # the webhook client lives on this process's loop
