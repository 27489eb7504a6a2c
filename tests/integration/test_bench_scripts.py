"""The benchmark scripts stay runnable: each parses its arguments and prints its help (they are not run here:
benchmarks are measured in bench/, never asserted in tests)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
SCRIPTS = sorted(p.name for p in BENCH.glob("*.py") if p.name != "common.py")


def test_there_is_a_script_per_table() -> None:
    for name in (
        "method_cost.py",
        "orchestration.py",
        "reify_concurrency.py",
        "retrieval.py",
        "eval_throughput.py",
        "memory.py",
    ):
        assert name in SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS)
def test_help(script: str) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH / script), "--help"], capture_output=True, text=True, timeout=120, cwd=BENCH.parent
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout
