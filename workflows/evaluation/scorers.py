"""Scorers: numbers, SQuAD exact match and token F1, TAT-QA's EM and F1 with the scale, contains, retrieval recall@k,
and two model-graded scores.

Every scorer returns a :class:`Score`: a value (``None`` when the score does not apply or could not be obtained) and
whether it counts as a pass. The first scorer of a run is its *primary* one: accuracy is the share of its passes.
A judge that cannot produce valid JSON after retries yields ``Score(None, None, missing=True)``, never a pass.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import BaseModel, Field

from conclave.errors import ConfigError
from conclave.registry import Registry

__all__ = [
    "SCORERS",
    "ScoreInput",
    "Scorer",
    "CorrectnessVerdict",
    "FaithfulnessVerdict",
    "Outcome",
    "Score",
    "candidate_answer",
    "contains",
    "default_scorers",
    "exact_match",
    "extract_number",
    "normalize_answer",
    "numbers_equal",
    "numeric_match",
    "parse_number",
    "recall_at_k",
    "resolve_scorers",
    "needs_judge",
    "score_deterministic",
    "token_f1",
]


@dataclass(frozen=True)
class Score:
    """One scorer's result for one item."""

    value: float | None
    passed: bool | None
    detail: str = ""
    missing: bool = False

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"value": self.value, "passed": self.passed}
        if self.detail:
            out["detail"] = self.detail
        if self.missing:
            out["missing"] = True
        return out


@dataclass(frozen=True)
class Outcome:
    """What a run produced, as the scorers see it (read from its events)."""

    text: str
    value: str | None = None
    retrieved_ids: tuple[str, ...] = ()
    """Unique ids (and sources) of the top-k passages of every search the run made, in order."""
    passages: tuple[str, ...] = ()
    """Texts of retrieved passages (for faithfulness)."""
    retrieved: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------- numbers

_NUMBER = re.compile(r"(?<![\w.])[-−]?\$?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?|(?<![\w.])[-−]?\.\d+")


def parse_number(text: str) -> Decimal | None:
    """``"1,234"``, ``"-5"``, ``"$3.50"``, ``"7/2"``, ``"40%"`` -> Decimal; anything else -> None."""
    cleaned = text.strip().replace("−", "-").replace("$", "").replace(",", "").rstrip("%").strip()
    if cleaned.endswith("."):
        cleaned = cleaned[:-1]
    try:
        if "/" in cleaned:
            num, den = cleaned.split("/", 1)
            denominator = Decimal(den)
            return Decimal(num) / denominator if denominator != 0 else None
        return Decimal(cleaned)
    except (InvalidOperation, ValueError):
        return None


def extract_number(text: str) -> Decimal | None:
    """The last number in a piece of text (the convention of GSM8K-style answers)."""
    found = _NUMBER.findall(text or "")
    for raw in reversed(found):
        number = parse_number(raw)
        if number is not None:
            return number
    return None


def numbers_equal(a: Decimal, b: Decimal) -> bool:
    """Equal as numbers, tolerating float noise (``0.30000000000000004`` == ``0.3``)."""
    if a == b:
        return True
    return abs(a - b) <= Decimal("1e-6") * max(Decimal(1), abs(b))


def _strip_markup(text: str) -> str:
    text = re.sub(r"\[\d{1,2}\]", "", text or "")
    return text.replace("**", "").replace("__", "").strip()


def candidate_answer(outcome: Outcome) -> str:
    """The short answer to compare: the method's bare value when it has one, else its whole answer."""
    return _strip_markup(outcome.value if outcome.value not in (None, "") else outcome.text)


def answer_number(outcome: Outcome) -> Decimal | None:
    """The number an answer gives: its method's value when that holds one, else the last number in its text."""
    got = None
    if outcome.value:
        got = parse_number(outcome.value)
        if got is None:
            got = extract_number(outcome.value)
    if got is None:
        got = extract_number(_strip_markup(outcome.text))
    return got


def numeric_match(outcome: Outcome, golds: Sequence[str]) -> Score:
    """1 when the answer's number equals a gold number (value first, else the last number in the text)."""
    got = answer_number(outcome)
    if got is None:
        return Score(0.0, False, "no number in the answer")
    for gold in golds:
        want = parse_number(gold)
        if want is None:
            want = extract_number(gold)
        if want is not None and numbers_equal(got, want):
            return Score(1.0, True, f"{format_decimal(got)}")
    return Score(0.0, False, f"{format_decimal(got)} != {golds[0] if golds else '?'}")


def format_decimal(number: Decimal) -> str:
    """``12.0`` -> ``12``, ``0.50`` -> ``0.5``: a number as a scorer's detail writes it."""
    return format(number.normalize(), "f") if number == number.to_integral_value() else str(number.normalize())


