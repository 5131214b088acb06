"""`cometjobs dev`: the whole stack in one supervised command.

Whatever is not configured is substituted and said out loud: SQLite for the
database, kombu's SQLAlchemy transport on SQLite for the broker, local disk for
storage, the CometAPI emulator when no key is set. It migrates, makes a dev
client, starts API, worker, beat (and the emulator), and stops every child on
Ctrl-C, or when any of them dies.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

# How long an emulated job takes under `cometjobs dev`: a video's polls (the first at 10 s,
# then every 10 s) find it at about a third and two thirds, so a dev job shows progress
# and sends `job.progress` before it ends, as a real one does.
DEV_JOB_SECONDS = 30.0


def _banner(lines: list[str]) -> None:
    # No box: every line can be copied as it is (a curl command with a border is not one).
    rule = "=" * min(100, max(len(line) for line in lines))
    print("\n".join([rule, *lines, rule]), flush=True)


class PortBusy(Exception):
    pass


def _check_free(host: str, port: int, what: str, flag: str) -> None:
    """Refuse a port something already listens on: the health wait would otherwise find
    that process answering and call the stack running."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no conflict
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise PortBusy(
                f"cometjobs dev: the {what} port {port} on {host} is in use ({exc.strerror}); is another "
                f"cometjobs dev running? Pick another: {flag}"
            ) from None


def _dev_environment(host: str, port: int, emulator_port: int) -> tuple[dict[str, str], list[str], bool]:
    env = dict(os.environ)
    notes: list[str] = []
    data_dir = Path(env.get("COMETJOBS_DATA_DIR", ".cometjobs")).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    env["COMETJOBS_DATA_DIR"] = str(data_dir)
    env.setdefault("COMETJOBS_ENV", "dev")
    if not env.get("COMETJOBS_DATABASE_URL"):
        env["COMETJOBS_DATABASE_URL"] = f"sqlite:///{data_dir / 'cometjobs.db'}"
        notes.append(f"database: SQLite at {data_dir / 'cometjobs.db'} (set COMETJOBS_DATABASE_URL for Postgres)")
    if not env.get("COMETJOBS_BROKER_URL"):
        env["COMETJOBS_BROKER_URL"] = f"sqla+sqlite:///{data_dir / 'broker.db'}"
        notes.append("broker: embedded (kombu SQLAlchemy transport on SQLite; set COMETJOBS_BROKER_URL for Redis)")
    if not env.get("COMETJOBS_STORAGE_URL"):
        env["COMETJOBS_STORAGE_URL"] = (data_dir / "artifacts").as_uri()
        notes.append(f"storage: local disk at {data_dir / 'artifacts'}")
    emulate = not env.get("COMETJOBS_COMETAPI_KEY")
    if emulate:
        env["COMETJOBS_COMETAPI_BASE_URL"] = f"http://{host}:{emulator_port}"
        notes.append(f"CometAPI: the emulator at http://{host}:{emulator_port} (no COMETJOBS_COMETAPI_KEY set)")
    if not env.get("COMETJOBS_WEBHOOK_ALLOWED_CIDRS"):
        env["COMETJOBS_WEBHOOK_ALLOWED_CIDRS"] = "127.0.0.0/8,::1/128"
        notes.append("webhooks: loopback receivers allowed (COMETJOBS_WEBHOOK_ALLOWED_CIDRS)")
    env.setdefault("COMETJOBS_PUBLIC_BASE_URL", f"http://{host}:{port}")
    return env, notes, emulate


def _dev_client(env: dict[str, str]) -> dict[str, str]:
    """Reuse the saved dev client if its key still works on this database."""
    saved = Path(env["COMETJOBS_DATA_DIR"]) / "dev-client.json"
    code = (
        "import json,sys\n"
        "from app.core.db import session_scope\n"
        "from app.clients import service\n"
        "saved = json.loads(sys.argv[1]) if sys.argv[1] else None\n"
        "with session_scope() as s:\n"
        "    if saved and service.authenticate(s, saved['api_key']):\n"
        "        print(json.dumps(saved)); sys.exit(0)\n"
        "    made = service.create(s, 'dev', webhook_url=None)\n"
        "    print(json.dumps({'id': made.client.id, 'api_key': made.api_key,"
        " 'webhook_secret': made.client.webhook_secret}))\n"
    )
    current = saved.read_text() if saved.exists() else ""
    out = subprocess.run(
        [sys.executable, "-c", code, current], env=env, check=True, capture_output=True, text=True
    ).stdout.strip().splitlines()[-1]
    saved.write_text(out)
    saved.chmod(0o600)
    client: dict[str, str] = json.loads(out)
    return client


