from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Body

from app.clients import service
from app.clients.models import Client
from app.clients.schemas import ClientOut, ClientUpdate, SecretRotation
from app.core.boundary import CheckedRoute
from app.core.deps import ClientDep, SessionDep
from app.core.errors import NotFound, problem_responses
from app.core.numbers import StrictInt

router = APIRouter(tags=["webhooks"], route_class=CheckedRoute)


def _out(client: Client) -> ClientOut:
    return ClientOut(
        id=client.id, name=client.name, webhook_url=client.webhook_url, webhook_events=client.webhook_events or [],
        webhook_disabled_at=client.webhook_disabled_at, disabled_webhook_urls=sorted(client.disabled_webhook_urls),
        previous_secret_expires_at=client.webhook_secret_previous_expires_at, retention_days=client.retention_days,
    )


@router.get("/v1/client", response_model=ClientOut, operation_id="getClient",
            summary="Your client's settings, limits and usage", responses=problem_responses(401, 503))
def get_client(client: ClientDep, session: SessionDep) -> ClientOut:
    out = _out(client)
    out.limits = service.limits_out(session, client)
    return out


@router.patch("/v1/client", response_model=ClientOut, operation_id="updateClient",
              summary="Change your default webhook URL, subscriptions or retention",
              responses=problem_responses(401, 422, 503))
def update_client(body: ClientUpdate, session: SessionDep, client: ClientDep) -> ClientOut:
    updated = service.update(session, client.id, body)
    session.commit()
    service.key_cache().forget(client.id)
    return _out(updated)


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
    grace_seconds: Annotated[StrictInt, Body(embed=True, ge=0, le=7 * 86400)] = 86400,
) -> SecretRotation:
    owned = session.get(Client, client.id, with_for_update=True)
    if owned is None:
        raise NotFound(f"no client {client.id}")
    secret = service.rotate_webhook_secret(session, owned, timedelta(seconds=grace_seconds))
    session.commit()
    service.key_cache().forget(client.id)
    expires = owned.webhook_secret_previous_expires_at
    assert expires is not None
    return SecretRotation(webhook_secret=secret, previous_secret_expires_at=expires)
