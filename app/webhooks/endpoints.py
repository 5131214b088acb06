from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Body
from pydantic import BaseModel, Field

from app.core.deps import AdminDep, ClientDep, SessionDep
from app.core.errors import Conflict, NotFound, ValidationFailed, problem_responses
from app.core.settings import get_settings
from app.jobs import service as jobs
from app.jobs.schemas import EVENT_TYPES
from app.webhooks import repository as repo
from app.webhooks import service, ssrf

router = APIRouter(tags=["webhooks"])


class AttemptOut(BaseModel):
    attempt: int
    started_at: datetime
    status_code: int | None
    latency_ms: int | None
    response_body: str | None
    error: str | None


class DeliveryOut(BaseModel):
    id: str = Field(description="The `webhook-id` header value; stable across retries")
    event_id: str
    event_type: str
    url: str
    status: str = Field(description="pending, delivered, dead, canceled, disabled (410) or superseded")
    state: str = Field(description="`status`, except `retrying` while a failed delivery waits for its next attempt")
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    attempt_log: list[AttemptOut]


class DeliveryList(BaseModel):
    data: list[DeliveryOut]


class ClientOut(BaseModel):
    id: str
    name: str
    webhook_url: str | None
    webhook_events: list[str]
    webhook_disabled_at: datetime | None = Field(description="Set when the default URL answered 410 Gone")
    disabled_webhook_urls: list[str] = Field(description="URLs that answered 410 Gone; nothing is sent to them")
    previous_secret_expires_at: datetime | None
    retention_days: int | None


class ClientUpdate(BaseModel):
    webhook_url: str | None = Field(None, description="New default webhook URL; also re-enables a URL disabled by 410")
    webhook_events: list[EVENT_TYPES] | None = None
    disabled_webhook_urls: list[str] | None = Field(
        None, description="Remove a URL from this list to send to it again (e.g. `[]` re-enables all)"
    )
    retention_days: int | None = Field(None, ge=1, le=3650)


class SecretRotation(BaseModel):
    webhook_secret: str
    previous_secret_expires_at: datetime


class BulkRedeliver(BaseModel):
    start: datetime = Field(description="Dead deliveries created at or after this instant")
    end: datetime = Field(description="... and before this one")
    client_id: str | None = None


class BulkRedeliverResult(BaseModel):
    redelivered: int
    ids: list[str]
    skipped: list[str] = Field(description="Dead deliveries left alone because their URL is disabled (410)")


def _delivery_out(d, attempts) -> DeliveryOut:  # type: ignore[no-untyped-def]
    return DeliveryOut(
        id=d.id, event_id=d.event_id, event_type=d.event_type, url=d.url, status=d.status, state=repo.delivery_state(d),
        attempts=d.attempts, next_attempt_at=d.next_attempt_at, last_status_code=d.last_status_code,
        last_error=d.last_error, created_at=d.created_at, delivered_at=d.delivered_at,
        attempt_log=[AttemptOut.model_validate(a, from_attributes=True) for a in attempts],
    )


@router.get(
    "/v1/jobs/{job_id}/deliveries",
    response_model=DeliveryList,
    operation_id="listJobDeliveries",
    summary="The job's webhook deliveries and every attempt",
    responses=problem_responses(401, 404, 503),
)
def list_deliveries(job_id: str, session: SessionDep, client: ClientDep) -> DeliveryList:
    jobs.get_owned(session, client, job_id)
    deliveries = repo.for_job(session, job_id)
    attempts = repo.attempts_for(session, [d.id for d in deliveries])
    return DeliveryList(data=[_delivery_out(d, attempts[d.id]) for d in deliveries])


@router.post(
    "/v1/jobs/{job_id}/deliveries/{delivery_id}/redeliver",
    response_model=DeliveryOut,
    operation_id="redeliverJobDelivery",
    summary="Send a delivery again (same webhook-id), e.g. after it went dead",
    responses=problem_responses(401, 404, 409, 503),
)
def redeliver(job_id: str, delivery_id: str, session: SessionDep, client: ClientDep) -> DeliveryOut:
    jobs.get_owned(session, client, job_id)
    delivery = repo.get(session, delivery_id)
    if delivery is None or delivery.job_id != job_id:
        raise NotFound(f"job {job_id} has no delivery {delivery_id}")
    if delivery.url in service.disabled_urls(client):
        raise Conflict(
            f"{delivery.url} answered 410 Gone and is disabled; enable it with PATCH /v1/client first",
            code="webhook_url_disabled",
        )
    if not service.redeliver(session, [delivery_id]):
        raise Conflict(f"delivery {delivery_id} is still pending; it is sent on its own", code="delivery_pending")
    session.commit()
    delivery = repo.get(session, delivery_id)
    return _delivery_out(delivery, repo.attempts_for(session, [delivery_id])[delivery_id])


