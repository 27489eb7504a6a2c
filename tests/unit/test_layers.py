"""The layers of docs/ARCHITECTURE.md, no import cycles and AutoGen only where it belongs, as CI checks them
(``.ci/imports``, import-linter)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).with_name("lint-imports")


@pytest.mark.skipif(not LINT.exists() or shutil.which("bash") is None, reason="import-linter (the test extra) absent")
def test_no_module_imports_a_layer_above_it_and_no_cycles() -> None:
    done = subprocess.run([str(ROOT / ".ci" / "imports")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "3 kept, 0 broken" in done.stdout, done.stdout[-2000:]


def test_every_top_level_module_of_the_core_has_a_layer() -> None:
    """A new module of conclave/ (or a new product folder) is placed in a layer, or the contract cannot be checked."""
    config = (ROOT / ".importlinter").read_text(encoding="utf-8")
    layers = config.split("layers =", 1)[1].split("[importlinter", 1)[0]
    named = {name.strip() for line in layers.splitlines() for name in line.replace("|", ":").split(":")}
    core = {p.stem if p.suffix == ".py" else p.name for p in (ROOT / "conclave").iterdir()}
    core = {name for name in core if not name.startswith("__")}
    folders = {"agents", "tools", "workflows", "tui", "cli"} | ({"server"} if (ROOT / "server").is_dir() else set())
    assert core | folders <= named, f"not in a layer of .importlinter: {sorted((core | folders) - named)}"
