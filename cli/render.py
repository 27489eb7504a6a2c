"""Print run events to a terminal: the streamed answer alone on stdout; the run's frame (method and model, usage),
its sources and the trace (when asked) on stderr, so that ``conclave ask "..." > out.txt`` holds the answer only.

Everything in an event came from a model, a document or a server: it is printed as text (Rich markup escaped) and
without terminal escape sequences (``escape`` here is :func:`conclave.terminal.escape_markup`)."""

from __future__ import annotations

import json
from typing import Any

from conclave.workflows.methods import searches_knowledge
from rich.console import Console

from conclave.events import (
    AnswerDelta,
    AnswerReady,
    ChainDrafted,
    ChainRejected,
    Critique,
    Event,
    PlanMade,
    Retrieved,
    RunFailed,
    RunFinished,
    RunStarted,
    StepFinished,
    ToolCalled,
    Usage,
    VoteCast,
    stage_of,
)
from conclave.terminal import CHAIN_LINE_CHARS, REASON_CHARS, safe_text
from conclave.terminal import clip as _short
from conclave.terminal import escape_markup as escape


class TraceRenderer:
    """Consumes events; ``stream`` prints answer deltas as they arrive (on ``out``) and the run's frame (on ``err``),
    ``trace`` prints every other event (on ``err``)."""

    def __init__(self, out: Console, err: Console, *, trace: bool, stream: bool):
        self.out = out
        self.err = err
        self.trace = trace
        self.stream = stream
        self._streaming = False
        self._streamed = ""
        self._headed = False

    def _line(self, text: str) -> None:
        """One line of the frame or the trace, on stderr. When stdout and stderr share a terminal, the answer's
        unfinished line is ended first; a redirected answer is never cut by a line that is not part of it."""
        if self._streaming and self.out.is_terminal and self.err.is_terminal:
            self.out.file.write("\n")
            self.out.file.flush()
            self._streaming = False
        self.err.print(text)

    def handle(self, event: Event) -> None:
        """Print one event: the answer as it streams and the run's frame when ``stream``, the rest when ``trace``."""
        if isinstance(event, AnswerDelta):
            self._delta(event)
        elif isinstance(event, AnswerReady):
            self._answer(event)
        elif isinstance(event, RunFinished):
            if self.stream:
                self._line(_totals(event))
        elif isinstance(event, RunStarted):
            if self.stream:
                self._line(_started(event))
        elif self.trace:
            for line in trace_lines(event):
                self._line(line)

    def _delta(self, event: AnswerDelta) -> None:
        if not self.stream:
            return
        if not self._headed and self.trace:
            # Once: trace lines may come between the answer's pieces (the writer's usage, then its notice).
            self._line("[bold]answer:[/]")
            self._headed = True
        text = safe_text(event.text)
        self.out.file.write(text)
        self.out.file.flush()
        self._streaming = True
        self._streamed += text

    def _answer(self, event: AnswerReady) -> None:
        if self.stream and not self._streamed.strip():
            if self.trace and not self._headed:
                self._line("[bold]answer:[/]")
                self._headed = True
            self.out.print(escape(event.text))
        elif self._streaming:
            self.out.file.write("\n")
            self.out.file.flush()
            self._streaming = False
        if self.stream and event.sources:
            cited = ", ".join(f"{s.source}#{s.id[:8]}" for s in event.sources)
            self._line(f"[dim]sources: {escape(cited)}[/]")


def _started(event: RunStarted) -> str:
    models = sorted(set(event.models.values()))
    where = f" · collection {escape(event.collection)}" if event.collection and searches_knowledge(event.method) else ""
    return f"[dim]{escape(event.method)} · model {escape(', '.join(models))}{where}[/]"


def _totals(event: RunFinished) -> str:
    usage = event.usage.values()
    prompt = sum(u.get("prompt_tokens", 0) for u in usage)
    completion = sum(u.get("completion_tokens", 0) for u in usage)
    calls = sum(u.get("calls", 0) for u in usage)
    return f"[dim]{calls} model call(s) · {prompt} prompt + {completion} completion tokens · {event.seconds:.1f} s[/]"


