"""Typed exceptions. Every error answer of the API is problem+json; its fields are on the
exception (`status`, `code`, `title`, `detail`, `errors`, `request_id`, `problem`)."""

from __future__ import annotations

import httpx

from cometjobs_client.models import FieldError, Job, Problem


class CometJobsError(Exception):
    """Base of everything this package raises."""


class APIError(CometJobsError):
    status: int
    code: str

    def __init__(self, problem: Problem, response: httpx.Response | None = None) -> None:
        self.problem = problem
        self.status = problem.status
        self.code = problem.code
        self.title = problem.title
        self.detail = problem.detail
        self.errors: list[FieldError] = list(problem.errors or [])
        self.request_id = problem.request_id or (response.headers.get("x-request-id") if response else None)
        self.response = response
        super().__init__(f"{problem.status} {problem.code}: {problem.detail or problem.title}")


class BadRequest(APIError):
    """400: a body that is not JSON, or a value that cannot be stored."""


class AuthenticationError(APIError):
    """401: a missing or wrong API key."""


class PermissionDenied(APIError):
    """403: this key may not do that."""


class NotFound(APIError):
    """404: no such job (or not yours)."""


class Conflict(APIError):
    """409: e.g. `job_terminal`, `idempotency_in_progress`."""


class Gone(APIError):
    """410: e.g. `artifact_deleted`."""


class ValidationError(APIError):
    """422: `errors` names each bad field."""


class RateLimited(APIError):
    """429: `quota_exceeded`, `rate_limited` or `budget_exhausted`; `retry_after` in seconds."""

    @property
    def retry_after(self) -> float | None:
        from cometjobs_client._http import retry_after_seconds

        return retry_after_seconds(self.response.headers.get("retry-after") if self.response else None)


class ServiceUnavailable(APIError):
    """503: a dependency of the API is down; retried automatically first."""


class ServerError(APIError):
    """Any other 5xx."""


class WaitTimeout(CometJobsError):
    """`wait()` ran out of time; `job` is the job as last seen."""

    def __init__(self, job: Job, timeout: float) -> None:
        self.job = job
        super().__init__(f"job {job.id} is still {job.status} after {timeout:g} s")


class WebhookVerificationError(CometJobsError):
    """The webhook's signature, timestamp or body did not check out."""


_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequest, 401: AuthenticationError, 403: PermissionDenied, 404: NotFound, 409: Conflict,
    410: Gone, 422: ValidationError, 429: RateLimited, 503: ServiceUnavailable,
}


def error_for(response: httpx.Response) -> APIError:
    try:
        problem = Problem.model_validate(response.json())
    except Exception:  # not problem+json (a proxy's page): still a typed error
        problem = Problem(status=response.status_code, code=f"http_{response.status_code}",
                          title=response.reason_phrase, detail=response.text[:500] or None)
    cls = _BY_STATUS.get(response.status_code) or (ServerError if response.status_code >= 500 else APIError)
    return cls(problem, response)
