"""`log-analyzer`: the demo on the embedded default, and a client for a running service."""

from __future__ import annotations

import os
import signal
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urljoin

import httpx
import typer
from rich.markup import escape

from cli.client import follow, submit
from cli.harness import (
    ROOT,
    LocalStackError,
    ProcessDiedError,
    free_port,
    harness,
    local_env,
    redis_answers,
)
from cli.render import console, render

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False)

SAMPLE_WINDOW = ("2026-11-24T10:00:00Z", "2026-11-24T11:00:00Z")
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"


def run_job(api_url: str, body: dict[str, Any], api_key: str | None = None) -> str:
    """Submit a job, render its events, return its final status."""
    with httpx.Client(timeout=30) as client:
        try:
            accepted = submit(client, api_url, body, api_key)
        except httpx.HTTPStatusError as exc:
            console.print(f"[red]rejected ({exc.response.status_code}): {exc.response.text}[/]")
            raise typer.Exit(2) from exc
        console.print(
            f"job [bold]{accepted['job_id']}[/] ({accepted['status_url']})", soft_wrap=True
        )
        status = "unknown"
        # Without PUBLIC_URL the API hands out paths: they are relative to where we asked.
        events_url = urljoin(f"{api_url}/", accepted["events_url"])
        for event in follow(client, events_url, api_key=api_key):
            render(event)
            if event.event == "done":
                status = event.json["data"]["status"]
        return status


@app.command()
def demo(
    namespace: Annotated[str, typer.Option(help="namespace of the sample to analyse")] = "shop",
    question: Annotated[str | None, typer.Option(help="what to ask the model")] = None,
    exit_after: Annotated[bool, typer.Option("--exit", help="stop after the answer")] = False,
    ctx: Annotated[int, typer.Option(help="llama-server context size")] = 2048,
    max_tokens: Annotated[int, typer.Option(help="the answer's length at most")] = 384,
) -> None:
    """Analyse the bundled sample incident with the embedded llama-server and SmolLM2."""
    body = {
        "time_range": {"start": SAMPLE_WINDOW[0], "end": SAMPLE_WINDOW[1]},
        "filters": {"namespace": namespace},
        "limit": 15,
        "scan_limit": 20_000,
        "question": question,
    }
    try:
        with harness(ROOT / ".run" / "demo") as stack:
            with console.status(
                "starting Redis (if needed), llama-server with SmolLM2-135M, "
                "a Celery worker, the API and Flower…"
            ):
                redis_url = DEFAULT_REDIS if redis_answers(DEFAULT_REDIS) else ""
                redis_url = redis_url or stack.start_redis().url()
                env = local_env(
                    redis_url, stack.start_llama(ctx=ctx), LLM_MAX_TOKENS=str(max_tokens)
                )
                stack.start_worker(env)
                api = stack.start_api(env, port=free_port(8000))
                flower = stack.start_flower(env)
            console.print(f"Page     {api}/ui/")
            console.print(f"API      {api}   (OpenAPI docs: {api}/docs)")
            console.print(f"Flower   {flower}")
            console.print(f"LLM      {stack.urls['llama-server']}   logs: {stack.run_dir}")
            try:
                with stack.watchdog():
                    status = run_job(api, body)
                    if not exit_after:
                        console.print("services keep running for you to explore; Ctrl-C stops them")
                        signal.pause()
            except (KeyboardInterrupt, httpx.HTTPError):
                stack.check()  # a process died (the watchdog interrupted us): say which
                raise
            raise typer.Exit(0 if status == "succeeded" else 1)
    except KeyboardInterrupt:
        console.print("\nstopping what the demo started")
    except ProcessDiedError as exc:
        console.print(f"[red]✖ {escape(str(exc))}[/]", soft_wrap=True)
        raise typer.Exit(4) from exc
    except LocalStackError as exc:
        console.print(f"[red]{escape(str(exc))}[/]")
        raise typer.Exit(3) from exc


