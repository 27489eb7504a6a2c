"""The command line's edge, as a user meets it (the real ``conclave`` script in a subprocess):

* usage mistakes get typer's usage message and exit 2, not an "unexpected error, report it";
* a message carrying text from outside (a path, a model spec) is shown as that text: Rich markup in it is
  neither interpreted (``[/]`` used to turn the error into a traceback) nor allowed to hide anything.
"""

from __future__ import annotations

import pytest

from tests.integration.test_cli_errors import assert_clean_error, run_cli

pytestmark = pytest.mark.integration


def assert_usage_error(args: list[str], *needles: str) -> str:
    proc = run_cli(*args, timeout=60)
    assert proc.returncode == 2, proc
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "unexpected" not in proc.stderr and "report it" not in proc.stderr, proc.stderr
    assert "Usage:" in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in proc.stderr, proc.stderr
    return proc.stderr


def test_unknown_command_is_a_usage_error() -> None:
    assert_usage_error(["frobnicate"], "frobnicate")


def test_bad_option_value_is_a_usage_error() -> None:
    assert_usage_error(["eval", "--limit", "0"], "--limit")


def test_unknown_option_is_a_usage_error() -> None:
    assert_usage_error(["ask", "--no-such-option", "hi"], "--no-such-option")


def test_path_with_markup_closing_tag_is_one_clean_error() -> None:
    error, fix = assert_clean_error(run_cli("ingest", "/nonexistent/[/]", timeout=120), code=2)
    assert error == "error: no such file or folder: /nonexistent/[/]"
    assert fix.startswith("fix: check the path")


def test_markup_in_a_message_cannot_hide_text() -> None:
    proc = run_cli("ingest", "/nonexistent/[black on black]secret[/]", timeout=120)
    error, _ = assert_clean_error(proc, code=2)
    assert error == "error: no such file or folder: /nonexistent/[black on black]secret[/]"


def test_escape_sequences_in_a_message_do_not_reach_the_terminal() -> None:
    proc = run_cli("ingest", "/nonexistent/\x1b]0;pwned\x07\x1b[8mhidden", timeout=120)
    error, _ = assert_clean_error(proc, code=2)
    assert "\x1b" not in proc.stderr and "\x07" not in proc.stderr
    assert error == "error: no such file or folder: /nonexistent/hidden"


def test_model_spec_with_markup_is_shown_literally() -> None:
    error, _ = assert_clean_error(run_cli("ask", "--model", "foo/[bold]bar[/]", "hi", timeout=120), code=2)
    assert "foo/[bold]bar[/]" in error


def test_emoji_codes_in_a_path_are_not_replaced() -> None:
    error, _ = assert_clean_error(run_cli("ingest", "/nonexistent/:fire:", timeout=120), code=2)
    assert error == "error: no such file or folder: /nonexistent/:fire:"
