"""Scorers: SQuAD normalisation, EM/F1, GSM8K answer parsing, numeric match, contains, recall@k, McNemar."""

from __future__ import annotations

from decimal import Decimal

import pytest
from conclave.workflows.evaluation.compare import compare_records, mcnemar_exact
from conclave.workflows.evaluation.datasets import _Bad, gsm8k_gold
from conclave.workflows.evaluation.records import EvalSample
from conclave.workflows.evaluation.report import wilson_interval
from conclave.workflows.evaluation.scorers import (
    Outcome,
    contains,
    default_scorers,
    exact_match,
    extract_number,
    normalize_answer,
    numeric_match,
    parse_number,
    recall_at_k,
    resolve_scorers,
    score_deterministic,
    token_f1,
)

from conclave.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The Denver Broncos", "denver broncos"),
        ("  a  Tale of Two   Cities. ", "tale of two cities"),
        ("Denver Broncos!", "denver broncos"),
        ("an apple, the pear", "apple pear"),
        ("Theatre", "theatre"),  # "the" inside a word stays
        ("U.S.A.", "usa"),
        ("", ""),
    ],
)
def test_squad_normalisation(text: str, expected: str) -> None:
    assert normalize_answer(text) == expected


def test_exact_match_uses_any_gold_answer() -> None:
    assert exact_match("the Denver Broncos.", ["Carolina Panthers", "Denver Broncos"]) == 1.0
    assert exact_match("Broncos", ["Denver Broncos"]) == 0.0


@pytest.mark.parametrize(
    ("prediction", "golds", "expected"),
    [
        ("Denver Broncos", ["Denver Broncos"], 1.0),
        ("the Broncos", ["Denver Broncos"], pytest.approx(2 * 0.5 * 1.0 / 1.5)),  # p=1, r=1/2
        ("Denver Broncos won", ["Denver Broncos"], pytest.approx(0.8)),  # p=2/3, r=1
        ("Panthers", ["Denver Broncos", "Carolina Panthers"], pytest.approx(2 / 3)),
        ("nothing here", ["Denver Broncos"], 0.0),
        ("", ["Denver Broncos"], 0.0),
    ],
)
def test_token_f1(prediction: str, golds: list[str], expected: float) -> None:
    assert token_f1(prediction, golds) == expected


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("She has 5 apples.\n#### 72", "72"),
        ("...\n#### 1,234", "1234"),
        ("#### -5", "-5"),
        ("#### 3.75", "3.75"),
        ("#### $1,000,000", "1000000"),
        ("first\n#### 4\nsecond\n#### 8", "8"),
    ],
)
def test_gsm8k_gold_parsing(answer: str, expected: str) -> None:
    assert gsm8k_gold(answer) == expected


def test_gsm8k_gold_without_final_line_is_rejected() -> None:
    with pytest.raises(_Bad, match="####"):
        gsm8k_gold("It is 5.")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1,234", Decimal("1234")),
        ("-5", Decimal("-5")),
        ("−7", Decimal("-7")),
        ("$3.50", Decimal("3.50")),
        ("40%", Decimal("40")),
        ("7/2", Decimal("3.5")),
        ("18.", Decimal("18")),
        ("eighteen", None),
        ("1/0", None),
    ],
)
def test_parse_number(text: str, expected: Decimal | None) -> None:
    assert parse_number(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2 + 1 = 3 bolts", Decimal("3")),
        ("He earns $1,234.50 a week", Decimal("1234.50")),
        ("The change is -12 dollars.", Decimal("-12")),
        ("Temperatures fell to -3.5 degrees", Decimal("-3.5")),
        ("costs 3, 4 and 5", Decimal("5")),
        ("version x2", None),
        ("no digits", None),
    ],
)
def test_extract_last_number(text: str, expected: Decimal | None) -> None:
    assert extract_number(text) == expected


