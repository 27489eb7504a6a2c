"""``reify``: fill a chain's placeholders by running its tools, level by level, each level concurrently.

A step's level is one more than the deepest step it uses, so every call in a level can run at once
(``asyncio.gather``). A step whose input failed, timed out or was skipped is ``skipped``: it never runs with a
literal ``y1`` in its arguments. Times are ``time.perf_counter()`` readings (seconds; compare and subtract them).

:class:`EagerRun` reifies while the chain is still being decoded (the program form is parsed line by line): each step
is started as soon as it is parsed and its inputs are done, so a slow tool overlaps the decoding of the rest. When the
whole chain has validated, :func:`reify` takes over the eager results of the steps that are unchanged in it.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from fractions import Fraction
from typing import Any

from conclave.workflows.coa.model import PLACEHOLDER_RE, Arg, Chain, Concat, Ref, Step
from conclave.workflows.coa.render import render_filled
from conclave.workflows.coa.validate import ChainError, bind_args, bind_chain, find_tool, format_errors, validate

from conclave.events import Event, StepFinished, StepStarted

__all__ = ["EagerRun", "reify", "ReifiedChain", "StepResult", "InvalidChainError", "chain_levels", "value_text"]

EventCallback = Callable[[Event], Awaitable[None] | None]


class InvalidChainError(ValueError):
    """``reify`` was given a chain that does not validate; ``errors`` are what ``validate`` reported."""

    def __init__(self, errors: list[ChainError]):
        super().__init__("the chain is not valid:\n" + format_errors(errors))
        self.errors = errors


@dataclass(frozen=True)
class StepResult:
    """What happened to one step: ``ok`` with a value, ``failed``/``timeout`` with an error, or ``skipped``."""

    step_id: str
    tool: str
    status: str
    value: Any = None
    text: str | None = None
    """The value as text, as it is substituted into later steps and the answer."""
    error: str | None = None
    args: dict[str, Any] = field(default_factory=dict)
    """The arguments the tool was called with (placeholders filled in)."""
    started: float = 0.0
    ended: float = 0.0
    level: int = 0

    @property
    def ok(self) -> bool:
        """Whether the step produced a value."""
        return self.status == "ok"

    @property
    def seconds(self) -> float:
        """How long the call took."""
        return self.ended - self.started

    def to_dict(self) -> dict[str, Any]:
        """Plain data for traces (the raw value is left out; ``text`` carries it)."""
        return {
            "step_id": self.step_id,
            "tool": self.tool,
            "status": self.status,
            "text": self.text,
            "error": self.error,
            "args": self.args,
            "started": self.started,
            "ended": self.ended,
            "level": self.level,
        }


@dataclass(frozen=True)
class ReifiedChain:
    """A chain with its tool results; ``answer_value`` is the filled-in answer, or None if any part is missing."""

    chain: Chain
    results: Mapping[str, StepResult]
    levels: tuple[tuple[str, ...], ...]
    answer_value: str | None
    started: float
    ended: float

    @property
    def ok(self) -> bool:
        """Every step succeeded and the answer has a value."""
        return self.answer_value is not None and all(r.ok for r in self.results.values())

    @property
    def values(self) -> dict[str, str]:
        """Placeholder -> value text, for the steps that succeeded."""
        return {sid: r.text for sid, r in self.results.items() if r.ok and r.text is not None}

    def filled_text(self, limit: int | None = None) -> str:
        """The chain in the text form with values in place of the placeholders that have one.

        ``limit`` clips each value to that many characters (a search result can be pages long; a prompt needs the
        gist, and the passages are given in full elsewhere).
        """
        values = self.values
        if limit is not None:
            values = {k: v if len(v) <= limit else v[: limit - 1] + "…" for k, v in values.items()}
        return render_filled(self.chain, values)

    def failures(self) -> list[str]:
        """One line per step that did not succeed, for the reasoner or the critic."""
        return [f"{r.step_id} ({r.tool}): {r.status}: {r.error}" for r in self.results.values() if not r.ok]

    def to_dict(self) -> dict[str, Any]:
        """Plain data for traces."""
        return {
            "steps": [r.to_dict() for r in self.results.values()],
            "levels": [list(level) for level in self.levels],
            "answer_value": self.answer_value,
            "filled": self.filled_text(),
            "ok": self.ok,
            "seconds": self.ended - self.started,
        }


def chain_levels(chain: Chain) -> tuple[tuple[str, ...], ...]:
    """Step ids grouped by dependency depth: level 0 uses no placeholder, level n uses something of level n-1."""
    depth: dict[str, int] = {}
    for step in chain.steps:
        depth[step.id] = 1 + max((depth[r] for r in step.refs() if r in depth), default=-1)
    levels: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for step in chain.steps:
        levels[depth[step.id]].append(step.id)
    return tuple(tuple(level) for level in levels)


async def reify(
    chain: Chain,
    tools: Mapping[str, Any],
    *,
    timeout: float | None = 30.0,
    on_event: EventCallback | None = None,
    sample: int = 0,
    eager: EagerRun | None = None,
) -> ReifiedChain:
    """Run the chain's tool calls (validated first; raises InvalidChainError) and fill in its placeholders.

    With ``eager``, a step it already ran (or is running) with the same tool and arguments is not run again."""
    errors = validate(chain, tools, single_answer=False)
    if errors:
        raise InvalidChainError(errors)
    bound = bind_chain(chain, tools)
    levels = chain_levels(bound)
    steps = {step.id: step for step in bound.steps}
    results: dict[str, StepResult] = {}
    reused: set[str] = set()  # steps whose eager run (on the same inputs) stands

    async def run(step: Step, level: int) -> None:
        tool_name = find_tool(step.tool, tools) or step.tool
        early = eager.task_for(step) if eager is not None else None
        if early is not None and all(ref in reused for ref in step.refs()):
            result = await early
            results[step.id] = replace(result, level=level)
            reused.add(step.id)
            return  # its events went out when it ran
        results[step.id] = await _run_step(
            step, tool_name, tools, results, timeout=timeout, level=level, sample=sample, on_event=on_event
        )

    started = time.perf_counter()
    for level, ids in enumerate(levels):
        await asyncio.gather(*(run(steps[sid], level) for sid in ids))
    ended = time.perf_counter()
    ordered = {step.id: results[step.id] for step in bound.steps}
    return ReifiedChain(
        chain=bound,
        results=ordered,
        levels=levels,
        answer_value=_answer_value(bound, ordered),
        started=started,
        ended=ended,
    )


class EagerRun:
    """Runs a chain's steps as they are decoded (see the module docstring). :meth:`start` takes each parsed step once;
    a step whose tool or arguments do not bind is left for :func:`reify`, and so are the steps that use it."""

    def __init__(
        self,
        tools: Mapping[str, Any],
        *,
        timeout: float | None = 30.0,
        on_event: EventCallback | None = None,
        sample: int = 0,
    ):
        self.tools = tools
        self.timeout = timeout
        self.on_event = on_event
        self.sample = sample
        self.steps: dict[str, Step] = {}
        self.tasks: dict[str, asyncio.Task[StepResult]] = {}

    def start(self, step: Step) -> bool:
        """Schedule ``step`` (it waits for the steps it uses); False when it cannot run early."""
        name = find_tool(step.tool, self.tools)
        if name is None or step.id in self.tasks or any(ref not in self.tasks for ref in step.refs()):
            return False
        args, errors = bind_args(step, self.tools[name], name)
        if errors:
            return False
        bound = replace(step, tool=name, args=args, positional=())
        self.steps[step.id] = bound
        self.tasks[step.id] = asyncio.ensure_future(self._run(bound, name))
        return True

    async def _run(self, step: Step, tool_name: str) -> StepResult:
        deps = {ref: await self.tasks[ref] for ref in step.refs()}
        return await _run_step(
            step, tool_name, self.tools, deps, timeout=self.timeout, level=0, sample=self.sample, on_event=self.on_event
        )

    def task_for(self, step: Step) -> asyncio.Task[StepResult] | None:
        """The eager run of ``step`` if the final chain's (bound) step is exactly what was started."""
        started = self.steps.get(step.id)
        if started is None or started.tool != step.tool or dict(started.args) != dict(step.args):
            return None
        return self.tasks[step.id]

    def cancel(self) -> None:
        """Stop what is still running (the chain was rejected or the run ended)."""
        for task in self.tasks.values():
            if not task.done():
                task.cancel()


