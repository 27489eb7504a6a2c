"""Evaluation options are declared once (``workflows/evaluation/options.py``): every ``conclave eval`` option can be
set from a workflow file's eval step, and every option of that step is a ``conclave eval`` option (issue 30)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from conclave.cli.main import app
from conclave.workflows.evaluation import EvalConfig
from conclave.workflows.evaluation.options import CLI_FLAGS, EvalOptions
from conclave.workflows.files.run import run_workflow
from conclave.workflows.files.schema import EvalArgs, parse_workflow

from conclave.settings import load_settings
from tests.unit.test_harness import Factory, write_gsm8k

CLI_ONLY = {"address", "endpoint", "resume", "as_json"}
"""Options of the command that are not evaluation options: where to run (a Ray cluster, endpoints: settings a
workflow file may not set, SECURITY.md), which run to resume, how to print."""


def eval_command_options() -> dict[str, list[str]]:
    command = typer.main.get_command(app).commands["eval"]  # type: ignore[attr-defined]
    return {p.name: list(p.opts) for p in command.params if p.name not in CLI_ONLY}


def test_every_command_line_option_is_a_workflow_option_and_the_reverse() -> None:
    by_flags = {tuple(flags): name for name, flags in eval_command_options().items()}
    command_fields = {name for name, flags in CLI_FLAGS.items() if tuple(flags) in by_flags}
    assert command_fields == set(EvalOptions.model_fields), "each option has its flags on `conclave eval`"
    assert len(by_flags) == len(EvalOptions.model_fields), f"`conclave eval` options that set nothing: {by_flags}"
    assert set(EvalArgs.model_fields) == set(EvalOptions.model_fields), "a workflow's eval step: the same options"
    assert set(EvalConfig.model_fields) - set(EvalOptions.model_fields) == {"use_roles"}, "resolved by the harness"


def test_a_workflow_file_sets_every_evaluation_option() -> None:
    values = {
        "dataset": "gsm8k:dev.jsonl",
        "methods": ["cot", "coa:k=3"],
        "models": ["openai/scripted"],
        "scorers": ["numeric"],
        "limit": 3,
        "skip": 1,
        "seed": 7,
        "concurrency": 2,
        "executor": "local",
        "cache": False,
        "strict": True,
        "collection": "notes",
        "judge": "openai/judge",
        "k": 3,
        "search": "open",
    }
    assert set(values) == set(EvalOptions.model_fields), "this test names every option"
    step = json.dumps({"id": "scores", "eval": values})
    workflow = parse_workflow(f"name: every-option\nsteps:\n  - {step}\n")
    assert workflow.steps[0].eval.model_dump() == values  # type: ignore[union-attr]


async def test_k_from_a_workflow_file_reaches_the_evaluation(tmp_path: Path, conclave_home: Path) -> None:
    write_gsm8k(tmp_path / "dev.jsonl")
    path = tmp_path / "wf.yaml"
    path.write_text(
        "name: recall-cut\nmodels: {default: openai/scripted}\nsteps:\n"
        "  - id: scores\n    eval: {dataset: gsm8k:dev.jsonl, methods: [cot], limit: 2, k: 2}\n",
        encoding="utf-8",
    )
    result = await run_workflow(path, load_settings(), client_factory=Factory())
    stored = json.loads((Path(result.outputs["scores"]["run_dir"]) / "config.json").read_text(encoding="utf-8"))
    assert stored["k"] == 2 and stored["limit"] == 2
