"""TAT-QA (Zhu et al., ACL 2021): questions over financial reports, each report a table plus paragraphs.

Three parts, all model-free:

- loading: every report becomes one :class:`Context` (its headings and paragraphs in order, the table as a Markdown
  table under the paragraph that introduces it), chunked at ingestion like a Markdown file; every question becomes an :class:`Item` whose
  labels carry the answer type (arithmetic, span, multi-span, count), where the answer is found (table, text,
  table-text) and the scale (thousand, million, billion, percent), and whose scope is its own report.
- the metric: the data set's exact match and numeracy-focused F1, with the semantics of ``tatqa_metric.py`` in the
  public repository (NExTplusplus/TAT-QA): an answer and its scale become one normalised string (numbers multiplied
  out by the scale and written with four decimals, multi-span answers sorted and joined), then compared as a string
  (EM) and as a bag of tokens (F1; for arithmetic and count answers F1 is EM).
- reading a model's answer ("$1.2 million", "12.5%", "2019; 2018") into the answer and scale the metric takes.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ANSWER_TYPES",
    "SCALES",
    "TatqaScore",
    "normalize_answer",
    "parse_prediction",
    "render_report",
    "render_table",
    "score_answer",
    "to_number",
]

SCALES: dict[str, float] = {"": 1.0, "thousand": 1e3, "million": 1e6, "billion": 1e9, "percent": 0.01}
ANSWER_TYPES = ("arithmetic", "span", "multi-span", "count")
NUMERIC_TYPES = ("arithmetic", "count")

# --------------------------------------------------------------------------------------------- numbers

# Characters a number may carry that are not part of its value (currency, thousands separators, brackets).
_NOT_IN_NUMBER = str.maketrans("", "", "'\"\\$€£¥%(),[]")
_FIRST_NUMBER = re.compile(r"[+-]?\d+(?:\.\d+)?|[+-]?\.\d+")
_WORD_AFTER_NUMBER = re.compile(r"[\d.]+\s?[a-zA-Z]+")
_BRACKETED = re.compile(r"\([\d.\s%]+\)")
_PERCENTAGE = re.compile(r"[\d.\s]+%")
# Checked in this order: a word naming several ("hundred thousand") takes the first.
_SCALE_WORDS = (("hundred", 100.0), ("thousand", 1e3), ("million", 1e6), ("billion", 1e9), ("percent", 0.01))


def _strip_number_marks(text: str) -> str:
    return str(text).translate(_NOT_IN_NUMBER)


def scale_factor(word: str) -> float:
    """What a scale word multiplies by (1 for any other word)."""
    lowered = word.lower()
    return next((factor for name, factor in _SCALE_WORDS if name in lowered), 1.0)


def is_number(text: str) -> bool:
    """A number, possibly with currency, separators, brackets, a percent sign, and one scale word after it."""
    words = " ".join(_strip_number_marks(w) for w in text.split()).split()
    if not words:
        return False
    try:
        first = float(words[0])
    except ValueError:
        return False
    if math.isnan(first):
        return False
    return len(words) < 2 or scale_factor(words[1]) != 1.0


def to_number(text: str) -> float | int | None:
    """The first number in ``text`` times its scale word, negative in accounting brackets ("(0.9)"), a hundredth
    with a percent sign; rounded to four decimals. ``None`` without a number."""
    found = _FIRST_NUMBER.search(_strip_number_marks(text))
    if found is None:
        return None
    raw = found.group(0)
    value: float | int = float(raw) if "." in raw else int(raw)
    word = _WORD_AFTER_NUMBER.search(text)
    factor = scale_factor(word.group(0)) if word else 1.0
    if factor != 1.0:  # an integer stays an integer unless something scales it ("2019", not "2019.0")
        value *= factor
    if _BRACKETED.search(text.strip()):
        value = -value
    if _PERCENTAGE.search(text.strip()):
        value *= 0.01
    return round(value, 4)


# ------------------------------------------------------------------------------------------ normalisation

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = set(string.punctuation)


def _normalize_token(token: str) -> str:
    token = token.lower()
    if not is_number(token):
        token = "".join(ch for ch in token if ch not in _PUNCTUATION)
    if is_number(token):
        number = to_number(token)
        token = str(number) if number is not None else token
    return " ".join(_ARTICLES.sub(" ", token).split())


def normalize_answer(text: str) -> str:
    """Per space-separated token: lower case; a number becomes its value; other tokens lose punctuation and
    articles. Empty tokens are dropped."""
    return " ".join(part for part in (_normalize_token(t) for t in text.split(" ")) if part)


def answer_string(answers: Sequence[Any], scale: str) -> str:
    """An answer (one or several spans) with its scale as one string: spans sorted, a number multiplied out by the
    scale (rounded to cents first) and written with four decimals, other spans followed by the scale word."""
    parts = []
    for answer in sorted(str(a) for a in answers):
        number = to_number(answer) if is_number(answer) else None
        if number is None:
            parts.append(f"{answer} {scale}" if scale else answer)
        elif "%" in answer:  # the percent sign has scaled it already
            parts.append(f"{number:.4f}")
        else:
            factor = SCALES[scale] if scale in SCALES else scale_factor(scale)
            parts.append(f"{round(number, 2) * (factor if factor != 1.0 else 1):.4f}")
    return " ".join(parts)


def _bag_f1(predicted: set[str], gold: set[str]) -> float:
    same = len(predicted & gold)
    precision = same / len(predicted) if predicted else 1.0
    recall = same / len(gold) if gold else 1.0
    return 0.0 if precision == 0.0 and recall == 0.0 else 2 * precision * recall / (precision + recall)


def _compare(predicted: str, gold: str) -> tuple[float, float]:
    pred, want = normalize_answer(predicted), normalize_answer(gold)
    return (1.0 if pred == want else 0.0), round(_bag_f1(set(pred.split()), set(want.split())), 2)


@dataclass(frozen=True)
class TatqaScore:
    """One answer's exact match and F1, and what was compared."""

    em: float
    f1: float
    predicted: str
    gold: str


