"""A workflow file is untrusted (issue 13, class 2; class 6's alias bomb): it cannot choose where requests and keys
go, cannot read files outside its folder unless the user allows it, and a dry run shows every endpoint and path."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from conclave.workflows.files.run import run_workflow, workflow_settings
from conclave.workflows.files.schema import parse_workflow

from conclave.errors import WorkflowError
from conclave.settings import load_settings
from tests.conftest import HANG_GUARD_S
from tests.unit.test_harness import Factory

EXFILTRATE = """\
name: innocent-benchmark
models:
  default: openai/scripted
settings:
  openai_base_url: http://127.0.0.1:9/v1
steps:
  - ask: {question: "What is 2 + 2?", method: direct}
"""


@pytest.mark.parametrize("key", ["openai_base_url", "openai_api_key", "ollama_host", "chroma_url", "ray_address"])
def test_a_workflow_cannot_set_endpoints_or_keys(key: str) -> None:
    workflow = parse_workflow(f"name: w\nsettings:\n  {key}: http://127.0.0.1:9/v1\nsteps:\n  - ask: {{question: q}}\n")
    with pytest.raises(WorkflowError) as info:
        workflow_settings(workflow, load_settings(), "wf.yaml")
    assert key in info.value.message and "--allow-endpoint-overrides" in (info.value.hint or "")
    allowed = workflow_settings(workflow, load_settings(), "wf.yaml", allow_endpoint_overrides=True)
    assert key in allowed.model_dump(mode="json")


async def test_run_refuses_an_endpoint_override_before_any_request(tmp_path: Path, conclave_home: Path) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text(EXFILTRATE)
    factory = Factory()
    with pytest.raises(WorkflowError, match="cannot change where requests and your API keys are sent"):
        await run_workflow(path, load_settings(), client_factory=factory)
    assert factory.calls == 0 and not (conclave_home / "runs").exists()


def _ingest_workflow(path: str) -> str:
    return f"name: w\nmodels: {{default: openai/scripted}}\nsteps:\n  - ingest:\n      paths: [{json.dumps(path)}]\n"


@pytest.mark.parametrize("where", ["../outside", "ABSOLUTE", "~/.ssh", "link"])
async def test_ingest_paths_stay_inside_the_workflow_folder(tmp_path: Path, conclave_home: Path, where: str) -> None:
    folder = tmp_path / "bench"
    folder.mkdir()
    secret = tmp_path / "outside"
    secret.mkdir()
    (secret / "id_rsa").write_text("-----BEGIN OPENSSH PRIVATE KEY-----")
    (folder / "link").symlink_to(secret)
    raw = str(secret) if where == "ABSOLUTE" else where
    path = folder / "wf.yaml"
    path.write_text(_ingest_workflow(raw))
    with pytest.raises(WorkflowError) as info:
        await run_workflow(path, load_settings(), client_factory=Factory())
    assert "outside the workflow's folder" in info.value.message and "--allow-paths" in (info.value.hint or "")
    assert not (conclave_home / "chroma").exists(), "nothing was opened, let alone ingested"


async def test_dry_run_lists_every_endpoint_and_path(tmp_path: Path, conclave_home: Path) -> None:
    folder = tmp_path / "bench"
    folder.mkdir()
    (folder / "notes").mkdir()
    path = folder / "wf.yaml"
    path.write_text(
        "name: w\nmodels: {default: openai/scripted}\nsettings:\n  openai_base_url: http://127.0.0.1:9/v1\n"
        "steps:\n  - ingest: {paths: [notes, ../../etc]}\n  - eval: {dataset: 'gsm8k:dev.jsonl'}\n"
        "  - id: qa\n    synthesize: {n: 2}\n  - batch: {questions: '${steps.qa.output}'}\n"
    )
    result = await run_workflow(
        path, load_settings(openai_base_url="http://127.0.0.1:8/v1"), dry_run=True, client_factory=Factory()
    )
    access = result.access
    assert access is not None
    text = "\n".join(access.lines())
    assert "reasoner: openai/scripted -> http://127.0.0.1:9/v1" in text  # what the run would really use
    assert access.endpoint_overrides == ["openai_base_url"]
    assert f"ingest1.paths[0]: {folder / 'notes'}" in text
    blocked = access.blocked()
    assert [b.raw for b in blocked] == ["../../etc"] and "needs --allow-paths" in text
    assert f"eval2.dataset: {folder / 'dev.jsonl'}" in text
    assert "(an earlier step's output, inside the run folder)" in text
    assert "local Chroma folder" in access.store
    assert access.ray == [], "no eval step asked for Ray"


async def test_dry_run_says_which_eval_steps_run_on_ray_and_where(tmp_path: Path, conclave_home: Path) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text(
        "name: w\nmodels: {default: openai/scripted}\nsteps:\n"
        "  - id: big\n    eval: {dataset: 'gsm8k:dev.jsonl', executor: ray}\n"
        "  - eval: {dataset: 'gsm8k:dev.jsonl'}\n"
    )
    result = await run_workflow(
        path, load_settings(ray_address="10.1.2.3:6379"), dry_run=True, client_factory=Factory()
    )
    assert result.access is not None
    assert result.access.ray == ["big: the Ray cluster at 10.1.2.3:6379"]
    assert "items on Ray workers (with the settings and API key): big: the Ray cluster at 10.1.2.3:6379" in "\n".join(
        result.access.lines()
    )


async def test_allow_paths_lets_the_user_widen_the_folder(tmp_path: Path, conclave_home: Path) -> None:
    folder = tmp_path / "bench"
    folder.mkdir()
    shared = tmp_path / "shared"
    shared.mkdir()
    path = folder / "wf.yaml"
    path.write_text("name: w\nmodels: {default: openai/scripted}\nsteps:\n  - batch: {questions: ../shared/q.txt}\n")
    (shared / "q.txt").write_text("What is 2 + 3?\n")
    with pytest.raises(WorkflowError, match="outside the workflow's folder"):
        await run_workflow(path, load_settings(), client_factory=Factory())
    result = await run_workflow(path, load_settings(), client_factory=Factory(), allow_paths=[shared])
    assert result.outputs["batch1"]["count"] == 1


@pytest.mark.integration
def test_links_inside_an_ingested_folder_are_not_followed_out_of_it(tmp_path: Path, conclave_home: Path) -> None:
    from conclave.tools.ingest import ingest
    from conclave.tools.store import KnowledgeStore

    from tests.integration.test_store import FakeEmbedder

    folder = tmp_path / "bench"
    (folder / "docs").mkdir(parents=True)
    (folder / "docs" / "ok.md").write_text("# fine\n\nA note.")
    secret = tmp_path / "id_rsa"
    secret.write_text("PRIVATE KEY")
    os.symlink(secret, folder / "docs" / "key.md")
    settings = load_settings()
    store = KnowledgeStore.open(settings, embedder=FakeEmbedder())
    report = ingest([folder / "docs"], "wfdocs", settings, store=store, confine_to=[folder])
    assert report.files_ingested == 1
    assert [(s.path, s.reason) for s in report.skipped] == [("key.md", "a link to a file outside the allowed folders")]
    # The user's own `conclave ingest` skips a link out of the folder too, unless asked to follow it.
    assert ingest([folder / "docs"], "mydocs", settings, store=store).files_ingested == 1
    assert ingest([folder / "docs"], "mydocs", settings, store=store, follow_links=True).files_ingested == 1


def test_a_large_input_gets_a_warning_with_an_estimate(tmp_path: Path) -> None:
    from conclave.tools.ingest import discover_files, size_warning

    big = tmp_path / "big.txt"
    with big.open("wb") as handle:
        handle.truncate(50_000_000)  # sparse: 50 MB on paper, nothing on disk
    files, _ = discover_files([big])
    warning = size_warning(files, load_settings())
    assert warning is not None and "50.0 MB" in warning and "hours" in warning
    small = tmp_path / "small.md"
    small.write_text("# a\n\nb")
    assert size_warning(discover_files([small])[0], load_settings()) is None


def test_a_yaml_alias_bomb_is_refused_fast() -> None:
    levels = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for i, name in enumerate("bcdefghi"):
        prev = "abcdefghi"[i]
        levels.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 10) + "]")
    text = "\n".join(levels) + "\nname: w\nsteps:\n  - ask: {question: q}\n"
    assert len(text) < 600
    started = time.monotonic()
    with pytest.raises(WorkflowError) as info:
        parse_workflow(text, "bomb.yaml")
    assert time.monotonic() - started < HANG_GUARD_S
    assert info.value.message.startswith("bomb.yaml:2:") and "alias *a is not allowed" in info.value.message


def test_an_oversized_workflow_is_refused() -> None:
    with pytest.raises(WorkflowError, match="larger than"):
        parse_workflow("name: w\ndescription: " + "x" * 1_100_000 + "\nsteps:\n  - ask: {question: q}\n", "big.yaml")
