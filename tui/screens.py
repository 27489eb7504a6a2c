"""Screens over the chat: the help screen (F1), the sessions screen (F2), and two small dialogs."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from conclave.tui.commands import SLASH_COMMANDS
from rich.console import Group
from rich.padding import Padding
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, DataTable, Footer, Input, Label, Static

from conclave.errors import ConclaveError
from conclave.sessions import SessionInfo, SessionStore
from conclave.terminal import safe_text

__all__ = ["ConfirmDialog", "HelpScreen", "SessionsScreen", "TextDialog", "key_label"]


def key_label(keys: str) -> str:
    """``ctrl+c,f1,r`` -> ``Ctrl+C / F1 / r`` (a lone letter stays as typed)."""
    out = []
    for key in keys.split(","):
        split = key.strip().split("+")
        parts = [p.capitalize() if len(p) > 1 else (p.upper() if len(split) > 1 else p) for p in split]
        out.append("+".join(parts).replace("Pageup", "PgUp").replace("Pagedown", "PgDn"))
    return " / ".join(out)


def binding_rows(bindings: Iterable[BindingType]) -> list[tuple[str, str]]:
    """(keys, description) for each binding that has a description."""
    rows = []
    for b in bindings:
        if isinstance(b, Binding) and b.description:
            rows.append((key_label(b.key), b.tooltip or b.description))
    return rows


class HelpScreen(ModalScreen[None]):
    """Every key binding and slash command."""

    BINDINGS = [Binding("escape,f1,q", "dismiss", "Close")]

    def __init__(self, sections: list[tuple[str, list[tuple[str, str]]]]):
        super().__init__()
        self.sections = sections

    def compose(self) -> ComposeResult:
        width = max((len(key) for _, rows in self.sections for key, _ in rows), default=8)
        parts: list[Any] = []
        for i, (title, rows) in enumerate(self.sections):
            table = Table.grid(padding=(0, 2))
            table.add_column(style="bold", no_wrap=True, min_width=width)
            table.add_column()
            for key, description in rows:
                table.add_row(Text(key), Text(description))
            parts += [Text(("\n" if i else "") + title, style="bold underline"), table]
        keys = Group(*parts)
        lines: list[Any] = [Text("Slash commands", style="bold underline")]
        for c in SLASH_COMMANDS:
            lines += [Text(f"/{c.name} {c.usage}".rstrip(), style="bold"), Padding(Text(c.help), (0, 0, 0, 2))]
        commands = Group(*lines)
        self.tables = (keys, commands)
        with Vertical(id="help-box"):
            yield Static(Text("Conclave — keys and commands", style="bold"), id="help-title")
            with VerticalScroll(id="help-body"):
                with Horizontal(id="help-columns"):
                    yield Static(keys, id="help-keys")
                    yield Static(commands, id="help-commands")
            yield Static(Text("Esc, F1 or q closes this screen", style="dim"), id="help-hint")


class TextDialog(ModalScreen[str | None]):
    """Ask for one line of text (Enter accepts, Esc cancels)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, prompt: str, value: str = ""):
        super().__init__()
        self.prompt = prompt
        self.value = value

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(safe_text(self.prompt), markup=False)
            yield Input(self.value, id="dialog-input")
            yield Static(Text("Enter to save · Esc to cancel", style="dim"))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ParamsDialog(ModalScreen[dict[str, str] | None]):
    """Edit the chat's parameters for the next questions (oterm's "Edit chat parameters"): method, model, temperature,
    answer length and your instructions for the answer. Returns the fields as typed (the app checks them), or None."""

    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("ctrl+s", "save", "Save")]
    FIELDS = (
        ("method", "Method (coa, cot, rag, react, direct; coa:k=3,...)"),
        ("model", "Model for every role (empty: automatic)"),
        ("temperature", "Temperature (0 to 2)"),
        ("max_tokens", "Longest reply, in tokens"),
        ("system", "Your instructions for the answer (tone, language, length)"),
    )

    def __init__(self, values: dict[str, str]):
        super().__init__()
        self.values = values

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Chat parameters (for the next questions of this session)")
            for key, label in self.FIELDS:
                yield Label(label, classes="field-label")
                yield Input(self.values.get(key, ""), id=f"param-{key}")
            yield Static(Text("Ctrl+S or Enter to save · Esc to cancel", style="dim"))

    def _collect(self) -> dict[str, str]:
        return {key: self.query_one(f"#param-{key}", Input).value.strip() for key, _ in self.FIELDS}

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(self._collect())

    def action_save(self) -> None:
        self.dismiss(self._collect())

    def action_cancel(self) -> None:
        self.dismiss(None)