def score_answer(
    predicted: Sequence[str], predicted_scale: str, gold: Sequence[Any], gold_scale: str, answer_type: str = "span"
) -> TatqaScore:
    """TAT-QA's EM and F1 of a predicted answer (its spans and scale) against the gold answer and scale.

    A bare number predicted without a scale also counts as a fraction of a percent answer (0.2342 for 23.42
    percent). The better (EM, then F1) of the two readings wins. For arithmetic and count answers F1 is EM."""
    gold_text = answer_string(gold, gold_scale)
    if not [p for p in predicted if str(p).strip()] or not gold_text:
        return TatqaScore(0.0, 0.0, "", gold_text)
    readings = [answer_string(predicted, predicted_scale)]
    single = str(predicted[0])
    if len(predicted) == 1 and not predicted_scale and "%" not in single and is_number(single):
        number = to_number(single)
        if number is not None:
            readings.append(f"{number:.4f}")
    em, f1 = max(_compare(reading, gold_text) for reading in readings)
    if answer_type in NUMERIC_TYPES:
        f1 = em
    return TatqaScore(em, f1, readings[0], gold_text)


# ------------------------------------------------------------------------------------ reading an answer

_MARKUP = re.compile(r"\[\d{1,3}\]|\*\*|__|`")
# A number as a model writes it: sign, currency, separators, brackets, then a scale (word, suffix or %).
_AMOUNT = re.compile(
    r"(?P<neg>[-−–]\s*)?[$€£¥]?\s*(?P<open>\()?\s*[$€£¥]?\s*"
    r"(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)\s*(?P<close>\))?"
    r"\s*(?P<scale>%|percent(?:age)?(?: points?)?\b|thousands?\b|millions?\b|billions?\b"
    r"|k\b|mn\b|m\b|bn\b|b\b)?",
    re.IGNORECASE,
)
_SUFFIX_SCALES = {"k": "thousand", "m": "million", "mn": "million", "b": "billion", "bn": "billion", "%": "percent"}


