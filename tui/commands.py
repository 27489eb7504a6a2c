"""Slash commands (what they are, how they parse) and the command-palette provider that offers the same actions."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from conclave.workflows.methods import METHODS
from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:
    from conclave.tui.app import ConclaveApp

__all__ = ["SLASH_COMMANDS", "SlashCommand", "ConclaveCommands", "parse_slash", "SlashError"]


@dataclass(frozen=True)
class SlashCommand:
    """One slash command: its name, argument synopsis and a one-line description."""

    name: str
    usage: str
    help: str


SLASH_COMMANDS: tuple[SlashCommand, ...] = (
    SlashCommand("model", "[ROLE] SPEC", "model for every role, or one role (embedded, ollama/NAME, openai/NAME)"),
    SlashCommand("method", f"[{'|'.join(METHODS.names())}]", "how questions are answered (no argument: show)"),
    SlashCommand("collection", "[NAME]", "knowledge collection to search (no argument: list them)"),
    SlashCommand("ingest", "PATH...", "add files or folders to the current collection"),
    SlashCommand("search", "QUERY", "search the current collection; results in the Sources tab"),
    SlashCommand("sessions", "", "list, open, rename and delete sessions"),
    SlashCommand("new", "", "start a new session"),
    SlashCommand("export", "[md|json] [PATH]", "export this session (default: Markdown in the current folder)"),
    SlashCommand("trace", "[on|off]", "show or hide the trace panel"),
    SlashCommand("params", "", "edit the chat's parameters: method, model, temperature, length, instructions"),
    SlashCommand("help", "", "keys and commands"),
)
_BY_NAME = {c.name: c for c in SLASH_COMMANDS}


class SlashError(ValueError):
    """The text is not a valid slash command; the message says what to type instead."""


def parse_slash(text: str) -> tuple[str, list[str]]:
    """``"/ingest 'my notes' b.md"`` -> ``("ingest", ["my notes", "b.md"])``; unknown names raise SlashError."""
    body = text.strip()[1:]
    try:
        parts = shlex.split(body)
    except ValueError as exc:
        raise SlashError(f"cannot read {text.strip()!r}: {exc}") from exc
    if not parts:
        raise SlashError("type a command after '/', e.g. /help")
    name = parts[0].lower()
    if name not in _BY_NAME:
        known = ", ".join(f"/{c.name}" for c in SLASH_COMMANDS)
        raise SlashError(f"unknown command /{name}; commands: {known}")
    return name, parts[1:]


def palette_actions(app: ConclaveApp) -> list[tuple[str, str, object]]:
    """(title, help, callback) for every palette entry."""
    actions: list[tuple[str, str, object]] = [
        ("Help: keys and commands", "F1", app.action_help),
        ("Sessions: list, open, rename, delete", "F2", app.action_sessions),
        ("New session", "Ctrl+N", app.action_new_session),
        ("Toggle trace panel", "F3", app.action_toggle_trace),
        ("Show sources", "the cited passages of the last answer", app.action_show_sources),
        ("Export session as Markdown", "to the current folder", partial(app.export_session, "md", None)),
        ("Export session as JSON", "to the current folder, with traces", partial(app.export_session, "json", None)),
        ("Cancel the answer in progress", "Ctrl+C", app.action_cancel),
        ("Edit chat parameters", "F5: method, model, temperature, length, instructions", app.action_edit_params),
        ("List collections", "and their chunk counts", partial(app.run_slash, "/collection")),
    ]
    for method in METHODS.names():
        actions.append((f"Method: {method}", f"answer with {method}", partial(app.set_method, method)))
    actions.append(("Quit", "Ctrl+Q", app.action_quit))
    return actions


class ConclaveCommands(Provider):
    """The chat's actions in the command palette (Ctrl+P)."""

    def _actions(self) -> list[tuple[str, str, object]]:
        # The chat's app by what it offers: app.py imports this module, so importing ConclaveApp back would be a cycle.
        app = self.app
        return palette_actions(app) if hasattr(app, "run_slash") and hasattr(app, "set_method") else []  # type: ignore[arg-type]

    async def discover(self) -> Hits:
        """Every action, when the palette opens with an empty query."""
        for title, help_text, callback in self._actions():
            yield DiscoveryHit(title, callback, help=help_text)  # type: ignore[arg-type]

    async def search(self, query: str) -> Hits:
        """Actions whose title matches the query."""
        matcher = self.matcher(query)
        for title, help_text, callback in self._actions():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), callback, help=help_text)  # type: ignore[arg-type]
