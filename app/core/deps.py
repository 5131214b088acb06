"""FastAPI dependencies: the request's session and the authenticated client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from app.clients.models import Client
from app.core.db import close_session, get_sessionmaker
from app.core.errors import Forbidden, Unauthorized


def get_session() -> Iterator[Session]:
    """The request's session. Endpoints commit explicitly before answering:
    code after this `yield` runs only once the response has been sent, so it must
    never raise. An exception there makes uvicorn drop the keep-alive connection,
    and the caller's next request on it fails with no answer at all."""
    session = get_sessionmaker()()
    try:
        yield session
    finally:
        close_session(session)


SessionDep = Annotated[Session, Depends(get_session)]


# Declares the scheme in the spec (`/docs` gets its Authorize button); the answers to a
# missing or wrong key stay ours (401 problem+json), hence auto_error=False.
bearer = HTTPBearer(auto_error=False, description="An API key: `cometjobs clients create NAME` prints one")


def current_client(
    request: Request, session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Client:
    from app.clients.service import authenticate

    token = credentials.credentials.strip() if credentials else ""
    if not token:
        raise Unauthorized("send `Authorization: Bearer <api key>`", headers={"WWW-Authenticate": "Bearer"})
    client = authenticate(session, token)
    if client is None:
        raise Unauthorized("the API key is not valid", headers={"WWW-Authenticate": "Bearer"})
    request.state.client_id = client.id
    return client


ClientDep = Annotated[Client, Depends(current_client)]


def admin_client(client: ClientDep) -> Client:
    if not client.is_admin:
        raise Forbidden("an admin API key is required")
    return client


AdminDep = Annotated[Client, Depends(admin_client)]
