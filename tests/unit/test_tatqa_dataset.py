"""The ``tatqa`` data set kind: loading, reports rendered as documents, the stratified sample, the labels' way to the
scorers and the report's breakdown. The reports here are made up in the TAT-QA format; the real dev set (when
``../shared/data`` is present) checks the counts."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conclave.workflows.evaluation.datasets import load_dataset, select_items
from conclave.workflows.evaluation.knowledge import collection_for, passages_of
from conclave.workflows.evaluation.records import EvalSample
from conclave.workflows.evaluation.report import render_markdown, summarize

from conclave.errors import ConfigError
from conclave.settings import load_settings


def question(uid: str, text: str, answer: Any, kind: str, source: str = "table", scale: str = "") -> dict[str, Any]:
    return {
        "uid": uid,
        "order": 1,
        "question": text,
        "answer": answer,
        "derivation": "",
        "answer_type": kind,
        "answer_from": source,
        "rel_paragraphs": ["1"],
        "req_comparison": False,
        "scale": scale,
    }


def report(uid: str, rows: list[list[str]], paragraphs: list[str], questions: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "table": {"uid": uid, "table": rows},
        "paragraphs": [{"uid": f"{uid}-p{i}", "order": i, "text": t} for i, t in enumerate(paragraphs, 1)],
        "questions": questions,
    }


ACME = report(
    "acme-2019",
    [
        ["", "", "Years Ended December 31,", ""],
        ["", "2019", "2018", "2017"],
        ["Product revenue", "$ 1,452.4", "$ 1,146.2", "$ 1,036.9"],
        ["Service | support", "44.1", "(56.7)", "70.8"],
    ],
    ["Acme sells anvils and rockets.", "The table shows revenue by type (in millions):"],
    [
        question("acme-q1", "What was the product revenue in 2019?", ["$ 1,452.4"], "span", "table", "million"),
        question(
            "acme-q2",
            "What was the change in product revenue from 2018 to 2019?",
            306.2,
            "arithmetic",
            "table",
            "million",
        ),
        question("acme-q3", "What does Acme sell?", ["anvils", "rockets"], "multi-span", "text"),
    ],
)
GLOBEX = report(
    "globex-2019",
    [["Headcount", "2019", "2018"], ["Engineers", "120", "100"], ["Sales staff", "30", "25"]],
    ["Globex hires engineers every year."],
    [
        question("globex-q1", "How many kinds of staff are there?", "2", "count"),
        question(
            "globex-q2", "What was the percentage change in engineers?", 20, "arithmetic", "table-text", "percent"
        ),
    ],
)


def write_tatqa(path: Path, reports: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps(reports), encoding="utf-8")
    return path


def test_questions_become_items_with_labels_scope_and_gold(tmp_path: Path) -> None:
    data = load_dataset(f"tatqa:{write_tatqa(tmp_path / 'dev.json', [ACME, GLOBEX])}")
    assert [i.id for i in data.items] == ["acme-q1", "acme-q2", "acme-q3", "globex-q1", "globex-q2"]
    change = data.items[1]
    assert change.answers == ("306.2",) and change.answer_kind == "number"
    assert change.labels == {"answer_type": "arithmetic", "answer_from": "table", "scale": "million"}
    assert change.scope == "acme-2019" and change.gold_ids == ("acme-2019",)
    assert data.items[2].answers == ("anvils", "rockets")  # every span of a multi-span answer
    assert data.items[3].answers == ("2",) and data.items[3].answer_kind == "number"
    assert data.stratify_by == "answer_type"
    assert [(c.id, c.source, c.chunked) for c in data.contexts] == [
        ("acme-2019", "acme-2019", True),
        ("globex-2019", "globex-2019", True),
    ]


def test_a_report_renders_its_table_under_the_paragraph_that_introduces_it(tmp_path: Path) -> None:
    data = load_dataset(f"tatqa:{write_tatqa(tmp_path / 'dev.json', [ACME])}")
    lines = data.contexts[0].text.splitlines()
    # The paragraphs up to the one that introduces the table come first, then the table (no made-up caption).
    assert lines[:4] == ["Acme sells anvils and rockets.", "", "The table shows revenue by type (in millions):", ""]
    # The two heading rows are one header row; the heading that spans the years names every year's column.
    assert lines[4] == (
        "|  | Years Ended December 31, 2019 | Years Ended December 31, 2018 | Years Ended December 31, 2017 |"
    )
    assert lines[5] == "| --- | --- | --- | --- |"
    assert lines[6] == "| Product revenue | $ 1,452.4 | $ 1,146.2 | $ 1,036.9 |"
    assert lines[7] == "| Service \\| support | 44.1 | (56.7) | 70.8 |"  # a pipe in a cell cannot split the row


def test_without_an_introduction_the_table_follows_the_reports_headings(tmp_path: Path) -> None:
    notes = report(
        "notes-2019",
        [["", "2019", "2018"], ["Raw materials", "23,363", "25,746"]],
        [
            "NOTES TO FINANCIAL STATEMENTS (in thousands, except per share data)",
            "NOTE 4 — Inventories",
            "Inventories are stated at the lower of cost and net realisable value.",
        ],
        [question("notes-q1", "What were raw materials in 2019?", ["23,363"], "span", "table", "thousand")],
    )
    data = load_dataset(f"tatqa:{write_tatqa(tmp_path / 'dev.json', [notes])}")
    text = data.contexts[0].text
    assert text.startswith("# NOTES TO FINANCIAL STATEMENTS (in thousands, except per share data)\n\n## NOTE 4")
    assert text.index("| Raw materials |") < text.index("Inventories are stated")
    # Ingested, every chunk of the table carries the scale its report states in a heading above it.
    from conclave.tools.chunking import Document, split_document

    chunks = split_document(Document(text=text, kind="markdown", title="notes"), 1000, 100)
    tables = [c for c in chunks if c.meta.get("is_table")]
    assert tables and all("(in thousands" in c.text.splitlines()[0] for c in tables)


def test_a_malformed_question_is_a_located_problem_and_the_rest_load(tmp_path: Path) -> None:
    broken = json.loads(json.dumps(GLOBEX))
    broken["questions"][0]["answer_type"] = "guess"
    broken["questions"][1]["scale"] = "dozens"
    data = load_dataset(f"tatqa:{write_tatqa(tmp_path / 'dev.json', [ACME, broken])}")
    assert len(data.items) == 3
    assert [str(p) for p in data.problems] == [
        "line 0: [1].questions[0]: answer_type must be one of arithmetic, span, multi-span, count (got 'guess')",
        "line 0: [1].questions[1]: scale must be one of '', 'thousand', 'million', 'billion', 'percent' (got 'dozens')",
    ]
    with pytest.raises(ConfigError, match="2 malformed record"):
        load_dataset(f"tatqa:{tmp_path / 'dev.json'}", strict=True)


def test_a_file_that_is_not_a_list_of_reports_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "dev.json"
    path.write_text(json.dumps({"data": []}), encoding="utf-8")
    with pytest.raises(ConfigError, match="not a list of reports"):
        load_dataset(f"tatqa:{path}")


def many_reports(counts: dict[str, int]) -> list[dict[str, Any]]:
    """One report per question, ``counts`` questions of each answer type."""
    reports = []
    for kind, n in counts.items():
        for i in range(n):
            answer = ["x"] if kind in ("span", "multi-span") else 1
            reports.append(
                report(f"{kind}-{i}", [["", "2019"], ["a", "1"]], [], [question(f"{kind}-{i}", "q?", answer, kind)])
            )
    return reports


def test_limit_draws_a_deterministic_sample_stratified_by_answer_type(tmp_path: Path) -> None:
    counts = {"arithmetic": 40, "span": 40, "multi-span": 16, "count": 4}
    data = load_dataset(f"tatqa:{write_tatqa(tmp_path / 'dev.json', many_reports(counts))}")

    def sample(**kwargs: Any) -> list[str]:
        return [i.id for i in select_items(data.items, stratify_by=data.stratify_by, **kwargs)]

    first = sample(limit=25)
    assert first == sample(limit=25), "the same --limit draws the same items"
    kinds = Counter(i.split("-")[0] if not i.startswith("multi") else "multi-span" for i in first)
    assert kinds == {"arithmetic": 10, "span": 10, "multi-span": 4, "count": 1}
    assert first != [i.id for i in data.items[:25]], "not the file's first items"
    other = sample(limit=25, seed=7)
    assert other != first and Counter(x.split("-")[0] for x in other) == Counter(x.split("-")[0] for x in first)
    # Held-out items (--skip) follow on from the sample and keep the proportions as well.
    rest = sample(limit=25, skip=25)
    assert not set(rest) & set(first)
    assert Counter(x.split("-")[0] for x in rest)["count"] == 1
    # Without --limit, --skip or --seed a run takes every item in the file's order.
    assert sample() == [i.id for i in data.items]


def test_the_real_dev_set_loads_and_samples_in_proportion(shared_data: Path) -> None:
    path = shared_data / "tatqa" / "tatqa_dataset_dev.json"
    if not path.is_file():
        pytest.skip(f"{path} is not there")
    data = load_dataset(f"tatqa:{path}")
    assert (len(data.items), len(data.contexts), data.problems) == (1668, 278, [])
    kinds = Counter(i.labels["answer_type"] for i in data.items)
    assert kinds == {"arithmetic": 718, "span": 701, "multi-span": 217, "count": 32}
    sample = select_items(data.items, limit=100, stratify_by=data.stratify_by)
    drawn = Counter(i.labels["answer_type"] for i in sample)
    for kind, n in kinds.items():
        assert abs(drawn[kind] - 100 * n / 1668) <= 1, (kind, drawn)
    assert all("\n| --- |" in c.text for c in data.contexts)


def test_reports_become_chunked_passages_that_carry_their_report_as_source(tmp_path: Path) -> None:
    data = load_dataset(f"tatqa:{write_tatqa(tmp_path / 'dev.json', [ACME, GLOBEX])}")
    passages = passages_of(data, load_settings())
    assert {p.metadata["source"] for p in passages} == {"acme-2019", "globex-2019"}
    assert all(p.id.startswith(f"{p.metadata['context_id']}#") for p in passages)
    acme = "\n".join(p.text for p in passages if p.metadata["source"] == "acme-2019")
    assert "| Product revenue | $ 1,452.4 |" in acme and "Acme sells anvils" in acme
    # Chunking is part of the collection's identity: other chunks, another collection.
    small = passages_of(data, load_settings(chunk_size=120, chunk_overlap=0))
    assert collection_for(data, small) != collection_for(data, passages)


def sample_record(item: str, method: str, labels: dict[str, str], em: float) -> EvalSample:
    return EvalSample(
        key=f"{item}|{method}|m",
        item_id=item,
        method=method,
        model="m",
        labels=labels,
        correct=em == 1.0,
        scores={"tatqa_em": {"value": em, "passed": em == 1.0}, "tatqa_f1": {"value": em, "passed": em == 1.0}},
    )


def test_the_summary_and_report_break_scores_down_by_answer_type_and_source() -> None:
    table = {"answer_type": "arithmetic", "answer_from": "table", "scale": "million"}
    text = {"answer_type": "span", "answer_from": "text", "scale": ""}
    both = {"answer_type": "arithmetic", "answer_from": "table-text", "scale": "percent"}
    records = [
        sample_record("a", "cot", table, 1.0),
        sample_record("b", "cot", table, 0.0),
        sample_record("c", "cot", text, 1.0),
        sample_record("d", "cot", both, 0.0),
    ]
    summary = summarize(records)
    by = summary["cells"][0]["breakdown"]
    assert by["answer_type"]["arithmetic"] == {
        "items": 3,
        "accuracy": round(1 / 3, 4),
        "scores": {"tatqa_em": round(1 / 3, 4), "tatqa_f1": round(1 / 3, 4)},
    }
    assert by["answer_type"]["span"]["accuracy"] == 1.0
    assert {k: v["items"] for k, v in by["answer_from"].items()} == {"table": 2, "table-text": 1, "text": 1}
    markdown = render_markdown(summary)
    assert "## By answer_type" in markdown and "## By answer_from" in markdown
    assert "| cot | m | table-text | 1 | 0.0% | 0.000 | 0.000 |" in markdown
    # Data sets without labels get no breakdown.
    plain = EvalSample(key="x|cot|m", item_id="x", method="cot", model="m")
    assert "breakdown" not in summarize([plain])["cells"][0]


def test_tatqa_asks_for_the_passages_own_words_and_a_tables_scale(tmp_path: Path) -> None:
    from conclave.workflows.answers import SHORT_ANSWER, answer_instruction

    from conclave.events import Passage

    data = load_dataset(f"tatqa:{write_tatqa(tmp_path / 'dev.json', [ACME])}")
    assert data.answer_style == "span"
    prose = Passage("p1", "notes.md", "Acme sells anvils and rockets.", 1.0)
    table = Passage("t1", "acme", "Table: Revenue by type (in millions)\n\n| | 2019 |\n| Product | 1,452.4 |", 1.0)
    assert answer_instruction([prose]) == SHORT_ANSWER
    assert "in the passages' own words, in full" in answer_instruction([prose], "span")
    assert '"1,250 thousand", not "1,250"' in answer_instruction([prose, table])
    unscaled = Passage("t2", "acme", "Table: Headcount\n\n| | 2019 |\n| Engineers | 120 |", 1.0)
    assert answer_instruction([unscaled]) == SHORT_ANSWER