@app.command()
def analyze(
    namespace: str,
    since: Annotated[int, typer.Option(help="minutes back from now")] = 60,
    pod: Annotated[str | None, typer.Option(help="RE2 regex on the pod name")] = None,
    question: Annotated[str | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option(help="templates shown to the model")] = 15,
    api_url: Annotated[str, typer.Option(envvar="LOG_ANALYZER_URL")] = "http://127.0.0.1:8000",
) -> None:
    """Ask a running service what went wrong in NAMESPACE, and watch the answer stream."""
    end = datetime.now(UTC)
    body = {
        "time_range": {
            "start": (end - timedelta(minutes=since)).isoformat(),
            "end": end.isoformat(),
        },
        "filters": {"namespace": namespace, "pod": pod},
        "limit": limit,
        "question": question,
    }
    status = run_job(api_url, body, os.environ.get("LOG_ANALYZER_API_KEY"))
    raise typer.Exit(0 if status == "succeeded" else 1)


API_URL_OPTION = typer.Option(envvar="LOG_ANALYZER_URL", help="the API's base URL")


@app.command()
def backfill(
    namespaces: Annotated[
        str, typer.Option(help="names (a,b), an RE2 regex ('shop|pay.*'), or '*' for all")
    ],
    since: Annotated[str, typer.Option(help="how far back, e.g. 24h")] = "24h",
    window: Annotated[str, typer.Option(help="length of each analysed window")] = "1h",
    as_json: Annotated[bool, typer.Option("--json", help="print the final view as JSON")] = False,
    api_url: Annotated[str, API_URL_OPTION] = "http://127.0.0.1:8000",
) -> None:
    """Analyse many namespaces window by window; progress, then the roll-up."""
    from cli.operators import ApiProblem, backfill_body, fail, run_backfill

    try:
        body = backfill_body(namespaces, since, window)
        code = run_backfill(
            api_url.rstrip("/"), os.environ.get("LOG_ANALYZER_API_KEY"), body, as_json=as_json
        )
    except ApiProblem as exc:
        raise fail(exc) from exc
    except ValueError as exc:
        console.print(f"[red]--since: {escape(str(exc))}[/]")
        raise typer.Exit(2) from exc
    raise typer.Exit(code)