def trace_lines(event: Event) -> list[str]:
    """The trace's lines (Rich markup, every value escaped) for one event of the team's work; none for the rest."""
    if isinstance(event, PlanMade):
        route = [f"  [dim]{escape(event.route)}[/]"] if event.route else []
        return ["[bold cyan]plan[/]", *route] + [
            f"  {i}. {escape(_short(sub.get('question', ''), REASON_CHARS))} [dim]({escape(sub.get('needs', '?'))})[/]"
            for i, sub in enumerate(event.subquestions, 1)
        ]
    if isinstance(event, Retrieved):
        return [f"[bold cyan]retrieve[/] {escape(event.query)}"] + [
            f"  [dim]{p.score:.2f}[/] {escape(p.source)} — {escape(_short(p.text, 90))}" for p in event.passages
        ]
    if isinstance(event, ChainDrafted):
        label = f" sample {event.sample + 1}" if event.sample else ""
        head = f"[bold cyan]chain[/] (attempt {event.attempt + 1}{label}, {escape(event.form)} form)"
        # A runaway model can loop on one line: each is clipped.
        return [head] + [f"  {escape(_short(line, CHAIN_LINE_CHARS))}" for line in event.text.splitlines()]
    if isinstance(event, ChainRejected):
        return ["[bold yellow]re-plan[/] the chain was rejected:"] + [
            f"  - {escape(_short(e, REASON_CHARS))}" for e in event.errors
        ]
    if isinstance(event, StepFinished):
        ms = (event.ended - event.started) * 1000
        value = event.value if event.status == "ok" else event.error or event.status
        colour = "green" if event.status == "ok" else "red"
        return [
            f"  [{colour}]{escape(event.step_id)}[/] = {escape(_short(value, 100))} "
            f"[dim]({escape(event.tool)}, {ms:.0f} ms, {escape(event.status)})[/]"
        ]
    if isinstance(event, VoteCast):
        return [f"[bold cyan]vote[/] {escape(json.dumps(event.counts))} -> {escape(str(event.winner))}"]
    if isinstance(event, Critique):
        colour = {"accept": "green", "reject": "red"}.get(event.verdict, "yellow")
        return [f"[bold {colour}]critic: {escape(event.verdict)}[/]"] + [
            f"  - {escape(_short(r, REASON_CHARS))}" for r in event.reasons
        ]
    if isinstance(event, ToolCalled):
        return [
            f"[bold cyan]tool[/] {escape(event.tool)}({escape(_short(event.args, 80))}) -> "
            f"{escape(_short(event.result, 100))}"
        ]
    if isinstance(event, Usage):
        return [
            f"[dim]  {escape(event.agent)}: {event.prompt_tokens}+{event.completion_tokens} tokens, "
            f"{event.seconds:.1f} s[/]"
        ]
    if isinstance(event, RunFailed):
        return [f"[red]failed: {escape(event.error)}[/]"]
    return []


# ------------------------------------------------------------------------------------------------ progress


class AskProgress:
    """A spinner with the run's stage and elapsed time, on ``console`` (stderr) only, e.g.
    ``reasoner writing the chain · 12 s``.

    Off unless ``enabled`` (the CLI enables it only when stderr is a terminal and neither --json nor --jsonl is
    given). It is a transient Rich Live that never redirects stdout: it is taken down before anything is printed
    for an event (the trace, the answer) and put back after, and stops for good when the answer starts."""

    def __init__(self, console: Console, *, enabled: bool, method: str = "", clock: Any = None):
        import time

        from rich.spinner import Spinner

        self.console = console
        self.enabled = enabled
        self.method = method
        self._clock = clock or time.monotonic
        self._started = self._clock()
        self.stage = "loading the model"
        self._spinner = Spinner("dots", text="")
        self._live: Any = None
        self._done = False

    def text(self) -> str:
        return f"{self.stage} · {self._clock() - self._started:.0f} s"

    def _render(self) -> Any:
        self._spinner.update(text=escape(self.text()))
        return self._spinner

    def start(self) -> None:
        if not self.enabled or self._done or self._live is not None:
            return
        from rich.live import Live

        self._live = Live(
            console=self.console,
            get_renderable=self._render,
            refresh_per_second=4,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._live.start()

    def pause(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def stop(self) -> None:
        self._done = True
        self.pause()

    def handle(self, event: Event, render: Any) -> None:
        """Show ``event`` with ``render`` (the TraceRenderer's handle) with the spinner out of the way."""
        if event.kind == "run_started":
            self.method = str(event.to_dict().get("method") or self.method)
        self.pause()
        render(event)
        stage = stage_of(event, self.method)
        if stage is None:
            self.stop()
            return
        self.stage = stage or self.stage
        self.start()
