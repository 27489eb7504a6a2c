"""The notes-qa dev set (examples/datasets/notes-qa.jsonl) holds to its own rules, checked against the real files:
every gold answer is taken from the cited text (or, for the arithmetic kinds, computed by the project's calculator
from numbers in the question and the text), and the harness reads every line."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from conclave.tools.calculator import evaluate
from conclave.workflows.evaluation import EvalConfig, run_eval
from conclave.workflows.evaluation.datasets import load_dataset

from conclave.settings import load_settings
from tests.unit.test_harness import Factory

ROOT = Path(__file__).resolve().parents[2]
DATASET = ROOT / "examples" / "datasets" / "notes-qa.jsonl"
SPEC = f"jsonl:{DATASET}"

DOCUMENT_KINDS = ("lookup", "two-hop", "explanation")
ARITHMETIC_KINDS = ("facts-arithmetic", "arithmetic")
KINDS = DOCUMENT_KINDS + ARITHMETIC_KINDS
MIN_ITEMS = 60
MIN_PER_KIND = 10

_NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")


def _items() -> list[dict[str, Any]]:
    lines = DATASET.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


ITEMS = _items() if DATASET.is_file() else []


def _ids(items: list[dict[str, Any]]) -> list[str]:
    return [str(item.get("id")) for item in items]


def _flat(text: str) -> str:
    """Whitespace-normalised text (Markdown wraps its lines anywhere)."""
    return " ".join(text.split())


def _plain(text: str) -> str:
    """What a reader sees: no emphasis or code markup, lower case, single spaces."""
    return _flat(text.replace("**", "").replace("`", "")).lower()


def _golds(item: dict[str, Any]) -> list[str]:
    answer = item["answer"]
    return [str(a) for a in (answer if isinstance(answer, list) else [answer])]


def _numbers(text: str) -> set[Decimal]:
    return {Decimal(n) for n in _NUMBER.findall(_THOUSANDS.sub("", text))}


def _source_text(path: str) -> str:
    return (ROOT / path).read_text(encoding="utf-8")


def _by_kind(*kinds: str) -> list[dict[str, Any]]:
    return [item for item in ITEMS if item.get("kind") in kinds]


def test_the_set_exists_and_every_line_is_a_json_object() -> None:
    assert DATASET.is_file(), f"{DATASET} is missing"
    for number, line in enumerate(DATASET.read_text(encoding="utf-8").splitlines(), start=1):
        assert line.strip(), f"line {number} is blank"
        assert isinstance(json.loads(line), dict), f"line {number} is not a JSON object"


def test_it_has_enough_items_of_every_kind_with_unique_ids() -> None:
    assert len(ITEMS) >= MIN_ITEMS
    ids = _ids(ITEMS)
    assert len(set(ids)) == len(ids), "duplicate ids"
    assert all(re.fullmatch(r"nq-\d{3}", i) for i in ids), ids
    assert {item["kind"] for item in ITEMS} <= set(KINDS)
    for kind in KINDS:
        assert len(_by_kind(kind)) >= MIN_PER_KIND, kind


@pytest.mark.parametrize("item", ITEMS, ids=_ids(ITEMS))
def test_every_item_has_the_documented_fields(item: dict[str, Any]) -> None:
    assert isinstance(item["question"], str) and item["question"].strip()
    assert isinstance(item["source"], list) and all(isinstance(s, str) for s in item["source"])
    assert isinstance(item["evidence"], list) and all(isinstance(e, str) and e.strip() for e in item["evidence"])
    if item["kind"] in ARITHMETIC_KINDS:
        assert isinstance(item["derivation"], str) and item["derivation"].strip()
        assert isinstance(item["answer"], (int, float)) and not isinstance(item["answer"], bool)
    else:
        assert "derivation" not in item
        golds = _golds(item)
        assert golds and all(g.strip() for g in golds)
    if item["kind"] == "arithmetic":
        assert item["source"] == [] and item["evidence"] == [], "arithmetic word problems need no documents"
    else:
        assert item["source"] and item["evidence"], "a question over the documents cites its source and evidence"


@pytest.mark.parametrize("item", ITEMS, ids=_ids(ITEMS))
def test_sources_exist_inside_the_checkout(item: dict[str, Any]) -> None:
    for source in item["source"]:
        path = (ROOT / source).resolve()
        assert path.is_relative_to(ROOT) and path.is_file(), source
        assert source.startswith(("tools/demo_notes/", "docs/")), source


@pytest.mark.parametrize("item", ITEMS, ids=_ids(ITEMS))
def test_evidence_is_quoted_verbatim_from_a_source(item: dict[str, Any]) -> None:
    texts = [_flat(_source_text(s)) for s in item["source"]]
    for evidence in item["evidence"]:
        assert any(_flat(evidence) in text for text in texts), f"not in {item['source']}: {evidence!r}"


@pytest.mark.parametrize("item", _by_kind(*DOCUMENT_KINDS), ids=_ids(_by_kind(*DOCUMENT_KINDS)))
def test_a_gold_answer_is_taken_from_the_evidence(item: dict[str, Any]) -> None:
    evidence = " ".join(_plain(e) for e in item["evidence"])
    found = [g for g in _golds(item) if re.search(rf"(?<!\w){re.escape(_plain(g))}(?!\w)", evidence)]
    assert found, f"none of {_golds(item)} occurs in the evidence"


@pytest.mark.parametrize("item", _by_kind(*ARITHMETIC_KINDS), ids=_ids(_by_kind(*ARITHMETIC_KINDS)))
def test_the_derivation_computes_the_gold_answer(item: dict[str, Any]) -> None:
    result = evaluate(item["derivation"])
    assert result.exact, f"{item['derivation']} is not exact ({result.text})"
    assert result.value == Fraction(str(item["answer"])), f"{item['derivation']} = {result.text}, not {item['answer']}"


@pytest.mark.parametrize("item", _by_kind(*ARITHMETIC_KINDS), ids=_ids(_by_kind(*ARITHMETIC_KINDS)))
def test_the_derivation_uses_only_numbers_from_the_question_or_the_evidence(item: dict[str, Any]) -> None:
    given = _numbers(" ".join([item["question"], *item["evidence"]]))
    foreign = _numbers(item["derivation"]) - given
    assert not foreign, f"{sorted(foreign)} come from neither the question nor the evidence"


def _quoted_examples() -> list[str]:
    """The README's `conclave ask` questions and the agents' prompt examples: a dev set must not reuse them."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.findall(r'conclave ask\b[^"\n]*"([^"\n]+)"', readme)
    for prompt in sorted((ROOT / "agents" / "prompts").glob("*.md")):
        found += re.findall(r"^Example question: (.+)$", prompt.read_text(encoding="utf-8"), re.MULTILINE)
    return [q for q in found if len(q.split()) >= 3]


