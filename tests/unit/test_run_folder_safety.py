"""Run folders are untrusted (issue 26): files planted in one must not steer what Conclave writes or reads.

A shared or copied run folder may hold links (``.status.json.tmp -> ~/.bashrc``, ``items.jsonl -> ~/.profile``,
``steps/ask -> ~/.config``) and a ``run.json`` that names ``/`` as the workflow's folder. Viewing and resuming such a
folder writes only its own files, never through a link; a resumed workflow reads only where the user's file and
flags allow; one process at a time writes a run; a disk full at the start does not point at a run that is not there.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conclave.cli.main import app
from conclave.workflows.evaluation import run_eval
from conclave.workflows.files.run import run_workflow
from typer.testing import CliRunner

from conclave.errors import ConclaveError, WorkflowError
from conclave.settings import Settings, load_settings
from tests.unit.test_harness import QUESTIONS, Factory, config, write_gsm8k

runner = CliRunner()
BASHRC = "export PATH=$HOME/bin:$PATH\n"
QUESTION = QUESTIONS["q1"][0]  # one the scripted backend answers


@pytest.fixture
def settings(conclave_home: Path) -> Settings:
    return load_settings(model="openai/scripted")


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A file outside every run folder that a planted link points at (a stand-in for ~/.bashrc)."""
    path = tmp_path / "home" / ".bashrc"
    path.parent.mkdir()
    path.write_text(BASHRC)
    return path


async def _eval_run(settings: Settings, tmp_path: Path, **overrides: Any) -> Any:
    dataset = f"gsm8k:{write_gsm8k(tmp_path / 'dev.jsonl')}"
    return await run_eval(config(dataset, **overrides), settings, client_factory=Factory())


# ---------------------------------------------------------------------------------------------------- writes


async def test_eval_resume_replaces_planted_temp_links_instead_of_writing_through_them(
    settings: Settings, tmp_path: Path, victim: Path
) -> None:
    run = await _eval_run(settings, tmp_path)
    for name in ("status.json", "summary.json", "report.md", "report.html"):
        (run.run_dir / f".{name}.tmp").symlink_to(victim)
    resumed = await run_eval(config("ignored:x"), settings, resume=run.run_id, client_factory=Factory())
    assert victim.read_text() == BASHRC
    assert json.loads((resumed.run_dir / "status.json").read_text())["status"] == "finished"
    assert "<html" in (resumed.run_dir / "report.html").read_text().lower()


async def test_eval_resume_refuses_an_items_file_that_is_a_link(
    settings: Settings, tmp_path: Path, victim: Path
) -> None:
    run = await _eval_run(settings, tmp_path, methods=["cot"])
    items = run.run_dir / "items.jsonl"
    items.unlink()
    items.symlink_to(victim)  # every unit looks unfinished: a resume would append its answers to the victim
    factory = Factory()
    with pytest.raises(ConclaveError, match="symbolic link"):
        await run_eval(config("ignored:x"), settings, resume=run.run_id, client_factory=factory)
    assert victim.read_text() == BASHRC and factory.calls == 0


def test_view_rebuilds_a_report_without_writing_through_planted_links(
    settings: Settings, tmp_path: Path, victim: Path
) -> None:
    import asyncio

    run = asyncio.run(_eval_run(settings, tmp_path))
    (run.run_dir / "report.html").unlink()  # view rebuilds a missing report
    for name in ("summary.json", "report.md", "report.html"):
        (run.run_dir / f".{name}.tmp").symlink_to(victim)
    result = runner.invoke(app, ["view", run.run_id, "--no-open"])
    assert result.exit_code == 0, result.output
    assert victim.read_text() == BASHRC
    assert (run.run_dir / "report.html").is_file() and not (run.run_dir / "report.html").is_symlink()


