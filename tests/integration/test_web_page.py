"""The web page in a real browser: Debian's Chromium, headless, driven by Playwright, against
real API and worker processes with the Loki and llama stubs.

`make test` installs Chromium when it is missing (`scripts/ensure_chromium.sh`); without it
these tests fail, never skip. With UI_SCREENSHOTS_DIR set, the main views are saved there
(that is how docs/images/ is made).
"""

from __future__ import annotations

import calendar
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.stubs.llama_stub import DEFAULT_REPLY
from tests.support.stack import ServiceStack

pytestmark = pytest.mark.integration

WINDOW = ("2026-11-24T06:00:00", "2026-11-24T07:00:00")  # the incident the Loki stub holds
SCREENSHOTS = os.environ.get("UI_SCREENSHOTS_DIR")
XSS_LINES = [
    "ERROR upload failed for <script>window.__xss = 'script'</script>",
    "ERROR bad avatar <img src=x onerror=\"window.__xss = 'img'\">",
    "ERROR bad link <a href=\"javascript:window.__xss='a'\">click</a> in profile",
]
# A 1 MB line with spaces (a request body dumped into the log), and a short one beside it.
LONG_LINE = ("ERROR payload rejected: " + "lorem ipsum dolor sit amet " * 40_000)[: 1 << 20]
SHORT_LINE = "ERROR payload too large for the upload queue"
# Bidirectional controls: U+202E makes `invoice\u202Egnp.exe` read as `invoiceexe.png`.
BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
BIDI_LINE = "ERROR blocked upload of invoice\u202egnp.exe from the mail gateway"


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
    # A blocked inline style or script is reported on the console, not as a page error.
    opened.on(
        "console",
        lambda message: (
            errors.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
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


def push_lines(stack: ServiceStack, namespace: str, lines: list[str]) -> None:
    """Store `lines` in the Loki stub a minute into WINDOW, one second apart."""
    start = calendar.timegm(time.strptime(WINDOW[0], "%Y-%m-%dT%H:%M:%S"))
    entries = [((start + 60 + i) * 10**9, line) for i, line in enumerate(lines)]
    stack.loki.push({"namespace": namespace, "pod": "web-0", "container": "web"}, entries)


def analysed(page: Page, stack: ServiceStack, namespace: str) -> dict[str, Any]:
    """Ask about `namespace`, wait until the job succeeded; its stored result."""
    ask(page, namespace=namespace)
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=30_000)
    result: dict[str, Any] = stack.job(job_id(page))["result"]
    return result


def evidence_of(result: dict[str, Any], prefix: str) -> dict[str, Any]:
    item: dict[str, Any] = next(e for e in result["evidence"] if e["template"].startswith(prefix))
    return item


def unfold(page: Page, selector: str) -> None:
    """Press every "show whole" control inside `selector`."""
    for button in page.locator(f"{selector} button.unfold").all():
        button.click()


def content_height(page: Page, selector: str) -> float:
    """Height of what `selector` holds (not of its table cell, which fills the row)."""
    return float(
        page.evaluate(
            """(selector) => {
                const range = document.createRange();
                range.selectNodeContents(document.querySelector(selector));
                return range.getBoundingClientRect().height;
            }""",
            selector,
        )
    )


def line_height(page: Page, selector: str) -> float:
    return float(
        page.evaluate(
            """(selector) => {
                const style = getComputedStyle(document.querySelector(selector));
                return parseFloat(style.lineHeight) || parseFloat(style.fontSize) * 1.25;
            }""",
            selector,
        )
    )


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
    push_lines(stack, "xss", XSS_LINES)
    ask(page, namespace="xss")
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=30_000)
    table = page.locator("#evidence").inner_text()
    assert "<script>" in table and "onerror" in table
    assert page.evaluate("window.__xss") is None
    assert page.locator("#evidence img, #findings img, #answer img, #evidence script").count() == 0


