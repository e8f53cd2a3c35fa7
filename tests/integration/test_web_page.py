"""The web page in a real browser: Debian's Chromium, headless, driven by Playwright, against
real API and worker processes with the Loki and llama stubs.

`make test` installs Chromium when it is missing (`scripts/ensure_chromium.sh`); without it
these tests fail, never skip. With UI_SCREENSHOTS_DIR set, the main views are saved there
(that is how docs/images/ is made).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.support.stack import ServiceStack

pytestmark = pytest.mark.integration

WINDOW = ("2026-11-24T06:00:00", "2026-11-24T07:00:00")  # the incident the Loki stub holds
SCREENSHOTS = os.environ.get("UI_SCREENSHOTS_DIR")
XSS_LINES = [
    "ERROR upload failed for <script>window.__xss = 'script'</script>",
    "ERROR bad avatar <img src=x onerror=\"window.__xss = 'img'\">",
    "ERROR bad link <a href=\"javascript:window.__xss='a'\">click</a> in profile",
]


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "Chromium is missing: `make test` installs Debian's chromium package"
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium(), headless=True)
        yield launched
        launched.close()


@pytest.fixture
def stack(running_stack: ServiceStack) -> ServiceStack:
    return running_stack


@pytest.fixture
def page(browser: Browser, stack: ServiceStack) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    opened.goto(f"{stack.api_url}/ui/")
    yield opened
    context.close()
    assert not errors, errors


def ask(page: Page, namespace: str = "shop", **fields: str) -> None:
    page.fill("#f-namespace", namespace)
    page.fill("#f-start", WINDOW[0])
    page.fill("#f-end", WINDOW[1])
    for selector, value in fields.items():
        page.fill(f"#{selector}", value)
    page.click("#submit")


def shot(page: Page, name: str) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"), full_page=True)


def job_id(page: Page) -> str:
    return page.url.split("#job=")[1]


def test_a_job_shows_its_stages_findings_answer_and_evidence(
    page: Page, stack: ServiceStack
) -> None:
    ask(page)
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=30_000)
    for stage in ("query_loki", "flatten", "normalize", "call_llm"):
        expect(page.locator(f"#stage-{stage}")).to_have_class("finished")
    expect(page.locator("#findings .summary")).to_contain_text("Probable root cause")
    expect(page.locator("#evidence tbody tr").first).to_be_visible()
    result = stack.job(job_id(page))["result"]
    # The answer, rendered from Markdown: headings, list items, and T1 as a link to its row.
    expect(page.locator("#answer h3").first).to_have_text("Summary")
    assert page.locator("#answer").inner_text().count("No space left on device") == 1
    assert len(result["evidence"]) == page.locator("#evidence tbody tr").count()
    page.locator("#answer a.cite").first.click()
    expect(page.locator("#evidence tr.target")).to_have_count(1)
    shot(page, "watch")


def test_a_reload_mid_stream_resumes_without_duplicate_text(
    page: Page, stack: ServiceStack
) -> None:
    stack.llama.config.token_interval_s = 0.05
    ask(page)
    expect(page.locator("#answer p, #answer h3").first).to_be_visible(timeout=30_000)
    page.reload()
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=30_000)
    analysis = stack.job(job_id(page))["result"]["analysis"]
    shown = page.locator("#answer").inner_text()
    assert shown.count("The database ran out of disk space") == 1, shown
    assert analysis.count("The database ran out of disk space") == 1


def test_cancel_stops_the_job(page: Page, stack: ServiceStack) -> None:
    stack.loki.hang_next(10, times=10)
    try:
        ask(page)
        expect(page.locator("#stage-query_loki")).to_have_class("running", timeout=15_000)
        page.click("#cancel")
        expect(page.locator("#job-status")).to_have_text("cancelled", timeout=15_000)
    finally:
        stack.loki.clear_faults()
    assert stack.job(job_id(page))["status"] == "cancelled"


def test_history_lists_jobs_and_opens_one(page: Page, stack: ServiceStack) -> None:
    ask(page)
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=30_000)
    first = job_id(page)
    page.click("#nav-history")
    row = page.locator(f'#history tr[data-job="{first}"]')
    expect(row).to_be_visible()
    expect(row).to_contain_text("succeeded")
    shot(page, "history")
    row.click()
    expect(page.locator("#job-title")).to_have_text(f"job {first}")
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=15_000)


def test_a_422_is_shown_beside_the_field_it_names(page: Page) -> None:
    ask(page, **{"f-filter": '|~ "(unclosed"'})
    error = page.locator('.error[data-for="log_filter"]')
    expect(error).not_to_be_empty()
    expect(page.locator("#f-filter")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#watch")).to_be_hidden()


def test_log_text_is_shown_as_text_never_run(page: Page, stack: ServiceStack) -> None:
    start = int(time.mktime(time.strptime(WINDOW[0], "%Y-%m-%dT%H:%M:%S")) - time.timezone)
    entries = [((start + 60 + i) * 10**9, line) for i, line in enumerate(XSS_LINES)]
    stack.loki.push({"namespace": "xss", "pod": "web-0", "container": "web"}, entries)
    ask(page, namespace="xss")
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=30_000)
    table = page.locator("#evidence").inner_text()
    assert "<script>" in table and "onerror" in table
    assert page.evaluate("window.__xss") is None
    assert page.locator("#evidence img, #findings img, #answer img, #evidence script").count() == 0
