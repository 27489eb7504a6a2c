"""Issue 29, item 8: ``conclave eval compare`` lists the items that flipped (id, question, both answers), not only the
counts, and its help names its arguments; the report's "compared answer" is the one the scorers compared."""

from __future__ import annotations

import json
import re
from pathlib import Path

from conclave.cli.main import app
from conclave.workflows.evaluation.compare import compare_records
from conclave.workflows.evaluation.report import render_html, summarize
from typer.testing import CliRunner

from tests.unit.test_harness_cli import _two_runs
from tests.unit.test_report_drilldown import record

runner = CliRunner()


def test_compare_records_lists_each_flip_with_both_answers() -> None:
    a = [
        record("cot", "m", "i1", correct=True, question="How many pens?", answer="Answer: 12"),
        record("cot", "m", "i2", correct=False, question="How many cups?", answer="Answer: 4"),
        record("cot", "m", "i3", correct=True),
    ]
    b = [
        record("direct", "m", "i1", correct=False, question="How many pens?", answer="Answer: 11"),
        record("direct", "m", "i2", correct=True, question="How many cups?", answer="Answer: 3"),
        record("direct", "m", "i3", correct=True),
    ]
    comparison = compare_records(a, b)
    flips = {flip.item_id: flip for flip in comparison.flips}
    assert set(flips) == {"i1", "i2"}  # i3: right on both sides, not a flip
    assert (flips["i1"].question, flips["i1"].a_answer, flips["i1"].b_answer, flips["i1"].winner) == (
        "How many pens?",
        "Answer: 12",
        "Answer: 11",
        "A",
    )
    assert flips["i2"].winner == "B" and flips["i2"].gold == ["12"]
    assert comparison.to_dict()["flips"][0]["item_id"] == "i1"


async def test_eval_compare_prints_the_items_that_flipped(tmp_path: Path, conclave_home: Path) -> None:
    run_a, run_b = await _two_runs(tmp_path)
    data = json.loads(runner.invoke(app, ["eval", "compare", run_a, run_b, "--json"]).output)
    flipped = data[0]["flips"]
    assert len(flipped) == data[0]["a_only"] + data[0]["b_only"] == 2
    shown = runner.invoke(app, ["eval", "compare", run_a, run_b])
    assert shown.exit_code == 0, shown.output
    for flip in flipped:
        assert flip["item_id"] in shown.output
        assert flip["question"][:40] in shown.output
        for side in ("a", "b"):  # each answer on one line
            assert f"{side.upper()}: {' '.join(flip[f'{side}_answer'].split())}"[:50] in shown.output


def test_eval_compare_help_names_its_arguments() -> None:
    shown = runner.invoke(app, ["eval", "compare", "--help"], env={"COLUMNS": "120", "NO_COLOR": "1"})
    assert shown.exit_code == 0
    usage = next(line for line in shown.output.splitlines() if "Usage:" in line)
    assert "RUN_A" in usage and "RUN_B" in usage and "TEXT" not in usage
    assert "RUN[:METHOD[@MODEL]]" in re.sub(r"\s+", "", shown.output)  # not eaten as Rich markup


def test_report_shows_the_number_the_scorer_compared_when_the_method_has_no_value() -> None:
    # cot gives no value: the numeric scorer took the last number of the answer text (4) and found 4 != 3.
    item = record("cot", "m", "i1", correct=False, answer="She has 2 + 2 = 4 apples.", value=None, gold=["3"])
    item["scores"] = {"numeric": {"value": 0.0, "passed": False, "detail": "4 != 3"}}
    page = render_html(summarize([item]), [item])
    compared = re.search(r"<dt>compared answer</dt><dd>(.*?)</dd>", page)
    assert compared is not None, "the item shows what the scorers compared"
    assert compared.group(1).startswith("4"), compared.group(1)
    assert 'extracted answer</dt><dd><span class="muted">none' not in page


def test_report_summary_table_scrolls_inside_its_box_at_700px() -> None:
    """At a narrow window the wide summary table scrolls in its own box instead of widening the page, and the SVG
    plots shrink to the page's width with their axis labels inside the drawing."""
    item = record("cot", "m", "i1", correct=True)
    page = render_html(summarize([item]), [item])
    assert re.search(r"<div class=.wide.>\s*<table>", page), "the summary table sits in a scrolling box"
    assert re.search(r"\.wide\{[^}]*overflow-x:auto", page)
    assert re.search(r"\.plots svg\{[^}]*max-width:100%", page) and re.search(r"svg\{[^}]*height:auto", page)
