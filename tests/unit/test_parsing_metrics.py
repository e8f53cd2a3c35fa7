"""GA, FGA, PA and FTA (bench/parsing_metrics.py) on hand-made examples worked out by hand."""

from __future__ import annotations

import pytest

from bench.parsing_metrics import (
    f1_grouping_accuracy,
    f1_template_accuracy,
    grouping_accuracy,
    parsing_accuracy,
)

# Five lines, three true groups. Predicted: A exactly; B split in two; C merged into one of
# B's halves. Only A is grouped right: GA 2/5, FGA F1(1/3, 1/3).
TRUTH = ["A", "A", "B", "B", "C"]
PREDICTED = [1, 1, 2, 3, 3]

TRUE_TEMPLATES = ["open <*>", "open <*>", "close <*>", "close <*>", "halt"]
# Line 2 differs only in spacing (counts); lines 4 and 5 carry a wrong template.
PARSED = ["open <*>", "open  <*>", "close <*>", "close x", "close x"]


def test_grouping_accuracy() -> None:
    assert grouping_accuracy(TRUTH, PREDICTED) == pytest.approx(2 / 5)


def test_f1_grouping_accuracy() -> None:
    assert f1_grouping_accuracy(TRUTH, PREDICTED) == pytest.approx(1 / 3)


def test_fga_rewards_small_groups_that_ga_barely_sees() -> None:
    # 98 lines of one group right, two one-line groups merged: GA 0.98, FGA F1(1/2, 1/3).
    truth = ["big"] * 98 + ["x", "y"]
    predicted = [0] * 98 + [1, 1]
    assert grouping_accuracy(truth, predicted) == pytest.approx(0.98)
    assert f1_grouping_accuracy(truth, predicted) == pytest.approx(0.4)


def test_parsing_accuracy() -> None:
    assert parsing_accuracy(TRUE_TEMPLATES, PARSED) == pytest.approx(3 / 5)


def test_f1_template_accuracy() -> None:
    # Predicted groups by template: "open <*>" (lines 1-2, right), "close <*>" (line 3, half
    # of a true group), "close x" (lines 4-5, two true groups): 1 of 3 on each side.
    assert f1_template_accuracy(TRUE_TEMPLATES, PARSED) == pytest.approx(1 / 3)


def test_right_groups_with_wrong_templates() -> None:
    truth = ["a <*>", "a <*>", "b"]
    parsed = ["a x", "a x", "b"]
    assert grouping_accuracy(truth, parsed) == 1.0
    assert parsing_accuracy(truth, parsed) == pytest.approx(1 / 3)
    assert f1_template_accuracy(truth, parsed) == pytest.approx(1 / 2)


def test_perfect_and_empty() -> None:
    assert grouping_accuracy(TRUTH, TRUTH) == f1_grouping_accuracy(TRUTH, TRUTH) == 1.0
    assert parsing_accuracy(TRUE_TEMPLATES, TRUE_TEMPLATES) == 1.0
    assert f1_template_accuracy(TRUE_TEMPLATES, TRUE_TEMPLATES) == 1.0
    assert grouping_accuracy([], []) == parsing_accuracy([], []) == 0.0


def test_lines_must_match() -> None:
    with pytest.raises(ValueError):
        grouping_accuracy(TRUTH, PREDICTED[:-1])
    with pytest.raises(ValueError):
        parsing_accuracy(TRUE_TEMPLATES, PARSED[:-1])
