"""Data sets for evaluation: GSM8K, SVAMP, SQuAD, HotpotQA, TAT-QA (the formats in ``shared/data``) and generic JSONL.

A data set is named ``KIND:PATH``. Every loader returns the same :class:`Dataset`: items with a question, the gold
answers and the ids of the gold contexts, plus every context to ingest (SQuAD, HotpotQA, TAT-QA, JSONL with
``contexts``), so retrieval is part of what is scored. Malformed lines are collected with their line numbers; the valid ones still run
unless ``strict``.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from conclave.workflows.evaluation.tatqa import ANSWER_TYPES, NUMERIC_TYPES, SCALES, gold_answers, render_report

from conclave.errors import ConfigError
from conclave.nesting import loads

__all__ = [
    "DATASET_KINDS",
    "Context",
    "Dataset",
    "Item",
    "LineProblem",
    "load_dataset",
    "parse_dataset_spec",
    "select_items",
    "stratified_order",
]

AnswerKind = Literal["number", "text"]
_GSM8K_FINAL = re.compile(r"####\s*(.+?)\s*$", re.MULTILINE)
_NUMBER_ONLY = re.compile(r"^[-+−]?\$?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?%?$|^[-+−]?\.\d+$")


@dataclass(frozen=True)
class Context:
    """A passage the harness ingests; ``id`` is what gold ids and retrieved passage ids are compared with."""

    id: str
    text: str
    title: str = ""
    source: str = ""
    """The ``source`` its passages carry in the store (default: the data set's name); a scoped search filters on it."""
    chunked: bool = False
    """A whole Markdown document (a TAT-QA report), cut into chunks like an ingested file, not one passage."""


@dataclass(frozen=True)
class Item:
    """One question with its gold answers (any of them counts, unless its scorer says otherwise) and gold context
    ids."""

    id: str
    question: str
    answers: tuple[str, ...]
    answer_kind: AnswerKind = "text"
    gold_ids: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    """What the scorers and the report's breakdown read besides the answers (TAT-QA: answer_type, answer_from,
    scale)."""
    scope: str | None = None
    """The source of the one document the question is asked of (TAT-QA: its report); a scoped run searches only
    that document's passages."""


@dataclass(frozen=True)
class LineProblem:
    """A malformed record: where it is and what is wrong."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass
class Dataset:
    """Items, the contexts to ingest, and the records that could not be read."""

    kind: str
    path: Path
    items: list[Item]
    contexts: list[Context] = field(default_factory=list)
    problems: list[LineProblem] = field(default_factory=list)
    stratify_by: str | None = None
    """The label a sample keeps in proportion (TAT-QA: answer_type), see :func:`select_items`."""
    answer_style: str = "short"
    """How answers are asked for (``answers.ANSWER_STYLES``): TAT-QA scores whole clauses, so its items ask for the
    passages' own words in full."""

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.path.name}"


class _Bad(ValueError):
    """A record that is not in the expected shape (message says what was expected)."""