def _wait_http(url: str, procs: dict[str, subprocess.Popen[bytes]], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, proc in procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode} while starting")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:g}s")


def _stop(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    # SIGTERM to each child alone, not its group: the worker then stops its own pool (a pool
    # child killed under it is replaced first), and anything left after the grace is killed.
    for proc in procs.values():
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    for proc in procs.values():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


class _Children:
    """The supervised processes, each in its own process group: Ctrl-C reaches the
    supervisor, which stops the children in order."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, args: list[str]) -> None:
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "cometjobs", *args], env=self.env, start_new_session=True
        )

    def first_dead(self) -> tuple[str, int] | None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                return name, proc.returncode
        return None

    def stop(self) -> None:
        _stop(self.procs)


def _start_stack(children: _Children, host: str, port: int, emulator_port: int, emulate: bool,
                 emulator_job_seconds: float) -> None:
    if emulate:
        children.start("emulator", ["emulator", "--host", host, "--port", str(emulator_port),
                                    "--job-seconds", str(emulator_job_seconds)])
        _wait_http(f"http://{host}:{emulator_port}/_emulator/health", children.procs)
    children.start("api", ["api", "--host", host, "--port", str(port)])
    children.start("worker", ["worker", "--loglevel", "INFO", "--concurrency", "2", "-n", "dev@%h"])
    children.start("scheduler", ["scheduler"])
    _wait_http(f"http://{host}:{port}/healthz", children.procs)


def ready_lines(api: str, client: dict[str, str], saved: Path) -> list[str]:
    """The banner: each line at most 100 columns (bar the saved file's path), and the
    commands copyable as they are."""
    return [
        "cometjobs is running",
        f"API:            {api}  (docs: {api}/docs)",
        f"Console:        {api}/console  (admin key: cometjobs clients create ops --admin)",
        f"API key:        {client['api_key']}",
        f"Webhook secret: {client['webhook_secret']}",
        f"Saved in:       {saved}",
        "Try:",
        f"  export KEY={client['api_key']}",
        f"  curl -s -X POST {api}/v1/jobs -H \"Authorization: Bearer $KEY\" \\",
        "    -H 'Content-Type: application/json' \\",
        "    -d '{\"model\":\"sora-2\",\"input\":{\"prompt\":\"a paper boat in the rain\"}}'",
        "Ctrl-C stops everything.",
    ]


def _supervise(children: _Children, stopping: dict[str, bool]) -> int:
    """Until Ctrl-C (0) or a child dies (1)."""
    while not stopping["flag"]:
        dead = children.first_dead()
        if dead is not None:
            print(f"cometjobs dev: {dead[0]} exited with {dead[1]}; stopping the rest", file=sys.stderr, flush=True)
            return 1
        time.sleep(0.5)
    return 0


def run_dev(host: str, port: int, emulator_job_seconds: float = DEV_JOB_SECONDS, emulator_port: int | None = None) -> int:
    emulator_port = emulator_port or port + 1
    env, notes, emulate = _dev_environment(host, port, emulator_port)
    try:
        _check_free(host, port, "API", f"cometjobs dev --port {port + 1000} (make dev PORT={port + 1000})")
        if emulate:
            _check_free(host, emulator_port, "emulator",
                        f"cometjobs dev --emulator-port {emulator_port + 1000} (it defaults to --port + 1)")
    except PortBusy as exc:
        print(exc, file=sys.stderr, flush=True)
        return 1
    print("cometjobs dev: substituting what is not configured:", flush=True)
    for note in notes:
        print(f"  - {note}", flush=True)
    subprocess.run([sys.executable, "-m", "cometjobs", "migrate"], env=env, check=True)
    client = _dev_client(env)

    stopping = {"flag": False}

    def on_signal(signum: int, _frame: object) -> None:
        stopping["flag"] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    children = _Children(env)
    try:
        _start_stack(children, host, port, emulator_port, emulate, emulator_job_seconds)
    except Exception as exc:
        print(f"cometjobs dev: failed to start: {exc}", file=sys.stderr, flush=True)
        children.stop()
        return 1
    _banner(ready_lines(f"http://{host}:{port}", client, Path(env["COMETJOBS_DATA_DIR"]) / "dev-client.json"))
    code = _supervise(children, stopping)
    print("cometjobs dev: stopping...", flush=True)
    children.stop()
    print("cometjobs dev: stopped", flush=True)
    return code
