"""A whole cometjobs deployment of its own, for tests that kill and restart things:
its own database, broker namespace (or Redis server), emulator, API, workers and scheduler.
Nothing it does can disturb the shared test stack, and vice versa."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg

from tests.support.emulator import Emulator
from tests.support.procs import Service, cometjobs, free_port
from tests.support.waiting import wait_for

TERMINAL = ("succeeded", "failed", "canceled", "timed_out")
POSTGRES_BIN = Path("/usr/lib/postgresql") / (os.listdir("/usr/lib/postgresql")[0] if Path("/usr/lib/postgresql").exists() else "15") / "bin"


class RedisServer:
    """A private, non-persistent redis-server that tests may kill and restart empty."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.log_dir = log_dir
        self.service: Service | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.service = Service(
            f"redis-{self.port}",
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            dict(os.environ), self.log_dir,
        ).start()
        import redis

        wait_for(lambda: _pings(redis.Redis(port=self.port, socket_timeout=1)), timeout=30, message="redis")
        return self

    def kill(self) -> None:
        if self.service:
            self.service.kill()


def _pings(client: Any) -> bool:
    try:
        return bool(client.ping())
    except Exception:
        return False


class PostgresServer:
    """A private Postgres cluster (initdb'd per test) that can be stopped and started."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        # Its own directory under /tmp: the postgres user cannot enter the root-only test dir.
        self.root = Path(tempfile.mkdtemp(prefix=f"cometjobs-pg-{self.port}-"))
        self.log_dir = log_dir
        self.data = self.root / "data"
        self.service: Service | None = None
        self.as_postgres = os.geteuid() == 0

    def _cmd(self, *args: str) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *args] if self.as_postgres else list(args)

    def init(self) -> PostgresServer:
        if self.as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        subprocess.run(
            self._cmd(str(POSTGRES_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                      "--no-sync"),
            check=True, capture_output=True,
        )
        return self

    def start(self) -> PostgresServer:
        # The postmaster is the child itself (not under runuser), so signals reach it directly.
        self.service = Service(
            f"postgres-{self.port}",
            [str(POSTGRES_BIN / "postgres"), "-D", str(self.data), "-p", str(self.port),
             "-k", str(self.root), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
             "-c", "max_connections=200"],
            dict(os.environ), self.log_dir, user="postgres" if self.as_postgres else None,
        ).start()
        wait_for(self._ready, timeout=60, message="private postgres")
        return self

    def _ready(self) -> bool:
        try:
            with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", connect_timeout=1):
                return True
        except psycopg.OperationalError:
            return False

    def stop(self) -> None:
        """Fast shutdown (SIGINT): clients are disconnected, as in a real restart.
        SIGTERM would be a "smart" shutdown that waits for every pooled client to leave."""
        if self.service and self.service.alive:
            assert self.service.proc is not None
            os.kill(self.service.proc.pid, signal.SIGINT)
            self.service.proc.wait(timeout=60)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


class Stack:
    def __init__(
        self,
        name: str,
        root: Path,
        base_env: dict[str, str],
        *,
        pg: tuple[str, int] = ("127.0.0.1", 5432),
        redis_url: str | None = None,
        overrides: dict[str, str] | None = None,
    ) -> None:
        self.name = f"{name}_{uuid.uuid4().hex[:6]}"
        self.root = root / self.name
        self.root.mkdir(parents=True, exist_ok=True)
        self.pg_host, self.pg_port = pg
        self.db_name = f"cj_{self.name}"
        self.emulator_port = free_port()
        self.api_port = free_port()
        self.emulator_key = "stack-key-" + uuid.uuid4().hex[:8]
        self.env = dict(base_env)
        self.env.update({
            "COMETJOBS_DATA_DIR": str(self.root / "data"),
            "COMETJOBS_DATABASE_URL": f"postgresql+psycopg://postgres@{self.pg_host}:{self.pg_port}/{self.db_name}",
            "COMETJOBS_BROKER_URL": redis_url or base_env["COMETJOBS_BROKER_URL"],
            "COMETJOBS_BROKER_KEY_PREFIX": f"cj-{self.name}:",
            "COMETJOBS_STORAGE_URL": (self.root / "artifacts").as_uri(),
            "COMETJOBS_COMETAPI_BASE_URL": f"http://127.0.0.1:{self.emulator_port}",
            "COMETJOBS_COMETAPI_KEY": self.emulator_key,
            "COMETJOBS_PUBLIC_BASE_URL": f"http://127.0.0.1:{self.api_port}",
        })
        self.env.update(overrides or {})
        (self.root / "data").mkdir(exist_ok=True)
        self.services: list[Service] = []
        self.emulator = Emulator(f"http://127.0.0.1:{self.emulator_port}", self.emulator_key)
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.api_port}", timeout=30)

    # -- lifecycle ---------------------------------------------------------
    def create_database(self) -> None:
        with psycopg.connect(host=self.pg_host, port=self.pg_port, user="postgres", dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.db_name}"')
        subprocess.run(cometjobs("migrate"), env=self.env, check=True, capture_output=True, timeout=120)

    def start_emulator(self, *args: str) -> Service:
        service = self._service("emulator", cometjobs(
            "emulator", "--port", str(self.emulator_port), "--api-key", self.emulator_key, *args))
        service.wait_http(f"{self.emulator.url}/_emulator/health")
        self.emulator.reset()
        return service

    def start_api(self) -> Service:
        service = self._service("api", cometjobs("api", "--port", str(self.api_port)))
        service.wait_http(f"http://127.0.0.1:{self.api_port}/healthz")
        return service

    def start_worker(self, name: str = "worker", *extra: str, wait: bool = True) -> Service:
        service = self._service(name, cometjobs(
            "worker", "--loglevel", "INFO", "-n", f"{name}-{self.name}@%h", "--without-gossip",
            "--without-mingle", *extra))
        if wait:
            service.wait_log("ready", timeout=90)
        return service

    def start_scheduler(self, name: str = "scheduler", *extra: str) -> Service:
        service = self._service(name, cometjobs("scheduler", *extra))
        service.wait_log("scheduler_started", timeout=60)
        return service

    def _service(self, name: str, args: list[str]) -> Service:
        service = Service(f"{self.name}-{name}-{len(self.services)}", args, self.env, self.root).start()
        self.services.append(service)
        return service

    def stop(self, drop: bool = True) -> None:
        for service in reversed(self.services):
            service.stop(timeout=5)
        self.http.close()
        if drop:
            try:
                with psycopg.connect(host=self.pg_host, port=self.pg_port, user="postgres", dbname="postgres",
                                     autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
            except psycopg.OperationalError:
                pass

    # -- using it ----------------------------------------------------------
    def create_client(self, name: str = "svc", webhook_url: str | None = None, *extra: str) -> dict[str, Any]:
        args = ["clients", "create", name, *extra]
        if webhook_url:
            args += ["--webhook-url", webhook_url]
        out = subprocess.run(cometjobs(*args), env=self.env, check=True, capture_output=True, text=True, timeout=60)
        made = json.loads(out.stdout.strip().splitlines()[-1])
        made["headers"] = {"Authorization": f"Bearer {made['api_key']}"}
        return made

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(host=self.pg_host, port=self.pg_port, user="postgres", dbname=self.db_name,
                             connect_timeout=5) as conn:
            return conn.execute(query, params).fetchall()

    def status_counts(self) -> dict[str, int]:
        return dict(self.sql("SELECT status, count(*) FROM jobs GROUP BY status"))  # type: ignore[arg-type]

    def submit(self, client: dict[str, Any], prompt: str, model: str = "sora-2") -> str:
        response = self.http.post("/v1/jobs", headers=client["headers"],
                                  json={"model": model, "input": {"prompt": prompt}})
        assert response.status_code == 202, response.text
        return str(response.json()["id"])

    def assert_each_succeeded_once(self, ids: list[str], receiver: Any) -> None:
        """Every job ends `succeeded`, each created upstream exactly once (the emulator saw
        each prompt once, and no other), and each announced with exactly one `webhook-id`."""
        def finished() -> bool:
            rows = self.sql("SELECT status FROM jobs WHERE id = ANY(%s)", ids)
            return len(rows) == len(ids) and all(status in TERMINAL for (status,) in rows)

        wait_for(finished, timeout=180, interval=0.5,
                 message=lambda: f"all jobs to finish: {self.status_counts()}\n{self.logs()}")
        assert self.status_counts() == {"succeeded": len(ids)}, \
            self.sql("SELECT error_code, count(*) FROM jobs GROUP BY 1")
        prompts = [t["prompt"] for t in self.emulator.tasks()]
        assert sorted(prompts) == sorted(set(prompts)) and len(prompts) == len(ids)
        wait_for(lambda: all(receiver.for_job(j) for j in ids), timeout=90, message="every job's webhook")
        for job_id in ids:
            assert len({r.headers["webhook-id"] for r in receiver.for_job(job_id)}) == 1

    def logs(self) -> str:
        return "\n".join(f"==== {s.name}\n{s.log_tail(80)}" for s in self.services)
