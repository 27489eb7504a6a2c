"""Bad input at the command line: non-zero exit, one ``error:`` line plus one ``fix:`` line, no traceback.

The CLI runs as a real subprocess (the installed ``conclave`` script), so exit codes, stderr and signals are
what a user sees.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures.servers import OLLAMA_STUB_MODEL, REPO_ROOT, Behaviour, FlakyEndpoint, default_sigint, free_port

pytestmark = pytest.mark.integration

Flaky = Callable[[Behaviour], FlakyEndpoint]
FAKE_KEY = "sk-test-0123456789abcdef"


def cli_command() -> list[str]:
    script = Path(sys.executable).parent / "conclave"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "from conclave.cli.main import main; main()"]


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)  # carries the test's CONCLAVE_HOME and closed CONCLAVE_OLLAMA_HOST
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.update({"COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb", "CONCLAVE_MAX_TOKENS": "32"})
    env.update(extra)
    return env


def run_cli(*args: str, timeout: float = 180, **env: str) -> subprocess.CompletedProcess[str]:
    # stdin is /dev/null: `ask` reads a piped stdin as its question's context, and an inherited one may never end.
    return subprocess.run(
        [*cli_command(), *args],
        env=cli_env(**env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_clean_error(proc: subprocess.CompletedProcess[str], *, code: int | None = None) -> tuple[str, str]:
    """Exactly one ``error:`` line followed by a ``fix:`` line; return both."""
    assert proc.returncode != 0, proc
    if code is not None:
        assert proc.returncode == code, proc
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line.strip() for line in proc.stderr.splitlines() if line.strip()]
    errors = [i for i, line in enumerate(lines) if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert errors[0] + 1 < len(lines) and lines[errors[0] + 1].startswith("fix:"), proc.stderr
    return lines[errors[0]], lines[errors[0] + 1]


# -- bad model specs and files -------------------------------------------------------------------------------


def test_unknown_spec_prefix() -> None:
    error, fix = assert_clean_error(run_cli("ask", "--model", "foo/bar", "hi"), code=2)
    assert "foo/bar" in error
    assert "embedded" in fix and "ollama/" in fix


def test_debug_shows_the_traceback() -> None:
    proc = run_cli("--debug", "ask", "--model", "foo/bar", "hi")
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr


def test_missing_gguf(tmp_path: Path) -> None:
    missing = tmp_path / "missing.gguf"
    error, _ = assert_clean_error(run_cli("ask", "--model", f"embedded:{missing}", "hi"), code=2)
    assert str(missing) in error


def test_not_a_gguf(tmp_path: Path) -> None:
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"PK\x03\x04 definitely a zip file")
    error, _ = assert_clean_error(run_cli("ask", "--model", f"embedded:{fake}", "hi"), code=2)
    assert "GGUF" in error


def test_invalid_setting_value() -> None:
    error, _ = assert_clean_error(run_cli("ask", "--model", "embedded:smollm2", "hi", CONCLAVE_TOP_K="many"), code=2)
    assert "top_k" in error


# -- Ollama --------------------------------------------------------------------------------------------------


def test_ollama_unreachable() -> None:
    host = f"http://127.0.0.1:{free_port()}"
    error, fix = assert_clean_error(
        run_cli("ask", "--model", "ollama/llama3.2", "hi", CONCLAVE_OLLAMA_HOST=host, CONCLAVE_MAX_RETRIES="0")
    )
    assert host in error
    assert "ollama serve" in fix and "--model embedded" in fix


def test_ollama_model_not_pulled(ollama_stub: str) -> None:
    error, fix = assert_clean_error(
        run_cli("ask", "--model", "ollama/llama3.2", "hi", CONCLAVE_OLLAMA_HOST=ollama_stub)
    )
    assert "llama3.2" in error
    assert "ollama pull llama3.2" in fix


# -- OpenAI-compatible ---------------------------------------------------------------------------------------


def test_openai_key_missing() -> None:
    error, fix = assert_clean_error(run_cli("ask", "--model", "openai/gpt-4o-mini", "hi"))
    assert "OPENAI_API_KEY" in f"{error} {fix}"


# The default method runs the whole agent team; `direct` is one model call. Both must fail the same clean way.
METHODS = [
    pytest.param([], id="default-method", marks=pytest.mark.slow),
    pytest.param(["--method", "direct"], id="direct"),
]


@pytest.mark.parametrize("method", METHODS)
def test_openai_401(flaky_endpoint: Flaky, method: list[str]) -> None:
    endpoint = flaky_endpoint("401")
    proc = run_cli(
        "ask", *method, "--model", "openai/gpt-4o-mini", "hi",
        CONCLAVE_OPENAI_BASE_URL=endpoint.base_url, CONCLAVE_OPENAI_API_KEY=FAKE_KEY,
    )  # fmt: skip
    error, _ = assert_clean_error(proc)
    assert "key" in error.lower()
    assert FAKE_KEY not in proc.stderr + proc.stdout


@pytest.mark.parametrize("method", METHODS)
def test_openai_500_after_retries(flaky_endpoint: Flaky, method: list[str]) -> None:
    endpoint = flaky_endpoint("500")
    proc = run_cli(
        "ask", *method, "--model", "openai/gpt-4o-mini", "hi",
        CONCLAVE_OPENAI_BASE_URL=endpoint.base_url, CONCLAVE_OPENAI_API_KEY=FAKE_KEY,
        CONCLAVE_MAX_RETRIES="1",
    )  # fmt: skip
    error, _ = assert_clean_error(proc)
    assert "500" in error
    assert endpoint.chat_hits >= 2  # the command may make more than one model call; each is retried once


# -- conclave models -----------------------------------------------------------------------------------------


def test_models_with_ollama_down_still_lists_embedded() -> None:
    proc = run_cli("models", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "embedded" in proc.stdout
    assert "ollama serve" in proc.stdout  # why Ollama is not usable, and the fix


def test_models_lists_the_test_ollama_server(ollama_stub: str) -> None:
    proc = run_cli("models", timeout=60, CONCLAVE_OLLAMA_HOST=ollama_stub)
    assert proc.returncode == 0, proc.stderr
    assert "embedded" in proc.stdout
    assert f"ollama/{OLLAMA_STUB_MODEL}" in proc.stdout


# -- Ctrl-C --------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_ctrl_c_while_streaming_exits_130_without_traceback() -> None:
    proc = subprocess.Popen(
        [*cli_command(), "ask", "--model", "embedded:smollm2", "--method", "direct",
         "Write a long story about a dragon who lives in a castle."],
        env=cli_env(CONCLAVE_MAX_TOKENS="3000", CONCLAVE_CONTEXT_LENGTH="4096"),
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=default_sigint,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        received = b""
        deadline = time.monotonic() + 120
        # Wait for the header line and the first streamed words of the answer.
        while received.count(b"\n") < 1 or len(received) < 80:
            chunk = proc.stdout.read1(4096)  # type: ignore[attr-defined]
            assert chunk, f"the command ended before streaming: {proc.wait()} {proc.stderr.read()!r}"  # type: ignore[union-attr]
            received += chunk
            assert time.monotonic() < deadline, "no streamed output within 120 s"
        assert proc.poll() is None, "the answer finished before Ctrl-C could be sent"
        proc.send_signal(signal.SIGINT)
        rest, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr.decode(errors="replace")
    text = stderr.decode(errors="replace")
    assert "Traceback" not in text, text
    assert "Exception ignored" not in text, text
