"""Issue 17 §4: a report you can drill into.

``report.md``'s tables parse as Markdown tables (markdown-it-py, GFM tables), every row with the header's cell count;
``report.html`` opens each item to its full question, gold, answer, scorer detail and trace, filters to errors or
one method without a script, and escapes everything that came from ``items.jsonl``; ``conclave view`` opens it.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from conclave.cli.main import app
from conclave.workflows.evaluation import run_eval
from conclave.workflows.evaluation.report import render_html, render_markdown, summarize
from markdown_it import MarkdownIt
from typer.testing import CliRunner

from conclave.errors import ConfigError
from conclave.settings import load_settings
from tests.unit.test_harness import Factory, config, write_gsm8k

LONG_QUESTION = (
    "A pen costs 2 dollars. " * 20 + "<script>alert('pwned')</script> How much do 6 pens cost, "
    "if each costs <b>2</b> & nothing else? The end of the question is here."
)


def record(
    method: str, model: str, item: str, *, correct: bool | None, ok: bool = True, **extra: Any
) -> dict[str, Any]:
    base: dict[str, Any] = {
        "key": f"{item}|{method}|{model}",
        "item_id": item,
        "method": method,
        "model": model,
        "question": f"question {item}",
        "gold": ["12"],
        "answer": "Answer: 12",
        "value": "12",
        "correct": correct,
        "scores": {
            "numeric": {"value": 1.0 if correct else 0.0, "passed": correct, "detail": "12"},
            "f1": {"value": 0.5, "passed": False},
        },
        "latency": 1.25,
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "llm_calls": 1,
        "tool_calls": 0,
        "replans": 0,
        "critic_rounds": 0,
        "ok": ok,
        "outcome": "answered" if ok else "no answer",
        "error": None if ok else "no answer: x",
        "trace": [],
    }
    return {**base, **extra}


def drill_trace() -> list[dict[str, Any]]:
    return [
        {"kind": "run_started", "question": LONG_QUESTION, "method": "coa", "models": {"reasoner": "openai/m"}},
        {"kind": "plan", "subquestions": [{"question": "What do 6 pens cost?", "needs": "calculation"}]},
        {
            "kind": "chain",
            "text": "6 pens at 2 dollars [2 * 6 = y1] <img src=x onerror=alert(1)>",
            "form": "text",
            "attempt": 0,
            "sample": 0,
        },
        {"kind": "replan", "errors": ["y9 is not defined </li><script>bad()</script>"], "attempt": 0, "sample": 0},
        {"kind": "step_started", "step_id": "y1", "tool": "calculator", "args": {"expression": "2 * 6"}, "sample": 0},
        {
            "kind": "step_finished",
            "step_id": "y1",
            "tool": "calculator",
            "status": "ok",
            "value": "12",
            "started": 1.0,
            "ended": 1.004,
            "sample": 0,
        },
        {
            "kind": "tool_call",
            "tool": "search_knowledge",
            "args": {"query": "pen prices"},
            "result": "1. [abc] pens",
            "is_error": False,
        },
        {"kind": "critique", "verdict": "reject", "reasons": ["step y2 failed: timeout"], "round": 0},
        {
            "kind": "run_finished",
            "answer": "",
            "seconds": 2.5,
            "usage": {},
            "ok": False,
            "reason": "no answer: step y2 failed: timeout",
        },
    ]


def records() -> list[dict[str, Any]]:
    hostile = record(
        "coa",
        "openai/m|x",
        "q2",
        correct=False,
        ok=False,
        question=LONG_QUESTION,
        gold=["12", "twelve & <i>12</i>"],
        answer="I could not <b>build</b> a chain",
        value=None,
        scores={"numeric": {"value": 0.0, "passed": False, "detail": "no number in the answer"}},
        error="no answer: step y2 failed: timeout",
        trace=drill_trace(),
    )
    return [
        record("cot", "openai/m|x", "q1", correct=True),
        record("cot", "openai/m|x", "q2", correct=False),
        record("coa", "openai/m|x", "q1", correct=True),
        hostile,
    ]


# -- report.md --------------------------------------------------------------------------------------------------


def md_tables(markdown: str) -> list[list[list[str]]]:
    """Every table markdown-it-py (GFM tables on) finds: rows of cell texts, the header row first."""
    tokens = MarkdownIt("commonmark").enable("table").parse(markdown)
    tables: list[list[list[str]]] = []
    row: list[str] | None = None
    for i, token in enumerate(tokens):
        if token.type == "table_open":
            tables.append([])
        elif token.type == "tr_open":
            row = []
        elif token.type in ("th_open", "td_open"):
            inline = tokens[i + 1]
            assert row is not None
            row.append(inline.content if inline.type == "inline" else "")
        elif token.type == "tr_close":
            assert row is not None
            tables[-1].append(row)
    return tables


def test_report_md_tables_parse_with_every_row_as_wide_as_its_header() -> None:
    summary = summarize(records(), run_id="eval-x")
    markdown = render_markdown(summary)
    tables = md_tables(markdown)
    assert len(tables) == 2, markdown  # the main table and the paired comparisons (the main one used to not parse)
    main, comparisons = tables
    header = main[0]
    assert header[:5] == ["method", "model", "accuracy", "95% CI", "n"] and header[5:7] == ["numeric", "f1"]
    assert header[-1] == "failed" and len(header) == 15 + 2
    assert len(main) == 1 + 2  # header + one row per (method, model) cell
    assert all(len(row) == len(header) for row in main), main
    coa = next(row for row in main if row[0] == "coa")
    assert coa[1] == "openai/m|x" and coa[-1] == "1"  # the pipe in the model spec did not split the cell
    assert all(len(row) == len(comparisons[0]) == 7 for row in comparisons)
    # The same check without a parser: GFM needs the delimiter row to have the header's cell count.
    lines = [line for line in markdown.splitlines() if line.startswith("| method")]
    delimiter = markdown.splitlines()[markdown.splitlines().index(lines[0]) + 1]
    assert delimiter.count("---") == len(header)


# -- report.html ------------------------------------------------------------------------------------------------


class Page(HTMLParser):
    """Tags and text of a page, and for each item (``<details class="item ...">``) its classes and text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.items: list[dict[str, Any]] = []
        self.depth = 0
        self.inputs: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        attributes = dict(attrs)
        if tag == "input":
            self.inputs.append(attributes)
        if tag == "details":
            if self.depth == 0 and "item" in (attributes.get("class") or "").split():
                self.items.append({"classes": (attributes.get("class") or "").split(), "text": ""})
                self.depth = 1
            elif self.depth:
                self.depth += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "details" and self.depth:
            self.depth -= 1

    def handle_data(self, data: str) -> None:
        if self.depth:
            self.items[-1]["text"] += data


