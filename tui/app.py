"""The chat app: conversation, live trace and sources, slash commands, sessions. It consumes run events only."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from conclave.tui.backend import Knowledge, Question, ResolveModels, RunQuestion
from conclave.tui.commands import ConclaveCommands
from conclave.tui.conversation import AssistantMessage, Conversation
from conclave.tui.prompt import PromptInput
from conclave.tui.screens import HelpScreen, ParamsDialog, SessionsScreen, binding_rows, key_label
from conclave.tui.slash import SlashCommands
from conclave.tui.status import StatusBar, models_label
from conclave.tui.trace import SourcesView, TracePanel
from pydantic import ValidationError
from rich.text import Text
from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, Input, Label, ProgressBar, Static, TabbedContent, TabPane
from textual.worker import Worker, WorkerState

from conclave.errors import ConclaveError, ConfigError
from conclave.events import (
    AnswerDelta,
    AnswerReady,
    Event,
    Passage,
    RunFailed,
    RunFinished,
    RunStarted,
    event_from_dict,
    stage_of,
)
from conclave.sessions import Message, SessionStore
from conclave.settings import AGENT_ROLES, RoleModels, Settings
from conclave.terminal import safe_text

__all__ = ["ConclaveApp"]

log = logging.getLogger(__name__)
# Settings a stored session restores when it is opened (unless given on the command line).
SESSION_KEYS = ("method", "collection", "model", "roles")
CHAT_ACTIONS = {"sessions", "toggle_trace", "show_sources", "new_session", "scroll_conversation", "focus_prompt"}


def answer_heading(meta: dict[str, Any]) -> str:
    """``Conclave · coa · embedded · 2.4 s`` from an answer's meta data."""
    parts = ["Conclave"]
    if meta.get("method"):
        parts.append(str(meta["method"]))
    models = meta.get("models") or {}
    if models:
        parts.append(models_label({k: str(v) for k, v in models.items()}))
    if meta.get("seconds") is not None:
        parts.append(f"{float(meta['seconds']):.1f} s")
    return " · ".join(parts)


def welcome_text(settings: Settings) -> Text:
    """What an empty conversation shows."""
    text = Text()
    text.append("Ask a question", style="bold")
    text.append(f" — answered with {settings.method}")
    from conclave.workflows.methods import searches_knowledge

    if settings.collection and searches_knowledge(settings.method):
        text.append(f", searching the '{safe_text(settings.collection)}' collection")
    text.append(".\n")
    text.append("Type / for commands (/help lists them), F1 for keys, Ctrl+P for the command palette.", style="dim")
    return text


@dataclass
class _Answering:
    """What one answer's run has produced so far (the chat's ``_answer`` and its helpers share it)."""

    method: str
    started: float
    events: list[Event] = field(default_factory=list)
    answer: AnswerReady | None = None
    failure: RunFailed | None = None
    finished: RunFinished | None = None
    outcome: Literal["ok", "failed", "cancelled"] = "failed"
    writing: bool = False
    """The answer has started to stream (the status bar says so once)."""


