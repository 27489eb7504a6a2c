"""Print run events to a terminal: the streamed answer on stdout, the trace (when asked) as it happens.

Everything in an event came from a model, a document or a server: it is printed as text (Rich markup escaped) and
without terminal escape sequences (``escape`` here is :func:`conclave.terminal.escape_markup`)."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console

from conclave.events import Event
from conclave.terminal import escape_markup as escape
from conclave.terminal import safe_text


def _short(value: Any, limit: int = 160) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class TraceRenderer:
    """Consumes events; ``stream`` prints answer deltas as they arrive, ``trace`` prints every other event."""

    def __init__(self, out: Console, err: Console, *, trace: bool, stream: bool):
        self.out = out
        self.err = err
        self.trace = trace
        self.stream = stream
        self._streaming = False
        self._streamed = ""

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
                if not self._streaming and self.trace:
                    self.out.print("[bold]answer:[/]")
                text = safe_text(data["text"])
                self.out.file.write(text)
                self.out.file.flush()
                self._streaming = True
                self._streamed += text
            return
        if kind == "answer":
            if self.stream and not self._streamed.strip():
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
            self._line(f"[dim]{escape(data['method'])} · model {escape(', '.join(models))}"
                       + (f" · collection {escape(data['collection'])}" if data.get("collection") and data["method"] in ("coa", "react") else "")
                       + "[/]")
            return
        if not self.trace:
            return
        if kind == "plan":
            self._line("[bold cyan]plan[/]")
            for i, sub in enumerate(data["subquestions"], 1):
                self._line(f"  {i}. {escape(sub.get('question', ''))} [dim]({escape(sub.get('needs', '?'))})[/]")
        elif kind == "retrieval":
            self._line(f"[bold cyan]retrieve[/] {escape(data['query'])}")
            for p in data["passages"]:
                self._line(f"  [dim]{p['score']:.2f}[/] {escape(p['source'])} — {escape(_short(p['text'], 90))}")
        elif kind == "chain":
            label = f" sample {data['sample'] + 1}" if data.get("sample") else ""
            self._line(f"[bold cyan]chain[/] (attempt {data['attempt'] + 1}{label}, {escape(data['form'])} form)")
            for line in data["text"].splitlines():
                self._line(f"  {escape(line)}")
        elif kind == "replan":
            self._line("[bold yellow]re-plan[/] the chain was rejected:")
            for e in data["errors"]:
                self._line(f"  - {escape(e)}")
        elif kind == "step_finished":
            ms = (data["ended"] - data["started"]) * 1000
            value = data["value"] if data["status"] == "ok" else data.get("error") or data["status"]
            colour = "green" if data["status"] == "ok" else "red"
            self._line(f"  [{colour}]{escape(data['step_id'])}[/] = {escape(_short(value, 100))} "
                       f"[dim]({escape(data['tool'])}, {ms:.0f} ms, {escape(data['status'])})[/]")
        elif kind == "vote":
            self._line(f"[bold cyan]vote[/] {escape(json.dumps(data['counts']))} -> {escape(str(data['winner']))}")
        elif kind == "critique":
            colour = "green" if data["verdict"] == "accept" else "yellow"
            self._line(f"[bold {colour}]critic: {escape(data['verdict'])}[/]")
            for r in data["reasons"]:
                self._line(f"  - {escape(r)}")
        elif kind == "tool_call":
            self._line(f"[bold cyan]tool[/] {escape(data['tool'])}({escape(_short(data['args'], 80))}) -> {escape(_short(data['result'], 100))}")
        elif kind == "usage":
            self._line(f"[dim]  {escape(data['agent'])}: {data['prompt_tokens']}+{data['completion_tokens']} tokens, {data['seconds']:.1f} s[/]")
        elif kind == "run_failed":
            self._line(f"[red]failed: {escape(data['error'])}[/]")
