"""The reasoner: writes the whole solution as an abstract chain; never computes a value itself.

``coa.form`` picks the form: ``program`` (Python assignments, decoded freely and parsed line by line as they stream;
each step whose inputs are done starts its tool at once, overlapping the rest of the decoding), ``program-y`` (the
same with placeholders ``y1, y2, ...`` for names), ``json`` (under constrained decoding), ``text``; ``auto`` is JSON
where the backend supports it, text otherwise. A chain that fails to
parse or validate goes back with the exact errors, only the broken chain and the errors (cheap), a bounded number of
times. With ``coa.samples`` > 1 it draws several chains for the team to vote on: warm samples of one form, or
with ``coa.forms`` candidates of different forms, each form's first drawn greedy.

The chain engine is injected (``ChainKit``) so this module does not depend on ``workflows``.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from autogen_core import CancellationToken
from autogen_core.models import (
    AssistantMessage,
    ChatCompletionClient,
    CreateResult,
    LLMMessage,
    SystemMessage,
    UserMessage,
)
from conclave.agents.base import Candidate, RoleAgent, TeamState, passages_block
from conclave.agents.prompting import load_prompt

from conclave.errors import BackendError
from conclave.events import ChainDrafted, ChainRejected, Usage
from conclave.models import client_name
from conclave.models.capabilities import parallel_of
from conclave.models.structured import rejects_json_schema, schema_args


@dataclass(frozen=True)
class ChainKit:
    """The chain engine as the reasoner sees it."""

    parse: Callable[[str], Any]
    """raw model text -> chain; raises an exception whose str() says what is wrong and where."""
    validate: Callable[[Any], list[str]]
    """chain -> error messages (empty when valid)."""
    render: Callable[[Any], str]
    schema: dict[str, Any]
    examples: Callable[[str], list[tuple[str, str, str]]] | None = None
    """question -> similar solved examples as (question, JSON chain, text chain), when configured."""
    to_program: Callable[[str], str] | None = None
    """JSON chain -> the same chain in the program form (for examples)."""
    stream: Callable[[], Any] | None = None
    """A fresh line-by-line parser of a streamed program (``feed(delta) -> new steps``, ``closed``)."""
    eager: Callable[[Callable[[Any], Any], int], Any] | None = None
    """(on_event, sample) -> a runner that starts each streamed step's tool as soon as its inputs are done."""
    placeholders: Callable[[str], str] | None = None
    """A program -> the same program with placeholders ``y1, y2, ...`` for its names (``coa.form = program-y``)."""
    salvage: Callable[[str], Any] | None = None
    """A lookup question's program that does not validate -> the chain of its own searches, or None."""


def tool_lines(tools: dict[str, Any]) -> str:
    """One line per tool for the prompt: name, description, arguments."""
    lines = []
    for name, tool in tools.items():
        schema = tool.args_schema.model_json_schema() if getattr(tool, "args_schema", None) else {}
        args = ", ".join(f"{arg}: {spec.get('type', 'any')}" for arg, spec in (schema.get("properties") or {}).items())
        lines.append(f"- {name}({args}): {(tool.description or '').strip().splitlines()[0]}")
    return "\n".join(lines)


_PROGRAM_BLOCK = re.compile(r"```python\n.*?```", re.S)
_EXAMPLE_TOOL = re.compile(r'"tool"\s*:\s*"([^"]+)"')
_EXAMPLE_CALL = re.compile(r"\b(search_knowledge|vector_math|read_value)\(")
DOCUMENTS_RULE = (
    "- a number, rate or formula that the documents hold is read with read_value (one value) or search_knowledge, "
    "never written from memory: every number comes from the question or from a tool;"
)
"""The provenance rule, shown where the run can read values from documents (a run without them keeps the prompt
that GSM8K was measured with)."""
LOOKUP_RULE = (
    '- this question asks for facts: find each one with `name = search_knowledge("what to find")`, and never write '
    "a fact yourself as text or a number;"
)
"""The rule for a lookup question (nothing to compute): a small model otherwise writes the fact it remembers as a
text literal, which no tool checks."""


COMMON_CONSTANTS = frozenset({"0", "1", "2", "7", "10", "12", "24", "52", "60", "100", "365", "1000", "3600"})
"""Numbers a chain may write without a source (halves, per cent, minutes, months, days, thousands): common knowledge,
used only beside a value from the question or a tool."""
_LITERAL = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?![\w.])")
_REF = re.compile(r"\b[yY]\d+\b")


