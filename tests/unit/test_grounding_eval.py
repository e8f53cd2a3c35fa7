"""The verifier measured on the hand-labelled answers of eval/grounding (`python -m
eval.grounding`): precision and recall of "unsupported" stay at or above the floor."""

from __future__ import annotations

from eval.grounding.measure import FLOOR, load_answers, load_evidence, score


def test_the_labelled_set_is_big_enough_and_labelled_throughout() -> None:
    answers = load_answers()
    evidence = load_evidence()
    assert len(answers) >= 50
    assert len({a["id"] for a in answers}) == len(answers)
    sources = {a["id"].split("-", 1)[0] for a in answers}
    assert sources == {"stub", "smollm2"}
    for answer in answers:
        assert answer["evidence"] in evidence, answer["id"]
        for claim in answer["claims"]:
            assert claim["text"] in answer["answer"], (answer["id"], claim["text"])
            assert isinstance(claim["supported"], bool)


def test_unsupported_claims_are_found_with_precision_and_recall_above_the_floor() -> None:
    tally = score(load_answers(), load_evidence())
    assert tally.labelled_unsupported >= 50
    assert tally.precision >= FLOOR, tally.mistakes
    assert tally.recall >= FLOOR, tally.mistakes


def test_the_measure_counts_misses_and_false_alarms() -> None:
    evidence = load_evidence()
    key = next(iter(evidence))
    answer = {
        "id": "probe",
        "evidence": key,
        "answer": "It began at 23:59:58 on db.prod.example.com.",
        # Labelled wrongly on purpose: the invented time as supported, and the host unlabelled.
        "claims": [{"text": "23:59:58", "supported": True}],
    }
    tally = score([answer], evidence)
    assert (tally.true_positive, tally.false_positive, tally.false_negative) == (0, 2, 0)
    answer["claims"] = [
        {"text": "23:59:58", "supported": False},
        {"text": "It began", "supported": False},
    ]
    tally = score([answer], evidence)
    assert (tally.true_positive, tally.false_positive, tally.false_negative) == (1, 1, 1)