async def _call(
    step: Step, tool_name: str, tool: Any, args: dict[str, Any], timeout: float | None, level: int
) -> StepResult:
    started = time.perf_counter()
    try:
        value = await asyncio.wait_for(tool.ainvoke(args), timeout)
    except TimeoutError:
        return StepResult(
            step.id,
            tool_name,
            "timeout",
            error=f"{tool_name} did not finish within {timeout:g} s",
            args=args,
            started=started,
            ended=time.perf_counter(),
            level=level,
        )
    except Exception as exc:  # any tool failure belongs to the step, not to the run
        return StepResult(
            step.id,
            tool_name,
            "failed",
            error=_error_text(exc),
            args=args,
            started=started,
            ended=time.perf_counter(),
            level=level,
        )
    return StepResult(
        step.id,
        tool_name,
        "ok",
        value=value,
        text=value_text(value),
        args=args,
        started=started,
        ended=time.perf_counter(),
        level=level,
    )


def _error_text(exc: BaseException) -> str:
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    hint = getattr(exc, "hint", None)
    text = f"{message} ({hint})" if hint else message
    text = " ".join(text.split())
    return text if len(text) <= 500 else text[:497] + "..."


async def _run_step(
    step: Step,
    tool_name: str,
    tools: Mapping[str, Any],
    done: Mapping[str, StepResult],
    *,
    timeout: float | None,
    level: int,
    sample: int,
    on_event: EventCallback | None,
) -> StepResult:
    """One step, after the steps it uses (``done``): skipped when one of them failed, else its tool called with their
    values filled in; its step events go to ``on_event`` (a chain's reification and an eager run emit the same)."""
    missing = [ref for ref in step.refs() if not done[ref].ok]
    if missing:
        now = time.perf_counter()
        reason = ", ".join(f"{ref} ({done[ref].status})" for ref in missing)
        result = StepResult(
            step.id, tool_name, "skipped", error=f"not run: it needs {reason}", started=now, ended=now, level=level
        )
    else:
        args = {name: _substitute(arg, done) for name, arg in step.args.items()}
        await _emit(on_event, StepStarted(step_id=step.id, tool=tool_name, args=args, sample=sample))
        result = await _call(step, tool_name, tools[tool_name], args, timeout, level)
    await _emit(on_event, step_finished(result, sample))
    return result