@app.command()
def findings(
    namespace: Annotated[
        str | None, typer.Option(help="one namespace (default: all yours)")
    ] = None,
    since: Annotated[str | None, typer.Option(help="last seen within, e.g. 24h")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    api_url: Annotated[str, API_URL_OPTION] = "http://127.0.0.1:8000",
) -> None:
    """List findings: one per namespace and template, with their sightings."""
    from cli.operators import ApiProblem, call, fail, findings_table, since_range

    params = {}
    if namespace:
        params["namespace"] = namespace
    if since:
        params["since"] = since_range(since)["start"]
    try:
        found = call(
            "GET",
            f"{api_url.rstrip('/')}/v1/findings",
            os.environ.get("LOG_ANALYZER_API_KEY"),
            params=params,
        )
    except ApiProblem as exc:
        raise fail(exc) from exc
    assert isinstance(found, list)
    if as_json:
        console.print_json(data=found)
    else:
        console.print(findings_table(found))


jobs_app = typer.Typer(help="Your jobs on a running service.", no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")


@jobs_app.command("list")
def jobs_list(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    api_url: Annotated[str, API_URL_OPTION] = "http://127.0.0.1:8000",
) -> None:
    """Your latest jobs, newest first."""
    from cli.operators import ApiProblem, call, fail, jobs_table

    try:
        jobs = call("GET", f"{api_url.rstrip('/')}/v1/jobs", os.environ.get("LOG_ANALYZER_API_KEY"))
    except ApiProblem as exc:
        raise fail(exc) from exc
    assert isinstance(jobs, list)
    if as_json:
        console.print_json(data=jobs)
    else:
        console.print(jobs_table(jobs))


@jobs_app.command("show")
def jobs_show(
    job_id: str,
    as_json: Annotated[bool, typer.Option("--json", help="print the whole job as JSON")] = False,
    api_url: Annotated[str, API_URL_OPTION] = "http://127.0.0.1:8000",
) -> None:
    """One job: status, findings and answer (or all of it as JSON)."""
    from cli.operators import ApiProblem, call, fail, show_job

    try:
        view = call(
            "GET", f"{api_url.rstrip('/')}/v1/jobs/{job_id}", os.environ.get("LOG_ANALYZER_API_KEY")
        )
    except ApiProblem as exc:
        raise fail(exc) from exc
    assert isinstance(view, dict)
    if as_json:
        console.print_json(data=view)
    else:
        show_job(view)


@app.command("eval")
def evaluate(
    model: Annotated[
        str, typer.Option(help="stub, smollm2, or an OpenAI-compatible base URL")
    ] = "stub",
    strategies: Annotated[str, typer.Option(help="comma-separated: ours, seed")] = "ours,seed",
    cases: Annotated[str, typer.Option(help="comma-separated case names (default: all)")] = "",
    suite: Annotated[
        str, typer.Option(help="dev (the golden set), heldout, final (issue 21) or all")
    ] = "dev",
    ctx: Annotated[int, typer.Option(help="context size of the model")] = 4096,
    max_tokens: Annotated[int, typer.Option(help="answer cap")] = 512,
    answer_format: Annotated[
        str, typer.Option(help="auto, json or text (LLM_ANSWER_FORMAT)")
    ] = "auto",
    model_name: Annotated[str | None, typer.Option(help="name sent as `model`")] = None,
    publish: Annotated[
        str | None, typer.Option(help="Redis URL: set the figures as the service's metrics")
    ] = None,
    check: Annotated[bool, typer.Option(help="exit 1 when a floor is missed")] = False,
    docs: Annotated[
        bool, typer.Option(help="regenerate this model's block in docs/evaluation.md")
    ] = False,
    ablation: Annotated[
        bool,
        typer.Option(
            help="strict top-1 with each findings score component switched off (no model)"
        ),
    ] = False,
) -> None:
    """Run the golden set; write eval/results/latest-<model>.{md,json}."""
    from cli.evaluate import eval_client, eval_settings
    from eval import report, runner

    if suite not in ("dev", "heldout", "final", "all"):
        raise typer.BadParameter("dev, heldout, final or all", param_hint="--suite")
    if ablation:
        _ablation(runner.cases_named(cases, suite), eval_settings(max_tokens), docs=docs)
        return
    if docs and suite != "dev":
        raise typer.BadParameter("--docs regenerates the dev suite's blocks", param_hint="--suite")
    if answer_format not in ("auto", "json", "text"):
        raise typer.BadParameter("auto, json or text", param_hint="--answer-format")
    chosen = runner.cases_named(cases, suite)
    names = [s.strip() for s in strategies.split(",") if s.strip()]
    with eval_client(
        model, ctx=ctx, run_dir=ROOT / ".run" / "eval-model", model_name=model_name
    ) as (
        client,
        name,
    ):
        result = runner.run(
            chosen,
            names,
            name,
            client,
            eval_settings(max_tokens, answer_format),
            progress=lambda line: console.print(line, markup=False),
        )
    text = report.markdown(result)
    path = runner.save(result, text, suite)
    console.print(report.summary_table([result]), markup=False)
    console.print(report.strict_table(result), markup=False)
    console.print(f"written to {path}")
    if docs:
        console.print(f"regenerated {report.write_docs(result, text)}")
    if publish:
        console.print(f"{report.publish(result, publish)} figures published to {publish}")
    problems = report.failures(result)
    for problem in problems:
        console.print(f"[red]✖ {escape(problem)}[/]")
    if check and problems:
        raise typer.Exit(1)


def _ablation(chosen: list[Any], settings: Any, *, docs: bool) -> None:
    from bench.report import replace_generated
    from eval import ablation, report

    result = ablation.run(chosen, settings, progress=lambda line: console.print(line, markup=False))
    text = ablation.markdown(result)
    console.print(text, markup=False)
    if docs:
        replace_generated("eval-ablation", text, report.EVALUATION_DOC)
        console.print(f"regenerated {report.EVALUATION_DOC.name} (eval-ablation)")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
