"""TAT-QA's EM and F1 (workflows/evaluation/tatqa.py) against the behaviour of the data set's ``tatqa_metric.py``.

The expected values are what the public metric (NExTplusplus/TAT-QA, ``TaTQAEmAndF1`` with ``tatqa_utils``) gives
for the same gold answer, gold scale, prediction and predicted scale: scale handling, rounding to cents, the
percent reading of a bare fraction, accounting negatives, multi-span bags, F1 = EM for numbers.
"""

from __future__ import annotations

import pytest
from conclave.workflows.evaluation.scorers import SCORERS, Outcome, ScoreInput, default_scorers
from conclave.workflows.evaluation.tatqa import normalize_answer, parse_prediction, score_answer, to_number

# (gold answer, gold scale, answer type, predicted spans, predicted scale, EM, F1) — the reference's results.
REFERENCE_CASES = [
    # scale: the same amount in other units matches; a number without its scale does not
    (["1200"], "thousand", "arithmetic", ["1.2"], "million", 1.0, 1.0),
    (["1.2"], "million", "arithmetic", ["1.2"], "", 0.0, 0.0),
    (["$1,496.5"], "million", "span", ["1,496.5"], "million", 1.0, 1.0),
    (["$1,496.5"], "million", "span", ["1,496.5"], "", 0.0, 0.0),
    # a text span carries the scale word: without it, it is one token short
    (["Fixed Price"], "million", "span", ["fixed price"], "million", 1.0, 1.0),
    (["Fixed Price"], "million", "span", ["fixed price"], "", 0.0, 0.8),
    # numbers are rounded to cents before comparing
    (["12.3456"], "", "arithmetic", ["12.35"], "", 1.0, 1.0),
    (["12.3456"], "", "arithmetic", ["12.346"], "", 1.0, 1.0),
    (["12.3456"], "", "arithmetic", ["12.3"], "", 0.0, 0.0),
    # percentages: "23.42%", a percent scale, or the bare fraction 0.2342; a bare 23.42 is not 23.42 percent
    (["23.42"], "percent", "arithmetic", ["23.42%"], "", 1.0, 1.0),
    (["23.42"], "percent", "arithmetic", ["0.2342"], "", 1.0, 1.0),
    (["23.42"], "percent", "arithmetic", ["23.42"], "percent", 1.0, 1.0),
    (["23.42"], "percent", "arithmetic", ["23.42"], "", 0.0, 0.0),
    # negative numbers: accounting brackets equal a minus sign, the sign matters
    (["-0.9"], "", "arithmetic", ["(0.9)"], "", 1.0, 1.0),
    (["(0.9)"], "", "span", ["-0.9"], "", 1.0, 1.0),
    (["-0.9"], "", "arithmetic", ["0.9"], "", 0.0, 0.0),
    # multi-span: order does not matter; a missing span costs EM and part of the F1 (a bag of tokens)
    (["fixed-price type", "cost-plus type"], "", "multi-span", ["cost-plus type", "fixed-price type"], "", 1.0, 1.0),
    (["fixed-price type", "cost-plus type"], "", "multi-span", ["fixed-price type"], "", 0.0, 0.8),
    (["2019", "2018"], "", "multi-span", ["2018", "2019"], "", 1.0, 1.0),
    # text F1 is a token bag, rounded to two decimals; for arithmetic and count answers F1 is EM
    (["our allowable incurred costs"], "", "span", ["allowable incurred costs"], "", 0.0, 0.86),
    (["5.5"], "", "arithmetic", ["5.4"], "", 0.0, 0.0),
    (["4"], "", "count", ["4"], "", 1.0, 1.0),
    # no prediction scores nothing
    (["5.5"], "", "arithmetic", [], "", 0.0, 0.0),
]


@pytest.mark.parametrize(("gold", "gold_scale", "kind", "predicted", "scale", "em", "f1"), REFERENCE_CASES)
def test_metric_matches_the_reference(
    gold: list[str], gold_scale: str, kind: str, predicted: list[str], scale: str, em: float, f1: float
) -> None:
    result = score_answer(predicted, scale, gold, gold_scale, kind)
    assert (result.em, result.f1) == (em, f1)


def test_numbers_normalise_like_the_reference() -> None:
    assert to_number("$ 1,452.4") == 1452.4
    assert to_number("(0.9)") == -0.9
    assert to_number("12.5%") == 0.125
    assert to_number("1.2 million") == 1_200_000
    assert to_number("2019") == 2019 and isinstance(to_number("2019"), int)
    assert to_number("n/a") is None
    assert normalize_answer("The Total, in 2019,") == "total in 2019"


@pytest.mark.parametrize(
    ("answer", "kind", "context", "expected"),
    [
        ("$1.2 million", "arithmetic", "", (["1.2"], "million")),
        ("12.5%", "arithmetic", "", (["12.5"], "percent")),
        ("(0.9)", "span", "", (["-0.9"], "")),
        ("3.4bn", "arithmetic", "", (["3.4"], "billion")),
        ("$ 1,452.4", "span", "", (["1452.4"], "")),
        ("The change was -5.2 million.", "arithmetic", "", (["-5.2"], "million")),
        ("fixed-price type; cost-plus type", "multi-span", "", (["fixed-price type", "cost-plus type"], "")),
        ("Sales, Research and development", "multi-span", "", (["Sales", "Research and development"], "")),
        ("2019 and 2018", "multi-span", "", (["2019", "2018"], "")),
        ("Research and development", "span", "", (["Research and development"], "")),
        # a bare value takes the scale its answer text wrote after the same number
        ("1496.5", "arithmetic", "Total sales were $1,496.5 million [1].", (["1496.5"], "million")),
        ("1496.5", "arithmetic", "Total sales were 1,202.9 million.", (["1496.5"], "")),
        ("", "span", "", ([], "")),
    ],
)
def test_answers_read_into_value_and_scale(
    answer: str, kind: str, context: str, expected: tuple[list[str], str]
) -> None:
    assert parse_prediction(answer, context=context, answer_type=kind) == expected


def _score(name: str, value: str | None, text: str, golds: list[str], labels: dict[str, str]):
    return SCORERS.get(name).score(ScoreInput("q", Outcome(text=text, value=value), golds, (), 4, labels))


def test_scorers_read_the_gold_scale_and_type_from_the_labels() -> None:
    labels = {"answer_type": "arithmetic", "answer_from": "table", "scale": "million"}
    right = _score("tatqa_em", "1.2", "Sales grew by $1.2 million [1].", ["1.2"], labels)
    assert right.passed is True and right.value == 1.0
    assert "million" in right.detail
    # The same number in thousands is a thousand times off once the scale is applied.
    wrong = _score("tatqa_em", "1.2 thousand", "", ["1.2"], labels)
    assert wrong.passed is False and wrong.value == 0.0
    spans = {"answer_type": "multi-span", "answer_from": "text", "scale": ""}
    partial = _score("tatqa_f1", "fixed-price type", "", ["fixed-price type", "cost-plus type"], spans)
    assert partial.value == 0.8 and partial.passed is True
    assert _score("tatqa_em", None, "", ["4"], {"answer_type": "count", "scale": ""}).value == 0.0


def test_tatqa_kind_defaults_to_its_own_scorers() -> None:
    assert default_scorers("tatqa", numeric=False, has_gold_ids=True) == ["tatqa_em", "tatqa_f1", "recall"]
    assert SCORERS.canonical("tatqa") == "tatqa_em"
