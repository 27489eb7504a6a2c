"""A tools plugin installed the way users install one (issue 16 §2): examples/plugin, built and installed into a
folder of its own with pip, found through the `conclave.tools` entry-point group, listed by `conclave tools` and run
by `conclave tool`, in a subprocess whose path includes that folder (the test venv itself is not changed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("plugin-site")
    work = tmp_path_factory.mktemp("plugin-src")
    import shutil

    shutil.copytree(REPO / "examples" / "plugin", work / "plugin")  # builds leave files beside the sources
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(target),
            str(work / "plugin"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return target


def conclave(args: list[str], plugin_path: Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(plugin_path), "CONCLAVE_HOME": str(home)}
    exe = Path(sys.executable).parent / "conclave"
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=300, env=env, cwd=home)


def test_an_installed_plugin_adds_its_tool(plugin_path: Path, tmp_path: Path) -> None:
    listed = conclave(["tools", "--json"], plugin_path, tmp_path)
    assert listed.returncode == 0, listed.stderr[-2000:]
    schemas = json.loads(listed.stdout)
    assert schemas["days_between"]["parameters"]["required"] == ["start", "end"]
    assert {"search_knowledge", "calculator", "vector_math"} <= set(schemas)
    ran = conclave(
        ["tool", "days_between", "--arg", "start=2024-01-01", "--arg", "end=2024-03-01"], plugin_path, tmp_path
    )
    assert ran.returncode == 0 and ran.stdout.strip() == "60", ran.stderr[-2000:]


def test_without_the_plugin_the_tool_is_absent(tmp_path: Path) -> None:
    from conclave.tools.toolset import build_tools

    from conclave.settings import load_settings

    assert "days_between" not in build_tools(load_settings())


def test_an_installed_plugin_adds_its_method_and_scorer(plugin_path: Path, tmp_path: Path) -> None:
    methods = conclave(["methods", "--json"], plugin_path, tmp_path)
    assert methods.returncode == 0, methods.stderr[-2000:]
    listed = {m["name"]: m for m in json.loads(methods.stdout)}
    assert list(listed)[:5] == ["coa", "cot", "rag", "react", "direct"]
    assert listed["brief"]["summary"].startswith("One sentence of reasoning")
    scorers = conclave(["scorers", "--json"], plugin_path, tmp_path)
    assert "close" in {s["name"] for s in json.loads(scorers.stdout)}
    # Both run: the plugin's method answers on the embedded model, the plugin's scorer scores it.
    data = tmp_path / "sums.jsonl"
    data.write_text(json.dumps({"id": "a", "question": "What is 2 + 2?", "answer": "4"}) + "\n")
    run = conclave(
        ["eval", "-d", f"jsonl:{data}", "--method", "brief", "-m", "embedded:smollm2", "--scorer", "close", "--json"],
        plugin_path,
        tmp_path,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads(run.stdout)["summary"]
    cell = summary["cells"][0]
    assert (cell["method"], summary["primary_scorer"], cell["scored"], cell["failed"]) == ("brief", "close", 1, 0)


def test_the_registries_name_the_choices_when_a_name_is_unknown(tmp_path: Path) -> None:
    from conclave.workflows.evaluation.scorers import resolve_scorers
    from conclave.workflows.runner import parse_method

    from conclave.errors import ConfigError

    with pytest.raises(ConfigError) as method:
        parse_method("brief")  # the plugin is not installed in the test venv itself
    assert "coa, cot, rag, react, direct" in (method.value.hint or "")
    with pytest.raises(ConfigError) as scorer:
        resolve_scorers(["close"])
    assert "numeric, exact_match" in (scorer.value.hint or "")
