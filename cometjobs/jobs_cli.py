"""`cometjobs jobs ...`: the API from a shell, on the Python client (sdk/python).
Configured by COMETJOBS_API_URL and COMETJOBS_API_KEY (or --api-url / --api-key). Jobs are
printed as JSON (lists one object a line); an API error prints its problem+json on stderr
and exits 1."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from cometjobs_client import Client, Job

F = TypeVar("F", bound=Callable[..., Any])
STATUSES = ["queued", "submitting", "running", "collecting", "succeeded", "failed", "canceled", "timed_out"]


@click.group(help="Submit and follow jobs through the API (COMETJOBS_API_URL, COMETJOBS_API_KEY).")
@click.option("--api-url", envvar="COMETJOBS_API_URL", default="http://127.0.0.1:8000", show_default=True)
@click.option("--api-key", envvar="COMETJOBS_API_KEY", default=None, help="Default: $COMETJOBS_API_KEY")
@click.pass_context
def jobs(ctx: click.Context, api_url: str, api_key: str | None) -> None:
    ctx.obj = {"url": api_url, "key": api_key}


@contextmanager
def _client(ctx: click.Context) -> Iterator[Client]:
    try:
        from cometjobs_client import APIError, Client, CometJobsError
    except ImportError:
        raise click.UsageError("the Python client is not installed: pip install ./sdk/python") from None
    if not ctx.obj["key"]:
        raise click.UsageError("no API key: set COMETJOBS_API_KEY or pass --api-key")
    try:
        with Client(ctx.obj["url"], ctx.obj["key"]) as client:
            yield client
    except APIError as exc:
        click.echo(exc.problem.model_dump_json(exclude_none=True), err=True)
        sys.exit(1)
    except CometJobsError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


def _with_client(fn: F) -> F:
    @click.pass_context
    @functools.wraps(fn)
    def wrapper(ctx: click.Context, *args: Any, **kwargs: Any) -> Any:
        with _client(ctx) as client:
            return fn(client, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _print(job: Job) -> None:
    click.echo(job.model_dump_json())


def _json_arg(value: str, name: str) -> Any:
    """JSON given inline, or `@path` to read it from a file (`@-`: standard input)."""
    if value.startswith("@"):
        source = value[1:]
        value = sys.stdin.read() if source == "-" else Path(source).read_text()
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint=name) from None


def _exit_for(job: Job) -> None:
    sys.exit(0 if job.succeeded else 1)


@jobs.command("submit", help="Submit a job and print it; with --wait, wait for its end (exit 0 only if it "
              "succeeded).")
@click.argument("model")
@click.option("--input", "input_", required=True, help="The model's input: JSON, or @file")
@click.option("--metadata", default=None, help="Your own data: JSON, or @file")
@click.option("--webhook-url", default=None)
@click.option("--priority", type=click.Choice(["high", "normal", "low"]), default=None)
@click.option("--idempotency-key", default=None, help="Default: a fresh one")
@click.option("--wait", "wait_", is_flag=True, help="Wait until the job ends and print it then")
@click.option("--timeout", type=float, default=None, help="With --wait: give up after this many seconds")
@_with_client
def submit(client: Client, model: str, input_: str, metadata: str | None, webhook_url: str | None,
           priority: str | None, idempotency_key: str | None, wait_: bool, timeout: float | None) -> None:
    from cometjobs_client import WaitTimeout

    job = client.create(
        model, _json_arg(input_, "--input"), metadata=_json_arg(metadata, "--metadata") if metadata else None,
        webhook_url=webhook_url, priority=priority, idempotency_key=idempotency_key,
    )
    if not wait_:
        _print(job)
        return
    try:
        job = client.wait(job, timeout=timeout)
    except WaitTimeout as exc:
        _print(exc.job)
        click.echo(f"still {exc.job.status} after {timeout:g} s", err=True)
        sys.exit(1)
    _print(job)
    _exit_for(job)


@jobs.command("get", help="Print one job.")
@click.argument("job_id")
@_with_client
def get(client: Client, job_id: str) -> None:
    _print(client.get(job_id))


@jobs.command("list", help="Your jobs, newest first, one JSON object a line.")
@click.option("--status", type=click.Choice(STATUSES), default=None)
@click.option("--model", default=None)
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True, help="At most this many")
@_with_client
def list_(client: Client, status: str | None, model: str | None, limit: int) -> None:
    for count, job in enumerate(client.list(status=status, model=model, page_size=min(limit, 200)), 1):
        _print(job)
        if count >= limit:
            return


@jobs.command("cancel", help="Cancel a job that has not finished; print it.")
@click.argument("job_id")
@_with_client
def cancel(client: Client, job_id: str) -> None:
    _print(client.cancel(job_id))


@jobs.command("events", help="The job's timeline, one JSON object a line; --follow keeps printing new "
              "events live (Server-Sent Events) until the job ends.")
@click.argument("job_id")
@click.option("--follow", "-f", is_flag=True, help="Stream new events until the job ends")
@_with_client
def events(client: Client, job_id: str, follow: bool) -> None:
    from cometjobs_client import JobEvent

    if not follow:
        for event in client.events(job_id):
            click.echo(event.model_dump_json())
        return
    for item in client.stream(job_id):
        if isinstance(item, JobEvent):
            click.echo(item.model_dump_json())


@jobs.command("watch", help="A live progress bar until the job ends; then print it (exit 0 only if it "
              "succeeded).")
@click.argument("job_id")
@_with_client
def watch(client: Client, job_id: str) -> None:
    job = client.get(job_id)
    with click.progressbar(length=100, label=f"{job.id} {job.status}", file=sys.stderr,
                           show_percent=True, show_eta=False) as bar:
        shown = [0]

        def progressed(current: Job) -> None:
            bar.label = f"{current.id} {current.status}"
            bar.update(max(0, current.progress - shown[0]))
            shown[0] = max(shown[0], current.progress)

        progressed(job)
        job = client.wait(job, on_progress=progressed)
    _print(job)
    _exit_for(job)


@jobs.command("download", help="Save an artifact (NAME, default the first one) to PATH (a file or a "
              "directory); print where.")
@click.argument("job_id")
@click.argument("name", required=False)
@click.option("-o", "--output", "output", type=click.Path(), default=".", show_default=True,
              help="A file, or a directory (a trailing / makes it)")
@_with_client
def download(client: Client, job_id: str, name: str | None, output: str) -> None:
    click.echo(str(client.download(job_id, name, output)))
