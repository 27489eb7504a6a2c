"""The live trace of an answer (plan, retrieval, chain, reified steps, re-plans, votes, critic) and the sources view.

Everything shown came from models, documents or servers: it is built as ``rich.text.Text`` (never markup) and
cleaned of terminal escape sequences and control characters (:func:`conclave.terminal.safe_rich_text`)."""

from __future__ import annotations

from typing import Any

from conclave.tui.conversation import Following
from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from conclave.events import (
    AnswerDelta,
    AnswerReady,
    ChainDrafted,
    ChainRejected,
    Critique,
    Event,
    Passage,
    PlanMade,
    Retrieved,
    RunFailed,
    RunFinished,
    RunStarted,
    StepFinished,
    StepStarted,
    ToolCalled,
    Usage,
    VoteCast,
)
from conclave.terminal import CHAIN_LINE_CHARS, REASON_CHARS, safe_rich_text, safe_text
from conclave.terminal import clip as short

__all__ = ["SourcesView", "TracePanel", "describe", "short"]


def _args(args: dict[str, Any]) -> str:
    if len(args) == 1:
        return short(next(iter(args.values())), 60)
    return ", ".join(f"{k}={short(v, 30)}" for k, v in args.items())


def _heading(label: str, style: str, rest: str = "") -> Text:
    text = Text()
    text.append(label, style=style)
    if rest:
        text.append(" " + rest)
    return text


def _step_text(event: StepStarted | StepFinished) -> Text:
    text = Text()
    prefix = f"s{event.sample + 1}·" if event.sample else ""
    if isinstance(event, StepStarted):
        text.append("… ", style="yellow")
        text.append(f"{prefix}{event.step_id}", style="bold")
        text.append(f" {event.tool}({_args(event.args)})", style="dim")
        return text
    ok = event.status == "ok"
    text.append("✓ " if ok else "✗ ", style="green" if ok else "red")
    text.append(f"{prefix}{event.step_id}", style="bold")
    text.append(" = " if ok else f" {event.status}: ")
    text.append(short(event.value if ok else (event.error or event.status), 80))
    ms = max(0.0, (event.ended - event.started) * 1000)
    text.append(f"  {event.tool} · {ms:.0f} ms", style="dim")
    return text


def describe(event: Event) -> Text | None:
    """How one event reads in the trace (``None``: not shown)."""
    if isinstance(event, RunStarted):
        models = ", ".join(sorted(set(event.models.values()))) or "?"
        searches = event.method not in ("direct", "cot")  # these two never read the collection
        where = f" · {event.collection}" if event.collection and searches else ""
        return _heading("▶ " + event.method, "bold", f"· {models}{where}")
    if isinstance(event, PlanMade):
        text = _heading("Plan", "bold cyan")
        for i, sub in enumerate(event.subquestions, 1):
            text.append(f"\n {i}. {short(sub.get('question', ''), 200)}")
            text.append(f" ({sub.get('needs', '?')})", style="dim")
        return text
    if isinstance(event, Retrieved):
        text = _heading("Retrieve", "bold cyan", f"“{short(event.query, 100)}”")
        for p in event.passages:
            text.append(f"\n {p.score:.2f} ", style="dim")
            text.append(short(p.title or p.source, 40), style="bold")
            text.append(f" {short(p.text, 90)}")
        if not event.passages:
            text.append("\n no passages found", style="yellow")
        return text
    if isinstance(event, ChainDrafted):
        label = f"Chain (attempt {event.attempt + 1}" + (f", sample {event.sample + 1}" if event.sample else "") + ")"
        text = _heading(label, "bold cyan")
        for line in event.text.splitlines():
            text.append(
                "\n " + short(line, CHAIN_LINE_CHARS), style="italic"
            )  # a runaway model can write one huge line
        return text
    if isinstance(event, ChainRejected):
        text = _heading("↻ Re-plan", "bold yellow", f"(attempt {event.attempt + 1} rejected)")
        for error in event.errors:
            text.append(f"\n - {short(error, REASON_CHARS)}")
        return text
    if isinstance(event, (StepStarted, StepFinished)):
        return _step_text(event)
    if isinstance(event, VoteCast):
        counts = ", ".join(f"{k}: {v}" for k, v in event.counts.items()) or short(event.answers, 80)
        return _heading("Vote", "bold cyan", f"{counts} → {event.winner}")
    if isinstance(event, Critique):
        marks = {"accept": ("✓", "bold green"), "reject": ("✗", "bold red")}
        mark, style = marks.get(event.verdict, ("↻", "bold yellow"))
        text = _heading(f"{mark} Critic: {event.verdict}", style)
        for reason in event.reasons:
            text.append(f"\n - {short(reason, REASON_CHARS)}")
        return text
    if isinstance(event, ToolCalled):
        text = _heading("Tool", "bold cyan", f"{event.tool}({_args(event.args)})")
        text.append("\n → ")
        text.append(short(event.result, 160), style="red" if event.is_error else "")
        return text
    if isinstance(event, Usage):
        return Text(
            f"{event.agent}: {event.prompt_tokens}+{event.completion_tokens} tokens · {event.seconds:.1f} s",
            style="dim",
        )
    if isinstance(event, AnswerReady):
        n = len(event.sources)
        return _heading("Answer ready", "bold green", f"· {n} source{'s' if n != 1 else ''}" if n else "")
    if isinstance(event, RunFinished):
        tokens = sum(u.get("prompt_tokens", 0) + u.get("completion_tokens", 0) for u in event.usage.values())
        if event.ok:
            label, style = "■ Done", "bold"
        else:
            label, style = ("■ No answer" if event.reason else "■ Stopped"), "bold red"
        text = _heading(label, style, f"in {event.seconds:.1f} s · {tokens} tokens")
        if event.reason:
            text.append(f"\n {short(event.reason, REASON_CHARS)}")
        return text
    if isinstance(event, RunFailed):
        text = _heading("✗ Failed", "bold red", event.error)
        if event.hint:
            text.append(f"\n fix: {event.hint}")
        return text
    return None