def parse(page: str) -> Page:
    parser = Page()
    parser.feed(page)
    parser.close()
    return parser


def test_report_html_items_open_to_the_full_question_answer_scores_and_trace() -> None:
    recs = records()
    page = render_html(summarize(recs, run_id="eval-x"), recs)
    parsed = parse(page)
    assert len(parsed.items) == len(recs)
    item = parsed.items[-1]
    text = item["text"]
    assert LONG_QUESTION in text  # whole, not cut at 200 characters
    assert "twelve & <i>12</i>" in text and "I could not <b>build</b> a chain" in text
    assert "no number in the answer" in text  # the scorer's explanation
    assert "6 pens at 2 dollars [2 * 6 = y1]" in text  # the chain
    assert "calculator(expression=2 * 6) → 12" in text  # a step: its tool call and value
    assert "search_knowledge(query=pen prices) → 1. [abc] pens" in text
    assert "Critic: reject" in text and "step y2 failed: timeout" in text
    assert "y9 is not defined" in text and "No answer" in text
    assert {"wrong", "failed", "m1"} <= set(item["classes"])
    assert "wrong" not in parsed.items[0]["classes"] and "failed" not in parsed.items[0]["classes"]


def test_report_html_escapes_everything_from_items_jsonl() -> None:
    recs = records()
    page = render_html(summarize(recs, run_id="eval-x"), recs)
    parsed = parse(page)
    assert "script" not in parsed.tags and "img" not in parsed.tags and "i" not in parsed.tags
    assert "<script" not in page and "onerror=alert" not in page.replace("onerror=alert(1)&gt;", "")
    assert "&lt;script&gt;alert(&#x27;pwned&#x27;)&lt;/script&gt;" in page
    assert "&lt;/li&gt;&lt;script&gt;bad()&lt;/script&gt;" in page
    # Still one self-contained file: nothing fetched from anywhere.
    assert "https://" not in page and "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_report_html_filters_to_errors_or_one_method_without_a_script() -> None:
    recs = records()
    page = render_html(summarize(recs, run_id="eval-x"), recs)
    ids = {i.get("id") for i in parse(page).inputs}
    assert {"show-all", "show-errors", "show-failed", "method-all", "method-0", "method-1"} <= ids
    assert "#show-errors:checked~.items .item:not(.wrong):not(.failed)," in page
    assert "#show-failed:checked~.items .item:not(.failed){display:none}" in page
    assert "#method-1:checked~.items .item:not(.m1){display:none}" in page
    assert '<label for="method-1">coa</label>' in page