# ------------------------------------------------------------------------------------------------ text


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, no punctuation, no articles, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction: str, golds: Sequence[str]) -> float:
    """1.0 when the normalised prediction equals any normalised gold answer."""
    pred = normalize_answer(prediction)
    return 1.0 if any(pred == normalize_answer(g) for g in golds) else 0.0


def _f1(prediction: str, gold: str) -> float:
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    if not pred_tokens or not gold_tokens:
        return float(pred_tokens == gold_tokens)
    common = Counter(pred_tokens) & Counter(gold_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(pred_tokens)
    recall = same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, golds: Sequence[str]) -> float:
    """SQuAD token F1, the best over the gold answers."""
    return max((_f1(prediction, g) for g in golds), default=0.0)


def contains(text: str, golds: Sequence[str]) -> float:
    """1.0 when a normalised gold answer occurs, as whole words, in the normalised text."""
    haystack = f" {normalize_answer(text)} "
    return 1.0 if any(normalize_answer(g) and f" {normalize_answer(g)} " in haystack for g in golds) else 0.0


def recall_at_k(retrieved_ids: Sequence[str], gold_ids: Sequence[str], k: int) -> float | None:
    """Share of gold ids among the first ``k`` retrieved ids (``None`` without gold ids)."""
    if not gold_ids:
        return None
    top = set(list(dict.fromkeys(retrieved_ids))[:k])
    return sum(1 for g in set(gold_ids) if g in top) / len(set(gold_ids))


# ---------------------------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class ScoreInput:
    """What a scorer sees of one item: the question, the run's outcome, the gold answers and context ids, the
    recall cut-off ``k``, and the item's labels (TAT-QA: answer_type, answer_from, scale)."""

    question: str
    outcome: Outcome
    golds: Sequence[str]
    gold_ids: Sequence[str] = ()
    k: int = 4
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Scorer:
    """A named scorer. A model-free one is ``score(item) -> Score``; a judge scorer (``judge=True``) is
    ``async score(item, judge) -> Score`` and gives ``unanswered`` to an item whose run produced no answer."""

    name: str
    score: Callable[..., Any]
    summary: str
    judge: bool = False
    unanswered: Score = field(default_factory=lambda: Score(None, None, "no answer"))


def _plugin_scorer(name: str, loaded: object) -> Scorer:
    """What a ``conclave.scorers`` entry point loads: a :class:`Scorer`, or a function ``(ScoreInput) -> Score``."""
    if isinstance(loaded, Scorer):
        return replace(loaded, name=name)
    if callable(loaded):
        doc = (getattr(loaded, "__doc__", None) or "").strip().splitlines()
        return Scorer(name, loaded, doc[0] if doc else "(a plugin scorer)")
    raise TypeError(f"expected a Scorer or a function (ScoreInput) -> Score, got {type(loaded).__name__}")


SCORERS: Registry[Scorer] = Registry("scorer", "conclave.scorers", _plugin_scorer)
"""Every scorer by name: the built-ins below and plugins (entry-point group ``conclave.scorers``)."""
F1_PASS = 0.5
JUDGE_PASS = 4


def _exact(item: ScoreInput) -> Score:
    value = exact_match(candidate_answer(item.outcome), item.golds)
    return Score(value, value == 1.0)


def _f1_score(item: ScoreInput) -> Score:
    value = round(token_f1(candidate_answer(item.outcome), item.golds), 4)
    return Score(value, value >= F1_PASS)


def _contains(item: ScoreInput) -> Score:
    value = contains(_strip_markup(item.outcome.text) + " " + (item.outcome.value or ""), item.golds)
    return Score(value, value == 1.0)


def _recall(item: ScoreInput) -> Score:
    if not item.gold_ids:
        return Score(None, None, "no gold contexts")
    if not item.outcome.retrieved:
        return Score(None, None, "no retrieval")
    # The ids are already each search's top k (see units.outcome_from_events).
    recall = recall_at_k(item.outcome.retrieved_ids, item.gold_ids, len(item.outcome.retrieved_ids))
    assert recall is not None
    return Score(round(recall, 4), recall == 1.0)


def tatqa_score(item: ScoreInput) -> tuple[Any, str]:
    """TAT-QA's EM and F1 of the item's answer, read into value and scale, against its gold answer and scale."""
    from conclave.workflows.evaluation.tatqa import parse_prediction, score_answer

    answer_type = item.labels.get("answer_type", "span")
    predicted, scale = parse_prediction(
        candidate_answer(item.outcome), context=_strip_markup(item.outcome.text), answer_type=answer_type
    )
    result = score_answer(predicted, scale, item.golds, item.labels.get("scale", ""), answer_type)
    shown = f"{' | '.join(predicted) or '(none)'}{f' {scale}' if scale else ''}"
    return result, f"{shown} -> {result.predicted or '(nothing)'} vs {result.gold}"


