"""Evaluation on Ray (issue 19 §2: ``conclave eval --executor ray``), on a real local Ray and real loopback servers.

* Two llama.cpp servers (xllamacpp's) with the bundled SmolLM2, pooled as one model: the Ray run gives each item the same
  answer as a local run (temperature 0).
* An endpoint SIGKILLed mid-run loses no item: its requests move to the other endpoint and the run completes.
* The driver SIGKILLed mid-run: ``--resume`` finishes the run with every unit once in ``items.jsonl``.
* An unreachable ``--address`` is one clear error, at once.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conclave.workflows.evaluation import EvalConfig, run_eval

from conclave.settings import load_settings
from tests.fixtures.servers import (
    OPENAI_SERVER_MODEL,
    ServerProcess,
    free_port,
    openai_server_command,
    start_server,
)
from tests.unit.test_harness import write_gsm8k

pytest.importorskip("ray", reason="the ray extra is not installed (pip install -e '.[ray]')")

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
ROOT = Path(__file__).resolve().parents[2]
STUB_INFO = {"stub": {"function_calling": False, "json_output": True, "structured_output": True}}
SERVER_INFO = {OPENAI_SERVER_MODEL: {"function_calling": False, "json_output": True, "structured_output": True}}


def _questions(path: Path, n: int) -> Path:
    """A GSM8K-format file of ``n`` small arithmetic questions."""
    lines = [
        json.dumps(
            {
                "id": f"q{i}",
                "question": f"Sam has {i + 2} apples and buys {i + 3} more. How many?",
                "answer": f"#### {2 * i + 5}",
            }
        )
        for i in range(n)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def two_llama_servers(smollm_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    folder = tmp_path_factory.mktemp("ray-servers")
    servers: list[ServerProcess] = []
    urls = []
    try:
        for n in range(2):
            port = free_port()
            cmd = openai_server_command("xllamacpp", smollm_path, port, threads=1)
            servers.append(start_server(cmd, f"http://127.0.0.1:{port}/v1/models", folder / f"server{n}.log"))
            urls.append(f"http://127.0.0.1:{port}/v1")
        yield urls
    finally:
        for server in servers:
            server.stop()


async def test_a_ray_run_gives_each_item_the_local_answer(
    two_llama_servers: list[str], tmp_path: Path, conclave_home: Path
) -> None:
    dataset = f"gsm8k:{write_gsm8k(tmp_path / 'dev.jsonl')}"
    settings = load_settings(
        openai_base_urls=two_llama_servers, openai_model_info=SERVER_INFO, temperature=0.0, max_tokens=48
    )
    config = EvalConfig(
        dataset=dataset, methods=["direct"], models=[f"openai/{OPENAI_SERVER_MODEL}"], concurrency=2, cache=False
    )
    local = await run_eval(config, settings)
    notes: list[str] = []
    distributed = await run_eval(config.model_copy(update={"executor": "ray"}), settings, on_note=notes.append)
    assert any("local Ray: 2 worker(s)" in n for n in notes), notes
    assert len(local.records) == len(distributed.records) == 4
    assert all(r.ok for r in local.records), [r.error for r in local.records]
    by_item = {r.item_id: (r.answer, r.value, r.completion_tokens) for r in local.records}
    assert {r.item_id: (r.answer, r.value, r.completion_tokens) for r in distributed.records} == by_item
    assert all(r.backend_calls >= 1 for r in distributed.records), "each item reached a server (cache off)"


def _stub_process(tmp_path: Path, delay: float) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "servers" / "openai_stub.py"), str(port), "--delay", str(delay)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            import urllib.request

            with urllib.request.urlopen(f"{url}/models", timeout=1):
                return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    pytest.fail("the stub endpoint did not start")


async def test_an_endpoint_killed_mid_run_loses_no_item(tmp_path: Path, conclave_home: Path) -> None:
    (doomed, doomed_url), (alive, alive_url) = _stub_process(tmp_path, 0.3), _stub_process(tmp_path, 0.3)
    try:
        settings = load_settings(
            openai_base_urls=[doomed_url, alive_url],
            openai_model_info=STUB_INFO,
            request_timeout=10,
            max_retries=1,
            endpoint_cooldown=60,
        )
        dataset = f"gsm8k:{_questions(tmp_path / 'q.jsonl', 16)}"
        config = EvalConfig(
            dataset=dataset, methods=["direct"], models=["openai/stub"], concurrency=4, cache=False, executor="ray"
        )
        run = asyncio.create_task(run_eval(config, settings))
        for _ in range(400):  # kill the first endpoint once some items are on disk
            done = list(conclave_home.glob("runs/eval-*/items.jsonl"))
            if done and len(done[0].read_text().splitlines()) >= 3:
                break
            await asyncio.sleep(0.05)
        doomed.send_signal(signal.SIGKILL)
        result = await run
    finally:
        for proc in (doomed, alive):
            proc.kill()
            proc.wait()
    assert len(result.records) == 16
    assert all(r.ok for r in result.records), [r.error for r in result.records if not r.ok]
    assert [r.value for r in result.records] == ["42"] * 16
    lines = (result.run_dir / "items.jsonl").read_text().splitlines()
    assert len(lines) == 16 and len({json.loads(line)["key"] for line in lines}) == 16


def _eval_cli(home: Path, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CONCLAVE_HOME": str(home), "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", "from conclave.cli.main import main; main()", "eval", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # the local Ray it starts is in this process group too, to be killed with it
    )


def test_resume_of_a_killed_ray_run_finishes_without_duplicates(tmp_path: Path, conclave_home: Path) -> None:
    stub, url = _stub_process(tmp_path, 0.4)
    (conclave_home / "settings.toml").write_text(
        "[openai_model_info.stub]\nfunction_calling = false\njson_output = true\nstructured_output = true\n"
    )
    dataset = f"gsm8k:{_questions(tmp_path / 'q.jsonl', 12)}"
    common = ["--endpoint", url, "--executor", "ray", "--concurrency", "2", "--no-cache"]
    try:
        first = _eval_cli(conclave_home, "-d", dataset, "--method", "direct", "-m", "openai/stub", *common)
        items: Path | None = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and first.poll() is None:
            found = list(conclave_home.glob("runs/eval-*/items.jsonl"))
            if found and len(found[0].read_text().splitlines()) >= 3:
                items = found[0]
                break
            time.sleep(0.05)
        assert items is not None, f"no items written: {first.communicate(timeout=5)[1].decode()[-2000:]}"
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
        written = len(items.read_text().splitlines())
        assert 3 <= written < 12, "killed mid-run"
        resumed = _eval_cli(conclave_home, "--resume", items.parent.name, *common)
        out, err = resumed.communicate(timeout=180)
        assert resumed.returncode == 0, err.decode()[-2000:]
    finally:
        for proc in [p for p in (locals().get("first"), locals().get("resumed")) if p is not None]:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        stub.kill()
        stub.wait()
    keys = [json.loads(line)["key"] for line in items.read_text().splitlines()]
    assert len(keys) == 12 and len(set(keys)) == 12, "every unit once: none lost, none written twice"
    summary = json.loads((items.parent / "summary.json").read_text())
    assert summary["units"] == 12 and summary["failed_units"] == 0


def test_an_unreachable_ray_address_is_one_clear_error(tmp_path: Path, conclave_home: Path) -> None:
    dataset = f"gsm8k:{_questions(tmp_path / 'q.jsonl', 2)}"
    port = free_port()
    started = time.monotonic()
    proc = _eval_cli(
        conclave_home, "-d", dataset, "-m", "openai/stub", "--executor", "ray", "--address", f"127.0.0.1:{port}"
    )
    out, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    message = err.decode()
    assert f"cannot reach the Ray cluster at 127.0.0.1:{port}" in message, message
    assert "Traceback" not in message
    assert time.monotonic() - started < 60, "refused at once, not after Ray's own minute of retries"


async def test_an_embedded_model_runs_inside_the_workers(tmp_path: Path, conclave_home: Path) -> None:
    """No endpoint at all: each Ray worker loads the bundled model itself, and the answers are the local run's.
    The thread count is pinned: llama.cpp sums in another order with another count, and greedy decoding can then
    take another word (a Ray worker on one machine otherwise gets cores / workers threads). Both runs start from a
    freshly loaded model: a model's prompt cache from an earlier run changes greedy answers too (PERFORMANCE.md §5)."""
    dataset = f"gsm8k:{_questions(tmp_path / 'q.jsonl', 2)}"
    # A context length no other test uses: this process loads a copy of its own, with an empty prompt cache.
    settings = load_settings(temperature=0.0, max_tokens=32, context_length=2176, embedded_threads=1)
    # Named: the workers are other processes, where the suite's "Qwen looks uninstalled" patch does not reach.
    config = EvalConfig(dataset=dataset, methods=["direct"], models=["embedded:smollm2"], concurrency=2, cache=False)
    local = await run_eval(config, settings)
    notes: list[str] = []
    distributed = await run_eval(config.model_copy(update={"executor": "ray"}), settings, on_note=notes.append)
    assert any("runs inside each Ray worker" in n for n in notes), notes
    assert all(r.ok for r in distributed.records), [r.error for r in distributed.records]
    assert [(r.item_id, r.answer) for r in distributed.records] == [(r.item_id, r.answer) for r in local.records]
