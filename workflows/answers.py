"""What every method's answer is made of: the "Answer:" line (how it is asked for and read back), the worked
examples, the conversation so far, and one streamed model call. Shared by the methods (``methods.py``), react and the
team's writer, which sit above it."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from conclave.events import AnswerDelta, Event, Passage, Usage

if TYPE_CHECKING:
    from autogen_core.models import CreateResult, LLMMessage
    from conclave.workflows.context import RunContext

# AutoGen is imported where a call runs, not here: every command reads the method registry above this module at
# start-up (help strings), and autogen_core alone would double the CLI's start-up time.

# "Answer: ..." on a line of its own, or after the last sentence of a line ("... in [1]. Answer: Coldplay").
_ANSWER_LINE = re.compile(r"(?im)(?:^|(?<=[.!?)\]])[ \t]+)\**(?:final\s+)?answer\s*[:：]\**\s*(.+?)\s*$")

# The last words of a question over passages: a small model keeps to a format it is reminded of right before it
# answers far better than to one stated only in the system prompt (Qwen2.5-Coder-1.5B left the "Answer:" line out of
# SQuAD answers when it was only there). The short answer is what exact match and F1 score.
SHORT_ANSWER = (
    "Answer in one to three sentences, citing the passages you used as [1], [2], ...; then write one last "
    'line "Answer: <the answer in a few words>".'
)


ANSWER_STYLES = ("short", "span")
"""How the "Answer:" line is written: ``short`` (a few words: what SQuAD-style scorers and a quick reader want) or
``span`` (the passages' own words in full, several values listed: TAT-QA's spans are whole clauses)."""

_SPAN_ANSWER = (
    "Answer in one to three sentences, citing the passages you used as [1], [2], ...; then write one last "
    'line "Answer: <the answer alone, in the passages\' own words, in full>" (several values asked together: all '
    'of them on that line, separated by "; ").'
)

# A table chunk opens with its context line ("Table: Inventories (in thousands)", tools/tables.py).
_TABLE_LINE = re.compile(r"^\s*Table:[^\n]*")


def answer_instruction(passages: Sequence[Passage] = (), style: str = "short") -> str:
    """The last words of a question over passages (see ``SHORT_ANSWER``), and when a passage is a table that states
    its scale, the reminder to carry it: 23,363 read from a table in thousands is 23,363 thousand, and a bare
    "23,363" is a thousand times off."""
    text = _SPAN_ANSWER if style == "span" else SHORT_ANSWER
    return f"{text} {SCALE_REMINDER}" if states_a_scale(passages) else text


SCALE_REMINDER = (
    "A number read from a table that states its scale (in thousands, in millions) is written with that scale after "
    'it: "1,250 thousand", not "1,250".'
)


def states_a_scale(passages: Sequence[Passage]) -> bool:
    """Whether one of the passages is a table chunk whose context line states a scale."""
    from conclave.tools.tables import detect_scale

    return any((line := _TABLE_LINE.match(p.text)) is not None and detect_scale(line.group(0)) for p in passages)


def passages_shot() -> list[LLMMessage]:
    """One worked exchange in the passages-answer format (what rag and the coa writer write): a 1.5B model copies a
    shown answer's shape where it ignores a stated one. Static, so it sits in the cached prompt prefix."""
    from autogen_core.models import AssistantMessage, UserMessage

    question = (
        "Passages:\n[1] (example.md) The Eiffel Tower was built for the 1889 World's Fair in Paris by the "
        "engineering company of Gustave Eiffel.\n[2] (example.md) The tower is 330 metres tall.\n\n"
        f"Question: Whose company built the Eiffel Tower?\n\n{SHORT_ANSWER}"
    )
    answer = (
        "The Eiffel Tower was built by the engineering company of Gustave Eiffel [1].\nAnswer: Gustave Eiffel's company"
    )
    return [UserMessage(content=question, source="user"), AssistantMessage(content=answer, source="assistant")]


