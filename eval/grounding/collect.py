"""Collect answers to label: the golden set's cases through the service's pipeline and a model.

`python -m eval.grounding.collect --model smollm2 --cases a,b --out FILE` writes one JSON
line per case: the request, the evidence the model was given, the findings, the answer and
its finish reason. The labelled set (`answers.jsonl`) is written from these by hand.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cli.evaluate import eval_client, eval_settings
from cli.harness import ROOT
from eval import runner
from eval.strategies import run_ours
from shared.schemas import JobResult


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--cases", default="")
    parser.add_argument("--suite", default="dev")
    parser.add_argument("--ctx", type=int, default=4096)
    parser.add_argument("--max-tokens", type=int, default=300)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    cases = runner.cases_named(args.cases, args.suite)
    settings = eval_settings(args.max_tokens)
    with eval_client(args.model, ctx=args.ctx, run_dir=ROOT / ".run" / "grounding") as (
        client,
        name,
    ):
        with args.out.open("a") as out:
            for case in cases:
                pods = runner.write_case(case, runner.CACHE)
                request = runner.request_for(case)
                outcome = run_ours(request, pods, client, settings)
                if not outcome.result_json:
                    continue
                result = JobResult.model_validate_json(outcome.result_json)
                record = {
                    "id": f"{args.model}-{case.name}",
                    "source": name,
                    "request": request.model_dump(mode="json"),
                    "evidence": [e.model_dump(mode="json") for e in result.evidence],
                    "findings": result.findings.model_dump(mode="json")
                    if result.findings
                    else None,
                    "answer": result.analysis,
                    "finish_reason": result.finish_reason,
                }
                out.write(json.dumps(record) + "\n")
                out.flush()
                sys.stdout.write(f"{case.name} {result.finish_reason} {len(result.analysis)}\n")
                sys.stdout.flush()


if __name__ == "__main__":
    main()
