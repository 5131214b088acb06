"""The `cometjobs` command: every part of the service, configured by the same settings."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path

import click


@click.group(help="cometjobs: durable CometAPI generation jobs. Settings come from COMETJOBS_* variables.")
def main() -> None:
    pass


@main.command(help="Run the whole stack on one machine (SQLite, local disk, embedded broker, emulator).")
@click.option("--port", default=8000, show_default=True, help="API port; the emulator uses port+1.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--emulator-job-seconds", default=8.0, show_default=True, help="How long emulated jobs take")
def dev(port: int, host: str, emulator_job_seconds: float) -> None:
    from app.dev import run_dev

    sys.exit(run_dev(host, port, emulator_job_seconds))


@main.command(help="Run the HTTP API (uvicorn).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True)
@click.option("--workers", default=1, show_default=True, help="uvicorn worker processes")
def api(host: str, port: int, workers: int) -> None:
    import uvicorn

    uvicorn.run(
        "app.main:create_app", factory=True, host=host, port=port, workers=workers,
        log_config=None, access_log=False, proxy_headers=True,
    )


_PASSTHROUGH = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}


@main.command(context_settings=_PASSTHROUGH, help="Run a Celery worker; extra options go to `celery worker`.")
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker(celery_args: tuple[str, ...]) -> None:
    from workers import app as celery_app

    celery_app.worker_main(["worker", *celery_args])


@main.command(context_settings=_PASSTHROUGH, help="Run Celery beat (poll, sweep and webhook ticks).")
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def beat(celery_args: tuple[str, ...]) -> None:
    from app.core.settings import get_settings
    from workers import app as celery_app

    get_settings().data_dir.mkdir(parents=True, exist_ok=True)
    celery_app.start(["beat", *celery_args])


@main.command(context_settings=_PASSTHROUGH, help="Run Flower, the Celery monitoring UI.")
@click.argument("flower_args", nargs=-1, type=click.UNPROCESSED)
def flower(flower_args: tuple[str, ...]) -> None:
    from workers import app as celery_app

    celery_app.start(["flower", *flower_args])


@main.command("worker-health", help="Exit 0 if a worker on this host answers a ping (container probe).")
@click.option("--timeout", default=5.0, show_default=True)
def worker_health(timeout: float) -> None:
    import socket

    from workers import app as celery_app

    replies = celery_app.control.ping(timeout=timeout)
    host = socket.gethostname()
    mine = [r for r in replies for name in r if name.endswith(f"@{host}")]
    click.echo(json.dumps({"replies": replies, "this_host": bool(mine)}))
    sys.exit(0 if mine else 1)


@main.command(help="Apply database migrations (Alembic upgrade to head).")
def migrate() -> None:
    from app.core.migrate import upgrade

    upgrade()
    click.echo("database is at the latest migration")


@main.group(help="Manage API clients.")
def clients() -> None:
    pass


@clients.command("create", help="Create a client; prints its API key and webhook secret once.")
@click.argument("name")
@click.option("--webhook-url", default=None)
@click.option("--admin", is_flag=True, help="May use the /v1/admin endpoints.")
@click.option("--events", default="", help="Comma-separated extra events: job.running,job.progress")
def clients_create(name: str, webhook_url: str | None, admin: bool, events: str) -> None:
    from app.clients.service import create
    from app.core.db import session_scope

    with session_scope() as session:
        made = create(
            session, name, webhook_url=webhook_url, is_admin=admin,
            webhook_events=[e.strip() for e in events.split(",") if e.strip()],
        )
        out = {
            "id": made.client.id, "name": made.client.name, "api_key": made.api_key,
            "webhook_url": made.client.webhook_url, "webhook_secret": made.client.webhook_secret,
            "is_admin": made.client.is_admin,
        }
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

    from app.core.db import session_scope
    from app.webhooks import repository, service

    start = start if start.tzinfo else start.replace(tzinfo=UTC)
    end = end if end.tzinfo else end.replace(tzinfo=UTC)
    with session_scope() as session:
        ids = repository.dead_between(session, start, end, client_id)
        service.redeliver(session, ids)
    click.echo(json.dumps({"redelivered": len(ids), "ids": ids}))


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
def emulator(host: str, port: int, **switches: object) -> None:
    import uvicorn

    from emulator.app import create_app
    from emulator.state import Config

    config = Config(**{k: v for k, v in switches.items()})  # type: ignore[arg-type]
    uvicorn.run(create_app(config), host=host, port=port, log_level="warning", access_log=False)


@main.command(help="Write the OpenAPI spec (default: openapi/openapi.json).")
@click.option("--out", default="openapi/openapi.json", show_default=True, type=click.Path(path_type=Path))
def openapi(out: Path) -> None:
    from app.openapi import export

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(export())
    click.echo(f"wrote {out}")


if __name__ == "__main__":
    main()
