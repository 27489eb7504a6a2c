"""Every command in the README's shell blocks runs as written from a clone (issue 29), so they cannot drift again.

Each ``conclave ...`` line of a ```sh block is one of:

* run for real (no model needed): the real ``conclave`` script in a subprocess, from the repository root, with a
  private ``CONCLAVE_HOME`` shared by the lines in README order (``ingest`` before ``search``); an ``-o FILE`` is
  written to a temporary folder instead of the checkout;
* parsed (it needs a model, a server or a run id): its arguments go through the real command-line parser, and the
  data set, model specs, methods and ``--source`` file it names must load or exist;
* not run, for the reason given in :data:`NOT_RUN`.

A new line that fits none of them fails :func:`test_every_readme_command_is_checked`. The example workflows'
own header commands are dry-run the same way.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_cli_errors import cli_command

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
EXAMPLE_WORKFLOWS = sorted((ROOT / "examples" / "workflows").glob("*.yaml"))

NOT_RUN = {
    "pip install -e '.[qwen]'": "the first command installs packages: measured by hand (README, docs/PERFORMANCE.md)",
    "python -m pytest": "runs the whole test suite, this test included",
}
"""Lines (by a piece of their text) that a test cannot run, with the reason."""

REAL = {("models",), ("config", "show"), ("ingest",), ("search",), ("tool",), ("workflow", "schema"), ("tune", "list")}
"""Commands that need no model: run for real. Also: ``trust`` (in a folder holding a ``.env``), ``run --dry-run``
and ``eval export-traces`` of training data without a run id."""

PARSED = {
    ("ask",), ("chat",), ("eval",), ("eval", "compare"), ("eval", "export-traces"), ("synth",), ("tune",),
    ("serve",), ("mcp",),
}  # fmt: skip
"""Commands that need a model, a terminal or an earlier run, or serve until stopped: parsed, with what they name
checked."""

PLACEHOLDER = re.compile(r"\b[A-Z][A-Z_]*[A-Z]\b")
"""``RUN``, ``RUN_A``, ``PATH``: a value the reader fills in; such a line is parsed, not run."""

EXPECTED_OUTPUT = {
    ("tool",): "415.333333333333",
    ("search",): "09-optimisers-adagrad-rmsprop-adam.md",
    ("workflow", "schema"): '"title": "Workflow"',
}


@dataclass(frozen=True)
class Line:
    text: str
    argv: tuple[str, ...]

    @property
    def words(self) -> tuple[str, ...]:
        """The subcommand path: the leading words before the first option or argument that is not a subcommand."""
        out: list[str] = []
        for word in self.argv[1:3]:
            if word.startswith("-") or word not in _SUBCOMMANDS:
                break
            out.append(word)
        return tuple(out)


_SUBCOMMANDS = {
    "models",
    "config",
    "show",
    "ingest",
    "search",
    "tool",
    "workflow",
    "schema",
    "tune",
    "list",
    "ask",
    "chat",
    "eval",
    "compare",
    "export-traces",
    "synth",
    "run",
    "trust",
    "serve",
    "mcp",
}


def readme_lines() -> list[Line]:
    """Every command line of the README's ```sh blocks: continuations joined, comments dropped."""
    text = README.read_text(encoding="utf-8")
    lines: list[Line] = []
    for block in re.findall(r"```(?:sh|bash|shell)\n(.*?)```", text, re.DOTALL):
        joined = re.sub(r"\\\n\s*", " ", block)
        for raw in joined.splitlines():
            argv = tuple(shlex.split(raw, comments=True))
            if argv:
                lines.append(Line(raw.strip(), argv))
    return lines


def skipped_reason(line: Line) -> str | None:
    return next((why for piece, why in NOT_RUN.items() if piece in line.text), None)


def is_real(line: Line) -> bool:
    if any(PLACEHOLDER.search(word) for word in line.argv[1:]):
        return False
    words = line.words
    if words in REAL or words == ("trust",):
        return True
    if words == ("run",):
        return "--dry-run" in line.argv
    return words == ("eval", "export-traces")


def is_parsed(line: Line) -> bool:
    return not is_real(line) and (line.words in PARSED or line.words == ("run",))


def test_every_readme_command_is_checked() -> None:
    lines = readme_lines()
    assert len(lines) > 20, "the README's command blocks were not found"
    unchecked = [
        line.text
        for line in lines
        if skipped_reason(line) is None and not (line.argv[0] == "conclave" and (is_real(line) or is_parsed(line)))
    ]
    assert not unchecked, f"classify these README lines in {Path(__file__).name}: {unchecked}"


def test_no_readme_command_reads_outside_the_checkout() -> None:
    """A clone has nothing beside it: every path a command names is inside the repository (or a file it writes)."""
    outside = []
    for line in readme_lines():
        if skipped_reason(line) is not None:
            continue
        for word in line.argv[1:]:
            value = word.split("=", 1)[-1].split(":", 1)[-1] if ":" in word and "://" not in word else word
            if "://" in word or "/" not in value or PLACEHOLDER.search(value):
                continue
            if not (ROOT / value).resolve().is_relative_to(ROOT):
                outside.append(f"{line.text!r}: {word}")
    assert not outside, outside


# ------------------------------------------------------------------------------------------- run for real