class ConclaveApp(App[None]):
    """The Conclave terminal chat. Build it with :func:`tui.create_app`."""

    CSS_PATH = "conclave.tcss"
    TITLE = "Conclave"
    COMMANDS = App.COMMANDS | {ConclaveCommands}
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]
    BINDINGS = [
        Binding("f1", "help", "Help", tooltip="This screen: every key and slash command"),
        Binding("ctrl+c", "cancel", "Cancel", priority=True, tooltip="Cancel the answer in progress (the app stays)"),
        Binding("f2", "sessions", "Sessions", tooltip="Sessions: open, rename, delete"),
        Binding("f3", "toggle_trace", "Trace", tooltip="Show or hide the trace panel"),
        Binding("f4", "show_sources", "Sources", show=False, tooltip="Show the sources of the last answer"),
        Binding("ctrl+n", "new_session", "New", tooltip="Start a new session"),
        Binding("f5", "edit_params", "Params", tooltip="Edit the chat's parameters for the next questions"),
        Binding("ctrl+q", "quit", "Quit", priority=True, tooltip="Quit (the session is already saved)"),
        Binding("pageup", "scroll_conversation(-1)", "Scroll up", show=False, tooltip="Scroll the conversation up"),
        Binding(
            "pagedown", "scroll_conversation(1)", "Scroll down", show=False, tooltip="Scroll the conversation down"
        ),
        Binding("escape", "focus_prompt", "Focus input", show=False, tooltip="Back to the question input"),
    ]

    def __init__(
        self,
        settings: Settings,
        *,
        store: SessionStore,
        runner: RunQuestion,
        knowledge: Knowledge,
        session_id: str | None = None,
        pinned: frozenset[str] = frozenset(),
        models: ResolveModels | None = None,
    ):
        super().__init__()
        self._resolve_models = models
        self.settings = settings
        self.store = store
        self.runner = runner
        self.knowledge = knowledge
        self.session_id: str | None = None
        self._resume = session_id
        self._pinned = pinned
        self.models: dict[str, str] = {}
        self.trace_visible = True
        self._answer_worker: Worker[None] | None = None
        self.slash = SlashCommands(self)

    # ------------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        with Horizontal(id="main"):
            with Vertical(id="chat"):
                yield Conversation(id="conversation")
                with Horizontal(id="ingest"):
                    yield Label("", id="ingest-label")
                    yield ProgressBar(id="ingest-bar", show_eta=False)
                yield PromptInput(placeholder="Ask a question, or type / for commands", id="prompt")
            with TabbedContent(id="side"):
                with TabPane("Trace", id="trace-tab"):
                    yield TracePanel(id="trace")
                with TabPane("Sources", id="sources-tab"):
                    yield SourcesView(id="sources")
        yield StatusBar(id="status")
        yield Footer()

    @property
    def conversation(self) -> Conversation:
        return self.query_one("#conversation", Conversation)

    @property
    def trace_panel(self) -> TracePanel:
        return self.query_one("#trace", TracePanel)

    @property
    def sources_view(self) -> SourcesView:
        return self.query_one("#sources", SourcesView)

    @property
    def prompt(self) -> PromptInput:
        return self.query_one("#prompt", PromptInput)

    @property
    def status_bar(self) -> StatusBar:
        return self.query_one("#status", StatusBar)

    @property
    def answering(self) -> bool:
        """Whether an answer is in progress."""
        worker = self._answer_worker
        return worker is not None and worker.state in (WorkerState.PENDING, WorkerState.RUNNING)

    async def on_mount(self) -> None:
        self.sources_view.show("Sources", [])
        if self._resume:
            await self.open_session(self._resume)
        else:
            await self._show_welcome()
        self.refresh_status()
        self.lookup_models()
        self.prompt.focus()

    def lookup_models(self) -> None:
        """Find out in the background which model each role will use (the status bar shows it)."""
        if self._resolve_models is None:
            return
        resolve = self._resolve_models

        async def lookup() -> None:
            try:
                found = await resolve(self.settings)
            except ConclaveError:
                return  # the first answer reports the problem, with its fix
            if not self.answering:
                self.models = dict(found)
                self.refresh_status()

        self.run_worker(lookup(), name="models", group="models", exclusive=True, exit_on_error=False)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Chat actions only apply on the chat screen (not over the sessions or help screens)."""
        over_chat = len(self.screen_stack) > 1
        if action in CHAT_ACTIONS and over_chat:
            return False
        if action == "cancel" and over_chat:
            return self.answering  # over another screen, Ctrl+C still stops a running answer
        return True

    async def _show_welcome(self) -> None:
        await self.conversation.clear()
        await self.conversation.mount(Static(welcome_text(self.settings), id="welcome", markup=False))
        self._set_title("")

    def refresh_status(self, **changes: Any) -> None:
        """Redraw the status bar from the settings, plus ``changes``."""
        models = {role: self.models.get(role) or self.settings.role_model(role) or "auto" for role in AGENT_ROLES}
        self.status_bar.set(models=models, method=self.settings.method, collection=self.settings.collection, **changes)
        for welcome in self.query("#welcome").results(Static):
            welcome.update(welcome_text(self.settings))

    def show_error(self, exc: ConclaveError, title: str = "Error") -> None:
        """A notification with the problem and its fix."""
        hint = f"\nfix: {exc.hint}" if exc.hint else ""
        self.notify(safe_text(f"{exc.message}{hint}"), title=title, severity="error", timeout=12, markup=False)

    # ------------------------------------------------------------------ input

    @on(Input.Submitted, "#prompt")
    async def _submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        self.prompt.value = ""
        if not text:
            return
        self.prompt.remember(text)
        if text.startswith("/"):
            await self.run_slash(text)
        else:
            self.ask(text)

    def ask(self, question: str) -> None:
        """Answer a question in a worker (the input stays responsive)."""
        if self.answering:
            self.notify("An answer is still coming: wait for it, or press Ctrl+C to cancel it.", severity="warning")
            return
        self._answer_worker = self.run_worker(
            self._answer(question), name="answer", group="answer", exit_on_error=False
        )
        self.refresh_bindings()

    def _ensure_session(self) -> str:
        if self.session_id is None:
            info = self.store.create(settings=self.settings.redacted())
            self.session_id = info.id
        return self.session_id

    def _set_title(self, title: str) -> None:
        label = f"Session {self.session_id}" if self.session_id else "New conversation"
        # A Text, not a str: Textual reads a str border title as markup, and a title is the user's first question.
        self.conversation.border_title = Text(safe_text(f"{label} · {title}" if title and self.session_id else label))

    async def _answer(self, text: str) -> None:
        """Ask ``text`` in the current session: save the question, stream the run into the conversation and the trace,
        save the answer (or the failure, or the cancellation) with its trace."""
        try:
            session_id = self._ensure_session()
            self.store.add_message(session_id, "user", text)
        except ConclaveError as exc:  # the sessions file cannot be written: say so instead of losing words
            self.show_error(exc, title="Cannot save the question")
            return
        self._set_title(self.store.get(session_id).title)
        for welcome in self.conversation.query("#welcome"):
            await welcome.remove()
        await self.conversation.add_user(text)
        view = await self.conversation.add_assistant(heading="Conclave", status="running")
        self.trace_panel.clear_trace()
        self.query_one("#side", TabbedContent).active = "trace-tab"
        self.refresh_status(activity="answering…")
        question = Question(
            text, self.settings, self.settings.method, self.settings.collection, self.store.history(session_id)
        )
        run = _Answering(method=question.method, started=asyncio.get_running_loop().time())
        try:
            async for event in self.runner(question):
                await self._show_event(event, view, run)
            finished = run.finished
            run.outcome = "ok" if finished is not None and finished.ok and run.failure is None else "failed"
        except asyncio.CancelledError:
            run.outcome = "cancelled"
            raise
        except ConclaveError as exc:
            self._failed(run, RunFailed(error=exc.message, hint=exc.hint))
        except Exception as exc:  # a bug or an unexpected library error: say so, keep the app alive
            log.exception("the answer failed")
            self._failed(
                run,
                RunFailed(
                    error=f"unexpected {type(exc).__name__}: {exc}",
                    hint="run `conclave --debug chat` to see the traceback, and report it",
                ),
            )
        finally:
            await self._save_answer(text, session_id, question, view, run)

    async def _show_event(self, event: Event, view: Any, run: _Answering) -> None:
        """One event of the run: into the trace, the status bar and the answer's view."""
        run.events.append(event)
        self.trace_panel.add_event(event)
        stage = stage_of(event, run.method if not isinstance(event, RunStarted) else event.method)
        if stage:
            self.refresh_status(activity=f"{stage}…")
        elif stage is None and isinstance(event, AnswerDelta) and not run.writing:
            run.writing = True
            self.refresh_status(activity="writing the answer…")
        if isinstance(event, AnswerDelta):
            await view.write(event.text)
        elif isinstance(event, RunStarted):
            run.method = event.method
            self.models = dict(event.models)
            self.refresh_status()
        elif isinstance(event, AnswerReady):
            run.answer = event
            await view.finish(event.text)
            view.set_sources(event.sources)
            self.show_sources(event.sources, "Sources of the last answer")
        elif isinstance(event, RunFailed):
            run.failure = event
            self.show_error(ConclaveError(event.error, hint=event.hint), title="Answer failed")
        elif isinstance(event, RunFinished):
            run.finished = event

    def _failed(self, run: _Answering, failure: RunFailed) -> None:
        """A run that raised instead of reporting its failure: recorded and shown as if it had."""
        run.failure = failure
        run.events.append(failure)
        self.trace_panel.add_event(failure)
        self.show_error(ConclaveError(failure.error, hint=failure.hint), title="Answer failed")

    async def _save_answer(self, text: str, session_id: str, question: Question, view: Any, run: _Answering) -> None:
        """Save what the run produced (whatever its outcome), log it, and settle the view and the status bar."""
        finished, answer, failure, outcome = run.finished, run.answer, run.failure, run.outcome
        seconds = finished.seconds if finished else asyncio.get_running_loop().time() - run.started
        content = answer.text if answer is not None else view.streamed
        meta: dict[str, Any] = {
            "method": run.method,
            "models": dict(self.models),
            "collection": question.collection,
            "seconds": round(seconds, 3),
            "usage": finished.usage if finished else {},
            "sources": [p.__dict__ for p in answer.sources] if answer else [],
            "value": answer.value if answer else None,
        }
        if failure is not None:
            meta.update(error=failure.error, hint=failure.hint)
        try:
            self.store.add_message(
                session_id,
                "assistant",
                content,
                status=outcome,
                meta=meta,
                trace=[e.to_dict() for e in run.events if not isinstance(e, AnswerDelta)],
            )
        except ConclaveError as exc:  # shown, not lost silently: the answer stays on screen
            self.show_error(exc, title="Cannot save the answer")
        if outcome != "cancelled":
            self._log_answer(text, content, outcome == "ok", meta, run.events, session_id)
        view.events = run.events
        await view.finish(None)
        view.set_heading(answer_heading(meta), status=outcome)
        tokens = sum(u.get("prompt_tokens", 0) + u.get("completion_tokens", 0) for u in meta["usage"].values())
        self.refresh_status(activity="", tokens=tokens if finished else None, seconds=seconds)
        self.call_after_refresh(self.refresh_bindings)
        if outcome == "cancelled":
            self.notify("Answer cancelled.", severity="warning")

    def _log_answer(
        self, question: str, content: str, ok: bool, meta: dict[str, Any], events: list[Event], session_id: str
    ) -> None:
        """Add a finished answer to the answer log (`conclave logs`); said once when the log cannot be written."""
        from conclave.logs import LogRecord, log_answer

        if not self.settings.log_answers:
            return

        value = meta.get("value")
        record = LogRecord(
            question=question,
            answer=content,
            ok=ok,
            method=str(meta.get("method") or ""),
            model=str(self.models.get("reasoner") or ""),
            value=None if value is None else str(value),
            error=meta.get("error"),
            models=dict(self.models),
            usage=dict(meta.get("usage") or {}),
            seconds=meta.get("seconds"),
            trace=[e.to_dict() for e in events if not isinstance(e, AnswerDelta)],
            origin="chat",
            session=session_id,
        )
        problem = log_answer(self.settings, record)
        if problem is not None and not getattr(self, "_log_warned", False):
            self._log_warned = True
            self.show_error(problem, title="Logging is off")

    def action_cancel(self) -> None:
        """Cancel the answer in progress; otherwise copy the input's selection, or say how to quit."""
        if self.answering and self._answer_worker is not None:
            self._answer_worker.cancel()
            return
        focused = self.focused
        if isinstance(focused, Input) and focused.selected_text:
            focused.action_copy()
            return
        self.notify("Nothing to cancel. Ctrl+Q quits.", timeout=3)

    # ------------------------------------------------------------------ sessions

    async def open_session(self, session_id: str) -> None:
        """Show a stored session and continue it."""
        info = self.store.get(session_id)
        messages = self.store.messages(info.id)
        self.session_id = info.id
        restore = {k: info.settings[k] for k in SESSION_KEYS if k in info.settings and k not in self._pinned}
        if "roles" in restore:
            restore["roles"] = RoleModels.model_validate(restore["roles"])
        if restore:
            self.settings = self.settings.model_copy(update=restore)
        self.models = {}
        await self.conversation.clear()
        self._set_title(info.title)
        last: AssistantMessage | None = None
        for message in messages:
            if message.role == "user":
                await self.conversation.add_user(message.content)
            else:
                last = await self._add_stored_answer(message)
        self.prompt.set_history([m.content for m in messages if m.role == "user"])
        self.trace_panel.clear_trace()
        if last is not None:
            self.trace_panel.show(last.events)
            self.show_sources(last.sources, "Sources of the last answer")
            usage = last_usage(messages)
            self.refresh_status(tokens=usage[0], seconds=usage[1])
        else:
            self.show_sources([], "Sources")
            self.refresh_status(tokens=None, seconds=None)
        self.conversation.follow(force=True)

    async def _add_stored_answer(self, message: Message) -> AssistantMessage:
        events: list[Event] = []
        for data in message.trace:
            try:
                events.append(event_from_dict(data))
            except (KeyError, TypeError, ValueError):
                continue  # an event kind this version does not know: skip it, keep the rest
        sources = [Passage(**p) for p in message.meta.get("sources", []) if isinstance(p, dict)]
        body = message.content or f"_(no answer: {message.meta.get('error', message.status)})_"
        return await self.conversation.add_assistant(
            body, heading=answer_heading(message.meta), status=message.status, events=events, sources=sources
        )

    async def new_session(self) -> None:
        """Start afresh; the session is created with its first question."""
        if self.answering:
            self.notify("An answer is in progress: press Ctrl+C to cancel it first.", severity="warning")
            return
        self.session_id = None
        self.models = {}
        self.trace_panel.clear_trace()
        self.show_sources([], "Sources")
        self.prompt.set_history([])
        await self._show_welcome()
        self.refresh_status(tokens=None, seconds=None)

    def action_sessions(self) -> None:
        """Open the sessions screen."""

        async def chosen(choice: str | None) -> None:
            if self.session_id is not None:
                remaining = {s.id: s for s in self.store.list_sessions()}
                if self.session_id not in remaining:
                    await self.new_session()  # the open session was deleted
                else:
                    self._set_title(remaining[self.session_id].title)  # it may have been renamed
            if choice == SessionsScreen.NEW:
                await self.new_session()
            elif choice is not None and choice != self.session_id:
                if self.answering:
                    self.notify("An answer is in progress: press Ctrl+C to cancel it first.", severity="warning")
                    return
                await self.open_session(choice)
            self.prompt.focus()

        self.push_screen(SessionsScreen(self.store, self.session_id), chosen)

    async def action_new_session(self) -> None:
        """Start a new session."""
        await self.new_session()

    def export_session(self, fmt: Literal["md", "json"] = "md", path: Path | None = None) -> Path | None:
        """Export the open session (Markdown or JSON) and say where it went."""
        if self.session_id is None:
            self.notify("Nothing to export yet: ask a question first.", severity="warning")
            return None
        target = path or Path.cwd() / f"conclave-session-{self.session_id}.{fmt}"
        try:
            written = self.store.export(self.session_id, target, fmt)
        except ConclaveError as exc:
            self.show_error(exc, title="Export failed")
            return None
        self.notify(safe_text(f"Exported to {written}"), title="Export", markup=False)
        return written

    # ------------------------------------------------------------------ panels

    def action_toggle_trace(self) -> None:
        """Show or hide the side panel."""
        self.set_trace(not self.trace_visible)

    def set_trace(self, visible: bool) -> None:
        """Show or hide the side panel (trace and sources)."""
        self.trace_visible = visible
        self.query_one("#side").display = visible

    def show_sources(self, passages: list[Passage], title: str) -> None:
        """Show passages in the Sources tab."""
        self.sources_view.show(title, passages)

    def action_show_sources(self) -> None:
        """Show the Sources tab."""
        self.set_trace(True)
        self.query_one("#side", TabbedContent).active = "sources-tab"

    def action_help(self) -> None:
        """Open the help screen."""
        if isinstance(self.screen, HelpScreen):
            self.pop_screen()
            return
        chat_keys = binding_rows(self.BINDINGS) + [
            (key_label(self.COMMAND_PALETTE_BINDING), "Command palette: every action, searchable"),
            ("Enter", "Send the question or slash command"),
            ("Tab / Shift+Tab", "Move between the input, conversation and side panel"),
        ]
        sections = [
            ("Chat", chat_keys),
            ("Question input", binding_rows(PromptInput.BINDINGS) + [("→ / End", "Accept the suggested command")]),
            ("Sessions screen (F2)", binding_rows(SessionsScreen.BINDINGS)),
        ]
        self.push_screen(HelpScreen(sections))

    def action_focus_prompt(self) -> None:
        """Focus the question input."""
        self.prompt.focus()

    def action_scroll_conversation(self, direction: int) -> None:
        """Scroll the conversation a page."""
        if direction < 0:
            self.conversation.scroll_page_up()
        else:
            self.conversation.scroll_page_down()

    @on(AssistantMessage.Selected)
    def _answer_selected(self, event: AssistantMessage.Selected) -> None:
        if self.answering:
            return
        self.trace_panel.show(event.message.events)
        self.show_sources(event.message.sources, "Sources of the selected answer")

    # ------------------------------------------------------------------ settings

    def update_settings(self, **changes: Any) -> None:
        """Change settings for the next questions (and record them in the session)."""
        self.settings = self.settings.model_copy(update=changes)
        if self.session_id is not None:
            self.store.update_settings(self.session_id, self.settings.redacted())
        self.refresh_status()

    async def run_slash(self, text: str) -> None:
        """Run one slash command (see :mod:`tui.slash`)."""
        await self.slash.run(text)

    def set_method(self, method: str) -> None:
        """Answer the next questions with ``method`` (a coa variant such as ``coa:k=3`` sets its coa options too)."""
        from conclave.workflows.runner import apply_method

        name, applied = apply_method(self.settings, method)
        self.update_settings(method=name, coa=applied.coa)
        self.notify(safe_text(f"Method: {method.strip()}"), markup=False)
        self.call_later(self.conversation.add_note, f"method for the next questions: {method.strip()}")

    def action_edit_params(self) -> None:
        """Open the chat-parameters dialog (F5, /params)."""
        if self.answering:
            self.notify("An answer is in progress: press Ctrl+C to cancel it first.", severity="warning")
            return
        s = self.settings
        values = {
            "method": s.method,
            "model": s.model or "",
            "temperature": f"{s.temperature:g}",
            "max_tokens": str(s.max_tokens),
            "system": s.system or "",
        }
        self.push_screen(ParamsDialog(values), self._params_chosen)

    def _params_chosen(self, values: dict[str, str] | None) -> None:
        if values is None:
            return
        try:
            changes = params_changes(self.settings, values)
        except ConclaveError as exc:
            self.show_error(exc, title="Parameters not changed")
            return
        if not changes:
            return
        method = changes.pop("method_spec", None)
        if method is not None:
            from conclave.workflows.runner import apply_method

            name, applied = apply_method(self.settings, method)
            changes.update(method=name, coa=applied.coa)
        self.update_settings(**{k: v for k, v in changes.items() if k != "shown"})
        self.call_later(self.conversation.add_note, "parameters for the next questions: " + changes["shown"])


