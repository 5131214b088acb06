from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.core.boundary import CheckedRoute
from app.core.deps import AdminDep, ClientDep, SessionDep
from app.core.errors import Conflict, NotFound, ValidationFailed, problem_responses
from app.jobs import service as jobs
from app.webhooks import repository as repo
from app.webhooks import service
from app.webhooks.models import WebhookAttempt, WebhookDelivery
from app.webhooks.schemas import (
    AttemptOut,
    BulkRedeliver,
    BulkRedeliverResult,
    DeliveryList,
    DeliveryOut,
)

router = APIRouter(tags=["webhooks"], route_class=CheckedRoute)


# A delivery redelivered again and again keeps every attempt; a page shows the latest.
ATTEMPTS_SHOWN = 20


def _delivery_out(d: WebhookDelivery, attempts: list[WebhookAttempt]) -> DeliveryOut:
    return DeliveryOut(
        id=d.id, event_id=d.event_id, event_type=d.event_type, url=d.url, status=d.status, state=repo.delivery_state(d),
        attempts=d.attempts, next_attempt_at=d.next_attempt_at, last_status_code=d.last_status_code,
        last_error=d.last_error, created_at=d.created_at, delivered_at=d.delivered_at,
        attempt_log=[AttemptOut.model_validate(a, from_attributes=True) for a in attempts[-ATTEMPTS_SHOWN:]],
    )


@router.get(
    "/v1/jobs/{job_id}/deliveries",
    response_model=DeliveryList,
    operation_id="listJobDeliveries",
    summary="The job's webhook deliveries and every attempt",
    responses=problem_responses(401, 404, 503),
)
def list_deliveries(
    job_id: str,
    session: SessionDep,
    client: ClientDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(
        max_length=64, pattern=r"^msg_[0-9A-Za-z]+$", description="`next_cursor` from the previous page",
    )] = None,
) -> DeliveryList:
    jobs.get_owned(session, client, job_id)
    after_seq = None
    if cursor is not None:
        last = repo.get(session, cursor)
        if last is None or last.job_id != job_id:
            raise ValidationFailed.field("cursor", "not a cursor returned by this endpoint", "invalid_cursor")
        after_seq = last.seq
    deliveries = repo.for_job(session, job_id, after_seq=after_seq, limit=limit + 1)
    page = list(deliveries[:limit])
    attempts = repo.attempts_for(session, [d.id for d in page])
    return DeliveryList(
        data=[_delivery_out(d, attempts[d.id]) for d in page],
        next_cursor=page[-1].id if len(deliveries) > limit else None,
    )


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
    if delivery.url in client.disabled_webhook_urls:
        raise service.url_disabled(client, delivery.url, "the delivery's URL")
    if not service.redeliver(session, [delivery_id]):
        raise Conflict(f"delivery {delivery_id} is still pending; it is sent on its own", code="delivery_pending")
    session.commit()
    session.refresh(delivery)
    return _delivery_out(delivery, repo.attempts_for(session, [delivery_id])[delivery_id])


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
    ids = repo.dead_between(session, body.start, body.end, body.client_id, limit=body.limit + 1)
    more, ids = len(ids) > body.limit, ids[: body.limit]
    reopened = service.redeliver(session, ids)
    session.commit()
    done = set(reopened)
    return BulkRedeliverResult(
        redelivered=len(reopened), ids=reopened, skipped=[i for i in ids if i not in done], more=more,
    )
