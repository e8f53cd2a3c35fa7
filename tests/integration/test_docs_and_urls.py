"""What the API shows the outside: the OpenAPI page works offline under the API's Content
Security Policy (in a real browser that may reach nothing but the API), and the URLs it hands
out never come from the request's Host header."""

from __future__ import annotations

import hashlib
import shutil
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Route, expect, sync_playwright

from api.main import create_app
from shared.settings import Settings
from tests.support.incident import job_request
from tests.support.stack import ServiceStack

pytestmark = pytest.mark.integration

KEY = f"docs-{uuid.uuid4().hex[:8]}"


def test_the_docs_page_works_offline_under_the_csp(stack: ServiceStack) -> None:
    browser_path = shutil.which("chromium") or shutil.which("chromium-browser")
    assert browser_path, "Chromium is missing: `make test` installs Debian's chromium package"
    outside: list[str] = []
    console: list[str] = []

    def only_the_api(route: Route) -> None:
        if route.request.url.startswith(stack.api_url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=browser_path, headless=True)
        try:
            page = browser.new_page()
            page.route("**/*", only_the_api)
            page.on("console", lambda message: console.append(message.text))
            response = page.goto(f"{stack.api_url}/docs")
            assert response is not None and response.status == 200
            csp = response.headers.get("content-security-policy", "")
            assert "script-src 'self'" in csp and "unsafe-inline" not in csp, csp
            expect(page.locator(".swagger-ui .info .title")).to_contain_text(
                "log-analyzer", timeout=15_000
            )
            expect(page.locator(".swagger-ui .opblock").first).to_be_visible()
        finally:
            browser.close()
    assert outside == [], f"the page reached outside the API: {outside}"
    violations = [m for m in console if "Content Security Policy" in m]
    assert violations == [], violations


@pytest.fixture
def client(redis_url: str) -> Iterator[Any]:
    clients: list[TestClient] = []

    def build(**overrides: Any) -> TestClient:
        digest = hashlib.sha256(KEY.encode()).hexdigest()
        settings = Settings(
            redis_url=redis_url, otel_sdk_disabled=True, api_keys=[digest], **overrides
        )
        built = TestClient(create_app(settings, enqueue=lambda job_id: None))
        built.__enter__()
        clients.append(built)
        return built

    yield build
    for built in clients:
        built.__exit__(None, None, None)


def test_urls_handed_out_never_come_from_the_host_header(client: Any) -> None:
    headers = {"X-API-Key": KEY, "Host": "attacker.example"}
    default = client().post("/v1/jobs", json=job_request(), headers=headers)
    assert default.status_code == 202, default.text
    body = default.json()
    for url in (body["status_url"], body["events_url"], default.headers["Location"]):
        assert "attacker.example" not in url, url
    assert body["status_url"] == f"/v1/jobs/{body['job_id']}"

    public = client(public_url="https://logs.example.org/analyzer/")
    answered = public.post("/v1/jobs", json=job_request(), headers=headers)
    job_id = answered.json()["job_id"]
    assert answered.json()["status_url"] == f"https://logs.example.org/analyzer/v1/jobs/{job_id}"
    assert answered.headers["Location"] == answered.json()["status_url"]
    assert answered.json()["events_url"].endswith(f"/analyzer/v1/jobs/{job_id}/events")
