"""Issue 17 at the command line's edge, as a user meets it (the real ``conclave`` script in a subprocess): the
question from stdin, and ``conclave view`` on a run that does not exist. No model is loaded."""

from __future__ import annotations

import subprocess

import pytest

from tests.integration.test_cli_errors import assert_clean_error, cli_command, cli_env

pytestmark = pytest.mark.integration


def run_with_stdin(*args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*cli_command(), *args], env=cli_env(), input=stdin, capture_output=True, text=True, timeout=120
    )


def test_view_of_an_unknown_run_is_one_error_with_a_fix_and_exit_2() -> None:
    proc = run_with_stdin("view", "eval-20990101-000000-beef", "--no-open", stdin="")
    error, fix = assert_clean_error(proc, code=2)
    assert "no run 'eval-20990101-000000-beef'" in error and "there are no runs yet" in error
    assert "run id" in fix
    assert proc.stdout == ""


@pytest.mark.parametrize("stdin", ["", "   \n\n"])
def test_ask_with_no_question_on_the_line_or_stdin_is_a_usage_error(stdin: str) -> None:
    proc = run_with_stdin("ask", stdin=stdin)
    assert proc.returncode == 2, proc
    assert "Traceback" not in proc.stderr and "Usage:" in proc.stderr
    assert "Missing question" in proc.stderr and "conclave ask" in proc.stderr


def test_a_question_piped_on_stdin_is_asked() -> None:
    # An unknown model spec fails before any model loads, after the question was read: the error is about the
    # model, not a missing question.
    proc = run_with_stdin("ask", "--model", "foo/bar", stdin="What is 2+2?\n")
    error, _ = assert_clean_error(proc, code=2)
    assert "foo/bar" in error and "Missing question" not in proc.stderr
