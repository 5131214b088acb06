"""cometjobs' Python client: `Client` (blocking) and `AsyncClient` (asyncio).

    from cometjobs_client import Client
    with Client() as jobs:  # COMETJOBS_API_URL, COMETJOBS_API_KEY
        job = jobs.create("sora-2", {"prompt": "a paper boat"})
        job = jobs.wait(job, on_progress=lambda j: print(j.progress))
        jobs.download(job, path="out/")
"""

from __future__ import annotations

__version__ = "0.1.0"

from cometjobs_client._client import AsyncClient, Client
from cometjobs_client._http import Retries
from cometjobs_client.errors import (
    APIError,
    AuthenticationError,
    BadRequest,
    CometJobsError,
    Conflict,
    Gone,
    NotFound,
    PermissionDenied,
    RateLimited,
    ServerError,
    ServiceUnavailable,
    ValidationError,
    WaitTimeout,
    WebhookVerificationError,
)
from cometjobs_client.models import (
    TERMINAL,
    Artifact,
    BatchItemResult,
    BatchResult,
    Delivery,
    Job,
    JobError,
    JobEvent,
    ModelInfo,
    Problem,
    WebhookEvent,
)
from cometjobs_client.webhooks import verify_webhook

__all__ = [
    "TERMINAL", "APIError", "Artifact", "AsyncClient", "AuthenticationError", "BadRequest", "BatchItemResult",
    "BatchResult", "Client", "CometJobsError", "Conflict", "Delivery", "Gone", "Job", "JobError", "JobEvent",
    "ModelInfo", "NotFound", "PermissionDenied", "Problem", "RateLimited", "Retries", "ServerError",
    "ServiceUnavailable", "ValidationError", "WaitTimeout", "WebhookEvent", "WebhookVerificationError",
    "verify_webhook",
]
