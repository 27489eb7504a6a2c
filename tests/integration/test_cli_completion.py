"""Shell completion (issue 17 §5): the installed `conclave` script prints a completion script and completes a real
command line (subprocesses, so an integration test)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def test_shell_completion_is_offered_and_completes(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    exe = Path(sys.executable).parent / "conclave"  # the installed script, what users run
    script = subprocess.run(
        [str(exe), "--show-completion", "bash"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "SHELL": "/bin/bash"},
    )
    assert script.returncode == 0 and "_conclave_completion" in script.stdout, script.stderr[-500:]
    done = subprocess.run(
        [str(exe)],
        capture_output=True,
        text=True,
        timeout=120,
        env={
            **os.environ,
            "_CONCLAVE_COMPLETE": "complete_bash",
            "COMP_WORDS": "conclave eval --me",
            "COMP_CWORD": "2",
        },
    )
    assert done.stdout.split() == ["--method"]
