"""Issue 28, item 4: `conclave eval export RUN --format inspect|csv`. A run made by the real harness (scripted
models), exported, and read back by inspect-ai itself (``read_eval_log``) and by the csv module; bad input and the
run-folder rules (no writing through links)."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import pytest
from conclave.cli.main import app
from conclave.workflows.evaluation import run_eval
from conclave.workflows.evaluation.interop import export_run
from typer.testing import CliRunner

from conclave.errors import ConfigError
from conclave.fileio import UnsafePathError
from conclave.settings import Settings, load_settings
from tests.integration.test_cli_errors import assert_clean_error, run_cli
from tests.unit.test_harness import QUESTIONS, Factory, config, write_gsm8k

inspect_log = pytest.importorskip("inspect_ai.log", reason="inspect-ai is the test extra's (pip install -e '.[test]')")

EXPRESSIONS = {"q1": "3 + 4", "q2": "2 * 6", "q3": "1500 - 250", "q4": "5 - 8"}
FORMULA = '=HYPERLINK("http://evil.example/","click") What is 2 + 2?'


def reply(question: str, system: str) -> str:
    """coa writes a program for each question, cot thinks and answers (right but for q4); an unknown question (the
    formula) gets a negative number."""
    key = next((k for k, (q, _) in QUESTIONS.items() if q in question), None)
    if "program of assignments" in system:
        expression = EXPRESSIONS.get(key or "", "2 + 2")
        return f"```python\n# the quantity asked for\nresult = {expression}\nanswer = result\n```"
    if key is None:
        return "Answer: -5"
    gold = QUESTIONS[key][1]
    return f"Let me think.\nAnswer: {gold if key != 'q4' else '13'}"


@pytest.fixture
def settings(conclave_home: Path) -> Settings:
    return load_settings(model="openai/scripted")


@pytest.fixture
async def run_dir(settings: Settings, tmp_path: Path) -> Path:
    data = write_gsm8k(tmp_path / "dev.jsonl")
    with data.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({"id": "q5", "question": FORMULA, "answer": "work\n#### 4"}) + "\n")
    result = await run_eval(
        config(f"gsm8k:{data}", methods=["coa", "cot"]),
        settings,
        client_factory=Factory({"openai/scripted": reply}),
    )
    return result.run_dir


def _records(run_dir: Path) -> dict[str, dict]:
    lines = (run_dir / "items.jsonl").read_text(encoding="utf-8").splitlines()
    return {r["key"]: r for r in map(json.loads, lines)}


def test_inspect_logs_read_back_with_inspect_ai(run_dir: Path) -> None:
    result = export_run(run_dir, "inspect")
    assert sorted(p.name for p in result.paths) == [
        f"{run_dir.name}_coa_openai-scripted.eval",
        f"{run_dir.name}_cot_openai-scripted.eval",
    ]
    assert all(p.parent == run_dir / "inspect" for p in result.paths) and result.samples == 10
    records = _records(run_dir)
    for path in result.paths:
        log = inspect_log.read_eval_log(str(path))
        method = log.eval.solver
        assert log.status == "success" and log.eval.task == "conclave/gsm8k" and log.eval.model == "openai/scripted"
        assert log.eval.run_id == run_dir.name and log.eval.dataset.samples == 5
        samples = {s.id: s for s in log.samples}
        assert sorted(samples) == ["q1", "q2", "q3", "q4", "q5"]
        for item_id, sample in samples.items():
            record = records[f"{item_id}|{method}|openai/scripted"]
            assert sample.input == record["question"] and sample.target == record["gold"]
            assert sample.output.completion == record["answer"]
            assert {k: s.value for k, s in sample.scores.items()} == {
                k: v["value"] for k, v in record["scores"].items() if v.get("value") is not None
            }
            usage = sample.model_usage["openai/scripted"]
            assert (usage.input_tokens, usage.output_tokens) == (record["prompt_tokens"], record["completion_tokens"])
            assert sample.role_usage["reasoner"].output_tokens == record["usage"]["reasoner"]["completion_tokens"]
            assert sample.metadata["outcome"] == ("answered" if record["ok"] else record["outcome"])
            assert [e["kind"] for e in sample.metadata["trace"]][0] == "run_started"
        (score,) = [s for s in log.results.scores if s.name == "numeric"]
        passed = [records[f"{i}|{method}|openai/scripted"]["scores"]["numeric"]["passed"] for i in samples]
        assert score.metrics["accuracy"].value == pytest.approx(sum(passed) / len(passed))
        if method == "coa":
            # The chain the answer rests on, as sample metadata: drafted by the reasoner and filled in by the tools.
            assert "[3 + 4 = y1]" in samples["q1"].metadata["chain_drafted"]
            assert "[3 + 4 = 7]" in samples["q1"].metadata["chain"] and samples["q4"].metadata["value"] == "-3"
        else:
            assert "chain" not in samples["q1"].metadata and samples["q4"].scores["numeric"].value == 0


def test_one_result_set_as_one_json_log(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "exported" / "cot.json"
    result = export_run(run_dir, "inspect", out, selector="cot@openai/scripted")
    assert result.paths == [out] and result.samples == 5
    log = inspect_log.read_eval_log(str(out))
    assert log.eval.solver == "cot" and len(log.samples) == 5
    assert json.loads(out.read_text())["eval"]["run_id"] == run_dir.name


def test_csv_has_one_row_per_item_and_method_and_defuses_formulas(run_dir: Path) -> None:
    (path,) = export_run(run_dir, "csv").paths
    assert path == run_dir / "results.csv"
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    assert len(rows) == 10 and {(r["item_id"], r["method"]) for r in rows} == {
        (i, m) for i in ("q1", "q2", "q3", "q4", "q5") for m in ("coa", "cot")
    }
    records = _records(run_dir)
    for row in rows:
        record = records[f"{row['item_id']}|{row['method']}|openai/scripted"]
        assert row["correct"] == str(record["correct"]) and row["numeric"] == str(record["scores"]["numeric"]["value"])
        assert int(row["prompt_tokens"]) == record["prompt_tokens"] and row["model"] == "openai/scripted"
    formula = [r for r in rows if r["item_id"] == "q5"]
    assert all(r["question"] == "'" + FORMULA for r in formula)  # a spreadsheet shows it, never runs it
    cot_q5 = next(r for r in formula if r["method"] == "cot")
    assert cot_q5["value"] == "-5"  # a negative number stays a number


def test_bad_input_is_one_clear_error(run_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown export format 'xml'"):
        export_run(run_dir, "xml")
    with pytest.raises(ConfigError, match="has no results for 'react'") as picked:
        export_run(run_dir, "csv", selector="react")
    assert "coa@openai/scripted" in (picked.value.hint or "")
    with pytest.raises(ConfigError, match="has 2 result sets"):
        export_run(run_dir, "inspect", tmp_path / "one.eval")
    assert not (tmp_path / "one.eval").exists()
    empty = tmp_path / "empty-run"
    empty.mkdir()
    with pytest.raises(ConfigError, match="has no finished items"):
        export_run(empty, "csv")


def test_damaged_lines_are_left_out_and_counted(run_dir: Path, tmp_path: Path) -> None:
    with (run_dir / "items.jsonl").open("a", encoding="utf-8") as fh:
        fh.write('{"torn": \n{"key": "not a sample"}\n')
    result = export_run(run_dir, "csv", tmp_path / "r.csv")
    assert result.samples == 10 and result.skipped_lines == 2


def test_no_write_through_a_link_in_the_run_folder(run_dir: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim.csv"
    victim.write_text("keep me\n")
    (run_dir / "results.csv").symlink_to(victim)
    export_run(run_dir, "csv")
    assert victim.read_text() == "keep me\n"  # the link was replaced, not written through
    assert not (run_dir / "results.csv").is_symlink() and "item_id" in (run_dir / "results.csv").read_text()
    os.symlink(outside, run_dir / "inspect")
    with pytest.raises(UnsafePathError, match="outside the run folder"):
        export_run(run_dir, "inspect")
    assert sorted(p.name for p in outside.iterdir()) == ["victim.csv"]


def test_the_command_writes_and_says_where(run_dir: Path, settings: Settings) -> None:
    runner = CliRunner()
    done = runner.invoke(app, ["eval", "export", f"{run_dir.name}:coa", "--format", "inspect"], env={"COLUMNS": "300"})
    assert done.exit_code == 0, done.output
    assert f"wrote {run_dir / 'inspect'}" in done.output and "5 result(s)" in done.output
    assert "inspect view --log-dir" in done.output
    # The real command: one line and the fix, exit 2.
    error, fix = assert_clean_error(run_cli("eval", "export", run_dir.name, "--format", "xml"), code=2)
    assert "unknown export format 'xml'" in error and "inspect or csv" in fix