def _plain(number: str) -> str:
    """``2.50`` -> ``2.5``, ``3.0`` -> ``3``; integers as they are."""
    return (number.rstrip("0").rstrip(".") or "0") if "." in number else number


def unsourced_numbers(chain: Any, question: str) -> list[str]:
    """The provenance rule over documents: every number in a calculation comes from the question, from a tool's
    result (a name), or is a common constant beside one. A number the documents hold and the chain wrote itself is
    recalled, not looked up; a calculation of constants alone computes from nothing."""
    given = {_plain(n.replace(",", "").lstrip("-\u2212")) for n in _NUMBER.findall(question)}
    problems: list[str] = []
    for step in chain.steps:
        arg = step.args.get("expression") if step.tool == "calculator" else None
        expression = getattr(arg, "value", None)
        if not isinstance(expression, str):
            continue
        literals = [_plain(n) for n in _LITERAL.findall(expression)]
        foreign = [n for n in literals if n not in given and n not in COMMON_CONSTANTS]
        uses_a_value = bool(_REF.search(_LITERAL.sub(" ", expression))) or any(n in given for n in literals)
        name = chain.names.get(step.id, step.id)
        if foreign:
            problems.append(
                f"{name}: the number(s) {', '.join(foreign)} are in neither the question nor a tool's result: read "
                "each value the documents hold with read_value (or search_knowledge) and use its name"
            )
        elif literals and not uses_a_value:
            problems.append(
                f"{name} computes with constants alone: read the values it needs with read_value and use their names"
            )
    return problems


def examples_for_tools(prompt: str, tools: dict[str, Any]) -> str:
    """The prompt without the worked examples that call a tool this run does not offer (an example of a knowledge
    search, with no collection to search, only tempts a small model to "look up" what it should compute)."""
    kept = [
        block
        for block in prompt.split("\n\n")
        if not block.startswith("Example question:")
        or set(_EXAMPLE_TOOL.findall(block)) | set(_EXAMPLE_CALL.findall(block)) <= set(tools)
    ]
    return "\n\n".join(kept)


_LINE_REF = re.compile(r"\bline \d+: ")
_NUMBER = re.compile(r"(?<![\w.\-])[-\u2212]?\d[\d,]*(?:\.\d+)?(?![\w\-])")
_YEAR = re.compile(r"^(1[5-9]|20)\d\d$")
_YEARS = re.compile(r"\b(?:1[5-9]|20)\d\d\b")
_MONTH = re.compile(
    r"(jan(uary)?|feb(ruary)?|mar(ch)?|apr(il)?|may|june?|july?|aug(ust)?|sept?(ember)?|oct(ober)?|nov(ember)?|"
    r"dec(ember)?)\b\.?,?",
    re.I,
)
_NOT_A_NAME = frozenset({"what", "how", "if", "a", "an", "the", "with", "by", "of", "for", "is", "and"})
_COMPUTE = re.compile(
    r"\b(percent(age)?|per ?cent|change (in|from|between)|difference|increase (in|from)|decrease (in|from)|"
    r"growth rate|ratio|average|sum of|combined|altogether|in all|times (as|more)|more than|fewer than|"
    r"how (much|many) (more|less|fewer|longer|shorter|larger|smaller|bigger)|by how much|proportion of)\b|%",
    re.I,
)
_CHANGE = re.compile(r"\b(increase|decrease|change|grow|growth|decline|rise)\b", re.I)
_EXPLAIN = re.compile(r"^\s*(why|explain|what happens|compare|how does|how do)\b", re.I)


def is_explanation(question: str) -> bool:
    """A why / how does / what happens if / compare question."""
    return bool(_EXPLAIN.search(question))


def operands(question: str) -> list[str]:
    """The numbers a question gives to compute with: not years, dates (``19 October``) or numbers that are part of
    a name (``Super Bowl 50``, ``Apollo 11``)."""
    out = []
    for match in _NUMBER.finditer(question):
        number = match.group(0).replace(",", "").lstrip("-\u2212")
        words = question[: match.start()].split()
        previous = words[-1] if words else ""
        if _YEAR.match(number) or _MONTH.match(question[match.end() :].lstrip()) or _MONTH.fullmatch(previous):
            continue
        if previous[:1].isupper() and previous.isalpha() and previous.lower() not in _NOT_A_NAME:
            continue
        out.append(number)
    return out


