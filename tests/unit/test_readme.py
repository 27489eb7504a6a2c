"""The README's two commands are the ones CI runs."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    first_block = re.search(r"```(?:sh|bash|shell)\n(.*?)```", text, re.DOTALL)
    assert first_block, "README must open with a shell block"
    return [line for line in first_block.group(1).splitlines() if line.strip() and not line.startswith("#")]


def test_readme_opens_with_exactly_two_commands() -> None:
    commands = readme_commands()
    assert len(commands) == 2
    assert "conclave ask" in commands[0]
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert readme_commands()[1] in ci


def readme_sections() -> set[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return {heading.strip() for heading in re.findall(r"^#{1,6} (.+)$", text, re.MULTILINE)}


def test_every_readme_section_an_error_names_exists() -> None:
    """Hints such as "see README 'Configuration'" send the user to a heading that is there (issue 29)."""
    named: dict[str, str] = {}
    for folder in ("conclave", "agents", "tools", "workflows", "tui", "cli"):
        for path in (ROOT / folder).rglob("*.py"):
            for section in re.findall(r"README[ ,(]*'([^']+)'", path.read_text(encoding="utf-8")):
                named[section] = str(path.relative_to(ROOT))
    assert "Data sets" in named, "the data set error should name the README section on formats"
    missing = {section: where for section, where in named.items() if section not in readme_sections()}
    assert not missing, f"README has no such section: {missing}"