PLACEHOLDER = Text(
    "The trace of each answer appears here as it happens: the plan, retrieved passages, the abstract chain, "
    "each reified step with its value and time, re-plans and the critic's verdict.\n\n"
    "Click an earlier answer to see its trace again.",
    style="dim",
)


class TracePanel(Following):
    """The trace of one answer, one entry per event; a reified step's entry updates in place when it finishes."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._steps: dict[tuple[int, str], Static] = {}
        self._writing: Static | None = None
        self._writer = ""
        self._placeholder = False
        self.events: list[Event] = []

    def on_mount(self) -> None:
        self.clear_trace()

    def clear_trace(self) -> None:
        """Forget the shown trace."""
        self._steps.clear()
        self._writing = None
        self.events = []
        self.stop_following()
        self.remove_children()
        self.mount(Static(PLACEHOLDER, classes="placeholder", markup=False))
        self._placeholder = True

    def show(self, events: list[Event]) -> None:
        """Replace the shown trace with ``events`` (a stored answer's trace)."""
        self.clear_trace()
        for event in events:
            self.add_event(event)

    def _entry(self, text: Text | str, *classes: str) -> Static:
        entry = Static(text, classes=" ".join(("entry", *classes)), markup=False)
        self.mount(entry)
        self.follow()
        return entry

    def add_event(self, event: Event) -> None:
        """Show one event."""
        self.events.append(event)
        if self._placeholder:
            self._placeholder = False
            for placeholder in self.query(".placeholder"):
                placeholder.remove()
        if isinstance(event, AnswerDelta):
            if self._writing is None:
                self._writer = safe_text(event.agent)
                self._writing = self._entry(Text(f"✎ {self._writer} is writing the answer…", style="dim"), "writing")
            return
        if isinstance(event, (AnswerReady, RunFinished, RunFailed)) and self._writing is not None:
            self._writing.update(Text(f"✎ {self._writer} wrote the answer", style="dim"))
        text = describe(event)
        if text is None:
            return
        text = safe_rich_text(text)
        if isinstance(event, StepFinished) and (event.sample, event.step_id) in self._steps:
            self._steps.pop((event.sample, event.step_id)).update(text)
            return
        entry = self._entry(text, event.kind.replace("_", "-"))
        if isinstance(event, StepStarted):
            self._steps[(event.sample, event.step_id)] = entry


class SourcesView(VerticalScroll):
    """Passages with snippets: the cited sources of an answer, or the results of /search."""

    def show(self, title: str, passages: list[Passage]) -> None:
        """Replace the view's content."""
        self.remove_children()
        heading = Text(safe_text(title), style="bold")
        if not passages:
            heading.append("\nnothing to show", style="dim")
        widgets: list[Static] = [Static(heading, classes="sources-title", markup=False)]
        for i, p in enumerate(passages, 1):
            text = Text()
            text.append(f"[{i}] ", style="bold")
            text.append(p.title or p.source, style="bold")
            text.append(f"  {p.score:.2f}", style="dim")
            if p.title and p.source != p.title:
                text.append(f"\n{p.source}", style="dim")
            text.append("\n" + short(p.text, 400))
            widgets.append(Static(safe_rich_text(text), classes="passage", markup=False))
        self.mount_all(widgets)
        self.scroll_home(animate=False)
