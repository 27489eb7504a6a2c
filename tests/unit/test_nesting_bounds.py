"""Deeply nested input (issue 26, item 7): JSON and YAML from untrusted files is refused before it is parsed, in
linear time, with one line that says how deep and where, instead of a RecursionError (or minutes of CPU).

Every parser of untrusted JSON or YAML goes through ``conclave.nesting``: workflow files, data sets, ``items.jsonl``
(and so ``eval --resume``), tune data, templates, the batch step's questions file."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from conclave.cli.main import app
from conclave.workflows.evaluation import run_eval
from conclave.workflows.evaluation.datasets import load_dataset
from conclave.workflows.evaluation.runs import read_jsonl
from conclave.workflows.files.schema import parse_workflow
from typer.testing import CliRunner

from conclave.errors import ConfigError, WorkflowError
from conclave.nesting import MAX_DEPTH, TooDeep, check_json, check_yaml, loads
from conclave.settings import load_settings
from tests.integration.test_cli_errors import assert_clean_error, run_cli
from tests.unit.test_harness import Factory, config, write_gsm8k

TOO_DEEP = f"nested more than {MAX_DEPTH} levels deep"
FAST_S = 2.0
"""A generous bound for refusing 400 kB on a busy machine; the parsers took from 13 s to minutes, or never ended."""


def _deep_json(levels: int) -> str:
    return '{"question": ' + "[" * levels + "1" + "]" * levels + "}"


# ------------------------------------------------------------------------------------------------------ the scans


def test_json_depth_counts_brackets_outside_strings_only() -> None:
    assert loads('{"a": "' + "[" * 5000 + '"}') == {"a": "[" * 5000}
    assert loads(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH) is not None
    with pytest.raises(TooDeep) as deep:
        check_json('{"a":\n' + "[" * 150)
    assert str(deep.value) == f"{TOO_DEEP} at line 2" and deep.value.colno == MAX_DEPTH
    with pytest.raises(json.JSONDecodeError, match=TOO_DEEP):  # callers that report bad JSON report this too
        loads(b"[" * 400_000)


LEGIT_YAML = """\
name: brackets in text
# a comment with [[[[[[[[[[ and {{{{{{{{{{
settings:
  system: "use [x] or {y} ((( [[[["
  note: it's [not] a list [ nor this {
  prompt: |
    [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[
      {{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{
steps:
  - ask: {question: 'what is [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]'}
  - eval:
      methods: [cot, [direct]]
"""


def test_yaml_depth_ignores_scalars_comments_and_block_text() -> None:
    check_yaml(LEGIT_YAML, limit=6)  # steps, a step, eval, methods, [direct]: six levels under the root
    with pytest.raises(TooDeep, match="nested more than 5 levels deep at line 12"):
        check_yaml(LEGIT_YAML, limit=5)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("a: 1\nb: " + "[" * 101, 2),
        ("a: " + "{x: " * 101, 1),
        ("- " * 101 + "x", 1),
        ("".join(" " * i + "k:\n" for i in range(120)), MAX_DEPTH + 1),
        ("k:\n" + "- k:\n  " * 0 + "".join("  " * i + "- k:\n" for i in range(120)), 51),
        ("- a: |\n    text\n  b: " + "[" * 120, 3),  # the line after a block scalar is structure again
        ("a: [\n" + "[\n" * 120, MAX_DEPTH),  # flow collections across lines
    ],
)
def test_yaml_depth_counts_flow_brackets_and_block_levels(text: str, line: int) -> None:
    with pytest.raises(TooDeep) as deep:
        check_yaml(text)
    assert str(deep.value) == f"{TOO_DEEP} at line {line}"


# ------------------------------------------------------------------------------------------------ the callers


def test_workflow_validate_refuses_400_kb_of_brackets_at_once(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("name: deep\nsteps: " + "[" * 400_000 + "\n", encoding="utf-8")
    started = time.perf_counter()
    result = CliRunner().invoke(app, ["workflow", "validate", str(path)])
    assert time.perf_counter() - started < FAST_S
    assert isinstance(result.exception, WorkflowError)
    assert result.exception.message == f"{path}:2:107: YAML: {TOO_DEEP} at line 2"
    # What a user sees: one error line and its fix, exit 2.
    error, fix = assert_clean_error(run_cli("workflow", "validate", str(path), timeout=60), code=2)
    assert error.endswith(f"YAML: {TOO_DEEP} at line 2") and fix.startswith("fix: a workflow needs")


def test_a_10_kb_nested_workflow_is_a_workflow_error() -> None:
    with pytest.raises(WorkflowError) as deep:
        parse_workflow("name: deep\nsteps:\n  - ask: {question: " + "[" * 5_000 + "]" * 5_000 + "}\n", "wf.yaml")
    assert deep.value.message.startswith("wf.yaml:3:") and f"{TOO_DEEP} at line 3" in deep.value.message
    assert deep.value.message == f"wf.yaml:3:117: YAML: {TOO_DEEP} at line 3" and deep.value.hint


@pytest.mark.parametrize("kind", ["jsonl", "gsm8k", "hotpotqa"])
def test_a_deeply_nested_data_set_line_is_a_problem_and_the_rest_load(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "data.jsonl"
    good = json.dumps(
        {"question": "What is 2 + 2?", "answer": "#### 4"}
        if kind != "hotpotqa"
        else {
            "question_text": "Where?",
            "contexts": [{"title": "T", "paragraph_text": "Here."}],
            "answers_objects": [{"spans": ["Here"]}],
        }
    )
    path.write_text(good + "\n" + _deep_json(400_000 // 2) + "\n", encoding="utf-8")
    started = time.perf_counter()
    data = load_dataset(f"{kind}:{path}")
    assert time.perf_counter() - started < FAST_S
    assert len(data.items) == 1
    assert [str(p) for p in data.problems] == [f"line 2: not valid JSON ({TOO_DEEP} at column 113)"]


def test_a_deeply_nested_squad_file_is_one_config_error(tmp_path: Path) -> None:
    path = tmp_path / "squad.json"
    path.write_text('{"data":\n' + "[" * 5_000, encoding="utf-8")
    with pytest.raises(ConfigError, match=f"line 2, column {MAX_DEPTH}: {TOO_DEEP}"):
        load_dataset(f"squad:{path}")


async def test_a_deeply_nested_items_line_is_skipped_on_resume(tmp_path: Path, conclave_home: Path) -> None:
    settings = load_settings(model="openai/scripted")
    dataset = f"gsm8k:{write_gsm8k(tmp_path / 'dev.jsonl')}"
    first = await run_eval(config(dataset, cache=False, concurrency=1), settings, client_factory=Factory())
    items = first.run_dir / "items.jsonl"
    lines = items.read_text(encoding="utf-8").splitlines()
    items.write_text("\n".join([*lines[:2], _deep_json(20_000), *lines[2:]]) + "\n", encoding="utf-8")

    records, _ = read_jsonl(items, problems=(problems := []))
    assert len(records) == len(lines) and [p.line for p in problems] == [3]

    notes: list[str] = []
    backend = Factory()
    resumed = await run_eval(
        config(dataset), settings, resume=first.run_id, client_factory=backend, on_note=notes.append
    )
    assert backend.calls == 0 and len(resumed.records) == len(lines)
    assert any(f"{items}:3:" in m and TOO_DEEP in m for m in notes), notes


def test_deeply_nested_tune_data_names_file_and_line(tmp_path: Path) -> None:
    from conclave.tune.data import read_conversations

    path = tmp_path / "chat.jsonl"
    ok = json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]})
    path.write_text(ok + "\n" + '{"messages": ' + "[" * 50_000 + "\n", encoding="utf-8")
    with pytest.raises(ConfigError) as deep:
        read_conversations([path])
    assert deep.value.message == f"{path}:2: not a JSON line ({TOO_DEEP})"


def test_a_deeply_nested_template_is_not_a_valid_template(conclave_home: Path) -> None:
    from conclave.templates import load_template

    folder = conclave_home / "templates"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "deep.json").write_text('{"system": ' + "[" * 50_000, encoding="utf-8")
    with pytest.raises(ConfigError, match=f"template 'deep' .* is not a valid template: {TOO_DEEP} at line 1"):
        load_template(conclave_home, "deep")