def needs_arithmetic(question: str) -> bool:
    """Whether answering means computing, decided by what the question asks rather than by counting its digits: a
    number given to compute with, a question about a change between two years, or the words of a computation
    (percentage, difference, average, how much more, ...). An explanation (why, how does, what happens if, compare)
    computes only when it gives two numbers. Measured per kind of question in docs/QUALITY.md (routing)."""
    if _CHANGE.search(question) and len(_YEARS.findall(question)) >= 2:
        return True
    given = operands(question)
    if _EXPLAIN.search(question):
        return len(given) >= 2
    return bool(given) or bool(_COMPUTE.search(question))


def is_lookup_question(question: str, tools: dict[str, Any]) -> bool:
    """A question over a collection that needs no computation (:func:`needs_arithmetic`): its chain is lookups only.
    Such a question is shown only the lookup examples and not the passages: the chain stays abstract (its searches
    fetch the facts, which the writer reads), the prompt is a cached prefix plus the question, and a small model is
    not tempted to copy an arithmetic example into a lookup."""
    return "search_knowledge" in tools and not needs_arithmetic(question)


def lookup_examples(prompt: str) -> str:
    """The prompt with only its worked examples that search the collection."""
    kept = [
        block
        for block in prompt.split("\n\n")
        if not block.startswith("Example question:") or "search_knowledge" in block
    ]
    return "\n\n".join(kept)


def chain_form(setting: str, client: ChatCompletionClient) -> str:
    """The form the reasoner writes: the setting, or for ``auto`` JSON where the backend has structured output."""
    if setting != "auto":
        return setting
    return "json" if uses_json_form(client) else "text"


def is_program(form: str) -> bool:
    return form in ("program", "program-y")


def uses_json_form(client: ChatCompletionClient) -> bool:
    info = client.model_info
    return bool(info.get("structured_output") or info.get("json_output"))