def _scale_name(raw: str | None) -> str:
    if not raw:
        return ""
    word = raw.lower()
    if word in _SUFFIX_SCALES:
        return _SUFFIX_SCALES[word]
    return next((name for name in SCALES if name and word.startswith(name)), "")


def _amount(match: re.Match[str]) -> tuple[str, str]:
    """A matched amount as (the number as text, scale name): brackets and a minus sign make it negative."""
    number = match.group("num").replace(",", "")
    negative = bool(match.group("neg")) or bool(match.group("open") and match.group("close"))
    return ("-" if negative else "") + number, _scale_name(match.group("scale"))


def _whole_amount(text: str) -> tuple[str, str] | None:
    match = _AMOUNT.fullmatch(text.strip().rstrip("."))
    return _amount(match) if match else None


def _spans(text: str, several: bool) -> list[str]:
    """A text answer as spans: split at semicolons and lines, and, when several are wanted, at commas and a final
    "and" of a list."""
    pieces = [p.strip() for p in re.split(r"[;\n]", text) if p.strip()]
    if several and len(pieces) == 1:
        pieces = [p.strip() for p in re.split(r",\s+", pieces[0]) if p.strip()]
        if len(pieces) > 1:
            pieces[-1] = re.sub(r"^(?:and|&)\s+", "", pieces[-1], flags=re.IGNORECASE)
        # "2019 and 2018": an "and" between amounts separates them; between words it may be part of a name
        last = re.split(r"\s+(?:and|&)\s+", pieces[-1])
        if len(last) > 1 and all(_whole_amount(p) for p in last):
            pieces[-1:] = last
    return [p.rstrip(".").strip() for p in pieces if p.rstrip(".").strip()]


def parse_prediction(answer: str, *, context: str = "", answer_type: str = "span") -> tuple[list[str], str]:
    """A model's short answer as (spans, scale) for :func:`score_answer`.

    A lone amount ("$1.2 million", "(0.9)", "12.5%", "3.4bn") is its number and scale. Otherwise, for a question
    whose answer is a number (``answer_type`` arithmetic or count) the last amount in the answer is taken; for the
    others the answer is text, split into spans (at commas too for a multi-span question). A bare number with no
    scale takes the scale written after that same number in ``context`` (the answer's full text), when it has one.
    """
    text = " ".join(_MARKUP.sub("", answer or "").split()).strip()
    if not text:
        return [], ""
    found = _whole_amount(text)
    if found is None and answer_type in NUMERIC_TYPES:
        amounts = list(_AMOUNT.finditer(text))
        found = _amount(amounts[-1]) if amounts else None
    if found is None:
        return _spans(text, answer_type == "multi-span"), ""
    number, scale = found
    if not scale and context:
        for match in _AMOUNT.finditer(" ".join(_MARKUP.sub("", context).split())):
            other, other_scale = _amount(match)
            if other_scale and _same_number(other, number):
                scale = other_scale
                break
    return [number], scale


def _same_number(a: str, b: str) -> bool:
    try:
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)
    except ValueError:
        return False


# --------------------------------------------------------------------------------------------- documents


def _cell(value: Any) -> str:
    return " ".join(str(value if value is not None else "").split()).replace("|", "\\|")


def _header_rows(rows: list[list[str]]) -> int:
    """How many leading rows are column headings: those whose first cell (the row label) is empty, at least one."""
    count = 0
    while count < len(rows) - 1 and not rows[count][0]:
        count += 1
    return max(1, count)


