"""The `cometjobs` command: every part of the service, configured by the same settings."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from cometjobs.jobs_cli import jobs

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from app.clients.models import Client


class _Commands(click.Group):
    """A setting no process can run with is one line per problem on stderr and exit 2,
    not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        from pydantic import ValidationError

        from app.core.settings import SettingsError, explain

        try:
            return super().invoke(ctx)
        except (ValidationError, SettingsError) as exc:
            if isinstance(exc, ValidationError) and exc.title != "Settings":
                raise
            for line in explain(exc) if isinstance(exc, ValidationError) else [str(exc)]:
                click.echo(f"cometjobs: invalid setting: {line}", err=True)
            ctx.exit(2)


@click.group(cls=_Commands, help="cometjobs: durable CometAPI generation jobs. Settings come from COMETJOBS_* "
             "variables.")
def main() -> None:
    pass


main.add_command(jobs)


@main.command(help="Run the whole stack on one machine (SQLite, local disk, embedded broker, emulator).")
@click.option("--port", default=8000, show_default=True, help="API port; the emulator uses port+1.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--emulator-port", default=None, type=int, help="Emulator port (default: port+1)")
@click.option("--emulator-job-seconds", default=30.0, show_default=True,
              help="How long emulated jobs take (long enough for a video's polls to see progress)")
def dev(port: int, host: str, emulator_port: int | None, emulator_job_seconds: float) -> None:
    from cometjobs.dev import run_dev

    sys.exit(run_dev(host, port, emulator_job_seconds, emulator_port or port + 1))


@main.command(help="Run the HTTP API (uvicorn).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True)
@click.option("--workers", default=1, show_default=True, help="uvicorn worker processes")
def api(host: str, port: int, workers: int) -> None:
    from app.core.settings import get_settings
    from app.health.exporter import reset_multiprocess_dir
    from cometjobs.server import run_api

    get_settings().require("cometapi_key", "console_secret")
    reset_multiprocess_dir()  # only when PROMETHEUS_MULTIPROC_DIR is set (several uvicorn workers)
    run_api(host, port, workers)


_PASSTHROUGH = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}


@main.command(context_settings=_PASSTHROUGH, help="Run a Celery worker; extra options go to `celery worker`.")
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker(celery_args: tuple[str, ...]) -> None:
    import os

    from app.core.settings import get_settings

    settings = get_settings().require("cometapi_key")
    if settings.worker_metrics_port > 0 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from app.health.exporter import own_worker_dir

        # Set before prometheus_client is imported, so every pool child inherits multiprocess mode.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(own_worker_dir(settings.data_dir))
    from workers import app as celery_app

    celery_app.worker_main([*_celery_logging_flags(), "worker", *celery_args])


def _celery_logging_flags() -> list[str]:
    """Log records from the first line on (Celery warns before it sets up logging); and the
    startup banner, which is not a log record, left out of JSON logs."""
    from app.core.logging import configure_logging
    from app.core.settings import get_settings

    settings = get_settings()
    configure_logging(settings.effective_log_format, settings.log_level)
    return ["--quiet"] if settings.effective_log_format == "json" else []


@main.command(help="Run a scheduler replica: the poll, webhook, sweep and expiry ticks. Run two or more: "
              "polling and webhooks are shared, sweeping and expiry run on the elected leader.")
@click.option("--metrics-port", type=int, default=None,
              help="Serve Prometheus metrics on this port (default: COMETJOBS_SCHEDULER_METRICS_PORT; 0: off)")
def scheduler(metrics_port: int | None) -> None:
    import os

    from app.core.settings import get_settings
    from workers.scheduler import serve

    # One process: its own registry, never another process's multiprocess files.
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    _celery_logging_flags()
    settings = get_settings().require("cometapi_key")
    port = settings.scheduler_metrics_port if metrics_port is None else metrics_port
    serve(port, settings.scheduler_metrics_host)