def params_changes(settings: Settings, values: dict[str, str]) -> dict[str, Any]:
    """What the parameters dialog changed, checked: settings keywords, ``method_spec`` for a method (a variant sets
    coa options too) and ``shown`` (a summary for the conversation). Bad values raise ConfigError; nothing applies."""
    from conclave.workflows.runner import parse_method

    from conclave.models.backends import parse_spec
    from conclave.templates import parse_options

    changes: dict[str, Any] = {}
    shown: list[str] = []
    method = values.get("method", "").strip()
    if method and method != settings.method:
        parse_method(method)
        changes["method_spec"] = method
        shown.append(f"method {method}")
    model = values.get("model", "").strip() or None
    if model != settings.model:
        if model is not None:
            parse_spec(model)
        changes["model"] = model
        shown.append(f"model {model or 'automatic'}")
    options = parse_options(
        [f"{k}={values[k].strip()}" for k in ("temperature", "max_tokens") if values.get(k, "").strip()]
    )
    for key, value in options.items():
        if value != getattr(settings, key):
            changes[key] = value
            shown.append(
                f"{key.replace('_', ' ')} {value:g}" if isinstance(value, float) else f"{key.replace('_', ' ')} {value}"
            )
    system = values.get("system", "").strip() or None
    if system != settings.system:
        changes["system"] = system
        shown.append(f"instructions “{system}”" if system else "no instructions")
    # The bounds (temperature 0-2, reply length 16-32768, instructions up to 4000 characters) are the settings' own.
    try:
        Settings.model_validate(
            {**settings.model_dump(), **{k: v for k, v in changes.items() if k in Settings.model_fields}}
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"{field}: {err['msg']}", hint="change it in the dialog (F5) and save again") from None
    if changes:
        changes["shown"] = ", ".join(shown)
    return changes


def last_usage(messages: list[Message]) -> tuple[int | None, float | None]:
    """Tokens and seconds of the last answer in a stored conversation."""
    for message in reversed(messages):
        if message.role == "assistant":
            usage = message.meta.get("usage") or {}
            tokens = sum(int(u.get("prompt_tokens", 0)) + int(u.get("completion_tokens", 0)) for u in usage.values())
            seconds = message.meta.get("seconds")
            return (tokens if usage else None), (float(seconds) if seconds is not None else None)
    return None, None
