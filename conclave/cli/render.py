"""Print run events to a terminal: the streamed answer on stdout, the trace (when asked) as it happens.

Everything in an event came from a model, a document or a server: it is printed as text (Rich markup escaped) and
without terminal escape sequences (``escape`` here is :func:`conclave.terminal.escape_markup`)."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console

from conclave.events import Event, stage_of
from conclave.terminal import CHAIN_LINE_CHARS, REASON_CHARS, safe_text
from conclave.terminal import clip as _short
from conclave.terminal import escape_markup as escape
from conclave.workflows.methods import searches_knowledge


class TraceRenderer:
    """Consumes events; ``stream`` prints answer deltas as they arrive, ``trace`` prints every other event."""

    def __init__(self, out: Console, err: Console, *, trace: bool, stream: bool):
        self.out = out
        self.err = err
        self.trace = trace
        self.stream = stream
        self._streaming = False
        self._streamed = ""
        self._headed = False

    def _line(self, text: str) -> None:
        if self._streaming:
            self.out.file.write("\n")
            self._streaming = False
        self.out.print(text)

    def handle(self, event: Event) -> None:
        kind = event.kind
        data = event.to_dict()
        if kind == "answer_delta":
            if self.stream:
                if not self._headed and self.trace:
                    # Once: trace lines may come between the answer's pieces (the writer's usage, then its notice).
                    self.out.print("[bold]answer:[/]")
                    self._headed = True
                text = safe_text(data["text"])
                self.out.file.write(text)
                self.out.file.flush()
                self._streaming = True
                self._streamed += text
            return
        if kind == "answer":
            if self.stream and not self._streamed.strip():
                if self.trace and not self._headed:
                    self._line("[bold]answer:[/]")
                    self._headed = True
                self._line(escape(data["text"]))
            elif self._streaming:
                self.out.file.write("\n")
                self._streaming = False
            if self.stream and data.get("sources"):
                cited = ", ".join(f"{s['source']}#{s['id'][:8]}" for s in data["sources"])
                self.out.print(f"[dim]sources: {escape(cited)}[/]")
            return
        if kind == "run_finished":
            if self.stream:
                usage = data["usage"]
                prompt = sum(u.get("prompt_tokens", 0) for u in usage.values())
                completion = sum(u.get("completion_tokens", 0) for u in usage.values())
                calls = sum(u.get("calls", 0) for u in usage.values())
                self._line(
                    f"[dim]{calls} model call(s) · {prompt} prompt + {completion} completion tokens · "
                    f"{data['seconds']:.1f} s[/]"
                )
            return
        if kind == "run_started" and self.stream:
            models = sorted(set(data["models"].values()))
            self._line(
                f"[dim]{escape(data['method'])} · model {escape(', '.join(models))}"
                + (
                    f" · collection {escape(data['collection'])}"
                    if data.get("collection") and searches_knowledge(data["method"])
                    else ""
                )
                + "[/]"
            )
            return
        if not self.trace:
            return
        if kind == "plan":
            self._line("[bold cyan]plan[/]")
            for i, sub in enumerate(data["subquestions"], 1):
                self._line(
                    f"  {i}. {escape(_short(sub.get('question', ''), REASON_CHARS))} "
                    f"[dim]({escape(sub.get('needs', '?'))})[/]"
                )
        elif kind == "retrieval":
            self._line(f"[bold cyan]retrieve[/] {escape(data['query'])}")
            for p in data["passages"]:
                self._line(f"  [dim]{p['score']:.2f}[/] {escape(p['source'])} — {escape(_short(p['text'], 90))}")
        elif kind == "chain":
            label = f" sample {data['sample'] + 1}" if data.get("sample") else ""
            self._line(f"[bold cyan]chain[/] (attempt {data['attempt'] + 1}{label}, {escape(data['form'])} form)")
            for line in data["text"].splitlines():
                self._line(f"  {escape(_short(line, CHAIN_LINE_CHARS))}")  # a runaway model can loop on one line
        elif kind == "replan":
            self._line("[bold yellow]re-plan[/] the chain was rejected:")
            for e in data["errors"]:
                self._line(f"  - {escape(_short(e, REASON_CHARS))}")
        elif kind == "step_finished":
            ms = (data["ended"] - data["started"]) * 1000
            value = data["value"] if data["status"] == "ok" else data.get("error") or data["status"]
            colour = "green" if data["status"] == "ok" else "red"
            self._line(
                f"  [{colour}]{escape(data['step_id'])}[/] = {escape(_short(value, 100))} "
                f"[dim]({escape(data['tool'])}, {ms:.0f} ms, {escape(data['status'])})[/]"
            )
        elif kind == "vote":
            self._line(f"[bold cyan]vote[/] {escape(json.dumps(data['counts']))} -> {escape(str(data['winner']))}")
        elif kind == "critique":
            colour = {"accept": "green", "reject": "red"}.get(data["verdict"], "yellow")
            self._line(f"[bold {colour}]critic: {escape(data['verdict'])}[/]")
            for r in data["reasons"]:
                self._line(f"  - {escape(_short(r, REASON_CHARS))}")
        elif kind == "tool_call":
            self._line(
                f"[bold cyan]tool[/] {escape(data['tool'])}({escape(_short(data['args'], 80))}) -> {escape(_short(data['result'], 100))}"
            )
        elif kind == "usage":
            self._line(
                f"[dim]  {escape(data['agent'])}: {data['prompt_tokens']}+{data['completion_tokens']} tokens, {data['seconds']:.1f} s[/]"
            )
        elif kind == "run_failed":
            self._line(f"[red]failed: {escape(data['error'])}[/]")


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
