"""/docs and /redoc load everything from the service itself: they work on a machine without internet."""

from __future__ import annotations

import re

pytest_plugins = ["service_fixtures"]

# every URL a page loads: src/href attributes and the spec URL given to Swagger UI / ReDoc
URL_ATTR = re.compile(r"""(?:src|href|spec-url)\s*=\s*["']([^"']+)["']|\burl:\s*["']([^"']+)["']""")


def _urls(html: str) -> list[str]:
    return [a or b for a, b in URL_ATTR.findall(html)]


def _assert_local(urls: list[str]) -> None:
    assert urls
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), f"not served by the service: {url}"


def test_swagger_ui_loads_only_local_assets_and_they_are_served(live):
    with live.client() as c:
        page = c.get("/docs")
        assert page.status_code == 200
        html = page.text
        assert "cdn." not in html and "https://" not in html and "http://" not in html
        urls = _urls(html)
        _assert_local(urls)
        js = next(u for u in urls if u.endswith(".js"))
        css = next(u for u in urls if u.endswith(".css"))
        got_js, got_css = c.get(js), c.get(css)
        assert got_js.status_code == 200 and "javascript" in got_js.headers["content-type"]
        assert "SwaggerUIBundle" in got_js.text  # the real bundle, not an empty placeholder
        assert got_css.status_code == 200 and got_css.headers["content-type"].startswith("text/css")
        assert ".swagger-ui" in got_css.text
        spec_url = next(u for u in urls if u.endswith("openapi.json"))
        assert c.get(spec_url).json()["openapi"].startswith("3.")
        for url in urls:
            assert c.get(url).status_code == 200, url
        assert "validatorUrl" in html and '"validatorUrl": null' in html  # no badge from validator.swagger.io


def test_redoc_loads_only_local_assets(live):
    with live.client() as c:
        page = c.get("/redoc")
        assert page.status_code == 200
        assert "https://" not in page.text and "http://" not in page.text  # no CDN, no Google Fonts
        urls = _urls(page.text)
        _assert_local(urls)
        js = next(u for u in urls if u.endswith(".js"))
        got = c.get(js)
        assert got.status_code == 200 and "javascript" in got.headers["content-type"] and len(got.content) > 100_000