@main.command("scheduler-health", help="Exit 0 if this host's scheduler completed a poll and a deliver round "
              "within --max-age seconds, by its heartbeats on its metrics port (container probe).")
@click.option("--port", default=9809, show_default=True, help="The scheduler's --metrics-port")
@click.option("--max-age", default=60.0, show_default=True)
@click.option("--tick", "ticks", multiple=True, default=("poll", "deliver"), show_default=True,
              help="Ticks that must be beating (every replica runs poll and deliver; sweep and expire only the leader)")
def scheduler_health(port: int, max_age: float, ticks: tuple[str, ...]) -> None:
    import time
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            text = answer.read().decode()
    except OSError as exc:
        click.echo(json.dumps({"healthy": False, "error": f"{type(exc).__name__}: {exc}"[:300]}))
        sys.exit(1)
    beats = {
        sample.labels.get("tick", ""): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples if sample.name == "cometjobs_tick_last_success_timestamp_seconds"
    }
    now = time.time()
    ages = {tick: round(now - beats[tick], 1) if tick in beats else None for tick in ticks}
    healthy = all(age is not None and age <= max_age for age in ages.values())
    click.echo(json.dumps({"healthy": healthy, "seconds_since_last_round": ages}))
    sys.exit(0 if healthy else 1)


@main.command(context_settings=_PASSTHROUGH, help="Run Flower, the Celery monitoring UI.")
@click.argument("flower_args", nargs=-1, type=click.UNPROCESSED)
def flower(flower_args: tuple[str, ...]) -> None:
    from workers import app as celery_app

    _celery_logging_flags()
    args = _tornado_options(flower_args)
    # Tornado would install its own log format; ours (JSON in production) stays in charge.
    own_logging = [] if any(a.startswith("--logging") for a in args) else ["--logging=none"]
    celery_app.start(["flower", *own_logging, *args])


def _tornado_options(args: tuple[str, ...]) -> list[str]:
    """`--port 5555` as `--port=5555`: Flower parses its options with tornado, which takes
    only the `=` form (and fails with a traceback on the other). Flags (`--debug`) and
    options tornado does not know are passed on as they are."""
    import flower.options  # noqa: F401  (defines Flower's options in tornado's registry)
    from tornado.options import options

    known = options._options  # tornado keeps no public lookup by name
    out: list[str] = []
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        name = arg[2:].replace("_", "-") if arg.startswith("--") and "=" not in arg else ""
        option = known.get(name) or known.get(name.replace("-", "_"))
        if option is not None and option.type is not bool and rest and not rest[0].startswith("--"):
            arg = f"{arg}={rest.pop(0)}"
        out.append(arg)
    return out


@main.command("worker-health", help="Exit 0 if a worker on this host answers a ping (container probe).")
@click.option("--timeout", default=5.0, show_default=True)
@click.option(
    "--node", default=None,
    help="Ping only this worker (e.g. celery@%h, %h = this host) and stop at its answer; "
    "default: any worker on this host, waiting the whole timeout for replies.",
)
def worker_health(timeout: float, node: str | None) -> None:
    import socket

    from celery.utils.nodenames import host_format

    from workers import app as celery_app

    try:
        if node:
            target = host_format(node)
            replies = celery_app.control.ping(destination=[target], timeout=timeout, limit=1)
            mine = [r for r in replies if target in r]
        else:
            replies = celery_app.control.ping(timeout=timeout)
            host = socket.gethostname()
            mine = [r for r in replies for name in r if name.endswith(f"@{host}")]
    except Exception as exc:  # a broker that cannot be reached is an unhealthy worker, not a traceback
        from app.core.logging import redact

        click.echo(json.dumps({"healthy": False, "error": redact(f"{type(exc).__name__}: {exc}")[:300]}))
        sys.exit(1)
    click.echo(json.dumps({"healthy": bool(mine), "replies": replies}))
    sys.exit(0 if mine else 1)


@main.command(help="Apply database migrations (Alembic upgrade to head).")
def migrate() -> None:
    from app.core.migrate import upgrade

    upgrade()
    click.echo("database is at the latest migration")