def _tatqa_em(item: ScoreInput) -> Score:
    result, detail = tatqa_score(item)
    return Score(result.em, result.em == 1.0, detail)


def _tatqa_f1(item: ScoreInput) -> Score:
    result, detail = tatqa_score(item)
    return Score(result.f1, result.f1 >= F1_PASS, detail)


async def _correctness(item: ScoreInput, judge: Any) -> Score:
    return await judge.correctness(item.question, item.golds, item.outcome)


async def _faithfulness(item: ScoreInput, judge: Any) -> Score:
    return await judge.faithfulness(item.outcome)


for _scorer, _aliases in (
    (
        Scorer("numeric", lambda i: numeric_match(i.outcome, i.golds), "the answer's number equals the gold number"),
        ("number",),
    ),
    (Scorer("exact_match", _exact, "SQuAD exact match of the short answer"), ("em", "exact")),
    (Scorer("f1", _f1_score, f"SQuAD token F1 of the short answer (pass at {F1_PASS})"), ()),
    (Scorer("tatqa_em", _tatqa_em, "TAT-QA's exact match: the answer and its scale, numbers rounded"), ("tatqa",)),
    (Scorer("tatqa_f1", _tatqa_f1, f"TAT-QA's numeracy-focused F1 (F1 = EM for numbers; pass at {F1_PASS})"), ()),
    (Scorer("contains", _contains, "a gold answer occurs, as whole words, in the answer"), ()),
    (Scorer("recall", _recall, "share of gold contexts among the retrieved passages (recall@k)"), ("recall@k",)),
    (
        Scorer(
            "correctness",
            _correctness,
            f"the judge model grades the answer against the gold, 1-5 (pass at {JUDGE_PASS})",
            judge=True,
            # Nothing to grade is wrong: the judge's 1 means "wrong or no answer".
            unanswered=Score(1.0, False, "no answer"),
        ),
        ("judge",),
    ),
    (
        Scorer(
            "faithfulness", _faithfulness, "the judge model checks each claim against the passages, 1-5", judge=True
        ),
        (),
    ),
):
    SCORERS.add(_scorer.name, _scorer, aliases=_aliases)


def resolve_scorers(names: Sequence[str]) -> list[str]:
    """Canonical scorer names, in order, without duplicates; ConfigError for unknown ones."""
    out: list[str] = []
    for raw in names:
        for name in str(raw).split(","):
            name = name.strip().lower()
            if not name:
                continue
            if name not in SCORERS:
                raise ConfigError(f"unknown scorer {raw!r}", hint=f"use one of: {', '.join(SCORERS.names())}")
            name = SCORERS.canonical(name)
            if name not in out:
                out.append(name)
    return out


def needs_judge(names: Sequence[str]) -> bool:
    return any(SCORERS.get(n).judge for n in names)


def default_scorers(kind: str, *, numeric: bool, has_gold_ids: bool) -> list[str]:
    """The scorers a data set kind gets when none are named (the first is the primary one)."""
    if kind == "tatqa":
        return ["tatqa_em", "tatqa_f1"] + (["recall"] if has_gold_ids else [])
    if kind in ("gsm8k", "svamp") or numeric:
        return ["numeric"]
    out = ["exact_match", "f1"] if kind in ("squad", "hotpotqa") else ["exact_match", "f1", "contains"]
    return out + (["recall"] if has_gold_ids or kind in ("squad", "hotpotqa") else [])


def score_deterministic(name: str, outcome: Outcome, golds: Sequence[str], gold_ids: Sequence[str], k: int) -> Score:
    """Score one outcome with one of the model-free scorers."""
    scorer = SCORERS.get(name)
    if scorer.judge:
        raise ConfigError(f"scorer {name!r} needs the judge model", hint="score it in an evaluation run")
    return scorer.score(ScoreInput("", outcome, golds, gold_ids, k))


# ------------------------------------------------------------------------------------------ judge schemas


class CorrectnessVerdict(BaseModel):
    """The judge's grade of an answer against the gold answer."""

    reasoning: str = Field(..., max_length=1200, description="one or two sentences comparing answer and gold")
    score: int = Field(..., ge=1, le=5, description="5 = same meaning as the gold answer, 1 = wrong or no answer")


class FaithfulnessVerdict(BaseModel):
    """The judge's check of an answer's claims against the retrieved passages."""

    unsupported_claims: list[str] = Field(default_factory=list, max_length=10)
    score: int = Field(..., ge=1, le=5, description="5 = every claim is supported by the passages, 1 = none is")
