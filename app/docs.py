"""`/docs` (Swagger UI) and `/redoc` without a CDN: their scripts and styles are served by
the API itself, from the `fastapi-offline` package (released Swagger UI and ReDoc bundles,
unmodified), so the pages work on a network with no way out."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC_URL = "/static/docs"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"


def _assets() -> Path:
    import fastapi_offline

    return Path(fastapi_offline.__file__).parent / "static"


def install(app: FastAPI, openapi_url: str = "/openapi.json") -> None:
    """Mount the assets and add the two pages (left out of the spec, like FastAPI's own)."""
    app.mount(STATIC_URL, StaticFiles(directory=_assets()), name="docs-static")
    router = APIRouter(include_in_schema=False)

    @router.get("/docs")
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url, title=f"{app.title} API",
            swagger_js_url=f"{STATIC_URL}/swagger-ui-bundle.js", swagger_css_url=f"{STATIC_URL}/swagger-ui.css",
            swagger_favicon_url=f"{STATIC_URL}/favicon.png", oauth2_redirect_url=OAUTH2_REDIRECT_URL,
        )

    @router.get(OAUTH2_REDIRECT_URL)
    def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @router.get("/redoc")
    def redoc() -> HTMLResponse:
        # with_google_fonts=False: the fonts come from Google's CDN; the system's fonts serve.
        return get_redoc_html(
            openapi_url=openapi_url, title=f"{app.title} API", redoc_js_url=f"{STATIC_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{STATIC_URL}/favicon.png", with_google_fonts=False,
        )

    app.include_router(router)