@router.get("/v1/client", response_model=ClientOut, operation_id="getClient", summary="Your client's settings",
            responses=problem_responses(401, 503))
def get_client(client: ClientDep) -> ClientOut:
    return ClientOut(
        id=client.id, name=client.name, webhook_url=client.webhook_url, webhook_events=client.webhook_events or [],
        webhook_disabled_at=client.webhook_disabled_at, disabled_webhook_urls=sorted(service.disabled_urls(client)),
        previous_secret_expires_at=client.webhook_secret_previous_expires_at, retention_days=client.retention_days,
    )


@router.patch("/v1/client", response_model=ClientOut, operation_id="updateClient",
              summary="Change your default webhook URL, subscriptions or retention",
              responses=problem_responses(401, 422, 503))
def update_client(body: ClientUpdate, session: SessionDep, client: ClientDep) -> ClientOut:
    fields = body.model_dump(exclude_unset=True)
    session.refresh(client, with_for_update=True)  # a worker may be disabling a URL (410) right now
    disabled = service.disabled_urls(client)
    if fields.get("webhook_url"):
        try:
            ssrf.check_at_submit(fields["webhook_url"], get_settings().webhook_allowed_cidrs)
        except ssrf.UnsafeURL as exc:
            raise ValidationFailed.field("webhook_url", str(exc), "unsafe_url") from None
        disabled.discard(fields["webhook_url"])  # setting a URL again is enabling it
    if fields.get("disabled_webhook_urls") is not None:
        disabled &= set(fields["disabled_webhook_urls"])  # only removal: a URL is disabled by its own 410
    client.settings = {**(client.settings or {}), "disabled_webhook_urls": sorted(disabled)}
    if "webhook_url" in fields:
        client.webhook_url = fields["webhook_url"]
    if client.webhook_url not in disabled:
        client.webhook_disabled_at = None
    if "webhook_events" in fields:
        client.webhook_events = list(fields["webhook_events"] or [])
    for name, value in fields.items():
        if name not in ("webhook_url", "webhook_events", "disabled_webhook_urls"):
            setattr(client, name, value)
    session.commit()
    return get_client(client)


@router.post(
    "/v1/client/webhook-secret/rotate",
    response_model=SecretRotation,
    operation_id="rotateWebhookSecret",
    summary="New webhook secret; the old one also signs until the grace period ends",
    responses=problem_responses(401, 422, 503),
)
def rotate_secret(
    session: SessionDep,
    client: ClientDep,
    grace_seconds: Annotated[int, Body(embed=True, ge=0, le=7 * 86400)] = 86400,
) -> SecretRotation:
    from app.clients.service import rotate_webhook_secret

    secret = rotate_webhook_secret(session, client, timedelta(seconds=grace_seconds))
    session.commit()
    return SecretRotation(webhook_secret=secret, previous_secret_expires_at=client.webhook_secret_previous_expires_at)


@router.post(
    "/v1/admin/webhooks/redeliver",
    response_model=BulkRedeliverResult,
    operation_id="bulkRedeliverDead",
    summary="Ops: redeliver every dead delivery created in a time range",
    responses=problem_responses(401, 403, 422, 503),
)
def bulk_redeliver(body: BulkRedeliver, session: SessionDep, _admin: AdminDep) -> BulkRedeliverResult:
    if body.end <= body.start:
        raise ValidationFailed.field("end", "must be after start", "invalid_range")
    ids = repo.dead_between(session, body.start, body.end, body.client_id)
    reopened = service.redeliver(session, ids)
    session.commit()
    done = set(reopened)
    return BulkRedeliverResult(redelivered=len(reopened), ids=reopened, skipped=[i for i in ids if i not in done])