def test_view_writes_nothing_into_a_run_folder_of_someone_else(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    run = asyncio.run(_eval_run(settings, tmp_path))
    (run.run_dir / "report.html").unlink()
    before = sorted(p.name for p in run.run_dir.iterdir())
    monkeypatch.setattr(os, "geteuid", lambda: os.stat(run.run_dir).st_uid + 1)  # the folder is not this user's
    result = runner.invoke(app, ["view", run.run_id, "--no-open"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in run.run_dir.iterdir()) == before
    shown = Path(result.stdout.strip().splitlines()[-1])
    assert shown.name == "report.html" and shown.is_file() and run.run_dir not in shown.parents


# ---------------------------------------------------------------------------------------------------- one writer


async def test_a_second_writer_of_a_run_is_told_who_holds_it(settings: Settings, tmp_path: Path) -> None:
    run = await _eval_run(settings, tmp_path, methods=["cot"])
    items = run.run_dir / "items.jsonl"
    items.write_text(items.read_text().splitlines()[0] + "\n")  # units left to do: a resume would call the backend
    before = items.read_bytes()
    holder = subprocess.Popen(  # another `eval --resume` of the same run, in the middle of writing it
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "os.ftruncate(fd, 0)\n"  # as exclusive_lock does: a longer pid written before must not show through
            "os.write(fd, str(os.getpid()).encode())\n"
            "print('held', flush=True)\n"
            "time.sleep(60)\n",
            str(run.run_dir / ".lock"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        factory = Factory()
        with pytest.raises(ConclaveError) as info:
            await run_eval(config("ignored:x"), settings, resume=run.run_id, client_factory=factory)
    finally:
        holder.kill()
        holder.wait()
    assert info.value.message == f"run {run.run_id} is being written by another process (pid {holder.pid})"
    assert "wait for it" in (info.value.hint or "")
    assert factory.calls == 0 and items.read_bytes() == before


# ---------------------------------------------------------------------------------------------------- disk full


async def test_disk_full_at_the_start_does_not_name_a_resume_that_cannot_work(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_replace = os.replace

    def replace(src: Any, dst: Any) -> None:
        if Path(dst).name == "config.json":  # the run's first file
            raise OSError(errno.ENOSPC, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    state: dict[str, Any] = {}
    with pytest.raises(ConclaveError, match="No space left on device") as info:
        await run_eval(
            config(f"gsm8k:{write_gsm8k(tmp_path / 'dev.jsonl')}"),
            settings,
            client_factory=Factory(),
            on_start=lambda rid, _d: state.update(run_id=rid),
        )
    hint = info.value.hint or ""
    assert "--resume" not in hint and "CONCLAVE_HOME" in hint and "free disk space" in hint
    from conclave.workflows.evaluation.runs import find_run

    with pytest.raises(ConclaveError, match="no run"):  # what the old hint led to: there is nothing to resume
        find_run(settings, state["run_id"])


# ---------------------------------------------------------------------------------------------------- workflows


def _planted_workflow_run(settings: Settings, workflow: str, base_dir: str, run_id: str = "wf-shared-1") -> Path:
    """A workflow run folder as someone else could hand it over: its run.json names the folder it may read."""
    run_dir = settings.runs_path / run_id
    run_dir.mkdir(parents=True)
    (run_dir / "workflow.yaml").write_text(workflow)
    (run_dir / "run.json").write_text(
        json.dumps({"kind": "workflow", "source": "bench.yaml", "base_dir": base_dir, "name": "w"})
    )
    (run_dir / "manifest.json").write_text(json.dumps({"run_id": run_id, "kind": "workflow", "config": {}}))
    return run_dir


def _batch_workflow(questions: str) -> str:
    return (
        "name: w\nmodels: {default: openai/scripted}\nsteps:\n"
        f"  - batch: {{questions: {json.dumps(questions)}, method: direct}}\n"
    )


async def test_a_resumed_workflow_does_not_take_its_read_boundary_from_run_json(
    settings: Settings, tmp_path: Path
) -> None:
    secret = tmp_path / "private" / "notes.txt"
    secret.parent.mkdir()
    secret.write_text("the user's private note\n")
    run_dir = _planted_workflow_run(settings, _batch_workflow(str(secret)), "/")

    planned = await run_workflow(None, settings, resume=run_dir.name, dry_run=True)
    assert planned.access is not None
    assert [u.path for u in planned.access.blocked()] == [str(secret.resolve())]  # the dry run flags it

    factory = Factory()
    with pytest.raises(WorkflowError, match="outside") as info:
        await run_workflow(None, settings, resume=run_dir.name, client_factory=factory)
    assert "--allow-paths" in (info.value.hint or "")
    assert factory.calls == 0 and not (run_dir / "steps").exists()


async def test_giving_the_workflow_file_again_restores_its_folder(settings: Settings, tmp_path: Path) -> None:
    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "questions.txt").write_text(QUESTION + "\n")
    workflow = bench / "bench.yaml"
    workflow.write_text(_batch_workflow("questions.txt"))
    run_dir = _planted_workflow_run(settings, workflow.read_text(), str(bench))

    with pytest.raises(WorkflowError, match="outside the run folder and the --allow-paths folders"):
        await run_workflow(None, settings, resume=run_dir.name, client_factory=Factory())
    result = await run_workflow(workflow, settings, resume=run_dir.name, client_factory=Factory())
    assert result.outputs["batch1"]["count"] == 1

    other = bench / "other.yaml"
    other.write_text(_batch_workflow("/etc/hostname"))
    with pytest.raises(ConclaveError, match="is not the workflow run"):
        await run_workflow(other, settings, resume=run_dir.name, client_factory=Factory())


async def test_a_step_folder_that_links_out_of_the_run_is_refused(
    settings: Settings, tmp_path: Path, victim: Path
) -> None:
    run_dir = _planted_workflow_run(
        settings,
        f"name: w\nmodels: {{default: openai/scripted}}\nsteps:\n  - ask: {{question: {QUESTION!r}, method: direct}}\n",
        "/",
    )
    (run_dir / "steps").mkdir()
    (run_dir / "steps" / "ask1").symlink_to(victim.parent, target_is_directory=True)
    with pytest.raises(ConclaveError, match="outside the run folder"):
        await run_workflow(None, settings, resume=run_dir.name, client_factory=Factory())
    assert sorted(p.name for p in victim.parent.iterdir()) == [".bashrc"]


async def test_a_report_step_reads_only_runs_inside_the_allowed_folders(settings: Settings, tmp_path: Path) -> None:
    elsewhere = await _eval_run(settings, tmp_path, methods=["cot"])  # stands for any folder on the disk
    run_dir = _planted_workflow_run(
        settings,
        "name: w\nmodels: {default: openai/scripted}\nsteps:\n"
        "  - id: e\n    eval: {dataset: 'gsm8k:dev.jsonl', methods: [cot]}\n"
        "  - report: {runs: [e]}\n",
        str(tmp_path),
    )
    finished = {"step": "e", "kind": "eval", "status": "finished", "outputs": {"run_dir": str(elsewhere.run_dir)}}
    (run_dir / "steps.jsonl").write_text(json.dumps(finished) + "\n")
    with pytest.raises(WorkflowError, match="outside"):
        await run_workflow(None, settings, resume=run_dir.name, client_factory=Factory())
    assert not (run_dir / "steps" / "report2" / "report.html").exists()
