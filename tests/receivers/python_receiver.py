"""A cometjobs webhook receiver as README's guide writes it (FastAPI): verify the raw
body bytes, deduplicate on webhook-id, order by seq, never leave a terminal state,
answer 2xx to whatever verified (even events it ignores). The suite drives it with
real deliveries (tests/test_receivers.py): `python python_receiver.py PORT` with
WEBHOOK_SECRET set."""

from __future__ import annotations

import os
import sys
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, Response
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

TERMINAL = {"succeeded", "failed", "canceled", "timed_out"}
webhook = Webhook(os.environ["WEBHOOK_SECRET"])
seen: dict[str, Any] = {"accepted": [], "rejected": 0, "ignored": 0, "duplicates": 0, "jobs": {}}
handled: set[str] = set()
app = FastAPI()


def on_event(event: dict[str, Any]) -> None:
    job = seen["jobs"].get(event["data"]["id"], {"seq": 0, "status": None})
    if event["seq"] <= job["seq"] or job["status"] in TERMINAL:
        seen["ignored"] += 1  # an older event (a retry or redelivery), or after the end
        return
    seen["jobs"][event["data"]["id"]] = {"seq": event["seq"], "status": event["data"]["status"]}


@app.post("/hook")
async def hook(request: Request) -> Response:
    body = await request.body()  # the exact bytes, before any JSON parsing
    try:
        event = webhook.verify(body, dict(request.headers))  # Starlette lowercases header names
    except (WebhookVerificationError, ValueError):  # some malformed signatures raise ValueError
        seen["rejected"] += 1
        return Response(status_code=401)
    delivery_id = request.headers["webhook-id"]
    if delivery_id in handled:
        seen["duplicates"] += 1
    else:
        handled.add(delivery_id)
        seen["accepted"].append({"id": event["id"], "type": event["type"], "seq": event["seq"],
                                 "job": event["data"]["id"]})
        on_event(event)
    return Response(status_code=204)


@app.get("/seen")
def show() -> dict[str, Any]:
    return seen


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