async def _emit(on_event: EventCallback | None, event: Event) -> None:
    if on_event is not None:
        outcome = on_event(event)
        if inspect.isawaitable(outcome):
            await outcome


def step_finished(result: StepResult, sample: int) -> StepFinished:
    """The event of a finished step (the one place both the level-by-level and the eager run make it)."""
    return StepFinished(
        step_id=result.step_id,
        tool=result.tool,
        status=result.status,
        value=result.text,
        error=result.error,
        started=result.started,
        ended=result.ended,
        sample=sample,
        source=provenance(result.value),
    )


def provenance(value: Any) -> str | None:
    """Where a tool's value came from, in words, when the tool says (a value read from the documents carries its
    document, table, row, column and cell); None otherwise."""
    source = getattr(value, "source", None)
    describe = getattr(source, "describe", None)
    return describe() if callable(describe) else None


def value_text(value: Any) -> str:
    """A tool result as the text that replaces its placeholder."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e16 else repr(value)
    if isinstance(value, Fraction):
        return str(value.numerator) if value.denominator == 1 else repr(float(value))
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    text = getattr(value, "text", None)
    if isinstance(text, str):
        return text
    content = getattr(value, "content", None)
    if isinstance(content, str):
        return content.strip()
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def _fill(text: str, results: Mapping[str, StepResult]) -> str:
    def one(match: Any) -> str:
        result = results.get(match.group(0))
        return result.text if result is not None and result.ok and result.text is not None else match.group(0)

    return PLACEHOLDER_RE.sub(one, text)


# A search result placed into another argument (a two-hop chain's second query, "when did " + y1 + " ..."): its top
# passage, this long, rather than the ranked list with ids and scores, which would bury the query's own words.
GIST_CHARS = 200


def _gist(text: str) -> str:
    from conclave.tools.toolset import parse_passages

    found = parse_passages(text)
    return found[0].text[:GIST_CHARS] if found else text


def _substitute(arg: Arg, results: Mapping[str, StepResult]) -> Any:
    if isinstance(arg, Ref):
        result = results[arg.id]
        # Structured results (a list of passages) pass through whole; everything else as its text.
        return result.value if isinstance(result.value, (list, dict)) else _gist(result.text or "")
    if isinstance(arg, Concat):
        return "".join(
            _substitute(part, results) if isinstance(part, Ref) else _fill(str(part.value), results)
            for part in arg.parts
        )
    return _fill_value(arg.value, results)


def _fill_value(value: Any, results: Mapping[str, StepResult]) -> Any:
    if isinstance(value, str):
        return _fill(value, results)
    if isinstance(value, list):
        return [_fill_value(v, results) for v in value]
    if isinstance(value, dict):
        return {k: _fill_value(v, results) for k, v in value.items()}
    return value


def _answer_value(chain: Chain, results: Mapping[str, StepResult]) -> str | None:
    refs = chain.answer_refs()
    if not refs or any(ref not in results or not results[ref].ok for ref in refs):
        return None
    return _fill(chain.answer, results)
