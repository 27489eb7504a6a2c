"""Workflow files: schema, validation errors at file:line:column, references, and running with scripted models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conclave.workflows.files.run import run_workflow, workflow_settings
from conclave.workflows.files.schema import STEP_KINDS, load_workflow, parse_workflow, workflow_json_schema

from conclave.errors import ConfigError, WorkflowError
from conclave.settings import load_settings
from tests.conftest import SHARED_DATA
from tests.unit.test_harness import Factory, write_gsm8k

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "workflows"


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        (
            "name: w\nsteps:\n  - ask:\n      method: cot\n",
            "wf.yaml:3:5: steps[0].ask.question",
            "missing required field 'question' (expected fields: question, method, collection, source)",
        ),
        (
            "name: w\nsteps:\n  - ask:\n      question: q\n      colour: red\n",
            "wf.yaml:5:7: steps[0].ask.colour",
            "unknown field 'colour'",
        ),
        (
            "name: w\nsteps:\n  - id: x\n    foo: 1\n",
            "wf.yaml:3:5: steps[0]",
            "a step needs exactly one of: ingest, ask, batch, synthesize, eval, report",
        ),
        (
            "name: w\nsteps:\n  - ask: {question: q}\n    eval: {dataset: 'gsm8k:x'}\n",
            "wf.yaml:3:5: steps[0]",
            "a step needs exactly one of",
        ),
        (
            "name: w\nsteps:\n  - ask:\n      question: q\n      method: magic\n",
            "wf.yaml:5:7: steps[0].ask.method",
            "unknown method 'magic'; use one of: coa, cot, rag, react, direct, rag-cot",
        ),
        (
            "name: w\nsteps:\n  - batch:\n      questions: ${steps.qa.output}\n  - id: qa\n    synthesize: {n: 3}\n",
            "wf.yaml:4:7: steps[0].batch.questions",
            "${steps.qa.output} refers to a later step",
        ),
        (
            "name: w\nsteps:\n  - id: qa\n    synthesize: {n: 3}\n  - batch:\n      questions: ${qa.answer}\n",
            "wf.yaml:6:7: steps[1].batch.questions",
            "step 'qa' (synthesize) has no output 'answer'",
        ),
        (
            "name: w\nsteps:\n  - ask: {question: q}\n  - report:\n      runs: [ask1]\n",
            "wf.yaml:5:14: steps[1].report.runs[0]",
            "'ask1' is not an earlier eval step",
        ),
        (
            "name: w\nsteps:\n  - id: a\n    ask: {question: q}\n  - id: a\n    ask: {question: r}\n",
            "wf.yaml:5:5: steps[1].id",
            "duplicate step id 'a'",
        ),
        (
            "name: w\nmodels:\n  default: gpt4\nsteps:\n  - ask: {question: q}\n",
            "wf.yaml:3:3: models.default",
            "unknown model spec 'gpt4'",
        ),
        (
            "name: w\nsteps:\n  - eval:\n      dataset: gsm8k.jsonl\n",
            "wf.yaml:4:7: steps[0].eval.dataset",
            "expected KIND:PATH",
        ),
        (
            "name: w\nsteps:\n  - eval:\n      dataset: gsm8k:x\n      scorers: [bleu]\n",
            "wf.yaml:5:7: steps[0].eval.scorers",
            "unknown scorer 'bleu'",
        ),
        (
            "name: w\nsettings:\n  topk: 3\nsteps:\n  - ask: {question: q}\n",
            "wf.yaml:2:1: settings",
            "unknown setting 'topk'",
        ),
        ("name: w\nsteps: []\n", "wf.yaml:2:1: steps", "at least 1 item"),
        ("steps:\n  - ask: {question: q}\n", "wf.yaml:1:1: name", "missing required field 'name'"),
        ('name: w\nsteps:\n  - ask: {question: "x"\n', "wf.yaml:4:1: YAML", "expected ',' or '}'"),
        ("- just\n- a list\n", "wf.yaml:1:1", "a workflow is a mapping"),
    ],
)
def test_validation_errors_point_at_line_and_column(text: str, where: str, message: str) -> None:
    with pytest.raises(WorkflowError) as info:
        parse_workflow(text, "wf.yaml")
    assert info.value.message.startswith(where), info.value.message
    assert message in info.value.message
    assert info.value.hint


def test_several_problems_are_all_reported() -> None:
    text = "name: w\nsteps:\n  - ask: {method: cot}\n  - ask: {question: q, extra: 1}\n"
    with pytest.raises(WorkflowError) as info:
        parse_workflow(text, "wf.yaml")
    assert "wf.yaml:3:5" in info.value.message and "wf.yaml:4:24" in info.value.message
    assert "and 1 more" in info.value.message


def test_missing_file() -> None:
    with pytest.raises(WorkflowError, match="workflow file not found"):
        load_workflow(Path("nope.yaml"))


def test_schema_lists_every_step_kind() -> None:
    schema = workflow_json_schema()
    text = json.dumps(schema)
    for kind in STEP_KINDS:
        assert f'"{kind}"' in text
    assert schema["required"] == ["name", "steps"]


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_examples_are_valid(path: Path) -> None:
    workflow = load_workflow(path)
    assert workflow.steps
    # Their data sets are where they say (paths are relative to the workflow file).
    for step in workflow.steps:
        if getattr(step, "eval", None) is not None:
            kind, _, data = step.eval.dataset.partition(":")
            if data.startswith("${"):
                continue  # another step's output
            target = (path.parent / data).resolve()
            if target.is_relative_to(SHARED_DATA) and not SHARED_DATA.is_dir():
                pytest.skip(f"the shared evaluation data is not next to this checkout ({SHARED_DATA})")
            assert target.is_file(), f"{path.name}: {step.id}: {data} not found"


def test_examples_exist() -> None:
    assert len(list(EXAMPLES.glob("*.yaml"))) >= 2


def test_settings_models_and_collection_apply() -> None:
    workflow = parse_workflow(
        "name: w\ncollection: notes\nsettings: {top_k: 7}\nmodels:\n  default: embedded\n  judge: ollama/qwen2.5:7b\n"
        "steps:\n  - ask: {question: q}\n"
    )
    settings = workflow_settings(workflow, load_settings())
    assert (settings.top_k, settings.collection, settings.model) == (7, "notes", "embedded")
    assert settings.role_model("judge") == "ollama/qwen2.5:7b" and settings.role_model("critic") == "embedded"
    bad = parse_workflow("name: w\nsettings: {top_k: 0}\nsteps:\n  - ask: {question: q}\n")
    with pytest.raises(WorkflowError, match="settings.top_k"):
        workflow_settings(bad, load_settings())


WORKFLOW = """\
name: scripted-demo
models:
  default: openai/scripted
