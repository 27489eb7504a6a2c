"""The question input: Up/Down walk through earlier questions; slash commands are suggested as you type."""

from __future__ import annotations

from typing import Any

from conclave.tui.commands import SLASH_COMMANDS
from textual.binding import Binding
from textual.suggester import SuggestFromList
from textual.widgets import Input

__all__ = ["PromptInput"]


class PromptInput(Input):
    """An Input with a history of submitted lines."""

    BINDINGS = [
        Binding("up", "history_previous", "Previous question", show=False),
        Binding("down", "history_next", "Next question", show=False),
    ]

    def __init__(self, **kwargs: Any):
        suggestions = [f"/{c.name}" + (" " if c.usage else "") for c in SLASH_COMMANDS]
        super().__init__(suggester=SuggestFromList(suggestions, case_sensitive=False), **kwargs)
        self.history: list[str] = []
        self._index: int | None = None
        self._draft = ""

    def remember(self, line: str) -> None:
        """Add a submitted line to the history (repeats of the last one are not kept twice)."""
        line = line.strip()
        if line and (not self.history or self.history[-1] != line):
            self.history.append(line)
        self._index = None
        self._draft = ""

    def set_history(self, lines: list[str]) -> None:
        """Replace the history (a resumed session's questions)."""
        self.history = []
        for line in lines:
            self.remember(line)

    def _show(self, text: str) -> None:
        self.value = text
        self.cursor_position = len(text)

    def action_history_previous(self) -> None:
        """Show the previous line."""
        if not self.history:
            return
        if self._index is None:
            self._draft = self.value
            self._index = len(self.history) - 1
        else:
            self._index = max(0, self._index - 1)
        self._show(self.history[self._index])

    def action_history_next(self) -> None:
        """Show the next line, and at the end the draft being typed."""
        if self._index is None:
            return
        if self._index >= len(self.history) - 1:
            self._index = None
            self._show(self._draft)
            return
        self._index += 1
        self._show(self.history[self._index])
