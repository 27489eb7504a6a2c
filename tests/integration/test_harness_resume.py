"""Resume after the process is killed mid-run (SIGKILL, and Ctrl-C through the real CLI).

The child is the real ``conclave`` entry point with the model factory swapped for a slow scripted backend; the
parent waits until some items are on disk, kills it, resumes, and checks the final items match a clean run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conclave.workflows.evaluation import EvalConfig, run_eval

from conclave.settings import load_settings
from tests.fixtures.servers import default_sigint
from tests.unit.test_harness import Factory, comparable, write_gsm8k

ROOT = Path(__file__).resolve().parents[2]
CHILD = """
import sys
sys.path.insert(0, {root!r})
import conclave.workflows.evaluation.cache as cache
from tests.unit.test_harness import Factory
cache._default_factory = Factory(delay=0.4)
from conclave.cli.main import main
sys.argv = ["conclave", "eval", "--dataset", {dataset!r}, "--method", "cot", "--method", "direct",
            "--model", "openai/scripted", "--concurrency", "1"]
main()
"""


def _start(tmp_path: Path, home: Path, dataset: str) -> tuple[subprocess.Popen[bytes], Path]:
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(root=str(ROOT), dataset=dataset))
    env = {**os.environ, "CONCLAVE_HOME": str(home), "PYTHONPATH": str(ROOT)}
    stderr = tmp_path / "child.err"
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=stderr.open("wb"),
        cwd=tmp_path,
        preexec_fn=default_sigint,
    )
    return proc, stderr


def _wait_for_items(home: Path, proc: subprocess.Popen[bytes], at_least: int, timeout: float = 90.0) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the child ended before it could be interrupted"
        for items in (home / "runs").glob("eval-*/items.jsonl"):
            if len(items.read_text().splitlines()) >= at_least:
                return items.parent
        time.sleep(0.05)
    proc.kill()
    pytest.fail("the child wrote no items in time")


async def _clean_records(dataset: str) -> list[dict[str, Any]]:
    settings = load_settings(model="openai/scripted")
    clean = await run_eval(
        EvalConfig(dataset=dataset, methods=["cot", "direct"], models=["openai/scripted"], cache=False),
        settings,
        client_factory=Factory(),
    )
    return clean.records


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["sigkill", "sigint"])
async def test_killed_run_resumes_to_the_same_items(tmp_path: Path, conclave_home: Path, sig: signal.Signals) -> None:
    dataset = f"gsm8k:{write_gsm8k(tmp_path / 'dev.jsonl')}"
    proc, stderr = _start(tmp_path, conclave_home, dataset)
    run_dir = _wait_for_items(conclave_home, proc, at_least=2)
    proc.send_signal(sig)
    code = proc.wait(timeout=60)
    done = len((run_dir / "items.jsonl").read_text().splitlines())
    assert 2 <= done < 8, done
    status = json.loads((run_dir / "status.json").read_text())["status"]
    if sig == signal.SIGINT:
        assert code == 130
        assert status == "interrupted"
        assert f"resume with: conclave eval --resume {run_dir.name}" in " ".join(stderr.read_text().split())
    else:
        assert code == -signal.SIGKILL
        assert status == "running"  # nothing could run; resume must not depend on it

    factory = Factory()
    settings = load_settings(model="openai/scripted")
    resumed = await run_eval(
        EvalConfig(dataset="gsm8k:unused", methods=["cot"]), settings, resume=run_dir.name, client_factory=factory
    )
    assert factory.calls == 8 - done
    assert comparable(resumed.records) == comparable(await _clean_records(dataset))
    assert (run_dir / "report.html").is_file() and (run_dir / "summary.json").is_file()