class ConfirmDialog(ModalScreen[bool]):
    """A yes/no question (y / n, Enter / Esc)."""

    BINDINGS = [Binding("y", "answer(True)", "Yes"), Binding("n,escape", "answer(False)", "No")]

    def __init__(self, question: str):
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(safe_text(self.question), markup=False)
            with Horizontal(classes="buttons"):
                yield Button("Yes (y)", variant="error", id="yes")
                yield Button("No (n)", id="no")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


def when(ts: float) -> str:
    """A timestamp as local date and time."""
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


class SessionsScreen(Screen[str | None]):
    """The saved sessions: open (Enter), rename (r), delete (d), new (n). Dismisses with the id to open."""

    BINDINGS = [
        Binding("enter", "open", "Open", priority=True),
        Binding("r", "rename", "Rename"),
        Binding("d", "delete", "Delete"),
        Binding("n", "new", "New session"),
        Binding("escape", "back", "Back"),
    ]
    NEW = "\x00new"
    """The dismiss value that asks for a new session."""

    def __init__(self, store: SessionStore, current: str | None):
        super().__init__()
        self.store = store
        self.current = current

    def compose(self) -> ComposeResult:
        yield Static(Text("Sessions", style="bold"), id="sessions-title")
        yield DataTable(id="sessions-table", cursor_type="row", zebra_stripes=True)
        yield Static(id="sessions-empty", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_column("id", key="id")
        table.add_column("title", key="title")
        table.add_column("msgs", key="msgs")
        table.add_column("updated", key="updated")
        self.reload()
        table.focus()

    def reload(self) -> None:
        """Re-read the list from the store."""
        table = self.query_one(DataTable)
        keep = self._selected() if table.row_count else self.current
        table.clear()
        try:
            sessions = self.store.list_sessions()
        except ConclaveError as exc:  # a damaged sessions file: say so, keep the screen usable
            self.app.show_error(exc, title="Cannot read the sessions")  # type: ignore[attr-defined]
            sessions = []
        for s in sessions:
            table.add_row(*self._cells(s), key=s.id)
        ids = {s.id for s in sessions}
        for candidate in (keep, self.current):
            if candidate is not None and candidate in ids:
                table.move_cursor(row=table.get_row_index(candidate))
                break
        empty = self.query_one("#sessions-empty", Static)
        empty.update("No sessions yet: ask a question to start one." if not sessions else "")
        empty.display = not sessions

    def _cells(self, s: SessionInfo) -> tuple[Any, ...]:
        marker = "● " if s.id == self.current else "  "
        return (
            Text(safe_text(marker + s.id)),
            Text(safe_text(s.title)) if s.title else "(untitled)",
            str(s.messages),
            when(s.updated),
        )

    def _selected(self) -> str | None:
        table = self.query_one(DataTable)
        if table.row_count == 0:
            return None
        row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        return str(row_key.value)

    def action_open(self) -> None:
        """Open the selected session."""
        selected = self._selected()
        if selected is not None:
            self.dismiss(selected)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.dismiss(str(event.row_key.value))

    def action_back(self) -> None:
        """Back to the chat."""
        self.dismiss(None)

    def action_new(self) -> None:
        """Start a new session."""
        self.dismiss(self.NEW)

    def action_rename(self) -> None:
        """Rename the selected session."""
        selected = self._selected()
        if selected is None:
            return

        def done(title: str | None) -> None:
            if title is None:
                return
            try:
                self.store.rename(selected, title)
            except ConclaveError as exc:
                hint = f"\nfix: {exc.hint}" if exc.hint else ""
                self.notify(safe_text(f"{exc.message}{hint}"), severity="error", markup=False)
                return
            self.reload()

        self.app.push_screen(TextDialog(f"New title for session {selected}:", self.store.get(selected).title), done)

    def action_delete(self) -> None:
        """Delete the selected session (after a confirmation)."""
        selected = self._selected()
        if selected is None:
            return
        info = self.store.get(selected)

        def done(yes: bool | None) -> None:
            if yes:
                self.store.delete(selected)
                self.notify(safe_text(f"deleted session {selected}"), markup=False)
                self.reload()

        self.app.push_screen(ConfirmDialog(f"Delete session {selected} “{info.title}” and its messages?"), done)
