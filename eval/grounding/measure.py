"""Measure the answer verifier on the hand-labelled set.

Each answer of `answers.yaml` names the evidence it was written against (a line of
`evidence.jsonl`: the request, the evidence items the model was given and the findings) and
lists every concrete claim in it with a label written by hand from reading that evidence:
supported or not. `split` says whether the verifier's rules were adjusted while its answers
were read (`dev`) or the answer was labelled after the rules were frozen and never used to
change them (`heldout`). A labelled claim counts as flagged when a claim the verifier found
unsupported overlaps it; an unsupported claim of the verifier that overlaps no labelled
claim is a false alarm. Precision and recall are of "unsupported".
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from shared.schemas import AnalysisRequest, EvidenceItem, Findings, Verification
from workers.llm.verify import verify

HERE = Path(__file__).parent
ANSWERS = HERE / "answers.yaml"
EVIDENCE = HERE / "evidence.jsonl"
FLOOR = 0.9


@dataclass
class Tally:
    """Counts over the labelled claims, and the mistakes by answer for reading."""

    answers: int = 0
    claims: int = 0
    labelled_unsupported: int = 0
    true_positive: int = 0
    false_positive: int = 0
    false_negative: int = 0
    verdicts: dict[str, int] = field(default_factory=dict)
    mistakes: list[str] = field(default_factory=list)

    @property
    def precision(self) -> float:
        flagged = self.true_positive + self.false_positive
        return self.true_positive / flagged if flagged else 1.0

    @property
    def recall(self) -> float:
        return self.true_positive / self.labelled_unsupported if self.labelled_unsupported else 1.0


def load_evidence(path: Path = EVIDENCE) -> dict[str, dict[str, Any]]:
    """The evidence records by key."""
    records = (json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return {record["key"]: record for record in records}


def load_answers(path: Path = ANSWERS) -> list[dict[str, Any]]:
    answers: list[dict[str, Any]] = yaml.safe_load(path.read_text())
    return answers


def check(answer: dict[str, Any], record: dict[str, Any]) -> Verification:
    """The verifier's view of one labelled answer."""
    return verify(
        answer["answer"],
        evidence=[EvidenceItem.model_validate(item) for item in record["evidence"]],
        findings=Findings.model_validate(record["findings"]) if record["findings"] else None,
        request=AnalysisRequest.model_validate(record["request"]),
        finish_reason=answer.get("finish_reason"),
    )


def _occurrences(text: str, needle: str) -> list[tuple[int, int]]:
    """Where the labelled claim is in the answer: not inside a longer word (`type` is not a
    claim inside `types`)."""
    before = r"(?<!\w)" if needle[:1].isalnum() else ""
    after = r"(?!\w)" if needle[-1:].isalnum() else ""
    pattern = re.compile(before + re.escape(needle) + after)
    return [match.span() for match in pattern.finditer(text)]


def score(answers: list[dict[str, Any]], evidence: dict[str, dict[str, Any]]) -> Tally:
    """Compare the verifier with the labels, claim by claim."""
    tally = Tally()
    for answer in answers:
        text = answer["answer"]
        verification = check(answer, evidence[answer["evidence"]])
        tally.answers += 1
        tally.verdicts[verification.verdict] = tally.verdicts.get(verification.verdict, 0) + 1
        flagged = [(c.start, c.end, c.text) for c in verification.claims if not c.supported]
        covered: set[int] = set()
        for label in answer.get("claims") or []:
            spans = _occurrences(text, label["text"])
            if not spans:
                raise ValueError(f"{answer['id']}: labelled claim {label['text']!r} not in it")
            for start, end in spans:
                tally.claims += 1
                hits = [i for i, (s, e, _) in enumerate(flagged) if s < end and start < e]
                covered.update(hits)
                if not label["supported"]:
                    tally.labelled_unsupported += 1
                    if hits:
                        tally.true_positive += 1
                    else:
                        tally.false_negative += 1
                        tally.mistakes.append(f"{answer['id']}: missed {label['text']!r}")
                elif hits:
                    tally.false_positive += 1
                    tally.mistakes.append(f"{answer['id']}: flagged supported {label['text']!r}")
        for index, (_, _, claim) in enumerate(flagged):
            if index not in covered:
                tally.false_positive += 1
                tally.mistakes.append(f"{answer['id']}: flagged {claim!r}, not a labelled claim")
    return tally


def describe(name: str, tally: Tally) -> str:
    """Two lines on one part of the set."""
    flagged = tally.true_positive + tally.false_positive
    return (
        f"{name}: {tally.answers} answers, {tally.claims} labelled claims "
        f"({tally.labelled_unsupported} unsupported); verdicts {tally.verdicts}\n"
        f"  unsupported: precision {tally.precision:.3f} ({tally.true_positive}/{flagged}), "
        f"recall {tally.recall:.3f} ({tally.true_positive}/{tally.labelled_unsupported})\n"
    )


def main() -> None:
    answers, evidence = load_answers(), load_evidence()
    tally = score(answers, evidence)
    for mistake in tally.mistakes:
        sys.stdout.write(mistake + "\n")
    parts = {
        "stub variants": [a for a in answers if a["id"].startswith("stub-")],
        "SmolLM2": [a for a in answers if a["id"].startswith("smollm2-")],
        "dev": [a for a in answers if a.get("split", "dev") == "dev"],
        "heldout": [a for a in answers if a.get("split") == "heldout"],
    }
    for name, part in parts.items():
        if part:
            sys.stdout.write(describe(name, score(part, evidence)))
    sys.stdout.write(describe("all", tally))
    if tally.precision < FLOOR or tally.recall < FLOOR:
        raise SystemExit(f"below the floor of {FLOOR}")


if __name__ == "__main__":
    main()
