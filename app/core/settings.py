"""Every knob of cometjobs, read from `COMETJOBS_*` environment variables.

Durations accept seconds (`"30"`, `"2.5"`) or ISO 8601 (`"PT30S"`). Lists are
comma-separated. Unset storage, database and broker fall back to the embedded
default under `COMETJOBS_DATA_DIR`.
"""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Secret = Literal["cometapi_key", "console_secret"]

PLACEHOLDER_SECRETS = {"", "changeme", "change-me", "secret", "xxx", "your-key", "sk-xxx"}
# A console secret signs session cookies: shorter ones are guessable offline from a cookie.
CONSOLE_SECRET_MIN_CHARS = 32

# Svix's schedule: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (about 27.5 h in all).
DEFAULT_WEBHOOK_SCHEDULE = [5, 300, 1800, 7200, 18000, 36000, 36000]


def _seconds(value: object) -> object:
    """Plain numbers (also as strings, as environment variables are) mean seconds."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


Duration = Annotated[timedelta, BeforeValidator(_seconds)]


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="COMETJOBS_", extra="ignore")

    env: Literal["dev", "test", "prod"] = "dev"
    data_dir: Path = Path(".cometjobs")

    database_url: str = ""
    broker_url: str = ""
    # Prefix for every broker key, so several deployments can share one Redis.
    broker_key_prefix: str = ""
    storage_url: str = ""
    public_base_url: str = "http://127.0.0.1:8000"

    cometapi_base_url: str = "https://api.cometapi.com"
    cometapi_key: SecretStr | None = None

    # Signs the ops console's session cookies (/console). Required in prod, at least 32
    # characters; elsewhere one is derived from the database URL and the data directory.
    console_secret: SecretStr | None = None
    # How long a console sign-in lasts.
    console_session_ttl: Duration = timedelta(hours=8)

    log_format: Literal["json", "console"] | None = None
    log_level: str = "INFO"

    # How long an API process trusts a key it has looked up; changes made elsewhere (a
    # revocation, a PATCH on another process) take effect within this. 0: look up every time.
    auth_cache_ttl: Duration = timedelta(seconds=5)
    # How long one process reuses the database gauges of /metrics (jobs per state, webhook
    # backlog): scrapes from several Prometheus servers cost one set of queries. 0: none.
    metrics_db_cache: Duration = timedelta(seconds=5)

    # Database
    db_pool_size: int = 10
    db_max_overflow: int = 10
    # Worker threads per API process for the endpoints' work (app/core/threads.py); at
    # most DB_POOL_SIZE + DB_MAX_OVERFLOW. Storage transfers have an allowance of their own.
    api_threads: int = 8
    db_connect_timeout: Duration = timedelta(seconds=3)
    db_statement_timeout: Duration = timedelta(seconds=30)
    # A pooled connection idle longer than this is pinged before it is handed out (one
    # round trip); one back from use within it is not. 0: ping at every checkout.
    db_ping_idle: Duration = timedelta(seconds=1)

    # Upstream (CometAPI)
    upstream_connect_timeout: Duration = timedelta(seconds=5)
    upstream_read_timeout: Duration = timedelta(seconds=60)
    upstream_max_connections: int = 200

    # Dispatch: `fair` grants upstream slots through the scheduler's dispatcher (caps,
    # fair share, learned concurrency); `fifo` submits every job at once, as it arrives.
    dispatch: Literal["fair", "fifo"] = "fair"
    dispatch_tick: Duration = timedelta(seconds=0.5)
    # How often the scheduler's leader recounts the gauges it exports (jobs per state, ...).
    gauges_tick: Duration = timedelta(seconds=15)
    # Slots one dispatch round may grant (a bound on each round's work).
    dispatch_batch_size: int = Field(200, ge=1)
    # Granted jobs not yet created upstream (queued with a slot, or submitting) at most:
    # grants wait for the workers, so the submit queue stays short and fair order holds.
    dispatch_max_pending: int = Field(200, ge=1)
    # Retry-After on a 429 quota_exceeded (max_queued reached).
    quota_retry_after: Duration = timedelta(seconds=10)
    # Upstream tasks in flight for the whole CometAPI account; 0: no cap.
    upstream_max_in_flight: int = Field(0, ge=0)

    # Submit
    queue_nudge_after: Duration = timedelta(seconds=15)
    submit_lease: Duration = timedelta(seconds=120)
    submit_max_attempts: int = 10
    submit_retry_base: Duration = timedelta(seconds=2)
    submit_retry_cap: Duration = timedelta(seconds=60)

    # Polling
    poll_tick: Duration = timedelta(seconds=1)
    poll_batch_size: int = 500
    poll_concurrency: int = 64
    poll_lease: Duration = timedelta(seconds=60)
    poll_budget: Duration = timedelta(seconds=10)

    # Collecting results
    collect_lease: Duration = timedelta(seconds=120)
    collect_max_attempts: int = 5
    collect_retry_base: Duration = timedelta(seconds=5)
    # 0: pass bytes on as the network delivers them; re-chunking costs a copy of every byte.
    download_chunk_bytes: int = 0

    # Sweeper and deadlines (defaults; the model catalogue may override per model)
    sweep_interval: Duration = timedelta(seconds=5)
    sweep_batch_size: int = 500
    # A job that timed out while its upstream task was still running is checked now and
    # then: a late success or failure lands on its timeline (the job stays timed_out).
    # LATE_WATCH=0 turns the watch off.
    late_watch: Duration = timedelta(hours=6)
    late_watch_interval: Duration = timedelta(minutes=5)

    # Scheduler (`cometjobs scheduler`): how often a standby tries to take the leadership
    # over, and how often the leader checks that it still holds it.
    scheduler_leader_check: Duration = timedelta(seconds=2)
    # The scheduler's Prometheus exporter; 0 = off.
    scheduler_metrics_port: int = 0
    scheduler_metrics_host: str = "0.0.0.0"

    # Workers
    worker_concurrency: int = 4
    # The worker's Prometheus exporter (multiprocess mode, needs PROMETHEUS_MULTIPROC_DIR); 0 = off.
    worker_metrics_port: int = 0
    worker_metrics_host: str = "0.0.0.0"

    # Webhooks
    webhook_tick: Duration = timedelta(seconds=1)
    webhook_timeout: Duration = timedelta(seconds=10)
    webhook_retry_schedule: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: [float(s) for s in DEFAULT_WEBHOOK_SCHEDULE]
    )
    webhook_allowed_cidrs: Annotated[list[IPNetwork], NoDecode] = Field(default_factory=list)
    webhook_lease: Duration = timedelta(seconds=60)
    webhook_batch_size: int = 500
    webhook_response_body_cap: int = 2048
    # Sends in flight per worker process, and how long one beat tick may keep claiming.
    webhook_concurrency: int = Field(64, ge=1)
    webhook_budget: Duration = timedelta(seconds=10)
    # At most one job.progress event per job per interval.
    webhook_progress_interval: Duration = timedelta(seconds=5)

    # The front door: what one request may carry and how long it may take to arrive.
    # A JSON body holds one job's input, far below 1 MiB; anything larger is refused
    # from its Content-Length before a byte of it is read.
    max_json_bytes: int = Field(1024 * 1024, ge=1024)
    # The JSON a caller stores with a job and gets back in every payload and webhook; at
    # most 64 KiB so a webhook body stays under 96 KiB (webhooks.service.MAX_BODY_BYTES).
    max_metadata_bytes: int = Field(16 * 1024, ge=0, le=64 * 1024)
    # A connection whose request line and headers are not complete within this is closed
    # (slowloris); a body that stalls longer than BODY_TIMEOUT between chunks is a 408.
    header_timeout: Duration = timedelta(seconds=10)
    body_timeout: Duration = timedelta(seconds=30)

    # Artifacts
    artifact_url_ttl: Duration = timedelta(minutes=15)
    max_upload_bytes: int = 20 * 1024 * 1024
    # How long stored results are kept unless the client sets `retention_days` (0: forever).
    artifact_retention: Duration = timedelta(days=30)
    artifact_expiry_tick: Duration = timedelta(minutes=10)
    artifact_expiry_batch_size: int = 500
    # Writes never completed (a worker killed mid-copy) are removed after this; it must
    # exceed the longest copy (the collect task's hard time limit).
    abandoned_upload_age: Duration = timedelta(days=1)

    # Rows (app/jobs/retention.py): a finished job is deleted this long after it finished,
    # once none of its results is still stored (0: keep forever); an upload this long
    # after it was made (0: forever). One leader tick every RETENTION_TICK, in batches.
    job_retention: Duration = timedelta(days=90)
    upload_retention: Duration = timedelta(days=7)
    retention_tick: Duration = timedelta(minutes=10)
    retention_batch_size: int = Field(500, ge=1)

    # S3-compatible storage (`s3://bucket/prefix`). Unset values fall back to the AWS
    # tools' own variables (AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, ...).
    s3_endpoint_url: str | None = None
    # The endpoint callers reach, when it differs from ours (signed URLs carry it).
    s3_public_endpoint_url: str | None = None
    s3_region: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    # MinIO and most self-hosted stores need "path".
    s3_addressing_style: Literal["auto", "path", "virtual"] = "auto"
    # S3 refuses parts under 5 MiB (except the last); one part is the copy's memory bound.
    s3_part_bytes: int = Field(8 * 1024 * 1024, ge=5 * 1024 * 1024, le=5 * 1024**3)
    # Parts uploading at once per object while the next one fills: a copy holds at most
    # (concurrency + 1) parts in memory.
    s3_upload_concurrency: int = Field(2, ge=1, le=16)

    # Extra model catalogue (TOML) layered over the built-in one
    models_file: Path | None = None

    @field_validator("webhook_retry_schedule", mode="before")
    @classmethod
    def _schedule(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("webhook_allowed_cidrs", mode="before")
    @classmethod
    def _cidrs(cls, value: object) -> object:
        parts = _split_csv(value)
        if isinstance(parts, list):
            return [ipaddress.ip_network(p, strict=False) if isinstance(p, str) else p for p in parts]
        return parts

    @model_validator(mode="after")
    def _defaults_and_secrets(self) -> Settings:
        data = self.data_dir.resolve()
        if not self.database_url:
            self.database_url = f"sqlite:///{data / 'cometjobs.db'}"
        if not self.broker_url:
            self.broker_url = f"sqla+sqlite:///{data / 'broker.db'}"
        if not self.storage_url:
            self.storage_url = (data / "artifacts").as_uri()
        self.public_base_url = self.public_base_url.rstrip("/")
        self.cometapi_base_url = self.cometapi_base_url.rstrip("/")
        if not self.webhook_retry_schedule:
            raise ValueError("COMETJOBS_WEBHOOK_RETRY_SCHEDULE needs at least one delay")
        return self

    def require(self, *secrets: Secret) -> Settings:
        """In production, refuse placeholder `secrets` (those this role uses: the API and the
        workers the CometAPI key, the API the console's); `migrate`, `flower` and the health
        probes need neither. Raises SettingsError, one line saying what to set."""
        if self.env != "prod":
            return self
        if "cometapi_key" in secrets:
            key = self.cometapi_key.get_secret_value() if self.cometapi_key else ""
            if key.strip().lower() in PLACEHOLDER_SECRETS:
                raise SettingsError("COMETJOBS_COMETAPI_KEY must be a real key when COMETJOBS_ENV=prod")
        if "console_secret" in secrets:
            console = self.console_secret.get_secret_value() if self.console_secret else ""
            if console.strip().lower() in PLACEHOLDER_SECRETS or len(console) < CONSOLE_SECRET_MIN_CHARS:
                raise SettingsError(
                    f"COMETJOBS_CONSOLE_SECRET must be a real secret of at least {CONSOLE_SECRET_MIN_CHARS} "
                    "characters when COMETJOBS_ENV=prod (e.g. python -c 'import secrets; "
                    "print(secrets.token_urlsafe(32))')"
                )
        return self

    @property
    def console_signing_key(self) -> str:
        if self.console_secret is not None and self.console_secret.get_secret_value():
            return self.console_secret.get_secret_value()
        # dev and test only (prod requires the setting): stable across processes and restarts.
        import hashlib

        seed = f"cometjobs-console|{self.database_url}|{self.data_dir.resolve()}"
        return hashlib.sha256(seed.encode()).hexdigest()

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def effective_log_format(self) -> str:
        return self.log_format or ("console" if self.env == "dev" else "json")


@lru_cache
def get_settings() -> Settings:
    return Settings()


class SettingsError(ValueError):
    """A setting this process cannot run with; its message is the one line to show."""


def explain(exc: ValidationError) -> list[str]:
    """One line per bad setting, named as it is set (`COMETJOBS_...`), without pydantic's
    decoration: what `cometjobs` prints instead of a traceback."""
    lines = []
    for error in exc.errors():
        message = str(error["msg"]).removeprefix("Value error, ")
        loc = [str(part) for part in error["loc"] if isinstance(part, str)]
        name = f"COMETJOBS_{loc[0].upper()}" if loc else ""
        shown = error.get("input")
        value = "" if not loc or isinstance(shown, dict) or "secret" in name.lower() or "key" in name.lower() \
            else f" (got {str(shown)[:60]!r})"
        lines.append(f"{name}: {message}{value}" if name and not message.startswith(name) else message)
    return lines