@pytest.fixture(scope="module")
def readme_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("readme-home")


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONCLAVE_") or k.startswith("CONCLAVE_TEST_")}
    env.update(
        {
            "CONCLAVE_HOME": str(home),
            "CONCLAVE_OLLAMA_HOST": "http://127.0.0.1:9",
            "CONCLAVE_EMBEDDED_THREADS": "1",
            "COLUMNS": "200",
            "NO_COLOR": "1",
            "TERM": "dumb",
        }
    )
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return env


def _outputs_elsewhere(argv: tuple[str, ...], folder: Path) -> list[str]:
    """``-o FILE`` / ``--output FILE`` pointed into ``folder``, so a test writes nothing into the checkout."""
    out = list(argv)
    for i, word in enumerate(out[:-1]):
        if word in ("-o", "--output"):
            out[i + 1] = str(folder / Path(out[i + 1]).name)
    return out


REAL_LINES = [line for line in readme_lines() if skipped_reason(line) is None and is_real(line)]


@pytest.mark.parametrize("line", REAL_LINES, ids=[" ".join(line.argv[1:4]) for line in REAL_LINES])
def test_readme_command_runs(line: Line, readme_home: Path, tmp_path: Path) -> None:
    cwd = ROOT
    if line.words == ("trust",):
        cwd = tmp_path  # trust ./.env: a working folder that has one
        (tmp_path / ".env").write_text("CONCLAVE_TOP_K=3\n", encoding="utf-8")
    argv = _outputs_elsewhere(line.argv, tmp_path)
    proc = subprocess.run(
        [*cli_command(), *argv[1:]], cwd=cwd, env=_env(readme_home), capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, f"{line.text}\nstdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr[-2000:]}"
    assert "Traceback" not in proc.stderr
    expected = EXPECTED_OUTPUT.get(line.words)
    if expected is not None:
        assert expected in proc.stdout, proc.stdout[-2000:]
    if line.words == ("run",):
        assert "valid;" in proc.stdout and "does not exist" not in proc.stdout, proc.stdout
    if line.words == ("eval", "export-traces"):
        written = tmp_path / Path(argv[argv.index("-o") + 1]).name
        assert written.is_file() and written.read_text(encoding="utf-8").strip(), "no chains were exported"


# ------------------------------------------------------------------------------------------- parsed


def parse_command_line(argv: tuple[str, ...]) -> tuple[Any, dict[str, Any]]:
    """The command a line reaches and its parsed parameters, through the real parser (nothing runs)."""
    import typer.main
    from conclave.cli.main import app

    command: Any = typer.main.get_command(app)  # typer's own click: duck-typed, not click.Group
    ctx = command.make_context("conclave", list(argv[1:]))
    params = dict(ctx.params)
    while hasattr(command, "resolve_command"):
        rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
        if not rest:
            break
        name, sub, args = command.resolve_command(ctx, rest)
        assert sub is not None and name is not None, rest
        ctx = sub.make_context(name, args, parent=ctx)
        command = sub
        params = dict(ctx.params)
    return command, params


def _values(params: dict[str, Any], key: str) -> list[str]:
    value = params.get(key)
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]


PARSED_LINES = [line for line in readme_lines() if skipped_reason(line) is None and is_parsed(line)]


@pytest.mark.parametrize("line", PARSED_LINES, ids=[" ".join(line.argv[1:4]) for line in PARSED_LINES])
def test_readme_command_parses_and_names_what_exists(line: Line) -> None:
    from conclave.workflows.evaluation.datasets import load_dataset, parse_dataset_spec
    from conclave.workflows.runner import parse_method

    from conclave.models.backends import parse_spec

    _, params = parse_command_line(line.argv)
    for spec in _values(params, "dataset"):
        if PLACEHOLDER.search(spec):
            parse_dataset_spec(spec)  # the kind is real; the path is the reader's
        else:
            kind, path = parse_dataset_spec(spec)
            assert load_dataset(f"{kind}:{ROOT / path}").items
    for spec in _values(params, "model"):
        parse_spec(spec)
    for spec in _values(params, "method"):
        parse_method(spec)
    for source in _values(params, "source"):
        assert (ROOT / source).is_file(), source
    for path in _values(params, "gsm8k"):
        assert (ROOT / path).is_file(), path


# ------------------------------------------------------------------------------------------- example workflows


def workflow_header_commands(path: Path) -> list[tuple[str, ...]]:
    """The ``conclave run`` lines a workflow's header comment gives (without the ``--resume RUN_ID`` ones)."""
    commands = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        text = raw.lstrip("# ").split("  (", 1)[0]
        if raw.startswith("#") and text.startswith("conclave run ") and "--resume" not in text:
            commands.append(tuple(shlex.split(text)))
    return commands


@pytest.mark.parametrize("path", EXAMPLE_WORKFLOWS, ids=lambda p: p.name)
def test_example_workflow_header_command_dry_runs_from_the_checkout(path: Path, tmp_path: Path) -> None:
    commands = workflow_header_commands(path)
    assert commands, f"{path.name} should say how to run it in its header"
    for argv in commands:
        proc = subprocess.run(
            [*cli_command(), *argv[1:], "--dry-run"],
            cwd=ROOT,
            env=_env(tmp_path / "home"),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, f"{' '.join(argv)}\n{proc.stdout}\n{proc.stderr}"
        assert "valid;" in proc.stdout and "does not exist" not in proc.stdout
