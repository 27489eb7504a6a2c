"""The built wheel (issue 16 §1): one import name, `conclave`, with the prompts and the demo notes inside it.

The wheel is built from a copy of the checkout's files (so the checkout gets no build/ folder), with the setuptools
of this venv (no download), and installed without dependencies into a fresh venv, where only what the wheel itself
holds is checked (importing Conclave's modules would need the dependencies, which is what the editable install and
the rest of the suite cover)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.integration, pytest.mark.slow]


def checkout_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True, text=True, check=True
    )
    return [line for line in listed.stdout.splitlines() if (REPO / line).is_file()]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("git") is None:
        pytest.skip("git is needed to list the checkout's files")
    src = tmp_path_factory.mktemp("src")
    for name in checkout_files():
        target = src / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target)
    out = tmp_path_factory.mktemp("dist")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    [path] = out.glob("conclave-*.whl")
    return path


def test_the_wheel_installs_one_top_level_name_with_its_data(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/", 1)[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"conclave"}
    for needed in (
        "conclave/agents/prompts/rag.md",
        "conclave/agents/prompts/reasoner_program.md",
        "conclave/workflows/evaluation/prompts/judge_correctness.md",
        "conclave/tui/conclave.tcss",
        "conclave/tools/demo_notes/09-optimisers-adagrad-rmsprop-adam.md",
        "conclave/cli/main.py",
        "conclave/workflows/coa/program.py",
    ):
        assert needed in names, needed
    demo = [n for n in names if n.startswith("conclave/tools/demo_notes/") and n.endswith(".md")]
    assert len(demo) == len(list((REPO / "tools" / "demo_notes").glob("*.md"))) > 5


def test_in_a_fresh_venv_only_conclave_is_importable(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert installed.returncode == 0, installed.stderr[-2000:]
    probe = (
        "import importlib.util as u, pathlib\n"
        "print([n for n in ('agents', 'tools', 'workflows', 'tui') if u.find_spec(n) is not None])\n"
        "import conclave\n"
        "spec = u.find_spec('conclave.tools')\n"
        "notes = pathlib.Path(spec.submodule_search_locations[0]) / 'demo_notes'\n"
        "print(len(list(notes.glob('*.md'))), conclave.__version__)\n"
    )
    ran = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr[-2000:]
    others, line = ran.stdout.splitlines()
    assert others == "[]", "only `conclave` is a top-level name"
    assert int(line.split()[0]) > 5
