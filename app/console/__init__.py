"""The ops console at /console: server-rendered pages for operators (overview, jobs,
a job's whole story, clients) behind an admin API key, with cancel and redeliver.
Its assets are served by the API itself; it is not part of the public API (left out
of the OpenAPI spec)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from app.console.auth import CSRFRefused, NotSignedIn

STATIC = Path(__file__).parent / "static"


def install(app: FastAPI) -> None:
    from app.console.endpoints import SECURITY_HEADERS, router, templates

    async def not_signed_in(request: Request, _exc: Exception) -> Response:
        if request.url.path.endswith(".json") or request.method != "GET":
            return JSONResponse({"error": "not signed in"}, status_code=401, headers={"Cache-Control": "no-store"})
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/console/login?{urlencode({'next': here})}", status_code=303)

    async def csrf_refused(request: Request, _exc: Exception) -> Response:
        response = templates.TemplateResponse(request, "refused.html", {}, status_code=403)
        response.headers.update(SECURITY_HEADERS)
        return response

    app.add_exception_handler(NotSignedIn, not_signed_in)
    app.add_exception_handler(CSRFRefused, csrf_refused)
    app.mount("/console/static", StaticFiles(directory=STATIC), name="console-static")
    app.include_router(router)


__all__ = ["install"]