@main.group(help="Manage API clients.")
def clients() -> None:
    pass


def _per_minute(value: str | None) -> float | None:
    """`120/min`, `2/s` or a bare number (per minute); `none` or `0` lifts the limit."""
    if value is None:
        return None
    text = value.strip().lower()
    if text in ("none", "0", ""):
        return 0.0
    number, _, unit = text.partition("/")
    try:
        rate = float(number)
    except ValueError:
        raise click.BadParameter(f"{value!r}: give N/min, N/s or N") from None
    factor = {"": 1, "min": 1, "m": 1, "s": 60, "sec": 60, "h": 1 / 60, "hour": 1 / 60}.get(unit)
    if factor is None or rate < 0:
        raise click.BadParameter(f"{value!r}: give N/min, N/s or N")
    return rate * factor


def _limit_options(fn: Any) -> Any:
    for option in reversed([
        click.option("--weight", type=click.IntRange(1, 1000), default=None,
                     help="Share of scarce upstream slots against other clients (default 1)."),
        click.option("--max-queued", type=click.IntRange(0), default=None,
                     help="Jobs that may wait to be submitted at once (0: no limit)."),
        click.option("--rate", default=None, help="Submissions per minute: N/min, N/s or N (0: no limit)."),
        click.option("--burst", type=click.IntRange(0), default=None,
                     help="Submissions that may arrive at once (default: ten seconds' worth of --rate)."),
        click.option("--daily-budget", type=float, default=None,
                     help="What jobs may cost per UTC day, by each model's price (0: no limit)."),
    ]):
        fn = option(fn)
    return fn


def _limits(weight: int | None, max_queued: int | None, rate: str | None, burst: int | None,
            daily_budget: float | None) -> dict[str, Any]:
    """The limits given on the command line (0 lifts a limit)."""
    given: dict[str, Any] = {}
    if weight is not None:
        given["weight"] = weight
    if max_queued is not None:
        given["max_queued"] = max_queued or None
    per_minute = _per_minute(rate)
    if per_minute is not None:
        given["rate_per_minute"] = per_minute or None
    if burst is not None:
        given["rate_burst"] = burst or None
    if daily_budget is not None:
        given["daily_budget"] = daily_budget or None
    return given


@clients.command("create", help="Create a client; prints its API key and webhook secret once.")
@click.argument("name")
@click.option("--webhook-url", default=None)
@click.option("--admin", is_flag=True, help="May use the /v1/admin endpoints.")
@click.option("--events", default="", help="Comma-separated extra events: job.running,job.progress")
@_limit_options
def clients_create(
    name: str, webhook_url: str | None, admin: bool, events: str, weight: int | None, max_queued: int | None,
    rate: str | None, burst: int | None, daily_budget: float | None,
) -> None:
    from app.clients.service import create, describe
    from app.core.db import session_scope

    with session_scope() as session:
        made = create(
            session, name, webhook_url=webhook_url, is_admin=admin,
            webhook_events=[e.strip() for e in events.split(",") if e.strip()],
            **_limits(weight, max_queued, rate, burst, daily_budget),
        )
        out = {**describe(made.client), "api_key": made.api_key, "webhook_secret": made.client.webhook_secret}
    click.echo(json.dumps(out))


@clients.command("list", help="One JSON object per line for each client: name, id, admin, created, revoked, "
                 "webhook URL (never a key or a secret).")
def clients_list() -> None:
    from app.clients.service import all_clients, describe
    from app.core.db import session_scope

    with session_scope() as session:
        rows = [describe(client) for client in all_clients(session)]
    for row in rows:
        click.echo(json.dumps(row))


def _find_client(session: Session, name_or_id: str) -> Client:
    from app.clients.service import AmbiguousClient, find

    try:
        client = find(session, name_or_id)
    except AmbiguousClient as exc:
        raise click.ClickException(str(exc)) from None
    if client is None:
        raise click.ClickException(f"no client named {name_or_id!r} (or with that id)")
    return client


