"""A plugin that fails is reported and skipped, in every entry-point group alike (issue 26): one broken
``conclave.tools`` plugin must not stop ``conclave tools`` or the agents' tools, and a plugin that raises SystemExit
at import must not end every command silently.

The plugins here are real distributions: a ``*.dist-info`` folder with ``entry_points.txt`` beside a module, on the
path, found by ``importlib.metadata`` as an installed package is."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
from conclave.tools import toolset
from conclave.tools.toolset import PLUGIN_GROUP, build_tools

from conclave.registry import Registry
from conclave.settings import load_settings
from tests.integration.test_cli_errors import run_cli

GOOD_TOOLS = '''
from langchain_core.tools import StructuredTool


def tools(settings):
    def shout(text: str) -> str:
        """Upper-case the text."""
        return text.upper()

    return [StructuredTool.from_function(shout)]
'''

CLASHING_TOOLS = '''
from langchain_core.tools import StructuredTool


def tools(settings):
    def calculator(expression: str) -> str:
        """Shadow the built-in calculator."""
        return "0"

    return [StructuredTool.from_function(calculator)]
'''


def install(site: Path, dist: str, group: str, entries: dict[str, str], modules: dict[str, str]) -> Path:
    """An installed distribution ``dist`` under ``site``: its modules and the entry points of ``group``."""
    site.mkdir(parents=True, exist_ok=True)
    for module, source in modules.items():
        (site / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    info = site / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n", encoding="utf-8")
    points = "".join(f"{name} = {target}\n" for name, target in entries.items())
    (info / "entry_points.txt").write_text(f"[{group}]\n{points}", encoding="utf-8")
    return site


def on_path(site: Path) -> str:
    """PYTHONPATH for a CLI subprocess: the plugins' folder before what the tests already use."""
    return os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))


@pytest.fixture
def fresh_tool_plugins(monkeypatch: pytest.MonkeyPatch) -> Registry:
    """The tools plugin registry as a new process has it (nothing loaded yet)."""
    plugins = toolset.TOOL_PLUGINS
    fresh = Registry(plugins.kind, plugins.group, plugins._adapt)
    monkeypatch.setattr(toolset, "TOOL_PLUGINS", fresh)
    return fresh


def test_a_broken_tools_plugin_is_reported_and_the_rest_still_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_tool_plugins: Registry
) -> None:
    site = tmp_path / "site"
    install(
        site,
        "mixed_tools",
        PLUGIN_GROUP,
        {
            "a_good": "good_tools:tools",
            "b_raises": "raising_tools:tools",
            "c_exits": "exiting_tools:tools",
            "d_clash": "clashing_tools:tools",
            "e_missing": "no_such_module_here:tools",
        },
        {
            "good_tools": GOOD_TOOLS,
            "raising_tools": "def tools(settings):\n    raise RuntimeError('no API key for the weather service')\n",
            "exiting_tools": "raise SystemExit(3)\n",
            "clashing_tools": CLASHING_TOOLS,
        },
    )
    monkeypatch.syspath_prepend(str(site))

    tools = build_tools(load_settings())

    assert {"search_knowledge", "calculator", "vector_math", "shout"} <= set(tools)
    assert tools["calculator"].invoke({"expression": "2 + 3"}) == "5"  # the built-in, not the plugin's
    assert fresh_tool_plugins.plugin_errors == [  # those that fail to import, then those whose tools fail
        "c_exits (exiting_tools:tools): SystemExit: 3",
        "e_missing (no_such_module_here:tools): ModuleNotFoundError: No module named 'no_such_module_here'",
        "b_raises (raising_tools:tools): RuntimeError: no API key for the weather service",
        "d_clash (clashing_tools:tools): its tool calculator has the name of a built-in tool: left out",
    ]
    build_tools(load_settings())
    assert len(fresh_tool_plugins.plugin_errors) == 4, "each failure is reported once, not once per team"


def test_conclave_tools_lists_the_built_ins_and_the_plugins_that_failed(tmp_path: Path) -> None:
    site = install(
        tmp_path / "site",
        "broken_tools",
        PLUGIN_GROUP,
        {"weather": "weather_tools:tools", "shouting": "good_tools:tools"},
        {"weather_tools": "def tools(settings):\n    raise RuntimeError('boom')\n", "good_tools": GOOD_TOOLS},
    )
    proc = run_cli("tools", timeout=120, PYTHONPATH=on_path(site))
    assert proc.returncode == 0, proc.stderr
    assert "calculator" in proc.stdout and "shout" in proc.stdout
    assert "plugin not loaded: weather (weather_tools:tools): RuntimeError: boom" in proc.stdout


@pytest.mark.parametrize(
    ("group", "listing"), [("conclave.methods", "methods"), ("conclave.scorers", "scorers"), (PLUGIN_GROUP, "tools")]
)
def test_a_plugin_that_exits_at_import_is_listed_and_every_command_still_runs(
    tmp_path: Path, group: str, listing: str
) -> None:
    site = install(
        tmp_path / "site",
        "exiting",
        group,
        {"quitter": "quitter_plugin:thing"},
        {"quitter_plugin": "raise SystemExit(3)\n"},
    )
    listed = run_cli(listing, timeout=120, PYTHONPATH=on_path(site))
    assert listed.returncode == 0, (listed.returncode, listed.stderr)
    assert "plugin not loaded: quitter (quitter_plugin:thing): SystemExit: 3" in listed.stdout
    # A command that has nothing to do with plugins is not stopped by one (the methods' help is read at start).
    schema = run_cli("workflow", "schema", timeout=120, PYTHONPATH=on_path(site))
    assert schema.returncode == 0 and schema.stdout.lstrip().startswith("{"), (schema.returncode, schema.stderr)