steps:
  - id: hello
    ask:
      question: "Tom has 3 apples and buys 4 more. How many apples does he have?"
      method: cot
  - id: answers
    batch:
      questions: questions.txt
      method: direct
  - id: scores
    eval:
      dataset: gsm8k:dev.jsonl
      methods: [cot, direct]
  - id: final
    report:
      runs: [scores]
"""


async def test_workflow_runs_steps_writes_outputs_and_resumes(tmp_path: Path, conclave_home: Path) -> None:
    (tmp_path / "questions.txt").write_text(
        "A pen costs 2 dollars. How much do 6 pens cost?\n\n"
        "Tom has 3 apples and buys 4 more. How many apples does he have?\n"
    )
    path = tmp_path / "wf.yaml"
    path.write_text(WORKFLOW)
    settings = load_settings()
    factory = Factory()
    state: dict[str, object] = {}

    # The data set is missing: the eval step fails after ask and batch finished.
    with pytest.raises(ConfigError, match="step scores \\(eval\\): data set file not found") as info:
        await run_workflow(
            path, settings, client_factory=factory, on_start=lambda rid, d: state.update(run_id=rid, run_dir=d)
        )
    run_dir = state["run_dir"]
    assert isinstance(run_dir, Path)
    assert f"--resume {run_dir.name}" in (info.value.hint or "")
    assert factory.calls == 3
    answers = [json.loads(line) for line in (run_dir / "steps" / "answers" / "answers.jsonl").read_text().splitlines()]
    assert [a["id"] for a in answers] == ["line-1", "line-3"] and answers[1]["value"] == "7"
    assert json.loads((run_dir / "steps" / "hello" / "answer.json").read_text())["value"] == "7"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["kind"] == "workflow" and manifest["models"]["reasoner"] == "openai/scripted"
    assert (run_dir / "workflow.yaml").read_text() == WORKFLOW

    write_gsm8k(tmp_path / "dev.jsonl")
    steps: list[tuple[str, str]] = []
    resumed_factory = Factory()
    result = await run_workflow(
        path,  # given again: a resumed run reads under the file's folder only then (SECURITY.md: run folders)
        settings,
        resume=run_dir.name,
        client_factory=resumed_factory,
        on_step=lambda plan, status: steps.append((plan.id, status)),
    )
    assert result.skipped == ["hello", "answers"]
    assert ("hello", "skipped (finished earlier)") in steps and ("final", "finished") in steps
    # Only the eval step runs: 4 items x 2 methods, less the 3 prompts ask and batch already sent (the response
    # cache is shared by the whole workflow and the prompts are the same).
    assert resumed_factory.calls == 5
    assert result.outputs["scores"]["accuracy"] == {"cot@openai/scripted": 0.75, "direct@openai/scripted": 0.25}
    report = Path(result.outputs["final"]["output"])
    assert report.is_file() and "<svg" in report.read_text()
    assert (Path(result.outputs["scores"]["run_dir"]) / "items.jsonl").is_file()
    lines = [json.loads(line) for line in (run_dir / "steps.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == ["hello", "answers", "scores", "final"]

    again = await run_workflow(None, settings, resume=run_dir.name, client_factory=Factory())
    assert again.skipped == ["hello", "answers", "scores", "final"]


async def test_dry_run_plans_without_a_run_folder(tmp_path: Path, conclave_home: Path) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text(WORKFLOW)
    factory = Factory()
    result = await run_workflow(path, load_settings(), dry_run=True, client_factory=factory)
    assert [p.id for p in result.steps] == ["hello", "answers", "scores", "final"]
    assert [p.kind for p in result.steps] == ["ask", "batch", "eval", "report"]
    assert result.run_dir is None and factory.calls == 0
    assert not (conclave_home / "runs").exists()


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
async def test_every_example_workflow_validates_and_reads_only_what_it_names(path: Path, conclave_home: Path) -> None:
    workflow = load_workflow(path)
    result = await run_workflow(
        path,
        load_settings(),
        dry_run=True,
        client_factory=Factory(),
        allow_paths=[EXAMPLES.parent / "data", EXAMPLES.parents[1] / "tools" / "demo_notes"],  # as their headers say
    )
    assert result.access is not None and not result.access.blocked(), result.access.lines()
    assert [p.id for p in result.steps] == workflow.step_ids()