class Reasoner(RoleAgent):
    def __init__(self, state: TeamState, client: ChatCompletionClient, kit: ChainKit):
        super().__init__("reasoner", "Writes the solution as an abstract chain with placeholders.", state)
        self.client = client
        self.kit = kit
        self.form = chain_form(state.settings.coa.form, client)
        """The form of sample 0 (``coa.forms`` can give later samples other forms)."""
        self.lookup = is_lookup_question(state.question, state.tools)

    def form_of(self, sample: int) -> str:
        return self.state.settings.coa.form_of(sample, self.form)

    def system_prompt(self, form: str | None = None) -> str:
        form = form or self.form
        name = "reasoner_program" if is_program(form) else "reasoner"
        text = examples_for_tools(load_prompt(name), self.state.tools)
        if self.lookup:
            text = lookup_examples(text)
        text = text.replace("{tools}", tool_lines(self.state.tools))
        rules = [LOOKUP_RULE] if self.lookup else []
        rules += [DOCUMENTS_RULE] if "read_value" in self.state.tools and not self.lookup else []
        text = text.replace("{documents_rule}\n", "".join(f"{r}\n" for r in rules))
        placeholders = self.kit.placeholders
        if form == "program-y" and placeholders is not None:
            text = _PROGRAM_BLOCK.sub(
                lambda m: placeholders(m.group(0)),
                text.replace("give every quantity its own new name", "name the quantities y1, y2, y3, ... in order"),
            )
        if form == "text":
            text += "\n\n" + load_prompt("reasoner_text")
        return text

    def _shot(self, form: str, chain_json: str, chain_text: str) -> str:
        if is_program(form) and self.kit.to_program is not None:
            return "\n" + self.kit.to_program(chain_json)
        return chain_json if form == "json" else chain_text

    def opening(self, form: str) -> list[LLMMessage]:
        """The system and user messages that ask for a chain in ``form``."""
        return [
            SystemMessage(content=self.system_prompt(form)),
            UserMessage(content=self.user_prompt(form), source="user"),
        ]

    def user_prompt(self, form: str | None = None) -> str:
        form = form or self.form
        state = self.state
        parts = []
        if state.passages and not self.lookup:
            parts.append("Passages:\n" + passages_block(state.passages))
        subs = [s for s in state.subquestions if s.question.strip() and s.question.strip() != state.question]
        if subs:
            parts.append("Plan:\n" + "\n".join(f"- {s.question} ({s.needs})" for s in subs))
        if self.kit.examples is not None and not self.lookup:
            shots = self.kit.examples(state.question)
            if shots:
                label = "program" if is_program(form) else "chain"
                parts.append(
                    "Solved examples of similar questions:\n"
                    + "\n".join(
                        f"Example question: {q}\nExample {label}: {self._shot(form, j, t)}" for q, j, t in shots
                    )
                )
        parts.append(f"Question: {state.question}")
        parts.append("Program:" if is_program(form) else {"json": "Chain:"}.get(form, "Write the chain:"))
        return "\n\n".join(parts)

    async def _draft(
        self, candidate: Candidate, cancellation_token: CancellationToken, *, attempt_base: int = 0, revision: int = 0
    ) -> None:
        """Ask for a chain and repair it until it validates or the re-plan budget is spent."""
        state = self.state
        settings = state.settings
        json_form = candidate.form == "json"
        extra: dict[str, Any] = {"max_tokens": min(settings.max_tokens, 64 + 96 * settings.coa.max_steps)}
        if json_form:
            extra.update(schema_args(self.client, self.kit.schema, "chain"))
        if not settings.coa.greedy(candidate.sample) or revision:
            # Repeated samples of a form, and revisions (at temperature 0 a model tends to write the rejected chain
            # again), are drawn warm.
            extra.update({"temperature": settings.coa.sample_temperature, "seed": candidate.sample + 100 * revision})
        previous: list[str] = []
        for attempt in range(attempt_base, attempt_base + settings.coa.max_replans + 1):
            try:
                raw, finish = await self._generate(candidate.messages, extra, cancellation_token, candidate)
            except BackendError as exc:
                if not (json_form and rejects_json_schema(self.client, exc, extra)):
                    raise
                extra.update(schema_args(self.client, self.kit.schema, "chain"))  # the host's older dialect
                raw, finish = await self._generate(candidate.messages, extra, cancellation_token, candidate)
            candidate.raw = raw
            try:
                chain = self.kit.parse(raw)
                errors = self.kit.validate(chain)
                if not errors and "read_value" in state.tools:
                    errors = unsourced_numbers(chain, state.question)
                shown = self.kit.render(chain)
            except Exception as exc:  # parse errors are the model's mistakes: they go back to it
                chain, errors, shown = None, [str(exc)], raw
            if finish == "budget":
                errors.append(
                    f"the chain ran past {settings.coa.max_steps} steps (or repeated itself) and was "
                    f"stopped: solve it in at most {settings.coa.max_steps} distinct steps"
                )
            elif finish.startswith("repeat"):
                errors.append(
                    f"the chain started repeating itself ({finish.partition(': ')[2]}) and was stopped: write each "
                    "step once, with its own new name"
                )
            elif finish == "length" and errors:
                errors.append("the chain was cut off at the length limit: write fewer, shorter steps")
            await state.publish(ChainDrafted(text=shown, form=candidate.form, attempt=attempt, sample=candidate.sample))
            if not errors:
                candidate.chain, candidate.errors = chain, []
                return
            if candidate.eager is not None:
                candidate.eager.cancel()
                candidate.eager = None
            salvaged = self.salvage(raw, candidate.form)
            if salvaged is not None:
                note = f"(kept the chain's searches; the rest could not run: {errors[0]})"
                await state.publish(
                    ChainDrafted(
                        text=f"{note}\n{self.kit.render(salvaged)}",
                        form=candidate.form,
                        attempt=attempt,
                        sample=candidate.sample,
                    )
                )
                candidate.chain, candidate.errors = salvaged, []
                return
            candidate.chain, candidate.errors = None, errors
            await state.publish(ChainRejected(errors=errors, attempt=attempt, sample=candidate.sample))
            faults = sorted({_LINE_REF.sub("", e) for e in errors})
            if faults == previous:
                # The same faults as the last draft: a re-plan would only repeat what the model was already told.
                return
            previous = faults
            if attempt < attempt_base + settings.coa.max_replans:
                # Re-plan cheaply: the broken chain and its exact errors, nothing else of the conversation.
                candidate.messages = candidate.messages[:2] + [
                    AssistantMessage(content=raw, source="reasoner"),
                    UserMessage(
                        content="This chain is invalid:\n"
                        + "\n".join(f"- {e}" for e in errors)
                        + "\nWrite the whole corrected chain.",
                        source="user",
                    ),
                ]
                # Re-plans are drawn warm too: at temperature 0 the model writes the same rejected chain again.
                extra.update(
                    {
                        "temperature": settings.coa.sample_temperature,
                        "seed": candidate.sample + 100 * revision + 10 * (attempt + 1 - attempt_base),
                    }
                )

    def salvage(self, raw: str, form: str) -> Any:
        """For a lookup question in the program form: the valid chain of the draft's own searches, or None."""
        if not (self.lookup and is_program(form) and self.kit.salvage is not None):
            return None
        chain = self.kit.salvage(raw)
        return chain if chain is not None and not self.kit.validate(chain) else None

    async def _generate(
        self,
        messages: list[LLMMessage],
        extra: dict[str, Any],
        cancellation_token: CancellationToken,
        candidate: Candidate | None = None,
    ) -> tuple[str, str]:
        """Stream one chain, stopping a looping generation at the step budget rather than at the token limit. In the
        program form, each completed line is parsed as it arrives and its tool started at once (``candidate.eager``),
        and decoding stops at the closing fence."""
        state = self.state
        started = time.perf_counter()
        form = candidate.form if candidate is not None else self.form
        budget = StepBudget(state.settings.coa.max_steps, json_form=form == "json")
        program = self.kit.stream() if is_program(form) and self.kit.stream is not None else None
        eager = None
        if program is not None and candidate is not None and self.kit.eager is not None:
            if candidate.eager is not None:
                candidate.eager.cancel()
            sample = candidate.sample

            async def forward(event: Any) -> None:
                await state.publish(event)

            eager = candidate.eager = self.kit.eager(forward, sample)
        parts: list[str] = []
        result: CreateResult | None = None
        finish = "stop"
        stream = self.client.create_stream(messages, extra_create_args=extra, cancellation_token=cancellation_token)
        try:
            async for item in stream:
                if isinstance(item, CreateResult):
                    result = item  # not `break`: some clients finish their bookkeeping after the last yield
                    continue
                parts.append(item)
                if program is not None:
                    for step in program.feed(item):
                        if eager is not None:
                            eager.start(step)
                    if len(program.steps) > state.settings.coa.max_steps:
                        finish = "budget"
                        break
                    if program.looping is not None:
                        finish = "repeat: " + program.looping
                        break
                    if program.closed:
                        break  # the closing fence: the rest would be prose
                elif budget.exceeded("".join(parts)):
                    finish = "budget"
                    break
        finally:
            await stream.aclose()
        raw = "".join(parts)
        if (
            finish == "budget"
            or finish.startswith("repeat")
            or (program is not None and program.closed and result is None)
        ):
            remember_stopped_stream(self.client, messages, extra, parts)  # a repeated run replays it from the cache
        if result is not None:
            finish = result.finish_reason if result.finish_reason == "length" else finish
            if not raw and isinstance(result.content, str):
                raw = result.content
            prompt, completion = result.usage.prompt_tokens, result.usage.completion_tokens
        else:
            try:
                prompt = self.client.count_tokens(messages)
            except Exception:  # a count is nice to have; a backend without one must not fail the run
                prompt = 0
            completion = len(parts)
        await state.publish(
            Usage(
                agent="reasoner",
                model=client_name(self.client),
                prompt_tokens=prompt,
                completion_tokens=completion,
                seconds=time.perf_counter() - started,
                finish_reason=finish.partition(":")[0],
            )
        )
        return raw, finish

    async def act(self, cancellation_token: CancellationToken) -> str:
        state = self.state
        if state.chosen is not None and state.verdict == "revise":
            return await self.revise(cancellation_token)
        coa = state.settings.coa
        if state.sampling and state.candidates:
            # The reifier found no agreement yet: one more chain.
            sample = len(state.candidates)
            fresh = [Candidate(sample=sample, form=self.form_of(sample), messages=self.opening(self.form_of(sample)))]
        else:
            # With early stopping, draw only as many chains as must agree; the reifier asks for more when they do not.
            state.sampling = coa.samples > 1 and coa.agree > 0
            first = min(coa.samples, coa.agree) if state.sampling else coa.samples
            openings: dict[str, list[LLMMessage]] = {}
            fresh = []
            for i in range(first):
                form = self.form_of(i)
                if form not in openings:
                    openings[form] = self.opening(form)
                fresh.append(Candidate(sample=i, form=form, messages=list(openings[form])))
            state.candidates = []
        if parallel_of(self.client) == 1:
            # A model that serves one request at a time (llama-cpp-python in-process): concurrent requests would
            # only queue behind its lock.
            for candidate in fresh:
                await self._draft(candidate, cancellation_token)
        else:
            # Remote servers and the xllamacpp engine's slots decode the samples together; each candidate keeps its
            # own seed and place in the list, so the results and their order do not depend on which finishes first.
            await asyncio.gather(*(self._draft(c, cancellation_token) for c in fresh))
        state.candidates.extend(fresh)
        valid = sum(1 for c in state.candidates if c.chain is not None)
        return f"chains: {valid} of {len(state.candidates)} valid"

    async def revise(self, cancellation_token: CancellationToken) -> str:
        """The critic asked for a revision: send back the chosen chain, its values and the critic's reasons."""
        state = self.state
        chosen = state.chosen
        assert chosen is not None
        filled = chosen.reified.filled_text(limit=300) if chosen.reified is not None else chosen.raw
        candidate = Candidate(
            sample=0,
            form=chosen.form,
            messages=chosen.messages[:2]
            + [
                AssistantMessage(content=chosen.raw, source="reasoner"),
                UserMessage(
                    content=f"With the tools' values filled in, the chain reads:\n{filled}\n\nA reviewer asks for a "
                    "revision:\n" + "\n".join(f"- {r}" for r in state.reasons) + "\nWrite the whole corrected chain.",
                    source="user",
                ),
            ],
        )
        await self._draft(
            candidate, cancellation_token, attempt_base=state.critic_rounds * 10, revision=state.critic_rounds
        )
        if (
            candidate.chain is not None
            and chosen.chain is not None
            and self.kit.render(candidate.chain) == self.kit.render(chosen.chain)
        ):
            state.stalled = True  # the same chain again: another round would only repeat it
        state.candidates = [candidate]
        state.chosen = None
        return "chains: revised " + ("valid" if candidate.chain is not None else "invalid")