def _jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed JSON or _Bad) for every non-blank line."""
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield number, loads(line)
            except json.JSONDecodeError as exc:
                yield number, _Bad(f"not valid JSON ({exc.msg} at column {exc.colno})")


def _require(record: Any, key: str, kind: type | tuple[type, ...] = str) -> Any:
    if not isinstance(record, dict):
        raise _Bad("expected a JSON object")
    if key not in record:
        raise _Bad(f"missing field {key!r}")
    value = record[key]
    if not isinstance(value, kind) or (isinstance(value, str) and not value.strip()):
        expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise _Bad(f"field {key!r} must be a non-empty {expected}")
    return value


def format_number(value: float | int | str) -> str:
    """``46.0`` -> ``46``; other numbers unchanged (gold answers are compared as numbers anyway)."""
    number = float(value)
    return str(int(number)) if number.is_integer() else repr(number)


def gsm8k_gold(answer: str) -> str:
    """The final number of a GSM8K solution (after ``####``), commas removed."""
    found = _GSM8K_FINAL.findall(answer)
    if not found:
        raise _Bad("the answer has no '#### N' final line")
    return found[-1].replace(",", "").replace("$", "").strip()


# ------------------------------------------------------------------------------------------------ loaders


def _load_gsm8k(path: Path) -> Dataset:
    data = Dataset("gsm8k", path, [])
    for line, record in _jsonl(path):
        try:
            if isinstance(record, _Bad):
                raise record
            question = _require(record, "question")
            gold = gsm8k_gold(_require(record, "answer"))
            item_id = str(record.get("id") or f"gsm8k-line-{line}")
            data.items.append(Item(item_id, question.strip(), (gold,), "number"))
        except _Bad as exc:
            data.problems.append(LineProblem(line, str(exc)))
    return data


def _load_svamp(path: Path) -> Dataset:
    data = Dataset("svamp", path, [])
    for line, record in _jsonl(path):
        try:
            if isinstance(record, _Bad):
                raise record
            body = _require(record, "Body")
            question = _require(record, "Question")
            answer = _require(record, "Answer", (int, float))
            item_id = str(record.get("ID") or f"svamp-line-{line}")
            text = f"{body.strip()} {question.strip()}"
            data.items.append(Item(item_id, text, (format_number(answer),), "number"))
        except _Bad as exc:
            data.problems.append(LineProblem(line, str(exc)))
    return data


def _load_squad(path: Path) -> Dataset:
    data = Dataset("squad", path, [])
    try:
        root = loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})",
            hint="give the official SQuAD v1.1 JSON file",
        ) from exc
    articles = root.get("data") if isinstance(root, dict) else None
    if not isinstance(articles, list):
        raise ConfigError(f"{path} has no 'data' list", hint="give the official SQuAD v1.1 JSON file")
    for a_index, article in enumerate(articles):
        title = str(article.get("title", f"article-{a_index}")) if isinstance(article, dict) else ""
        paragraphs = article.get("paragraphs", []) if isinstance(article, dict) else []
        for p_index, paragraph in enumerate(paragraphs):
            # SQuAD is one JSON document: problems are located by article and paragraph, reported as "line" 0.
            where = f"data[{a_index}].paragraphs[{p_index}]"
            try:
                context_text = _require(paragraph, "context")
            except _Bad as exc:
                data.problems.append(LineProblem(0, f"{where}: {exc}"))
                continue
            context = Context(f"{title}#{p_index}", context_text, title.replace("_", " "))
            data.contexts.append(context)
            for q_index, qa in enumerate(paragraph.get("qas", [])):
                try:
                    question = _require(qa, "question")
                    answers = tuple(
                        dict.fromkeys(
                            a["text"].strip() for a in qa.get("answers", []) if isinstance(a, dict) and a.get("text")
                        )
                    )
                    if not answers:
                        raise _Bad("no answers")
                    item_id = str(qa.get("id") or f"{context.id}-q{q_index}")
                    data.items.append(Item(item_id, question.strip(), answers, "text", (context.id,)))
                except _Bad as exc:
                    data.problems.append(LineProblem(0, f"{where}.qas[{q_index}]: {exc}"))
    return data


def _hotpot_answers(record: dict[str, Any]) -> tuple[str, ...]:
    out: list[str] = []
    for obj in record.get("answers_objects") or []:
        if not isinstance(obj, dict):
            continue
        out.extend(str(s).strip() for s in obj.get("spans") or [] if str(s).strip())
        if obj.get("number"):
            out.append(str(obj["number"]).strip())
        date = obj.get("date") or {}
        if isinstance(date, dict) and any(date.values()):
            out.append(" ".join(str(date[k]) for k in ("day", "month", "year") if date.get(k)))
    return tuple(dict.fromkeys(out))


def _load_hotpotqa(path: Path) -> Dataset:
    data = Dataset("hotpotqa", path, [])
    seen: dict[str, Context] = {}
    for line, record in _jsonl(path):
        try:
            if isinstance(record, _Bad):
                raise record
            question = _require(record, "question_text")
            contexts = _require(record, "contexts", list)
            answers = _hotpot_answers(record)
            if not answers:
                raise _Bad("no answer in 'answers_objects'")
            gold: list[str] = []
            for ctx in contexts:
                title = _require(ctx, "title")
                text = _require(ctx, "paragraph_text")
                # The collection is deduplicated by title, so the title is the passage id.
                seen.setdefault(title, Context(title, text, title))
                if ctx.get("is_supporting"):
                    gold.append(title)
            item_id = str(record.get("question_id") or f"hotpotqa-line-{line}")
            data.items.append(Item(item_id, question.strip(), answers, "text", tuple(dict.fromkeys(gold))))
        except _Bad as exc:
            data.problems.append(LineProblem(line, str(exc)))
    data.contexts = list(seen.values())
    return data


