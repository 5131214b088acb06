from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from app.core.boundary import CheckedRoute
from app.core.errors import PROBLEM_MEDIA_TYPE, Problem
from app.health.checks import run_checks

router = APIRouter(tags=["health"], route_class=CheckedRoute)


class Health(BaseModel):
    status: str
    checks: dict[str, str] = {}


class DependencyProblem(Problem):
    """A problem naming the dependencies that failed their readiness check."""

    failed: list[str]
    checks: dict[str, str]


@router.get("/healthz", response_model=Health, operation_id="healthz", summary="Liveness: the process is up")
def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    operation_id="readyz",
    summary="Readiness: database, broker and storage are reachable",
    responses={
        503: {
            "description": "A dependency is down; `failed` names it and `checks` says why",
            "model": DependencyProblem,
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/DependencyProblem"}}},
        }
    },
)
def readyz() -> Response:
    checks = run_checks()
    failed = sorted(name for name, state in checks.items() if state != "ok")
    if failed:
        problem = DependencyProblem(
            type="/problems/dependency_unavailable",
            title="A dependency is unavailable",
            status=503,
            code="dependency_unavailable",
            detail=f"unavailable: {', '.join(failed)}",
            instance="/readyz",
            failed=failed,
            checks=checks,
        )
        return JSONResponse(
            problem.model_dump(exclude_none=True), status_code=503, media_type=PROBLEM_MEDIA_TYPE,
            headers={"Retry-After": "5"},
        )
    return JSONResponse({"status": "ok", "checks": checks})