def render_table(rows: Sequence[Sequence[Any]], caption: str) -> str:
    """A report's table as a caption line and a Markdown table: the heading rows merged into one header row (each
    column's headings joined), then every other row as it is, so each row keeps its header."""
    cells = [[_cell(c) for c in row] for row in rows if any(str(c or "").strip() for c in row)]
    if not cells:
        return ""
    width = max(len(r) for r in cells)
    cells = [r + [""] * (width - len(r)) for r in cells]
    heads = _header_rows(cells)
    for row in cells[: heads - 1]:
        named = [col for col in range(1, width) if row[col]]
        if len(named) == 1:  # one heading over every column ("Years Ended September 30,"), wherever it sits
            row[1:] = [row[named[0]]] * (width - 1)
    header = [" ".join(r[col] for r in cells[:heads] if r[col]) for col in range(width)]
    lines = [caption, ""] if caption else []
    lines += ["| " + " | ".join(header) + " |", "|" + " --- |" * width]
    lines += ["| " + " | ".join(row) + " |" for row in cells[heads:]]
    return "\n".join(lines)


# The paragraph that introduces a report's table ("... as follows (in thousands):", "The following table shows
# ..."): in the report the table comes right after it, and it states the table's scale more often than the header.
_INTRODUCES_TABLE = re.compile(
    r":\s*$|\b(?:following|below) table\b|\btable below\b|\bas follows\b|\bthe following\b", re.I
)


def _is_title(text: str) -> bool:
    """A report's heading ("Note 15. Deferred Charges and Other Assets", "Interest Expense"), not a sentence."""
    return len(text.split()) <= 16 and not text.rstrip().endswith((".", ":", ";", ","))


def render_report(report: dict[str, Any], caption: str = "") -> str:
    """A report as one Markdown document in the order a reader meets it: its headings (as Markdown headings) and the
    paragraphs up to the one that introduces the table, the table, then the other paragraphs. TAT-QA keeps the
    paragraphs' order but not the table's place; putting the table under its introduction keeps the scale and the
    description stated there beside its rows (the chunker reads a table's caption and scale from the lines above)."""
    table = report.get("table") or {}
    rows = table.get("table") if isinstance(table, dict) else None
    paragraphs = [p for p in report.get("paragraphs") or [] if isinstance(p, dict) and str(p.get("text", "")).strip()]
    paragraphs.sort(key=lambda p: _order(p.get("order")))
    texts = [" ".join(str(p["text"]).split()) for p in paragraphs]
    intro = next((i for i, text in enumerate(texts) if _INTRODUCES_TABLE.search(text)), None)
    if intro is None:  # no introduction: the table follows the report's leading headings
        intro = -1
        while intro + 1 < len(texts) and _is_title(texts[intro + 1]):
            intro += 1
    parts, level = [], "#"  # the first heading is the report's section, later ones its subsections
    for text in texts[: intro + 1]:
        if _is_title(text):
            text, level = f"{level} {text}", "##"
        parts.append(text)
    if isinstance(rows, list) and rows:
        parts.append(render_table(rows, caption))
    parts += texts[intro + 1 :]
    return "\n\n".join(p for p in parts if p)


def _order(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.inf


# ---------------------------------------------------------------------------------------------- loading


def gold_answers(question: dict[str, Any]) -> tuple[str, ...]:
    """The gold answer as strings: every span of a (multi-)span answer, one number otherwise (a count as an
    integer)."""
    answer, kind = question.get("answer"), question.get("answer_type")
    if kind in ("span", "multi-span"):
        if not isinstance(answer, list) or not answer:
            raise ValueError(f"a {kind} answer must be a non-empty list")
        return tuple(str(a) for a in answer)
    if isinstance(answer, bool) or not isinstance(answer, (int, float, str)) or not str(answer).strip():
        raise ValueError(f"a {kind} answer must be a number")
    if kind == "count":
        return (str(int(float(answer))),)
    return (str(answer),)
