"""Bad input and broken endpoints end in one ``error:`` line and its ``fix:`` line, at once (issue 26).

Each case runs the real CLI in a subprocess: an over-long question (on stdin or as the argument), an ``OLLAMA_HOST``
that is not a URL, a question that overflows the embedded model's context, and an endpoint that answers with an HTML
page or JSON cut short (not transient: no retries, no Python warning on the terminal)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conclave.cli.main import MAX_QUESTION_BYTES

from tests.integration.test_cli_errors import FAKE_KEY, Flaky, assert_clean_error, cli_command, cli_env, run_cli

CLOSED = "http://127.0.0.1:9/v1"
"""An endpoint nobody listens on: a question that got past the checks would fail there (after retries)."""


def ask_on_stdin(question: bytes, *args: str) -> subprocess.CompletedProcess[str]:
    env = cli_env(CONCLAVE_OPENAI_BASE_URL=CLOSED, CONCLAVE_OPENAI_API_KEY=FAKE_KEY, CONCLAVE_MAX_RETRIES="0")
    proc = subprocess.run(
        [*cli_command(), "ask", "--model", "openai/gpt-4o-mini", "--method", "direct", *args],
        input=question,
        env=env,
        capture_output=True,
        timeout=120,
    )
    return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode(), proc.stderr.decode())


def test_a_question_over_the_bound_on_stdin_is_refused_and_not_logged(conclave_home: Path) -> None:
    proc = ask_on_stdin(b"How many words are in this? " + b"word " * 2_000_000)  # 10 MB
    error, fix = assert_clean_error(proc, code=2)
    assert error == f"error: the question is longer than {MAX_QUESTION_BYTES:,} bytes"
    assert "conclave ingest" in fix
    assert not (conclave_home / "logs.sqlite").exists()


def test_a_question_at_the_bound_is_read_whole() -> None:
    """The bound itself is allowed: the run goes on to the model (here an endpoint that is down)."""
    proc = ask_on_stdin(b"x" * MAX_QUESTION_BYTES, "--no-log")
    error, _ = assert_clean_error(proc)
    assert "cannot reach" in error


def test_a_question_argument_over_the_bound_is_refused(conclave_home: Path) -> None:
    proc = run_cli("ask", "--model", "openai/gpt-4o-mini", "é" * (MAX_QUESTION_BYTES // 2 + 1))  # 2 bytes each
    error, _ = assert_clean_error(proc, code=2)
    assert error == f"error: the question is longer than {MAX_QUESTION_BYTES:,} bytes"
    assert not (conclave_home / "logs.sqlite").exists()


def test_an_ollama_host_that_is_not_a_url_says_how_to_set_it() -> None:
    proc = run_cli("ask", "--no-log", "--model", "ollama/qwen", "hi", CONCLAVE_OLLAMA_HOST="not a url")
    error, fix = assert_clean_error(proc, code=2)
    assert error == "error: ollama_host is not an http(s) URL: 'not a url'"
    assert "OLLAMA_HOST" in fix and "http://127.0.0.1:11434" in fix


def test_a_question_beyond_the_embedded_context_says_what_to_change() -> None:
    question = "Count the words. " + "word " * 6_000  # about 6,000 tokens, under the byte bound
    proc = run_cli(
        "ask", "--no-log", "--model", "embedded:smollm2", "--method", "direct", question,
        CONCLAVE_CONTEXT_LENGTH="2048", CONCLAVE_EMBEDDED_THREADS="1",
    )  # fmt: skip
    error, fix = assert_clean_error(proc)
    assert "more than the context of 2048 tokens" in error
    assert "context_length" in fix


@pytest.mark.parametrize("behaviour", ["garbage", "garbage_json"])
def test_an_html_or_cut_json_reply_fails_at_once_without_a_warning(flaky_endpoint: Flaky, behaviour: str) -> None:
    endpoint = flaky_endpoint(behaviour)  # type: ignore[arg-type]
    proc = run_cli(
        "ask", "--no-log", "--method", "direct", "--model", "openai/gpt-4o-mini", "hi",
        CONCLAVE_OPENAI_BASE_URL=endpoint.base_url, CONCLAVE_OPENAI_API_KEY=FAKE_KEY, CONCLAVE_MAX_RETRIES="3",
    )  # fmt: skip
    error, fix = assert_clean_error(proc)
    assert "is probably not an OpenAI-compatible" in error and "/v1" in fix
    assert "Warning" not in proc.stderr, proc.stderr
    # Tried once more (a busy llama.cpp server cuts a stream off), not max_retries (3) times.
    assert endpoint.chat_hits == 2, "an empty reply is tried once more, never more"