def _words(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


def test_the_examples_to_avoid_are_found() -> None:
    examples = {_words(q) for q in _quoted_examples()}
    assert _words("What does the Adam optimiser combine?") in examples
    assert any(q.startswith("natalia sold clips") for q in examples)


def test_no_question_repeats_a_readme_or_prompt_example() -> None:
    examples = [_words(q) for q in _quoted_examples()]
    for item in ITEMS:
        question = _words(item["question"])
        assert not [e for e in examples if e in question or question in e], item["id"]


def test_the_harness_loads_every_item_as_written() -> None:
    data = load_dataset(SPEC, strict=True)
    assert not data.problems
    assert [i.id for i in data.items] == _ids(ITEMS)
    for loaded, item in zip(data.items, ITEMS, strict=True):
        assert loaded.question == item["question"]
        assert list(loaded.answers) == [g.strip() for g in _golds(item)]
        if item["kind"] in ARITHMETIC_KINDS:
            assert loaded.answer_kind == "number", item["id"]
        # The kind travels as a label, so the report breaks the scores down by kind.
        assert loaded.labels == {"kind": item["kind"]}, item["id"]


async def test_an_evaluation_scores_the_gold_answers_as_right(conclave_home: Path) -> None:
    """The whole set through the harness (the `conclave eval` path) with a scripted backend that replies with each
    item's first gold answer: every gold answer survives loading and the default scorers."""
    gold = {_words(item["question"]): _golds(item)[0] for item in ITEMS}

    def reply(question: str, _system: str) -> str:
        asked = [g for q, g in gold.items() if q in _words(question)]
        return f"Answer: {asked[0]}" if asked else "Answer: unknown"

    result = await run_eval(
        EvalConfig(dataset=SPEC, methods=["direct"], models=["openai/scripted"], strict=True),
        load_settings(model="openai/scripted"),
        client_factory=Factory({"openai/scripted": reply}),
    )
    [cell] = result.summary["cells"]
    assert cell["scored"] == len(ITEMS)
    wrong = [r.item_id for r in result.records if not r.correct]
    assert not wrong, wrong
