"""Postgres stops for a few seconds under load: the API answers 503 problem+json
(never a hang, never a 500), workers recover, and every accepted job finishes."""

from __future__ import annotations

import threading

import httpx

from tests.support.stack import PostgresServer
from tests.support.waiting import wait_for

TERMINAL = ("succeeded", "failed", "canceled", "timed_out")


def test_api_answers_503_during_a_database_outage_and_nothing_is_lost(make_stack):
    from tests.conftest import TMP

    pg = PostgresServer(TMP).init().start()
    stack = make_stack("pgdown", pg=("127.0.0.1", pg.port), overrides={"COMETJOBS_DB_CONNECT_TIMEOUT": "2"})
    try:
        stack.create_database()
        stack.start_emulator()
        stack.start_api()
        stack.start_worker("worker")
        stack.start_scheduler()
        client = stack.create_client("pgdown")

        accepted: list[str] = []
        answers: list[tuple[int, str, str]] = []
        stop = threading.Event()

        def load() -> None:
            n = 0
            with httpx.Client(base_url=stack.http.base_url, timeout=20) as http:
                while not stop.is_set():
                    n += 1
                    try:
                        response = http.post("/v1/jobs", headers=client["headers"], json={
                            "model": "sora-2", "input": {"prompt": f"load-{n} [job-seconds=2]"}})
                    except httpx.TransportError as exc:  # recorded, so the assertion below names it
                        answers.append((0, type(exc).__name__, str(exc)))
                        stop.wait(0.05)
                        continue
                    body = response.json()
                    answers.append((response.status_code, response.headers.get("content-type", ""), body.get("code", "")))
                    if response.status_code == 202:
                        accepted.append(body["id"])
                    if accepted:
                        try:
                            got = http.get(f"/v1/jobs/{accepted[-1]}", headers=client["headers"])
                        except httpx.TransportError as exc:
                            answers.append((0, type(exc).__name__, str(exc)))
                            continue
                        answers.append((got.status_code, got.headers.get("content-type", ""), got.json().get("code", "")))

        worker = threading.Thread(target=load, daemon=True)
        worker.start()
        wait_for(lambda: len(accepted) >= 5 and stack.status_counts().get("running", 0) >= 1, timeout=60,
                 message="load to be flowing")

        pg.stop()
        wait_for(lambda: sum(1 for status, _, _ in answers if status == 503) >= 3, timeout=60,
                 message=lambda: f"503s during the outage, got {answers[-5:]}\n{stack.logs()}")
        pg.start()
        wait_for(lambda: len([a for a in answers[-4:] if a[0] in (200, 202)]) == 4, timeout=90,
                 message=lambda: f"the API to recover, got {answers[-5:]}")
        stop.set()
        worker.join(timeout=30)

        outage = [a for a in answers if a[0] == 503]
        assert outage, answers
        assert all(a == (503, "application/problem+json", "database_unavailable") for a in outage), outage
        assert {status for status, _, _ in answers} <= {200, 202, 503}, ([a for a in answers if a[0] not in (200, 202)], stack.logs())

        def finished() -> bool:
            rows = stack.sql("SELECT status FROM jobs WHERE id = ANY(%s)", accepted)
            return len(rows) == len(accepted) and all(status in TERMINAL for (status,) in rows)

        wait_for(finished, timeout=180, interval=0.5,
                 message=lambda: f"every accepted job to finish: {stack.status_counts()}\n{stack.logs()}")
        # Every job in the database finished, and every job a caller was told about is among them.
        # (A commit acknowledged by Postgres just as the connection died can leave a job the caller
        # saw as 503; it must finish too. Callers who retry use an Idempotency-Key.)
        counts = stack.status_counts()
        assert list(counts) == ["succeeded"] and counts["succeeded"] >= len(accepted), counts
    finally:
        stack.stop(drop=False)
        pg.remove()
