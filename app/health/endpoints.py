from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from app.core.errors import PROBLEM_MEDIA_TYPE
from app.health.checks import run_checks

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str
    checks: dict[str, str] = {}


@router.get("/healthz", response_model=Health, operation_id="healthz", summary="Liveness: the process is up")
def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    operation_id="readyz",
    summary="Readiness: database, broker and storage are reachable",
    responses={503: {"description": "A dependency is down; `checks` and `failed` name it"}},
)
def readyz() -> Response:
    checks = run_checks()
    failed = sorted(name for name, state in checks.items() if state != "ok")
    if failed:
        return JSONResponse(
            {
                "type": "/problems/dependency_unavailable",
                "title": "A dependency is unavailable",
                "status": 503,
                "code": "dependency_unavailable",
                "detail": f"unavailable: {', '.join(failed)}",
                "failed": failed,
                "checks": checks,
            },
            status_code=503,
            media_type=PROBLEM_MEDIA_TYPE,
        )
    return JSONResponse({"status": "ok", "checks": checks})
