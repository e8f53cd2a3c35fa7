"""`log-analyzer backfill` and `log-analyzer findings`: the operator's side of the service."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin

import httpx
import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.prompt import Confirm
from rich.table import Table

from cli.client import auth_headers
from cli.render import console, describe_verification, marked_answer, visible
from shared.schemas import Verification
from shared.schemas.backfills import parse_duration

POLL_S = 1.0


class ApiProblem(Exception):
    """The API could not be reached or refused the request; the message says what to do."""


def call(method: str, url: str, api_key: str | None, **kwargs: Any) -> dict[str, Any] | list[Any]:
    """One API call; ApiProblem with a readable message for every way it can fail."""
    try:
        with httpx.Client(timeout=30) as client:
            response = client.request(method, url, headers=auth_headers(api_key), **kwargs)
    except httpx.HTTPError as exc:
        raise ApiProblem(f"the API at {url} does not answer ({exc}); is it running?") from exc
    if response.status_code == 401:
        raise ApiProblem("the API refused the key: set LOG_ANALYZER_API_KEY to a valid key")
    if response.status_code >= 400:
        raise ApiProblem(f"the API answered {response.status_code}: {response.text}")
    body: dict[str, Any] | list[Any] = response.json()
    return body


def since_range(since: str) -> dict[str, str]:
    """`24h` → the time range ending now."""
    end = datetime.now(UTC)
    return {"start": (end - parse_duration(since)).isoformat(), "end": end.isoformat()}


def backfill_body(namespaces: str, since: str, window: str) -> dict[str, Any]:
    """A list (`a,b`), a regex (anything else), or every namespace (`*`)."""
    body: dict[str, Any] = {"time_range": since_range(since), "window": window}
    if namespaces == "*":
        return body
    names = [n.strip() for n in namespaces.split(",")]
    if all(n and n.replace("-", "").isalnum() and n.islower() for n in names):
        body["namespaces"] = names
    else:
        body["namespace_regex"] = namespaces
    return body


def run_backfill(
    api_url: str,
    api_key: str | None,
    body: dict[str, Any],
    *,
    as_json: bool,
    ask: Callable[[str], bool] = lambda q: Confirm.ask(q, default=True),
) -> int:
    """Submit, show progress until done, print the roll-up; the exit code."""
    accepted = call("POST", f"{api_url}/v1/backfills", api_key, json=body)
    assert isinstance(accepted, dict)
    url = urljoin(f"{api_url}/", accepted["status_url"])  # a path when PUBLIC_URL is unset
    if not as_json:
        console.print(f"backfill [bold]{accepted['backfill_id']}[/]: {accepted['items']} analyses")
    view: dict[str, Any] = {}
    try:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=as_json,
        ) as progress:
            task = progress.add_task("analysing", total=accepted["items"])
            while True:
                fetched = call("GET", url, api_key)
                assert isinstance(fetched, dict)
                view = fetched
                totals = view["totals"]
                ended = totals["succeeded"] + totals["failed"] + totals["cancelled"]
                progress.update(
                    task,
                    completed=ended,
                    description=f"ok {totals['succeeded']} failed {totals['failed']}",
                )
                if view["done"]:
                    break
                time.sleep(POLL_S)
    except KeyboardInterrupt:
        if ask("cancel the analyses not yet done?"):
            fetched = call("DELETE", url, api_key)
            assert isinstance(fetched, dict)
            view = fetched
            console.print("cancelled")
        else:
            console.print(f"left running: {url}")
            return 130
    if as_json:
        console.print_json(json.dumps(view))
    else:
        console.print(rollup_table(view))
    return 0 if view["totals"]["failed"] == 0 else 1


def rollup_table(view: dict[str, Any]) -> Table:
    table = Table(title="namespaces by new findings, then error lines")
    for column in ("namespace", "new findings", "error lines", "worst window", "causes"):
        table.add_column(
            column, justify="right" if "lines" in column or "new" in column else "left"
        )
    for row in view["rollup"]:
        table.add_row(
            row["namespace"],
            str(row["new_findings"]),
            f"{row['error_lines']:,}",
            (row["worst_window"] or "-")[:16],
            escape(visible("; ".join(c[:80] for c in row["causes"][:2])) or "-"),
        )
    return table


def findings_table(found: list[dict[str, Any]]) -> Table:
    table = Table(title="findings (one per namespace and template)")
    for column in ("namespace", "level", "sightings", "lines", "first seen", "last seen"):
        table.add_column(column)
    table.add_column("template", overflow="fold")
    for f in found:
        table.add_row(
            f["namespace"],
            f["level"],
            str(f["sightings"]),
            f"{f['lines']:,}",
            f["first_seen"][:16],
            f["last_seen"][:16],
            escape(visible(f["template"][:160])),
        )
    return table


def jobs_table(jobs: list[dict[str, Any]]) -> Table:
    table = Table(title="your latest jobs")
    for column in ("job", "submitted", "status", "namespace", "window", "TTFT", "probable cause"):
        table.add_column(column, overflow="fold")
    for job in jobs:
        window = job["time_range"]
        table.add_row(
            job["job_id"],
            job["created_at"][:19],
            job["status"],
            job["namespace"],
            f"{window['start'][:16]} → {window['end'][11:16]}",
            f"{job['ttft_s']:.2f} s" if job.get("ttft_s") else "-",
            escape(visible((job.get("cause") or "-")[:100])),
        )
    return table


def show_job(view: dict[str, Any]) -> None:
    """A job as a person reads it: status, findings, then the answer."""
    request = view["request"]
    namespace = escape(request["filters"]["namespace"])
    window = request["time_range"]
    console.print(
        f"job [bold]{view['job_id']}[/] {view['status']}: {namespace} "
        f"{window['start']} → {window['end']}"
    )
    result = view.get("result") or {}
    findings = result.get("findings") or {}
    if findings:
        console.rule("findings")
        console.print(visible(findings.get("summary", "")), markup=False)
    if result.get("analysis"):
        console.rule("answer")
        invalid = (result.get("citations") or {}).get("invalid") or []
        checked = result.get("verification")
        verification = Verification.model_validate(checked) if checked else None
        if verification is not None:
            console.print(f"answer check: {describe_verification(verification)}", markup=False)
        console.print(marked_answer(result["analysis"], invalid, verification))
    if view.get("error"):
        console.print(
            f"[red]{escape(view['error']['code'])}: {escape(visible(view['error']['message']))}[/]"
        )


def fail(problem: ApiProblem) -> typer.Exit:
    console.print(f"[red]{escape(str(problem))}[/]", soft_wrap=True)
    return typer.Exit(2)
