"""The request session's teardown runs after the answer is sent. If it raised there
(the database died between the answer and the clean-up), uvicorn would drop the
keep-alive connection under the caller's next request. It must never raise."""

from __future__ import annotations

import asyncio

import psycopg
from sqlalchemy import text

from tests.conftest import DB_NAME, PG_HOST, PG_PORT, PG_USER


def test_session_teardown_survives_a_connection_killed_mid_transaction(database):
    from app.core.db import get_engine
    from app.core.deps import get_session

    async def request() -> None:
        dependency = get_session()
        session = await anext(dependency)
        pid = session.execute(text("SELECT pg_backend_pid()")).scalar_one()  # a transaction is open
        with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=DB_NAME, autocommit=True) as admin:
            assert admin.execute("SELECT pg_terminate_backend(%s, 10000)", (pid,)).fetchone() == (True,)  # waits for the exit
        await dependency.aclose()  # runs the teardown; raises if the rollback's error escapes

    asyncio.run(request())

    assert get_engine().pool.checkedout() == 0
    with get_engine().connect() as conn:  # the pool hands out a live connection afterwards
        assert conn.execute(text("SELECT 1")).scalar_one() == 1