def _jsonl_contexts(raw: Any, item_id: str) -> list[Context]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise _Bad("field 'contexts' must be a list of strings or {id, text, title} objects")
    out = []
    for index, entry in enumerate(raw):
        if isinstance(entry, str) and entry.strip():
            out.append(Context(f"{item_id}#{index}", entry))
        elif isinstance(entry, dict) and isinstance(entry.get("text"), str) and entry["text"].strip():
            out.append(
                Context(str(entry.get("id") or f"{item_id}#{index}"), entry["text"], str(entry.get("title", "")))
            )
        else:
            raise _Bad(f"contexts[{index}] must be a non-empty string or an object with 'text'")
    return out


def _load_jsonl(path: Path) -> Dataset:
    data = Dataset("jsonl", path, [])
    seen: dict[str, Context] = {}
    for line, record in _jsonl(path):
        try:
            if isinstance(record, _Bad):
                raise record
            question = _require(record, "question")
            answer = _require(record, "answer", (str, int, float, list))
            answers = tuple(
                str(a).strip() for a in (answer if isinstance(answer, list) else [answer]) if str(a).strip()
            )
            if not answers:
                raise _Bad("field 'answer' is empty")
            item_id = str(record.get("id") or f"line-{line}")
            contexts = _jsonl_contexts(record.get("contexts"), item_id)
            gold_raw = record.get("gold_ids")
            if gold_raw is not None and not (isinstance(gold_raw, list) and all(isinstance(g, str) for g in gold_raw)):
                raise _Bad("field 'gold_ids' must be a list of strings")
            gold = tuple(gold_raw) if gold_raw is not None else tuple(c.id for c in contexts)
            for ctx in contexts:
                seen.setdefault(ctx.id, ctx)
            kind: AnswerKind = "number" if all(_NUMBER_ONLY.match(a) for a in answers) else "text"
            # A record's own "kind" (lookup, explanation, ...) is a label: the report breaks scores down by it.
            labels = {"kind": record["kind"].strip()[:40]} if isinstance(record.get("kind"), str) else {}
            data.items.append(Item(item_id, question.strip(), answers, kind, gold, labels=labels))
        except _Bad as exc:
            data.problems.append(LineProblem(line, str(exc)))
    data.contexts = list(seen.values())
    return data


def _load_tatqa(path: Path) -> Dataset:
    """The TAT-QA JSON (a list of reports, each with its questions) as a :class:`Dataset`; questions that cannot be
    read are problems located by report and question index (the metric and the report's text: ``tatqa.py``)."""
    try:
        root = loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})",
            hint="give the TAT-QA file itself, e.g. tatqa_dataset_dev.json",
        ) from exc
    if not isinstance(root, list):
        raise ConfigError(f"{path} is not a list of reports", hint="give the TAT-QA file, e.g. tatqa_dataset_dev.json")
    data = Dataset("tatqa", path, [], stratify_by="answer_type", answer_style="span")
    for r_index, report in enumerate(root):
        where = f"[{r_index}]"
        table = report.get("table") if isinstance(report, dict) else None
        uid = str(table.get("uid") or "").strip() if isinstance(table, dict) else ""
        if not uid:
            data.problems.append(LineProblem(0, f"{where}: the report has no table uid"))
            continue
        text = render_report(report)
        if not text:
            data.problems.append(LineProblem(0, f"{where}: the report has no table rows or paragraphs"))
            continue
        data.contexts.append(Context(uid, text, f"report {uid[:8]}", source=uid, chunked=True))
        for q_index, question in enumerate(report.get("questions") or []):
            try:
                data.items.append(_tatqa_item(question, uid))
            except ValueError as exc:
                data.problems.append(LineProblem(0, f"{where}.questions[{q_index}]: {exc}"))
    return data


def _tatqa_item(question: Any, report: str) -> Item:
    if not isinstance(question, dict):
        raise ValueError("expected a JSON object")
    text = question.get("question")
    if not isinstance(text, str) or not text.strip():
        raise ValueError("missing field 'question'")
    kind = question.get("answer_type")
    if kind not in ANSWER_TYPES:
        raise ValueError(f"answer_type must be one of {', '.join(ANSWER_TYPES)} (got {kind!r})")
    scale = question.get("scale") or ""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {', '.join(repr(s) for s in SCALES)} (got {scale!r})")
    labels = {"answer_type": kind, "answer_from": str(question.get("answer_from") or "unknown"), "scale": scale}
    return Item(
        str(question.get("uid") or f"{report}-q{question.get('order', '')}"),
        text.strip(),
        gold_answers(question),
        "number" if kind in NUMERIC_TYPES else "text",
        (report,),
        labels=labels,
        scope=report,
    )