def direct_shot() -> list[LLMMessage]:
    """The direct method's worked exchange (the same reason as :func:`passages_shot`)."""
    from autogen_core.models import AssistantMessage, UserMessage

    return [
        UserMessage(content="What is the capital of France?", source="user"),
        AssistantMessage(content="The capital of France is Paris.\nAnswer: Paris", source="assistant"),
    ]


def answer_value(text: str) -> str | None:
    """The value on the last ``Answer:`` line, if any."""
    found = _ANSWER_LINE.findall(text)
    if not found:
        return None
    return found[-1].strip().strip("*").strip().rstrip(".") or None


def history_messages(ctx: RunContext) -> list[LLMMessage]:
    from autogen_core.models import AssistantMessage, UserMessage

    out: list[LLMMessage] = []
    for question, answer in ctx.history[-4:]:
        out.append(UserMessage(content=question, source="user"))
        out.append(AssistantMessage(content=answer, source="assistant"))
    return out


_SENTENCE_ENDS = re.compile(r"[.!?\n]")
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|\n")


def _before_the_loop(text: str) -> str:
    """``text`` up to the second copy of its first repeated sentence (of four words or more)."""
    seen: set[str] = set()
    start = 0
    for match in _SENTENCE_BREAK.finditer(text + "\n"):
        key = " ".join(text[start : match.start()].split())
        if len(key.split()) >= 4:
            if key in seen:
                return text[:start].rstrip()
            seen.add(key)
        start = match.end()
    return text


class StreamedCall:
    """Stream one model call as AnswerDelta events; afterwards ``text`` and ``result`` hold the outcome."""

    def __init__(
        self,
        client: Any,
        messages: Sequence[LLMMessage],
        *,
        agent: str,
        extra: dict[str, Any] | None = None,
        emit: bool = True,
        cancellation_token: Any = None,
    ):
        self.client = client
        self.messages = list(messages)
        self.agent = agent
        self.extra = extra or {}
        self.emit = emit
        self.cancellation_token = cancellation_token
        self.text = ""
        self.result: CreateResult | None = None
        self.looping = False
        """Decoding was stopped at a sentence written for the third time; ``text`` ends before its second copy."""

    async def events(self) -> AsyncIterator[Event]:
        from autogen_core.models import CreateResult, RequestUsage
        from conclave.workflows.coa.program import repeated_sentence

        from conclave.models import client_name

        started = time.perf_counter()
        parts: list[str] = []
        stream = self.client.create_stream(
            self.messages, extra_create_args=self.extra, cancellation_token=self.cancellation_token
        )
        async with contextlib.aclosing(stream):  # leaving early stops the model's decoding
            async for item in stream:
                if isinstance(item, CreateResult):
                    self.result = item
                else:
                    parts.append(item)
                    if self.emit:
                        yield AnswerDelta(text=item, agent=self.agent)
                    if _SENTENCE_ENDS.search(item) and repeated_sentence("".join(parts)):
                        # A small model in a loop writes the same sentence to its token limit (minutes on SmolLM2).
                        self.looping = True
                        break
        self.text = _before_the_loop("".join(parts)) if self.looping else "".join(parts)
        if self.result is not None and isinstance(self.result.content, str) and not self.text:
            self.text = self.result.content
            if self.emit and self.text:
                yield AnswerDelta(text=self.text, agent=self.agent)
        usage = self.result.usage if self.result is not None else None
        if usage is None and self.looping:  # stopped before the engine reported usage: count what it did
            try:
                prompt = int(self.client.count_tokens(self.messages))
            except Exception:  # a count is nice to have; a backend without one must not fail the run
                prompt = 0
            usage = RequestUsage(prompt_tokens=prompt, completion_tokens=len(parts))
        yield Usage(
            agent=self.agent,
            model=client_name(self.client),
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            seconds=time.perf_counter() - started,
            finish_reason=str(self.result.finish_reason or "") if self.result is not None else "",
        )
