"""The README's question on the real SmolLM2 through the CLI (issue 29, item 7): it used to spend minutes on three
chain drafts that never validated (768-token loops) and give no answer. Now the one-line note comes first, ``rag``
answers, and decoding stops at the repeating sentence, well before the token limit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.test_cli_errors import run_cli

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_smollm2_answers_with_rag_and_says_so_first(conclave_home: Path) -> None:
    proc = run_cli(
        "ask",
        "--json",
        "--no-log",
        "--model",
        "embedded:smollm2",
        "What does the Adam optimiser combine?",
        timeout=600,
        CONCLAVE_MAX_TOKENS="768",
        CONCLAVE_EMBEDDED_THREADS="1",
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    notes = [line for line in proc.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "answering with --method rag" in notes[0], proc.stderr
    result = json.loads(proc.stdout)
    assert result["method"] == "rag"
    assert result["answer"].strip(), result
    completion = result["usage"]["total"]["completion_tokens"]
    assert 0 < completion < 768, f"decoding ran to the token limit: {completion} tokens"