def test_a_long_line_is_folded_with_a_control_to_show_it_whole(
    page: Page, stack: ServiceStack
) -> None:
    push_lines(stack, "long", [LONG_LINE, SHORT_LINE])
    result = analysed(page, stack, "long")
    long = evidence_of(result, "ERROR payload rejected")
    short = evidence_of(result, "ERROR payload too large")
    row = page.locator(f"#ev-{long['template_id']}")
    short_row = page.locator(f"#ev-{short['template_id']}")
    folded = row.bounding_box()
    assert folded is not None
    short_box = short_row.bounding_box()
    assert short_box is not None
    # Folded, the long line's row is a few lines tall, not dozens of rows' worth.
    assert folded["height"] <= 3 * short_box["height"], (folded, short_box)
    shown = row.locator("td.template").inner_text()
    assert long["examples"][0] not in shown
    shot(page, "folded")
    unfold(page, f"#ev-{long['template_id']}")
    whole = row.locator("td.template").inner_text()
    assert long["template"] in whole
    assert long["examples"][0] in whole
    box = row.bounding_box()
    assert box is not None and box["height"] > folded["height"]
    # And folded again on a second press.
    row.locator("button.unfold").first.click()
    assert long["template"] not in row.locator("td.template").inner_text()


def test_a_cut_template_ends_with_an_ellipsis(page: Page, stack: ServiceStack) -> None:
    push_lines(stack, "long", [LONG_LINE])
    result = analysed(page, stack, "long")
    long = evidence_of(result, "ERROR payload rejected")
    assert long["template"].endswith("…"), long["template"][-40:]
    assert len(long["template"]) < 1200
    selector = f"#ev-{long['template_id']}"
    unfold(page, selector)
    assert long["template"] in page.locator(f"{selector} td.template").inner_text()


def test_bidi_controls_are_shown_as_visible_escapes(page: Page, stack: ServiceStack) -> None:
    stack.llama.config.reply = f"{DEFAULT_REPLY}\n\nT1 blocked invoice\u202egnp.exe ({BIDI})."
    push_lines(stack, "bidi", [BIDI_LINE])
    analysed(page, stack, "bidi")
    for selector in ("#evidence", "#findings", "#answer"):
        text = page.locator(selector).inner_text()
        assert not set(BIDI) & set(text), (selector, text)
        assert "invoice\\u202Egnp.exe" in text, (selector, text)
    answer = page.locator("#answer").inner_text()
    for char in BIDI:
        assert f"\\u{ord(char):04X}" in answer


def test_every_422_is_shown_beside_its_field(page: Page) -> None:
    ask(page, namespace="Bad_NS", **{"f-pod": "(", "f-filter": '|~ "(unclosed"'})
    for field, selector in (
        ("filters.namespace", "#f-namespace"),
        ("filters.pod", "#f-pod"),
        ("log_filter", "#f-filter"),
    ):
        expect(page.locator(f'.error[data-for="{field}"]')).not_to_be_empty()
        expect(page.locator(selector)).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#form-error")).to_be_empty()
    expect(page.locator("#watch")).to_be_hidden()


def test_first_and_last_seen_dates_stay_on_one_line_each(page: Page, stack: ServiceStack) -> None:
    push_lines(stack, "long", [LONG_LINE, SHORT_LINE])
    result = analysed(page, stack, "long")
    for item in result["evidence"]:
        unfold(page, f"#ev-{item['template_id']}")
        cell = f"#ev-{item['template_id']} td:nth-child(5)"
        # Two dates, one line each.
        assert content_height(page, cell) < 2.5 * line_height(page, cell), cell