def test_report_html_items_survive_damaged_records() -> None:
    from conclave.workflows.evaluation.report import _items_html

    damaged = record(
        "cot",
        "m",
        "q9",
        correct=None,
        latency="slow",
        prompt_tokens="many",
        scores="none",
        gold=None,
        trace=[
            "not an event",
            {"kind": "step_finished", "step_id": ["y1"], "started": "a"},
            {"kind": "plan", "subquestions": "x"},
            {"kind": "unknown"},
        ],
    )
    [item] = parse(_items_html([damaged])[1]).items
    assert "question q9" in item["text"]


# -- conclave view ---------------------------------------------------------------------------------------------

cli = CliRunner()


async def _eval_run(tmp_path: Path) -> Any:
    dataset = f"gsm8k:{write_gsm8k(tmp_path / 'dev.jsonl')}"
    return await run_eval(
        config(dataset, methods=["cot"]), load_settings(model="openai/scripted"), client_factory=Factory()
    )


async def test_view_prints_the_report_and_opens_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = await _eval_run(tmp_path)
    opened: list[str] = []
    monkeypatch.setattr("webbrowser.open", lambda url, *a, **k: opened.append(url) or True)
    shown = cli.invoke(app, ["view", result.run_id])
    assert shown.exit_code == 0, shown.output
    report = result.run_dir / "report.html"
    assert shown.stdout.strip() == str(report)
    assert opened == [report.resolve().as_uri()]
    by_path = cli.invoke(app, ["view", str(result.run_dir), "--no-open"])
    assert by_path.exit_code == 0 and by_path.stdout.strip() == str(report) and len(opened) == 1


async def test_view_rebuilds_a_missing_report_from_items_jsonl(tmp_path: Path) -> None:
    result = await _eval_run(tmp_path)
    report = result.run_dir / "report.html"
    report.unlink()
    shown = cli.invoke(app, ["view", result.run_id, "--no-open"])
    assert shown.exit_code == 0, shown.output
    assert report.is_file() and report.read_text().count('<details class="item') == 4


def test_view_of_an_unknown_run_is_a_config_error() -> None:
    shown = cli.invoke(app, ["view", "eval-nope", "--no-open"])
    assert isinstance(shown.exception, ConfigError) and shown.exception.exit_code == 2
    assert "no run 'eval-nope'" in shown.exception.message and shown.exception.hint


async def test_view_serves_only_the_report_on_loopback(tmp_path: Path) -> None:
    import threading

    from conclave.cli.evaluate import report_server

    result = await _eval_run(tmp_path)
    report = result.run_dir / "report.html"
    server = report_server(report)
    host, port = server.server_address[:2]
    assert host == "127.0.0.1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:  # noqa: S310 - loopback
            assert response.read() == report.read_bytes()
            assert "default-src 'none'" in response.headers["Content-Security-Policy"]
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/items.jsonl", timeout=5)  # noqa: S310 - loopback
        assert info.value.code == 404
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