_LOADERS: dict[str, Callable[[Path], Dataset]] = {
    "gsm8k": _load_gsm8k,
    "svamp": _load_svamp,
    "squad": _load_squad,
    "hotpotqa": _load_hotpotqa,
    "tatqa": _load_tatqa,
    "jsonl": _load_jsonl,
}
DATASET_KINDS = tuple(_LOADERS)
_SPEC_HINT = f"name it KIND:PATH with KIND one of {', '.join(DATASET_KINDS)}, e.g. gsm8k:data/gsm8k/dev.jsonl"


def parse_dataset_spec(spec: str) -> tuple[str, Path]:
    """``KIND:PATH`` -> (kind, path); ConfigError naming the kinds otherwise."""
    kind, sep, path = (spec or "").partition(":")
    kind = kind.strip().lower()
    if not sep or not path.strip():
        raise ConfigError(f"data set {spec!r} has no kind", hint=_SPEC_HINT)
    if kind not in _LOADERS:
        raise ConfigError(f"unknown data set kind {kind!r}", hint=_SPEC_HINT)
    return kind, Path(path.strip()).expanduser()


def load_dataset(spec: str, *, strict: bool = False) -> Dataset:
    """Load ``KIND:PATH``; malformed records are in ``problems`` (a ConfigError when ``strict`` or none are valid)."""
    kind, path = parse_dataset_spec(spec)
    if not path.exists():
        raise ConfigError(f"data set file not found: {path}", hint="check the path after the KIND: prefix")
    if not path.is_file():
        raise ConfigError(f"data set path is not a file: {path}", hint="give the JSON/JSONL file itself")
    try:
        data = _LOADERS[kind](path)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text", hint="convert it to UTF-8 JSONL") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", hint="check the file's permissions") from exc
    if data.problems and strict:
        shown = "; ".join(str(p) for p in data.problems[:5])
        more = f" (and {len(data.problems) - 5} more)" if len(data.problems) > 5 else ""
        raise ConfigError(
            f"{path}: {len(data.problems)} malformed record(s): {shown}{more}",
            hint="fix those lines, or run without --strict to skip them",
        )
    if not data.items:
        first = f": {data.problems[0]}" if data.problems else ""
        raise ConfigError(
            f"{path} holds no usable {kind} items{first}",
            hint=f"check that the file is in the {kind} format (README, 'Data sets')",
        )
    ids = [item.id for item in data.items]
    if len(set(ids)) != len(ids):
        # Results are keyed by item id (resume, paired comparison): make duplicates unique, deterministically.
        counts: dict[str, int] = {}
        unique = []
        for item in data.items:
            n = counts.get(item.id, 0)
            counts[item.id] = n + 1
            unique.append(item if n == 0 else replace(item, id=f"{item.id}~{n}"))
        data.items = unique
    return data


STRATIFIED_SEED = 0
"""The seed of a stratified sample when none is given: ``--limit N`` alone draws the same items every time."""


def select_items(
    items: list[Item],
    *,
    limit: int | None = None,
    seed: int | None = None,
    skip: int = 0,
    stratify_by: str | None = None,
) -> list[Item]:
    """The first ``limit`` items after the first ``skip`` (held-out items for checking a choice made on the first
    ones), or with a ``seed`` a reproducible random sample of them.

    With ``stratify_by`` (a label, e.g. TAT-QA's answer_type) a sample is drawn stratified, by ``seed`` or
    :data:`STRATIFIED_SEED`: every prefix of the order keeps the label's proportions, so ``limit`` N and ``skip`` N
    both keep them."""
    chosen = list(items)
    if stratify_by is not None and (limit is not None or skip or seed is not None):
        chosen = stratified_order(chosen, stratify_by, STRATIFIED_SEED if seed is None else seed)
    elif seed is not None:
        chosen = random.Random(seed).sample(chosen, len(chosen))
    chosen = chosen[max(0, skip) :]
    if limit is not None:
        chosen = chosen[: max(0, limit)]
    return chosen


def stratified_order(items: list[Item], label: str, seed: int) -> list[Item]:
    """The items shuffled within each stratum (by ``seed``), then interleaved by their relative position in their
    stratum: the i-th of n items ranks at (i + 0.5) / n, so any prefix holds each stratum in proportion."""
    strata: dict[str, list[Item]] = {}
    for item in items:
        strata.setdefault(item.labels.get(label, ""), []).append(item)
    rng = random.Random(seed)
    ranked: list[tuple[float, str, Item]] = []
    for name in sorted(strata):
        members = strata[name]
        rng.shuffle(members)
        ranked += [((i + 0.5) / len(members), name, item) for i, item in enumerate(members)]
    ranked.sort(key=lambda entry: (entry[0], entry[1]))
    return [item for _, _, item in ranked]