def test_numeric_match_prefers_value_then_last_number() -> None:
    assert numeric_match(Outcome(text="steps 2 and 3\nAnswer: 1,234", value="1,234"), ["1234"]).passed
    assert numeric_match(Outcome(text="so 18.00 dollars", value=None), ["18"]).passed
    assert numeric_match(Outcome(text="x", value="$18"), ["18"]).passed
    assert numeric_match(Outcome(text="Answer: 0.30000000000000004", value="0.30000000000000004"), ["0.3"]).passed
    wrong = numeric_match(Outcome(text="Answer: 17", value="17"), ["18"])
    assert wrong.passed is False and wrong.value == 0.0 and "17" in wrong.detail
    none = numeric_match(Outcome(text="I do not know"), ["18"])
    assert none.passed is False and "no number" in none.detail


def test_contains_matches_whole_normalised_words() -> None:
    assert contains("It was the Denver Broncos, in 2016.", ["denver broncos"]) == 1.0
    assert contains("Broncos", ["Denver Broncos"]) == 0.0
    assert contains("scattering", ["cat"]) == 0.0


def test_recall_at_k_counts_gold_ids_in_the_top_k() -> None:
    assert recall_at_k(["a", "b", "c"], ["a", "c"], 2) == 0.5
    assert recall_at_k(["a", "a", "b", "c"], ["a", "c"], 3) == 1.0  # duplicates do not use up k
    assert recall_at_k(["x"], [], 3) is None


def test_recall_scorer_is_not_applicable_without_retrieval() -> None:
    no_retrieval = score_deterministic("recall", Outcome(text="x"), ["y"], ["g"], 4)
    assert no_retrieval.value is None and no_retrieval.passed is None
    hit = score_deterministic("recall", Outcome(text="x", retrieved_ids=("g", "h"), retrieved=True), ["y"], ["g"], 4)
    assert hit.value == 1.0 and hit.passed


def test_exact_match_scorer_uses_the_bare_value_and_strips_markup() -> None:
    outcome = Outcome(text="The AFC champion was **Denver Broncos** [1].", value=None)
    assert score_deterministic("exact_match", outcome, ["Denver Broncos"], [], 4).passed is False
    short = Outcome(text="long explanation", value="**Denver Broncos** [2]")
    assert score_deterministic("exact_match", short, ["Denver Broncos"], [], 4).passed is True


def test_scorer_names_resolve_and_unknown_ones_fail() -> None:
    assert resolve_scorers(["em", "f1,recall@k", "judge", "f1"]) == ["exact_match", "f1", "recall", "correctness"]
    with pytest.raises(ConfigError, match="unknown scorer 'bleu'") as info:
        resolve_scorers(["bleu"])
    assert "numeric" in (info.value.hint or "")


def test_default_scorers_per_kind() -> None:
    assert default_scorers("gsm8k", numeric=True, has_gold_ids=False) == ["numeric"]
    assert default_scorers("squad", numeric=False, has_gold_ids=True) == ["exact_match", "f1", "recall"]
    assert default_scorers("jsonl", numeric=False, has_gold_ids=False) == ["exact_match", "f1", "contains"]


@pytest.mark.parametrize(
    ("b", "c", "expected"),
    [(0, 0, 1.0), (0, 5, 0.0625), (5, 0, 0.0625), (1, 9, 2 * 11 / 1024), (3, 3, 1.0), (2, 8, 2 * 56 / 1024)],
)
def test_mcnemar_exact(b: int, c: int, expected: float) -> None:
    assert mcnemar_exact(b, c) == pytest.approx(expected)


def test_paired_comparison_counts_wins_and_losses() -> None:
    def sample(i: int, ok: bool | None, side: str) -> EvalSample:
        return EvalSample(key=f"{i}|{side}|m", item_id=str(i), method=side, model="m", correct=ok)

    a = [sample(i, ok, "a") for i, ok in enumerate([True, True, False, False, True, None])]
    b = [sample(i, ok, "b") for i, ok in enumerate([True, False, True, False, False, True])]
    comp = compare_records(a, b)
    assert (comp.paired, comp.both_right, comp.a_only, comp.b_only, comp.both_wrong) == (5, 1, 2, 1, 1)
    assert comp.p_value == pytest.approx(1.0)
    assert comp.unpaired == 1  # item 5 has no score on side A (a missing judge score is never a pass)


def test_wilson_interval() -> None:
    low, high = wilson_interval(5, 10)
    assert low == pytest.approx(0.2366, abs=1e-3) and high == pytest.approx(0.7634, abs=1e-3)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    assert wilson_interval(0, 0) == (0.0, 0.0)
