"""FastAPI dependencies: the request's session and the authenticated client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.clients.models import Client
from app.core.db import close_session, get_sessionmaker, read_session
from app.core.errors import Forbidden, Unauthorized


async def get_session() -> AsyncIterator[Session]:
    """The request's session. Endpoints commit explicitly before answering:
    code after this `yield` runs only once the response has been sent, so it must
    never raise. An exception there makes uvicorn drop the keep-alive connection,
    and the caller's next request on it fails with no answer at all.

    Async, so resolving it costs no worker-thread hop: making a session does no I/O,
    and neither does closing one whose transaction already ended (a connection back
    in the pool after a commit needs no rollback). Only a session left inside a
    transaction is closed in a worker thread."""
    session = get_sessionmaker()()
    try:
        yield session
    finally:
        if session.in_transaction():
            await run_in_threadpool(close_session, session)
        else:
            close_session(session)


SessionDep = Annotated[Session, Depends(get_session)]


def finish_reading(session: Session) -> None:
    """End a read-only request's transaction in the endpoint's own worker thread, so that
    closing the session afterwards needs no thread of its own."""
    session.rollback()


# Declares the scheme in the spec (`/docs` gets its Authorize button); the answers to a
# missing or wrong key stay ours (401 problem+json), hence auto_error=False.
bearer = HTTPBearer(auto_error=False, description="An API key: `cometjobs clients create NAME` prints one")


async def current_client(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Client:
    """The caller's client row, detached and read-only (a service that changes it loads
    its own copy). Served from the key cache when the key was seen recently."""
    from app.clients.service import key_cache

    token = credentials.credentials.strip() if credentials else ""
    if not token:
        raise Unauthorized("send `Authorization: Bearer <api key>`", headers={"WWW-Authenticate": "Bearer"})
    client = key_cache().get(token) or await _shared_look_up(token)
    if client is None:
        raise Unauthorized("the API key is not valid", headers={"WWW-Authenticate": "Bearer"})
    request.state.client_id = client.id
    return client


# The look-ups in flight, one per key (and event loop). When a key's cache entry expires
# under load, every request in flight with that key misses at once: they all wait for
# the first one's look-up instead of each queueing its own behind the worker threads.
# bench-api's POST had 64 look-ups every AUTH_CACHE_TTL, and every request in flight
# then took ~100 ms longer: that was its p99.
_lookups: dict[tuple[asyncio.AbstractEventLoop, str], asyncio.Task[Client | None]] = {}


async def _shared_look_up(token: str) -> Client | None:
    from app.clients.service import hash_key

    key = (asyncio.get_running_loop(), hash_key(token))
    task = _lookups.get(key)
    if task is None:
        task = _lookups[key] = asyncio.create_task(_look_up_and_cache(token))
        task.add_done_callback(lambda _done: _lookups.pop(key, None))
    # Shielded: a caller that goes away does not cancel the others' look-up.
    return await asyncio.shield(task)


async def _look_up_and_cache(token: str) -> Client | None:
    from app.clients.service import key_cache

    client = await run_in_threadpool(_look_up, token)
    if client is not None:
        key_cache().put(token, client)
    return client


def _look_up(token: str) -> Client | None:
    from app.clients.service import authenticate

    with read_session() as session:
        return authenticate(session, token)


ClientDep = Annotated[Client, Depends(current_client)]


async def admin_client(client: ClientDep) -> Client:
    if not client.is_admin:
        raise Forbidden("an admin API key is required")
    return client


AdminDep = Annotated[Client, Depends(admin_client)]