def test_a_cited_id_not_in_the_evidence_is_marked_never_a_link(
    page: Page, stack: ServiceStack
) -> None:
    stack.llama.config.reply = (
        "## Cause\nT99 failed after T1 filled the disk; the rest of this answer streams slowly "
        "enough to be looked at before its result arrives (see T1 and T99)."
    )
    stack.llama.config.token_interval_s = 0.05
    ask(page)
    answer = page.locator("#answer")
    # While streaming, before the evidence table is shown, no cited id is a link yet.
    expect(answer).to_contain_text("T99 failed", timeout=30_000)
    expect(answer.locator("a", has_text="T99")).to_have_count(0)
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=30_000)
    result = stack.job(job_id(page))["result"]
    given = {item["template_id"] for item in result["evidence"]}
    assert "T1" in given and "T99" not in given
    assert result["citations"] == {"valid": ["T1"], "invalid": ["T99"]}
    expect(answer.locator("a.cite", has_text="T1")).to_have_count(2)
    # Every link on the page, answer and findings alike, leads to a row of the evidence table.
    for link in page.locator("a.cite").all():
        # text_content: an unverified answer's links sit folded away, where innerText is ''.
        assert link.text_content() in given, link.text_content()
    expect(answer.locator("a", has_text="T99")).to_have_count(0)
    made_up = answer.locator(".cite.invalid", has_text="T99")
    expect(made_up).to_have_count(2)
    expect(made_up.first).to_have_attribute("title", "not in the evidence the model was given")
    # A made-up id makes the answer unverified: its text is folded away until asked for.
    answer.locator("details.unverified > summary").click()
    answer.locator("a.cite").first.click()
    expect(page.locator("#evidence tr.target")).to_have_id("ev-T1")


def test_an_unverified_answer_is_folded_under_a_notice_below_the_findings(
    page: Page, stack: ServiceStack
) -> None:
    stack.llama.config.reply = (
        "## Cause\nT1 failed first, slowly enough to be watched while it streams. "
        "It began at 06:59:58 on db.prod.example.com after 48 GB went to /var/lib/backups."
    )
    stack.llama.config.token_interval_s = 0.05
    ask(page)
    check = page.locator("#answer-check")
    expect(page.locator("#answer")).to_contain_text("T1 failed first", timeout=30_000)
    # While the answer streams it is not yet checked, and says so.
    expect(check).to_have_class(re.compile(r"\bpending\b"))
    expect(check).to_contain_text("pending")
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=30_000)
    verification = stack.job(job_id(page))["result"]["verification"]
    assert verification["verdict"] == "unverified", verification
    assert [c["supported"] for c in verification["claims"]] == [False, False, False, False]
    expect(check).to_have_class(re.compile(r"\bunverified\b"))
    expect(check).to_contain_text("unverified (grounding 0.00: 0 of 4 claims found")
    notice = page.locator("#answer .notice.unverified")
    expect(notice).to_contain_text("The model's text did not match the evidence")
    folded = page.locator("#answer details.unverified")
    expect(folded).not_to_have_attribute("open", "")
    marked = folded.locator("mark.unsupported")
    expect(marked).to_have_count(1)
    expect(marked).to_be_hidden()
    # The findings stay above the notice.
    findings_box = page.locator("#findings").bounding_box()
    notice_box = notice.bounding_box()
    assert findings_box and notice_box and findings_box["y"] < notice_box["y"]
    folded.locator("summary").click()
    expect(marked).to_be_visible()
    expect(marked).to_have_text(
        "It began at 06:59:58 on db.prod.example.com after 48 GB went to /var/lib/backups."
    )
    expect(folded.locator("a.cite", has_text="T1")).to_have_count(1)
    shot(page, "answer-unverified")


def test_a_partly_supported_answer_stays_open_with_its_unsupported_sentence_marked(
    page: Page, stack: ServiceStack
) -> None:
    stack.llama.config.reply = (
        "The errors ran from 06:00 to 07:00 (T1). They came from db.prod.example.com."
    )
    ask(page)
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=30_000)
    verification = stack.job(job_id(page))["result"]["verification"]
    assert verification["verdict"] == "partly_supported", verification
    expect(page.locator("#answer-check")).to_contain_text("partly supported")
    expect(page.locator("#answer details")).to_have_count(0)
    marked = page.locator("#answer mark.unsupported")
    expect(marked).to_have_count(1)
    expect(marked).to_be_visible()
    expect(marked).to_have_text("They came from db.prod.example.com.")
    expect(page.locator("#answer")).to_contain_text("The errors ran from 06:00 to 07:00")
