"""`/docs` and `/redoc` work without internet: every script, style, icon and the spec they
load are served by the API itself."""

from __future__ import annotations

import re

import pytest

PAGES = ("/docs", "/redoc")
# src="...", href="...", and the URLs the inline scripts are given (url: '...', spec-url="...").
_REFERENCE = re.compile(r"""(?:src|href|url|spec-url)\s*[=:]\s*["']([^"']+)["']""")


def references(html: str) -> set[str]:
    return set(_REFERENCE.findall(html))


@pytest.mark.parametrize("page", PAGES)
def test_page_references_only_our_own_urls_and_each_answers(api, page):
    response = api.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    urls = references(response.text)
    assert "/openapi.json" in urls
    assert any(url.endswith(".js") for url in urls), urls
    assert "://" not in response.text, "a URL that leaves the API"
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), url
        assert api.get(url).status_code == 200, url


def test_assets_are_the_released_bundles(api):
    bundle = api.get("/static/docs/swagger-ui-bundle.js")
    assert bundle.status_code == 200 and "SwaggerUIBundle" in bundle.text[:2000]
    assert bundle.headers["content-type"].startswith(("application/javascript", "text/javascript"))
    assert "Redoc" in api.get("/static/docs/redoc.standalone.js").text[:2000]


def test_docs_pages_stay_out_of_the_spec(api):
    paths = api.get("/openapi.json").json()["paths"]
    assert not {p for p in paths if p.startswith(("/docs", "/redoc", "/static"))}
