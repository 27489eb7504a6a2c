"""A small MCP server for the tests (stdio): two read-only tools, one with a side effect, one that crashes mid-call.

    python tests/servers/mcp_notes.py NOTES_FILE

``word_count`` and ``lookup_unit`` only read; ``append_note`` writes a line to NOTES_FILE (a side effect, so Conclave
offers it only when the server's ``allow`` list names it); ``crash`` ends the process in the middle of a call.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations

NOTES = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(os.devnull)
READ_ONLY = ToolAnnotations(readOnlyHint=True)
UNITS = {"kilometre": "1000 metres", "mile": "1609.344 metres", "hour": "3600 seconds"}

server = MCPServer("notes")


@server.tool(annotations=READ_ONLY)
def word_count(text: str) -> int:
    """Count the words in a text."""
    return len(text.split())


@server.tool(annotations=READ_ONLY)
def lookup_unit(unit: str) -> str:
    """What one unit is in SI base units (kilometre, mile, hour)."""
    if unit.strip().lower() not in UNITS:
        raise ValueError(f"unknown unit {unit!r}; known: {', '.join(UNITS)}")
    return UNITS[unit.strip().lower()]


@server.tool(annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=False))
def append_note(text: str) -> str:
    """Append a line to the notes file."""
    with NOTES.open("a", encoding="utf-8") as handle:
        handle.write(text + "\n")
    return "noted"


@server.tool(annotations=READ_ONLY)
def crash(reason: str) -> str:
    """Stop the server in the middle of the call (a crashed server, for the tests)."""
    sys.stdout.flush()
    os._exit(3)


if __name__ == "__main__":
    server.run("stdio")
