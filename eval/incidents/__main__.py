"""Write the golden cases to disk.

python -m eval.incidents --write-yaml   # eval/cases/<name>/case.yaml for every case
python -m eval.incidents --write        # the same, plus eval/cases/<name>/pods for small cases
python -m eval.incidents --check        # exit 1 if a committed file differs from the generator
python -m eval.incidents --out DIR [--case NAME ...]   # pods of any case under DIR/<name>/pods
python -m eval.incidents --list
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from eval.incidents.catalog import (
    CASES_DIR,
    case_yaml,
    get_case,
    golden_cases,
    is_small,
    render_case,
    write_case,
)
from eval.incidents.model import Case


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def write_yaml(cases: Sequence[Case], root: Path) -> None:
    """`root/<name>/case.yaml` for every case."""
    for case in cases:
        path = root / case.name / "case.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(case_yaml(case), encoding="utf-8")
        _out(f"wrote {path}")


def write_pods(cases: Sequence[Case], root: Path) -> None:
    """Generated pods for small cases; stale pods of large cases are removed."""
    for case in cases:
        if is_small(case):
            _out(f"wrote {write_case(case, root)}")
        elif (root / case.name / "pods").exists():
            shutil.rmtree(root / case.name / "pods")


def check(cases: Sequence[Case], root: Path) -> list[str]:
    """What differs between the committed files and the generator."""
    problems: list[str] = []
    for case in cases:
        yaml_path = root / case.name / "case.yaml"
        if not yaml_path.is_file() or yaml_path.read_text(encoding="utf-8") != case_yaml(case):
            problems.append(f"{yaml_path}: missing or stale")
        if not is_small(case):
            continue
        pods = root / case.name / "pods"
        expected = render_case(case)
        found = {str(p.relative_to(pods)): p for p in pods.rglob("*.log")} if pods.is_dir() else {}
        for rel in sorted(expected.keys() | found.keys()):
            if rel not in found or rel not in expected or found[rel].read_bytes() != expected[rel]:
                problems.append(f"{pods / rel}: missing, extra or stale")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.incidents", description=__doc__)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write-yaml", action="store_true", help="write every case.yaml")
    mode.add_argument("--write", action="store_true", help="case.yaml and small cases' pods")
    mode.add_argument("--check", action="store_true", help="compare committed files")
    mode.add_argument("--out", type=Path, help="write pods of the cases under this directory")
    mode.add_argument("--list", action="store_true", help="list the cases")
    parser.add_argument("--case", action="append", default=[], help="only this case (repeatable)")
    args = parser.parse_args(argv)
    cases = [get_case(name) for name in args.case] if args.case else golden_cases()
    if args.list:
        for case in cases:
            _out(f"{case.name:32} {case.namespace:24} ~{case.approx_lines} lines")
    elif args.out is not None:
        for case in cases:
            _out(str(write_case(case, args.out)))
    elif args.check:
        problems = check(cases, CASES_DIR)
        for problem in problems:
            _out(problem)
        return 1 if problems else 0
    else:
        write_yaml(cases, CASES_DIR)
        if args.write:
            write_pods(cases, CASES_DIR)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
