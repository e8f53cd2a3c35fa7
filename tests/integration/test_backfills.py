"""Backfills through real API and worker processes (one worker, both queues), the Loki and
llama stubs: fan-out, roll-up, findings with a stable identity, reuse of analysed requests,
idempotency, retry of failed items, cancel, and bad input named before anything is queued."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from cli.harness import wait_until
from shared import redis_keys
from shared.tenancy import DEFAULT_TENANT
from tests.support.stack import ServiceStack

pytestmark = pytest.mark.integration

# The incident the Loki stub holds (tests.support.incident): namespace `shop`, 06:00-07:00.
RANGE = {"start": "2026-11-24T06:00:00Z", "end": "2026-11-24T07:00:00Z"}


@pytest.fixture
def stack(running_stack: ServiceStack) -> ServiceStack:
    return running_stack


def backfill_body(**overrides: Any) -> dict[str, Any]:
    # A unique question per test makes each test's normalized requests its own.
    body: dict[str, Any] = {
        "namespaces": ["shop", "quiet-ns"],
        "time_range": RANGE,
        "window": "30m",
        "question": f"what changed? {uuid.uuid4().hex[:6]}",
    }
    body.update(overrides)
    return body


def submit(stack: ServiceStack, body: dict[str, Any], **headers: str) -> dict[str, Any]:
    response = stack.http.post(f"{stack.api_url}/v1/backfills", json=body, headers=headers)
    assert response.status_code == 202, response.text
    return dict(response.json())


def wait_done(stack: ServiceStack, backfill_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        view = stack.http.get(f"{stack.api_url}/v1/backfills/{backfill_id}").json()
        if view["done"]:
            return dict(view)
        time.sleep(0.3)
    raise AssertionError(f"backfill {backfill_id} did not finish\n{stack.logs()}")


def test_a_backfill_analyses_every_namespace_window_by_window(stack: ServiceStack) -> None:
    accepted = submit(stack, backfill_body())
    assert accepted["items"] == 4  # 2 namespaces x 2 windows of 30 minutes
    view = wait_done(stack, accepted["backfill_id"])
    assert view["totals"]["succeeded"] == 4, view["totals"]
    assert {(i["namespace"], i["start"][11:16]) for i in view["items"]} == {
        ("shop", "06:00"),
        ("shop", "06:30"),
        ("quiet-ns", "06:00"),
        ("quiet-ns", "06:30"),
    }
    top, quiet = view["rollup"]
    assert top["namespace"] == "shop" and top["error_lines"] > 0 and top["causes"]
    assert quiet["namespace"] == "quiet-ns" and quiet["error_lines"] == 0
    # Each item is an ordinary job on the backfill queue, readable as such.
    job = stack.job(view["items"][0]["job_id"])
    assert job["status"] == "succeeded"


def test_the_same_problem_in_many_windows_is_one_finding(stack: ServiceStack) -> None:
    view = wait_done(stack, submit(stack, backfill_body(window="15m"))["backfill_id"])
    shop_items = [i for i in view["items"] if i["namespace"] == "shop" and i["cause"]]
    found = stack.http.get(f"{stack.api_url}/v1/findings", params={"namespace": "shop"}).json()
    assert found, "no finding recorded"
    by_template: dict[str, int] = {}
    for item in shop_items:
        by_template[item["cause"]] = by_template.get(item["cause"], 0) + 1
    for finding in found:
        if finding["template"] in by_template:
            # At least this backfill's sightings (earlier tests may have added some).
            assert finding["sightings"] >= by_template[finding["template"]]
    assert len({f["fingerprint"] for f in found}) == len(found)
    later = stack.http.get(
        f"{stack.api_url}/v1/findings", params={"namespace": "shop", "since": "2030-01-01T00:00Z"}
    ).json()
    assert later == []


def test_an_analysed_request_is_reused_and_an_idempotency_key_returns_the_same_backfill(
    stack: ServiceStack,
) -> None:
    body = backfill_body()
    first = submit(stack, body, **{"Idempotency-Key": "nightly-1"})
    wait_done(stack, first["backfill_id"])
    again = submit(stack, body, **{"Idempotency-Key": "nightly-1"})
    assert again["backfill_id"] == first["backfill_id"]
    second = submit(stack, body)
    assert second["backfill_id"] != first["backfill_id"]
    view = wait_done(stack, second["backfill_id"])
    assert view["totals"]["reused"] == 4 and view["totals"]["succeeded"] == 4


def test_retry_reruns_the_failed_items_only(stack: ServiceStack) -> None:
    stack.loki.fail_next(400, 1000, body="parse error : refused for the test")
    try:
        accepted = submit(stack, backfill_body(namespaces=["shop"]))
        failed = wait_done(stack, accepted["backfill_id"])
    finally:
        stack.loki.fail_next(400, 0)
    assert failed["totals"]["failed"] == 2
    response = stack.http.post(f"{stack.api_url}/v1/backfills/{accepted['backfill_id']}/retry")
    assert response.status_code == 202
    view = wait_done(stack, accepted["backfill_id"])
    assert view["totals"]["succeeded"] == 2 and view["totals"]["failed"] == 0
    assert {i["job_id"] for i in view["items"]}.isdisjoint(i["job_id"] for i in failed["items"])


def test_cancel_stops_what_has_not_ended(stack: ServiceStack) -> None:
    stack.loki.hang_next(5, times=50)
    try:
        accepted = submit(stack, backfill_body(window="5m"))
        response = stack.http.delete(f"{stack.api_url}/v1/backfills/{accepted['backfill_id']}")
    finally:
        stack.loki.clear_faults()
    assert response.status_code == 202
    view = wait_done(stack, accepted["backfill_id"], timeout=60)
    assert view["totals"]["cancelled"] >= 20, view["totals"]


def test_namespaces_by_regex_come_from_lokis_label_values(stack: ServiceStack) -> None:
    accepted = submit(stack, backfill_body(namespaces=None, namespace_regex="sho[p]"))
    view = wait_done(stack, accepted["backfill_id"])
    assert {i["namespace"] for i in view["items"]} == {"shop"}


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"window": "1m"}, ["body", "window"]),
        ({"window": "soon"}, ["body", "window"]),
        ({"namespaces": ["shop"], "namespace_regex": "s.*"}, ["body"]),
        ({"namespaces": None, "namespace_regex": "(unclosed"}, ["body", "namespace_regex"]),
        ({"namespaces": None, "namespace_regex": "nothing-like-this"}, ["body", "namespace_regex"]),
        (
            {
                "window": "5m",
                "time_range": {"start": "2026-11-20T00:00:00Z", "end": "2026-11-24T00:00:00Z"},
            },
            ["body", "window"],
        ),  # fmt: skip
        ({"log_filter": '|~ "(unclosed"'}, ["body", "log_filter"]),
    ],
)
def test_bad_input_is_a_422_naming_the_field_and_queues_nothing(
    stack: ServiceStack, overrides: dict[str, Any], field: list[str]
) -> None:
    before = stack.redis.llen("backfill")
    response = stack.http.post(f"{stack.api_url}/v1/backfills", json=backfill_body(**overrides))
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"][: len(field)] == field
    assert stack.redis.llen("backfill") == before


def cli(stack_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The `log-analyzer` command in a process of its own, as a person runs it."""
    env = {**os.environ, "LOG_ANALYZER_URL": stack_url, "COLUMNS": "200", "NO_COLOR": "1"}
    env.pop("LOG_ANALYZER_API_KEY", None)
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_cli_runs_a_backfill_and_lists_findings(stack: ServiceStack) -> None:
    ran = cli(
        stack.api_url,
        "backfill",
        "--namespaces",
        "shop,quiet-ns",
        "--since",
        "2h",
        "--window",
        "1h",
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "4 analyses" in ran.stdout and "namespaces by new findings" in ran.stdout
    assert "shop" in ran.stdout and "quiet-ns" in ran.stdout
    listed = cli(stack.api_url, "findings", "--json")
    assert listed.returncode == 0, listed.stderr
    assert isinstance(json.loads(listed.stdout), list)
    job_id = stack.submit()
    stack.wait_terminal(job_id)
    jobs = cli(stack.api_url, "jobs", "list")
    assert jobs.returncode == 0 and job_id in jobs.stdout, jobs.stdout + jobs.stderr
    shown = cli(stack.api_url, "jobs", "show", job_id)
    assert shown.returncode == 0 and "findings" in shown.stdout and "succeeded" in shown.stdout
    missing = cli(stack.api_url, "jobs", "show", "no-such-job")
    assert missing.returncode == 2 and "404" in missing.stdout


def test_the_cli_says_what_is_wrong_when_the_api_is_away(stack: ServiceStack) -> None:
    from cli.harness import free_port

    ran = cli(f"http://127.0.0.1:{free_port()}", "findings")
    assert ran.returncode == 2 and "does not answer" in ran.stdout


def test_flower_shows_the_worker_and_a_backfill_task_only_with_credentials(
    stack: ServiceStack,
) -> None:
    url = stack.harness.start_flower({**stack.env, "FLOWER_BASIC_AUTH": "ops:fuzzy-cactus"})
    auth = ("ops", "fuzzy-cactus")

    def workers() -> dict[str, Any] | None:
        try:
            response = stack.http.get(f"{url}/api/workers", auth=auth, params={"refresh": 1})
        except httpx.HTTPError:
            return None
        return response.json() if response.status_code == 200 and response.json() else None

    assert wait_until(workers, 60, "Flower never listed a worker")
    assert stack.http.get(f"{url}/api/workers").status_code == 401
    assert stack.http.get(f"{url}/api/workers", auth=("ops", "wrong")).status_code == 401
    accepted = submit(stack, backfill_body(namespaces=["shop"]))
    wait_done(stack, accepted["backfill_id"])

    def backfill_tasks() -> list[dict[str, Any]] | None:
        tasks = stack.http.get(f"{url}/api/tasks", auth=auth).json()
        mine = [t for t in tasks.values() if accepted["backfill_id"] in str(t.get("kwargs"))]
        done = [t for t in mine if t["state"] == "SUCCESS"]
        return done if len(done) >= 8 else None  # 2 items x 4 stages

    tasks = wait_until(backfill_tasks, 30, "Flower did not show the backfill's tasks")
    assert {t["name"] for t in tasks} == {
        "log_analyzer.query_loki",
        "log_analyzer.flatten",
        "log_analyzer.normalize",
        "log_analyzer.call_llm",
    }
    # Arguments are references (a job id), never log payloads.
    assert all(len(str(t["args"])) < 64 for t in tasks)


class Receiver(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        Receiver.received.append((dict(self.headers), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


def test_a_new_finding_is_sent_to_the_webhook_once_and_signed(fresh_stack: ServiceStack) -> None:
    Receiver.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        fresh_stack.env["NOTIFY_WEBHOOK_URL"] = f"http://127.0.0.1:{server.server_port}/hook"
        fresh_stack.env["NOTIFY_WEBHOOK_SECRET"] = "shh"
        fresh_stack.start_worker()
        fresh_stack.start_api()
        fresh_stack.wait_ready()
        first = wait_done(
            fresh_stack, submit(fresh_stack, backfill_body(namespaces=["shop"]))["backfill_id"]
        )
        assert first["totals"]["succeeded"] == 2
        listed = fresh_stack.http.get(f"{fresh_stack.api_url}/v1/findings").json()
        causes = {f["fingerprint"] for f in listed}
        assert causes, first["items"]
        deadline = time.monotonic() + 10
        while len(Receiver.received) < len(causes) and time.monotonic() < deadline:
            time.sleep(0.1)
        again = submit(fresh_stack, backfill_body(namespaces=["shop"]))  # same problems again
        wait_done(fresh_stack, again["backfill_id"])
        time.sleep(1)
    finally:
        server.shutdown()
        server.server_close()
    # Once per new finding: the second backfill saw the same problems and sent nothing.
    sent = [json.loads(body)["finding"]["fingerprint"] for _, body in Receiver.received]
    assert sorted(sent) == sorted(causes), sent
    for headers, body in Receiver.received:
        expected = "sha256=" + hmac.new(b"shh", body, hashlib.sha256).hexdigest()
        assert headers["X-Log-Analyzer-Signature"] == expected
        event = json.loads(body)
        assert event["event"] == "new_finding" and event["finding"]["namespace"] == "shop"
        assert event["tenant"] == DEFAULT_TENANT
    stored = fresh_stack.redis.lrange(redis_keys.webhook_deliveries(DEFAULT_TENANT), 0, -1)
    deliveries = [json.loads(d) for d in stored]
    assert [d["outcome"] for d in deliveries] == ["delivered"] * len(causes)


def read_stream(stack: ServiceStack, url: str, last_event_id: int | None = None) -> list[Any]:
    from tests.support.sse import iter_sse

    headers = {"Last-Event-ID": str(last_event_id)} if last_event_id is not None else {}
    with httpx.Client(timeout=httpx.Timeout(10, read=60)) as client:
        with client.stream("GET", url, headers=headers) as response:
            assert response.status_code == 200
            return [e for e in iter_sse(response) if e.event in ("item", "progress", "done")]


def test_the_backfill_stream_sends_each_item_once_and_resumes(stack: ServiceStack) -> None:
    accepted = submit(stack, backfill_body())
    url = f"{stack.api_url}/v1/backfills/{accepted['backfill_id']}/events"
    events = read_stream(stack, url)
    items = [e for e in events if e.event == "item"]
    assert [int(e.id) for e in items] == [1, 2, 3, 4]
    assert len({e.json["job_id"] for e in items}) == 4
    assert events[-1].event == "done" and events[-1].json["totals"]["succeeded"] == 4
    progress = [e.json for e in events if e.event == "progress"]
    assert progress[-1] == {"done": 4, "total": 4, "totals": events[-1].json["totals"]}
    resumed = read_stream(stack, url, last_event_id=2)
    assert [int(e.id) for e in resumed if e.event == "item"] == [3, 4]
    assert [e.json["job_id"] for e in resumed if e.event == "item"] == [
        e.json["job_id"] for e in items[2:]
    ]
