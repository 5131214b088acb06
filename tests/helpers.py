"""Small helpers shared by tests."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import httpx

from tests.support.waiting import wait_for

TERMINAL = {"succeeded", "failed", "canceled", "timed_out"}


def submit(http: httpx.Client, client: dict, model: str = "sora-2", **fields: Any) -> dict:
    body = {"model": model, "input": fields.pop("input", {"prompt": "a paper boat in the rain"}), **fields}
    response = http.post("/v1/jobs", json=body, headers={"Authorization": f"Bearer {client['api_key']}"})
    assert response.status_code == 202, response.text
    return response.json()


def get_job(http: httpx.Client, client: dict, job_id: str) -> dict:
    response = http.get(f"/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {client['api_key']}"})
    assert response.status_code == 200, response.text
    return response.json()


def wait_terminal(http: httpx.Client, client: dict, job_id: str, timeout: float = 60) -> dict:
    return wait_for(
        lambda: (lambda job: job if job["status"] in TERMINAL else None)(get_job(http, client, job_id)),
        timeout=timeout, interval=0.2, message=f"job {job_id} to finish",
    )


def verify_signature(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """Standard Webhooks verification written out by hand (independent of our signer)."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    offered = [part.split(",", 1)[1] for part in headers["webhook-signature"].split() if part.startswith("v1,")]
    return any(hmac.compare_digest(expected, sig) for sig in offered)
