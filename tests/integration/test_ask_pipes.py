"""Issue 29, item 3: `conclave ask` pipes like a Unix tool (the real ``conclave`` script in a subprocess, on a loopback
OpenAI-compatible stub): the answer alone on a redirected stdout, piped text as the question's context (bounded), and
Ctrl-C during the team's run as one line and exit 130."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.servers import default_sigint
from tests.integration.test_cli_errors import assert_clean_error, cli_command, cli_env
from tests.servers.openai_stub import StubEndpoint

pytestmark = pytest.mark.integration

MAX_CONTEXT_BYTES = 256 * 1024
"""The bound on piped context the README states."""
ANSWER = "The answer is four.\nAnswer: 4"
NOTES = (
    "# Meeting notes\n\nThe launch moves to the ninth of March because the vendor shipped the sensors late.\n\n"
    "Priya owns the budget review; the marmalade protocol stays frozen until April.\n"
)


@pytest.fixture
def stub() -> Iterator[StubEndpoint]:
    endpoint = StubEndpoint(answer=ANSWER).start()
    yield endpoint
    endpoint.stop()


def _env(stub: StubEndpoint, **extra: str) -> dict[str, str]:
    return cli_env(
        CONCLAVE_OPENAI_BASE_URL=stub.base_url,
        OPENAI_API_KEY="sk-test-not-a-real-key",
        CONCLAVE_EMBEDDED_THREADS="1",
        **extra,
    )


def _ask(stub: StubEndpoint, *args: str, piped: str | None = None, stdout: Any = subprocess.PIPE) -> Any:
    """``conclave ask --model openai/stub ARGS`` with ``piped`` on a pipe as stdin (none: /dev/null)."""
    return subprocess.run(
        [*cli_command(), "ask", "--model", "openai/stub", *args],
        env=_env(stub),
        input=piped,
        stdin=subprocess.DEVNULL if piped is None else None,
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        timeout=300,
    )


def _user_text(request: dict[str, Any]) -> str:
    return "\n".join(str(m.get("content")) for m in request["messages"] if m.get("role") == "user")  # type: ignore[union-attr]


# -- the answer alone on stdout ---------------------------------------------------------------------------------


@pytest.mark.parametrize("trace", [False, True])
def test_a_redirected_answer_is_alone_on_stdout(stub: StubEndpoint, tmp_path: Path, trace: bool) -> None:
    answer_file = tmp_path / "out.txt"
    with answer_file.open("w", encoding="utf-8") as fh:
        proc = _ask(stub, "--method", "direct", *(["--trace"] if trace else []), "What is 2+2?", stdout=fh)
    assert proc.returncode == 0, proc.stderr
    assert answer_file.read_text(encoding="utf-8") == ANSWER + "\n"
    # The run's frame (method and model, then the usage) and the trace are on stderr.
    assert "direct · model openai/stub" in proc.stderr and "model call(s)" in proc.stderr
    if trace:
        assert "reasoner: 10+3 tokens" in proc.stderr


# -- piped text is the question's context -----------------------------------------------------------------------


def test_piped_text_is_the_context_the_question_is_answered_from(stub: StubEndpoint) -> None:
    proc = _ask(stub, "--method", "rag", "--json", "--no-log", "Summarise", piped=NOTES)  # cat notes.md | ...
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    asked = _user_text(stub.requests[-1])
    assert "marmalade protocol stays frozen" in asked and "Question: Summarise" in asked
    assert result["question"] == "Summarise"  # the question stays the question; the text is its context
    retrieval = next(e for e in result["trace"] if e["kind"] == "retrieval")
    assert retrieval["passages"] and {p["source"] for p in retrieval["passages"]} == {"stdin"}
    assert next(e for e in result["trace"] if e["kind"] == "run_started")["collection"] == "stdin"


def test_piped_text_over_the_bound_is_refused_before_anything_is_sent(stub: StubEndpoint) -> None:
    proc = _ask(stub, "--method", "rag", "Summarise the key points", piped="x" * (MAX_CONTEXT_BYTES + 1))
    error, fix = assert_clean_error(proc, code=2)
    assert f"{MAX_CONTEXT_BYTES:,} bytes" in error and "conclave ingest" in fix
    assert proc.stdout == "" and stub.requests == []


def test_piped_text_with_a_method_that_reads_no_documents_is_refused(stub: StubEndpoint) -> None:
    proc = _ask(stub, "--method", "direct", "Summarise the key points", piped=NOTES)
    error, fix = assert_clean_error(proc, code=2)
    assert "direct" in error and "piped" in error and "--method rag" in fix
    assert stub.requests == []


# -- Ctrl-C ---------------------------------------------------------------------------------------------------------


def test_ctrl_c_during_the_team_is_one_line_and_exit_130(tmp_path: Path) -> None:
    slow = StubEndpoint(delay=30.0, answer=ANSWER).start()
    try:
        proc = subprocess.Popen(
            [*cli_command(), "ask", "--model", "openai/stub", "What is 2+2?"],
            env=_env(slow),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=default_sigint,
        )
        deadline = time.monotonic() + 240
        while slow.in_flight == 0 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert slow.in_flight, "the team never called the model"
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        slow.stop()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "task_done" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert [line for line in lines if not line.startswith("coa · model")] == ["cancelled"], stderr
