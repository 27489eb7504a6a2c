"""The CLI over the harness: eval compare, eval export-traces, workflow schema, run --dry-run, bad input."""

from __future__ import annotations

import json
from pathlib import Path

from conclave.cli.main import app
from conclave.workflows.evaluation import EvalConfig, run_eval
from conclave.workflows.evaluation.export import accepted_chain, export_traces
from typer.testing import CliRunner

from conclave.errors import ConfigError, WorkflowError
from conclave.settings import load_settings
from tests.unit.test_harness import Factory, write_gsm8k

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "workflows"
runner = CliRunner()


async def _two_runs(tmp_path: Path) -> tuple[str, str]:
    dataset = f"gsm8k:{write_gsm8k(tmp_path / 'dev.jsonl')}"
    settings = load_settings()
    cot = await run_eval(
        EvalConfig(dataset=dataset, methods=["cot"], models=["openai/scripted"]), settings, client_factory=Factory()
    )
    direct = await run_eval(
        EvalConfig(dataset=dataset, methods=["direct"], models=["openai/scripted"]), settings, client_factory=Factory()
    )
    return cot.run_id, direct.run_id


async def test_eval_compare_pairs_two_runs(tmp_path: Path, conclave_home: Path) -> None:
    run_a, run_b = await _two_runs(tmp_path)
    result = runner.invoke(app, ["eval", "compare", run_a, run_b, "--json"])
    assert result.exit_code == 0, result.output
    [comp] = json.loads(result.output)
    assert (comp["paired"], comp["a_only"], comp["b_only"], comp["both_right"]) == (4, 2, 0, 1)
    assert comp["p_value"] == 0.5
    table = runner.invoke(app, ["eval", "compare", f"{run_a}:cot", f"{run_b}:direct@openai/scripted"])
    assert table.exit_code == 0 and "no significant difference (p = 0.5)" in table.output
    # Both run ids whole (they share a long date prefix; a narrow table cut them to "eval-…" on both sides).
    assert f"A {run_a}:cot@openai/scripted" in table.output and f"B {run_b}:direct@openai/scripted" in table.output
    assert "A won 2 · A lost 0" in table.output and "…" not in table.output
    missing = runner.invoke(app, ["eval", "compare", f"{run_a}:coa", run_b])
    assert isinstance(missing.exception, ConfigError) and "has no results for 'coa'" in missing.exception.message
    unknown = runner.invoke(app, ["eval", "compare", "eval-nope", run_b])
    assert isinstance(unknown.exception, ConfigError) and "no run 'eval-nope'" in unknown.exception.message


def _chain_trace(verdict: str | None) -> list[dict[str, object]]:
    trace: list[dict[str, object]] = [
        {"kind": "chain", "text": "[3 * 12 = y1] [50 - y1 = y2]. Answer: y2 y1", "attempt": 0, "sample": 0},
        {"kind": "replan", "errors": ["two placeholders"], "attempt": 0, "sample": 0},
        {"kind": "chain", "text": "[3 * 12 = y1] [50 - y1 = y2]. Answer: y2", "attempt": 1, "sample": 0},
    ]
    if verdict:
        trace.append({"kind": "critique", "verdict": verdict, "reasons": [], "round": 0})
    return trace


def test_accepted_chain_is_the_last_valid_one_the_critic_accepted() -> None:
    assert accepted_chain(_chain_trace("accept")) == "[3 * 12 = y1] [50 - y1 = y2]. Answer: y2"
    assert accepted_chain(_chain_trace(None)) == "[3 * 12 = y1] [50 - y1 = y2]. Answer: y2"
    assert accepted_chain(_chain_trace("revise")) is None
    assert accepted_chain(_chain_trace("accept")[:2]) is None


def test_export_traces_writes_chat_jsonl(tmp_path: Path, conclave_home: Path) -> None:
    run = conclave_home / "runs" / "eval-x"
    run.mkdir(parents=True)
    (run / "manifest.json").write_text("{}")
    records = [
        {
            "key": "a|coa|m",
            "item_id": "a",
            "method": "coa",
            "model": "m",
            "question": "Change from 50?",
            "correct": True,
            "value": "14",
            "gold": ["14"],
            "trace": _chain_trace("accept"),
        },
        {
            "key": "b|coa|m",
            "item_id": "b",
            "method": "coa",
            "model": "m",
            "question": "Wrong one?",
            "correct": False,
            "value": "3",
            "gold": ["4"],
            "trace": _chain_trace("accept"),
        },
        {
            "key": "c|coa|m",
            "item_id": "c",
            "method": "coa",
            "model": "m",
            "question": "Revised?",
            "correct": True,
            "value": "1",
            "gold": ["1"],
            "trace": _chain_trace("revise"),
        },
        {
            "key": "a|cot|m",
            "item_id": "a",
            "method": "cot",
            "model": "m",
            "question": "Change from 50?",
            "correct": True,
            "value": "14",
            "gold": ["14"],
            "trace": [{"kind": "answer", "text": "14"}],
        },
    ]
    (run / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))

    report = export_traces(run, tmp_path / "all.jsonl")
    assert (report.exported, report.without_chain, report.not_accepted) == (2, 1, 1)
    result = runner.invoke(app, ["eval", "export-traces", "eval-x", "--only-correct", "-o", str(tmp_path / "c.jsonl")])
    assert result.exit_code == 0, result.output
    assert "exported 1 chain(s)" in result.output
    [line] = [json.loads(x) for x in (tmp_path / "c.jsonl").read_text().splitlines()]
    assert [m["role"] for m in line["messages"]] == ["system", "user", "assistant"]
    assert line["messages"][1]["content"] == "Change from 50?"
    assert line["messages"][2]["content"] == "[3 * 12 = y1] [50 - y1 = y2]. Answer: y2"
    assert line["metadata"]["item_id"] == "a" and line["metadata"]["correct"] is True