@clients.command("revoke", help="Revoke a client's API key now (NAME or client id). Its jobs and webhooks go on; "
                 "`rotate-key` gives it a new key.")
@click.argument("name")
def clients_revoke(name: str) -> None:
    from app.clients.service import describe, revoke
    from app.core.db import session_scope

    with session_scope() as session:
        client = _find_client(session, name)
        newly = revoke(session, client)
        out = {**describe(client), "already_revoked": not newly}
    click.echo(json.dumps(out))


@clients.command("rotate-key", help="Give a client a new API key (NAME or client id), printed once; the old key "
                 "stops working at once. Restores a revoked client with the new key.")
@click.argument("name")
def clients_rotate_key(name: str) -> None:
    from app.clients.service import describe, rotate_api_key
    from app.core.db import session_scope

    with session_scope() as session:
        client = _find_client(session, name)
        key = rotate_api_key(session, client)
        out = {**describe(client), "api_key": key}
    click.echo(json.dumps(out))


@clients.command("update", help="Change a client's share or quotas (NAME or client id; 0 lifts a limit); "
                 "prints the client.")
@click.argument("name")
@_limit_options
def clients_update(
    name: str, weight: int | None, max_queued: int | None, rate: str | None, burst: int | None,
    daily_budget: float | None,
) -> None:
    from app.clients.service import describe, set_limits
    from app.core.db import session_scope

    with session_scope() as session:
        client = _find_client(session, name)
        set_limits(session, client, **_limits(weight, max_queued, rate, burst, daily_budget))
        out = describe(client)
    click.echo(json.dumps(out))


@clients.command("rotate-secret", help="Rotate a client's webhook secret, keeping the old one for a grace period.")
@click.argument("client_id")
@click.option("--grace-seconds", default=86400, show_default=True)
def clients_rotate(client_id: str, grace_seconds: int) -> None:
    from datetime import timedelta

    from app.clients.models import Client
    from app.clients.service import rotate_webhook_secret
    from app.core.db import session_scope

    with session_scope() as session:
        client = session.get(Client, client_id)
        if client is None:
            raise click.ClickException(f"no client {client_id}")
        secret = rotate_webhook_secret(session, client, timedelta(seconds=grace_seconds))
        expires = client.webhook_secret_previous_expires_at
        assert expires is not None  # set by the rotation
    click.echo(json.dumps({"id": client_id, "webhook_secret": secret, "previous_secret_expires_at": expires.isoformat()}))


@main.group(help="Webhook operations.")
def webhooks() -> None:
    pass


