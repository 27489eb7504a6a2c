"""An example Conclave plugin: a tool (``days_between``), a method (``brief``) and a scorer (``close``).

Install it beside Conclave (``pip install examples/plugin``) and ``conclave tools`` lists ``days_between``; a chain
can then write ``gap = days_between("2024-01-01", "2024-03-01")``. ``conclave methods`` lists ``brief`` (``--method
brief``) and ``conclave scorers`` lists ``close`` (``--scorer close``). Each comes from one entry point in
``pyproject.toml`` (groups ``conclave.tools``, ``conclave.methods``, ``conclave.scorers``).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from langchain_core.tools import BaseTool, StructuredTool
from pydantic import BaseModel, Field


class DaysBetweenArgs(BaseModel):
    start: str = Field(..., description="the first date, YYYY-MM-DD")
    end: str = Field(..., description="the second date, YYYY-MM-DD")


def days_between(start: str, end: str) -> str:
    """Whole days from start to end (negative when end is earlier)."""
    try:
        first, second = date.fromisoformat(start.strip()), date.fromisoformat(end.strip())
    except ValueError as exc:
        raise ValueError(f"dates are written YYYY-MM-DD: {exc}") from None
    return str((second - first).days)


def tools(settings: Any) -> list[BaseTool]:
    """The tools this plugin adds (``settings`` is Conclave's; this plugin needs none of it)."""
    return [
        StructuredTool.from_function(
            days_between,
            name="days_between",
            args_schema=DaysBetweenArgs,
            description="Whole days between two dates (YYYY-MM-DD); returns the number.",
        )
    ]


# ------------------------------------------------------------------------------------------------- a method


async def brief(ctx: Any) -> Any:
    """One sentence of reasoning, then the answer line (a prose method from a plugin)."""
    from autogen_core.models import SystemMessage, UserMessage
    from conclave.workflows.methods import StreamedCall, answer_value

    from conclave.events import AnswerReady

    messages = [
        SystemMessage(content="Think in one sentence, then end with a line `Answer: <the answer>`."),
        UserMessage(content=ctx.question, source="user"),
    ]
    call = StreamedCall(ctx.clients["reasoner"], messages, agent="reasoner")
    async for event in call.events():
        yield event
    yield AnswerReady(text=call.text.strip(), value=answer_value(call.text))


# ------------------------------------------------------------------------------------------------- a scorer


def close(item: Any) -> Any:
    """the answer's number is within 1% of a gold number"""
    from conclave.workflows.evaluation.scorers import Score, candidate_answer, extract_number, parse_number

    got = extract_number(candidate_answer(item.outcome))
    golds = [g for g in (parse_number(str(gold)) for gold in item.golds) if g is not None]
    if got is None or not golds:
        return Score(None, None, "no number")
    passed = any(abs(got - gold) <= abs(gold) / 100 for gold in golds)
    return Score(1.0 if passed else 0.0, passed)