def test_export_converts_gsm8k_training_answers_and_combines_with_runs(tmp_path: Path, conclave_home: Path) -> None:
    from conclave.tools.toolset import build_tools
    from conclave.workflows.coa import parse_chain, reify
    from conclave.workflows.coa.render import render

    from conclave.settings import load_settings

    train = tmp_path / "train.jsonl"
    items = [
        {
            "question": "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
            "How many clips did Natalia sell altogether in April and May?",
            "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips "
            "altogether in April and May.\n#### 72",
        },
        {"question": "No notes here?", "answer": "It is just 5.\n#### 5"},
        {"question": "A wrong note?", "answer": "2+2 = <<2+2=5>>5\n#### 5"},
    ]
    train.write_text("".join(json.dumps(i) + "\n" for i in items) + "not json\n")
    result = runner.invoke(app, ["eval", "export-traces", "--gsm8k", str(train), "-o", str(tmp_path / "t.jsonl")])
    assert result.exit_code == 0, result.output
    assert "exported 1 chain(s)" in result.output and "3 item(s) without usable calculator notes" in result.output
    [line] = [json.loads(x) for x in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert line["metadata"] == {"source": "gsm8k", "file": "train.jsonl", "line": 1, "gold": ["72"]}
    chain_text = line["messages"][2]["content"]
    assert "[48 / 2 = y1]" in chain_text and chain_text.endswith("Answer: y2")
    # The exported chain is a real chain: it parses and reifies to the gold answer.
    tools = build_tools(load_settings())
    import asyncio

    reified = asyncio.run(reify(parse_chain(chain_text), tools))
    assert str(reified.answer_value) == "72"

    as_json = runner.invoke(
        app,
        [
            "eval",
            "export-traces",
            "--gsm8k",
            str(train),
            "--form",
            "json",
            "--no-system",
            "-o",
            str(tmp_path / "j.jsonl"),
        ],
    )
    assert as_json.exit_code == 0, as_json.output
    [line] = [json.loads(x) for x in (tmp_path / "j.jsonl").read_text().splitlines()]
    assert [m["role"] for m in line["messages"]] == ["user", "assistant"]
    assert render(parse_chain(line["messages"][1]["content"])) == chain_text

    # Runs and training data in one file; a run's chain in the JSON form too.
    run = conclave_home / "runs" / "eval-y"
    run.mkdir(parents=True)
    (run / "manifest.json").write_text("{}")
    (run / "items.jsonl").write_text(
        json.dumps(
            {
                "key": "a|coa|m",
                "item_id": "a",
                "method": "coa",
                "model": "m",
                "question": "Change from 50?",
                "correct": True,
                "value": "14",
                "gold": ["14"],
                "trace": _chain_trace("accept"),
            }
        )
        + "\n"
    )
    both = runner.invoke(
        app,
        [
            "eval",
            "export-traces",
            "eval-y",
            "--gsm8k",
            str(train),
            "--form",
            "json",
            "-o",
            str(tmp_path / "both.jsonl"),
        ],
    )
    assert both.exit_code == 0, both.output
    lines = [json.loads(x) for x in (tmp_path / "both.jsonl").read_text().splitlines()]
    assert [x["metadata"]["source"] for x in lines] == ["run", "gsm8k"]
    assert json.loads(lines[0]["messages"][2]["content"])["answer"] == "y2"


def test_export_needs_a_source_and_an_output(tmp_path: Path, conclave_home: Path) -> None:
    nothing = runner.invoke(app, ["eval", "export-traces", "-o", str(tmp_path / "x.jsonl")])
    assert isinstance(nothing.exception, ConfigError) and "nothing to export" in nothing.exception.message
    no_out = runner.invoke(app, ["eval", "export-traces", "--gsm8k", str(tmp_path / "t.jsonl")])
    assert isinstance(no_out.exception, ConfigError) and "--output" in (no_out.exception.hint or "")
    missing = runner.invoke(
        app, ["eval", "export-traces", "--gsm8k", str(tmp_path / "absent.jsonl"), "-o", str(tmp_path / "x.jsonl")]
    )
    assert isinstance(missing.exception, ConfigError) and "training file not found" in missing.exception.message
    bad_form = runner.invoke(
        app,
        [
            "eval",
            "export-traces",
            "--gsm8k",
            str(tmp_path / "absent.jsonl"),
            "--form",
            "xml",
            "-o",
            str(tmp_path / "x.jsonl"),
        ],
    )
    assert isinstance(bad_form.exception, ConfigError) and "unknown chain form" in bad_form.exception.message


def test_workflow_schema_and_dry_run(conclave_home: Path) -> None:
    schema = runner.invoke(app, ["workflow", "schema"])
    assert schema.exit_code == 0 and json.loads(schema.output)["title"] == "Workflow"
    # The example reads the sample data sets in examples/data: outside its folder, so a dry run flags them...
    flagged = runner.invoke(app, ["run", str(EXAMPLES / "math-eval.yaml"), "--dry-run", "--json"])
    assert flagged.exit_code == 1 and "outside the workflow's folder" in str(flagged.exception)
    assert [p["allowed"] for p in json.loads(flagged.output)["access"]["paths"]] == [False, False]
    # ... and the user allows them by name.
    samples = EXAMPLES.parent / "data"
    dry = runner.invoke(
        app, ["run", str(EXAMPLES / "math-eval.yaml"), "--dry-run", "--json", "--allow-paths", str(samples)]
    )
    data = json.loads(dry.output)
    assert data["dry_run"] and [s["kind"] for s in data["steps"]] == ["ask", "eval", "eval", "report"]
    assert dry.exit_code == 0, dry.output
    assert not (conclave_home / "runs").exists()


def test_a_dry_run_is_not_valid_when_a_data_file_is_missing(tmp_path: Path, conclave_home: Path) -> None:
    (tmp_path / "data").mkdir()
    write_gsm8k(tmp_path / "data" / "dev.jsonl")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.md").write_text("# A\n\nAdam combines momentum with RMSprop.\n", encoding="utf-8")
    path = tmp_path / "wf.yaml"
    path.write_text(
        "version: 1\nname: w\nsteps:\n  - id: notes\n    ingest:\n      paths: [notes/*.md]\n"
        "  - id: e\n    eval:\n      dataset: gsm8k:data/dev.jsonl\n      methods: [cot]\n",
        encoding="utf-8",
    )
    ok = runner.invoke(app, ["run", str(path), "--dry-run"], terminal_width=200)
    assert ok.exit_code == 0 and "valid; 2 step(s) would run" in ok.output, ok.output
    path.write_text(
        path.read_text(encoding="utf-8")
        .replace("data/dev.jsonl", "data/typo.jsonl")
        .replace("notes/*.md", "notes/*.rst"),
        encoding="utf-8",
    )
    missing = runner.invoke(app, ["run", str(path), "--dry-run"], terminal_width=200)
    assert missing.exit_code == 1 and "step(s) would run" not in missing.output
    assert isinstance(missing.exception, WorkflowError) and missing.exception.message.startswith(
        "2 path(s) do not exist"
    )
    assert f"e.dataset: {tmp_path / 'data' / 'typo.jsonl'}  <- does not exist" in missing.output
    paths = json.loads(runner.invoke(app, ["run", str(path), "--dry-run", "--json"]).output)["access"]["paths"]
    assert [p["exists"] for p in paths] == [False, False]
    assert not (conclave_home / "runs").exists()


def test_bad_workflow_and_bad_eval_arguments(tmp_path: Path, conclave_home: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: w\nsteps:\n  - ask:\n      question: q\n      method: magic\n")
    result = runner.invoke(app, ["run", str(path)])
    assert isinstance(result.exception, WorkflowError)
    assert result.exception.message.startswith(f"{path}:5:7: steps[0].ask.method")
    bad = runner.invoke(app, ["eval", "--dataset", "gsm8k:/nope.jsonl", "--model", "embedded"])
    assert isinstance(bad.exception, ConfigError) and "data set file not found" in bad.exception.message
    helped = runner.invoke(app, ["eval"])
    assert helped.exit_code == 0 and "compare" in helped.output and "--dataset" in helped.output


def test_the_committed_schema_is_current_and_every_example_names_it() -> None:
    schema = runner.invoke(app, ["workflow", "schema"])
    committed = EXAMPLES.parents[1] / "docs" / "workflow.schema.json"
    assert json.loads(committed.read_text(encoding="utf-8")) == json.loads(schema.output), (
        "regenerate it: conclave workflow schema > docs/workflow.schema.json"
    )
    for example in sorted(EXAMPLES.glob("*.yaml")):
        first = example.read_text(encoding="utf-8").splitlines()[0]
        assert first == "# yaml-language-server: $schema=../../docs/workflow.schema.json", example.name
        assert (example.parent / "../../docs/workflow.schema.json").resolve() == committed.resolve()
