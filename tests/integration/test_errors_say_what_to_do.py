"""Errors that say what to do (issue 29, item 5), as a user meets them: the real CLI in a subprocess, no model
loaded. A mistyped model name gets a did-you-mean, a mistyped method the registry's "use one of" line alone, and
every command a hint names exists."""

from __future__ import annotations

import re

import pytest

from tests.integration.test_cli_errors import assert_clean_error, run_cli

pytestmark = pytest.mark.integration


def test_a_mistyped_builtin_model_gets_a_did_you_mean() -> None:
    error, fix = assert_clean_error(run_cli("ask", "--model", "embedded:smollm", "hi"), code=2)
    assert "'smollm'" in error
    assert "did you mean embedded:smollm2?" in error + " " + fix


def test_a_mistyped_backend_prefix_gets_a_did_you_mean() -> None:
    error, fix = assert_clean_error(run_cli("ask", "--model", "olama/qwen2.5:7b", "hi"), code=2)
    assert "olama/qwen2.5:7b" in error
    assert "did you mean ollama/qwen2.5:7b?" in error + " " + fix


def test_a_mistyped_method_prints_the_registrys_line_not_pydantics() -> None:
    error, fix = assert_clean_error(run_cli("ask", "--method", "cott", "hi"), code=2)
    assert "Value error" not in error and "invalid settings" not in error
    assert error.startswith("error: unknown method 'cott': use coa (default), cot, rag, react, direct or rag-cot")
    assert "conclave methods" in error + fix


def test_the_hint_of_an_empty_runs_list_names_commands_that_exist() -> None:
    proc = run_cli("runs", "list")
    assert proc.returncode == 0
    named = re.findall(r"`(conclave [^`]+)`", proc.stdout + proc.stderr)
    assert named, proc.stdout
    for command in named:
        words = command.split()[1:3]
        helped = run_cli(*words, "--help") if len(words) > 1 and not words[1].startswith("-") else None
        check = helped if helped is not None else run_cli(words[0], "--help")
        assert check.returncode == 0 and "No such command" not in check.stderr, (command, check.stderr)


def test_synth_help_names_the_files_it_writes() -> None:
    proc = run_cli("synth", "--help")
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    assert "OUTPUT.summary.json" not in text  # qa.jsonl's summary is qa.summary.json, not qa.jsonl.summary.json
    assert "qa.summary.json" in text and "-o qa.jsonl" in text
