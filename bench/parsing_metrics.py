"""The four log-parsing metrics of the Loghub-2.0 paper, as pure functions.

Z. Jiang et al., "A Large-Scale Evaluation for Log Parsing Techniques: How Far Are We?"
(ISSTA 2024), after Khan et al. (ICSE 2022); definitions as in logpai/loghub-2.0
`evaluation/utils`:

- GA, grouping accuracy: share of lines whose ground-truth group is predicted as exactly
  one group holding exactly its lines.
- FGA, F1 grouping accuracy: F1 of the share of predicted groups that are correct (PGA) and
  the share of ground-truth groups predicted correctly (RGA).
- PA, parsing accuracy: share of lines whose predicted template equals the true one.
- FTA, F1 template accuracy: as FGA, but a group counts only when its template is also
  the true one (PTA, RTA).

Group labels may be anything hashable (ids or template strings). Templates are compared as
whitespace-separated tokens, so spacing does not count; nothing else is normalised.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Hashable, Sequence
from typing import TypeVar

Label = TypeVar("Label", bound=Hashable)


def _correct_groups(truth: Sequence[Label], predicted: Sequence[Hashable]) -> list[Label]:
    """The true groups predicted exactly: one predicted group holding all and only their lines."""
    if len(truth) != len(predicted):
        raise ValueError("truth and predicted must label the same lines")
    predicted_sizes = Counter(predicted)
    labels: dict[Label, set[Hashable]] = defaultdict(set)
    sizes: Counter[Label] = Counter()
    for true, guess in zip(truth, predicted, strict=True):
        labels[true].add(guess)
        sizes[true] += 1
    return [
        true
        for true, guesses in labels.items()
        if len(guesses) == 1 and predicted_sizes[next(iter(guesses))] == sizes[true]
    ]


def _f1(correct: int, predicted: int, true: int) -> float:
    precision = correct / predicted if predicted else 0.0
    recall = correct / true if true else 0.0
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def grouping_accuracy(truth: Sequence[Hashable], predicted: Sequence[Hashable]) -> float:
    """GA: share of lines in a true group that is predicted exactly."""
    if not truth:
        return 0.0
    sizes = Counter(truth)
    return sum(sizes[g] for g in _correct_groups(truth, predicted)) / len(truth)


def f1_grouping_accuracy(truth: Sequence[Hashable], predicted: Sequence[Hashable]) -> float:
    """FGA: F1 of correct groups over predicted groups and over true groups."""
    correct = len(_correct_groups(truth, predicted))
    return _f1(correct, len(set(predicted)), len(set(truth)))


def _canonical(template: str) -> str:
    return " ".join(template.split())


def parsing_accuracy(truth_templates: Sequence[str], predicted_templates: Sequence[str]) -> float:
    """PA: share of lines whose predicted template equals the true template."""
    if len(truth_templates) != len(predicted_templates):
        raise ValueError("truth and predicted must label the same lines")
    if not truth_templates:
        return 0.0
    same = sum(
        _canonical(t) == _canonical(p)
        for t, p in zip(truth_templates, predicted_templates, strict=True)
    )
    return same / len(truth_templates)


def f1_template_accuracy(
    truth_templates: Sequence[str], predicted_templates: Sequence[str]
) -> float:
    """FTA: F1 over templates that group their lines exactly and read as the true one.

    Groups are the distinct templates on each side (as in Loghub-2.0).
    """
    truth = [_canonical(t) for t in truth_templates]
    predicted = [_canonical(p) for p in predicted_templates]
    guess = dict(zip(truth, predicted, strict=True))  # one guess per correct group
    correct = sum(guess[t] == t for t in _correct_groups(truth, predicted))
    return _f1(correct, len(set(predicted)), len(set(truth)))