@webhooks.command("redeliver-dead", help="Redeliver every dead delivery created in [--from, --to).")
@click.option("--from", "start", required=True, type=click.DateTime(formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"]))
@click.option("--to", "end", required=True, type=click.DateTime(formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"]))
@click.option("--client", "client_id", default=None)
def webhooks_redeliver(start: datetime, end: datetime, client_id: str | None) -> None:
    from datetime import UTC

    from app.core import queue
    from app.core.db import session_scope
    from app.webhooks import repository, service

    queue.install(queue.producer())
    start = start if start.tzinfo else start.replace(tzinfo=UTC)
    end = end if end.tzinfo else end.replace(tzinfo=UTC)
    with session_scope() as session:
        ids = repository.dead_between(session, start, end, client_id)
        reopened = service.redeliver(session, ids)
    skipped = sorted(set(ids) - set(reopened))  # their URL answered 410 and is disabled
    click.echo(json.dumps({"redelivered": len(reopened), "ids": reopened, "skipped": skipped}))


@main.group(help="Stored results (artifacts).")
def artifacts() -> None:
    pass


@artifacts.command("delete", help="Delete a job's stored results now; the job keeps listing them, without URLs.")
@click.argument("job_id")
def artifacts_delete(job_id: str) -> None:
    from app.artifacts.retention import delete_job_artifacts
    from app.core.db import session_scope
    from app.jobs.models import Job
    from app.storage.backends import StorageError

    with session_scope() as session:
        if session.get(Job, job_id) is None:
            raise click.ClickException(f"no job {job_id}")
        try:
            deleted = delete_job_artifacts(session, job_id)
        except StorageError as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps({"job_id": job_id, "deleted": deleted}))


@artifacts.command("expire", help="Delete every result past its retention now (the beat task does this periodically).")
def artifacts_expire() -> None:
    from app.artifacts.retention import expire_due

    click.echo(json.dumps(expire_due()))


@main.command(help="Operators: run the cheapest documented job of each family against the real CometAPI "
              "(paid), through the whole pipeline in this process, and print what happened. Never in CI.")
@click.option("--live", is_flag=True, help="Confirm that real, paid CometAPI jobs should run.")
@click.option("--family", "chosen", multiple=True, help="Only this family (repeatable); default: every family.")
@click.option("--timeout", default=900.0, show_default=True, help="Seconds to wait for all jobs.")
@click.option("--emulator", is_flag=True, hidden=True, help="Against a CometAPI emulator, without --live (tests).")
def smoke(live: bool, chosen: tuple[str, ...], timeout: float, emulator: bool) -> None:
    from app.core.logging import configure_logging
    from app.core.settings import get_settings
    from cometjobs import smoke as smoke_test

    settings = get_settings()
    configure_logging(settings.effective_log_format, settings.log_level)  # to stderr: stdout is the table
    try:
        smoke_test.check_allowed(settings, live, emulator)
        families = smoke_test.families(chosen)
    except smoke_test.Refused as exc:
        click.echo(f"cometjobs smoke: {exc}", err=True)
        sys.exit(2)
    rows = smoke_test.run(families, timeout, tick=0.2 if emulator else 2.0,
                          say=lambda line: click.echo(line, err=True))
    click.echo(smoke_test.table(rows))
    sys.exit(0 if all(row.outcome.startswith("succeeded") for row in rows) else 1)


@main.command(help="Run the CometAPI emulator alone.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8001, show_default=True)
@click.option("--job-seconds", default=5.0, show_default=True, help="Time from create to completed")
@click.option("--content-bytes", default=256 * 1024, show_default=True, help="Size of each video")
@click.option("--error-rate", default=0.0, show_default=True, help="Fraction of requests answered 500")
@click.option("--throttle-rate", default=0.0, show_default=True, help="Fraction answered 429 + Retry-After")
@click.option("--retry-after", default=1.0, show_default=True, help="Retry-After seconds on 429")
@click.option("--latency", default=0.0, show_default=True, help="Seconds added to every answer")
@click.option("--download-rate", default=0.0, show_default=True, help="Download bytes/s (0: unlimited)")
@click.option("--api-key", default=None, help="Require this bearer key")
@click.option("--max-in-flight", default=0, show_default=True,
              help="Unfinished tasks allowed at once; a create beyond them is answered 429 + Retry-After (0: no limit)")
def emulator(
    host: str, port: int, job_seconds: float, content_bytes: int, error_rate: float, throttle_rate: float,
    retry_after: float, latency: float, download_rate: float, api_key: str | None, max_in_flight: int,
) -> None:
    import uvicorn

    from emulator.app import create_app
    from emulator.state import Config

    config = Config(
        job_seconds=job_seconds, content_bytes=content_bytes, error_rate=error_rate, throttle_rate=throttle_rate,
        retry_after=retry_after, latency=latency, download_rate=download_rate, api_key=api_key,
        max_in_flight=max_in_flight,
    )
    uvicorn.run(create_app(config), host=host, port=port, log_level="warning", access_log=False)


@main.command(help="Write the OpenAPI spec (default: openapi/openapi.json).")
@click.option("--out", default="openapi/openapi.json", show_default=True, type=click.Path(path_type=Path))
def openapi(out: Path) -> None:
    from app.openapi import export

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(export())
    click.echo(f"wrote {out}")