def remember_stopped_stream(client: Any, messages: list[LLMMessage], extra: dict[str, Any], parts: list[str]) -> None:
    """A response cache stores a stream only when it ends; store one we stopped at the step budget, so a repeated run
    replays it (and stops at the same place) instead of asking the model again."""
    check, store = getattr(client, "_check_cache", None), getattr(client, "store", None)
    if check is None or store is None:
        return
    cached, key = check(messages, [], None, extra)
    if cached is None:
        from autogen_core.models import RequestUsage

        final = CreateResult(
            finish_reason="stop",
            content="".join(parts),
            cached=False,
            usage=RequestUsage(prompt_tokens=0, completion_tokens=len(parts)),
        )
        store.set(key, [*parts, final])


class StepBudget:
    """Notices a chain that has run past its step budget or started repeating the same step."""

    _JSON_STEP = re.compile(r'"id"\s*:\s*"[yY]\d+"')
    _TEXT_STEP = re.compile(r"(?:=|->)\s*[yY]\d+\s*\]")
    _THOUGHT = re.compile(r'"thought"\s*:\s*"((?:[^"\\]|\\.)*)"')

    def __init__(self, max_steps: int, *, json_form: bool):
        self.max_steps = max_steps
        self.json_form = json_form

    def exceeded(self, text: str) -> bool:
        pattern = self._JSON_STEP if self.json_form else self._TEXT_STEP
        if len(pattern.findall(text)) > self.max_steps:
            return True
        thoughts = [" ".join(t.lower().split()) for t in self._THOUGHT.findall(text)]
        return any(count >= 3 for count in Counter(thoughts).values())


def build_reasoner(state: TeamState, client: ChatCompletionClient, kit: ChainKit) -> Reasoner:
    """The reasoner agent for one question."""
    return Reasoner(state, client, kit)
