"""An example Conclave tools plugin: ``days_between`` (calendar arithmetic the calculator cannot do).

Install it beside Conclave (``pip install examples/plugin``) and ``conclave tools`` lists ``days_between``; a chain
can then write ``gap = days_between("2024-01-01", "2024-03-01")``. The entry point (``pyproject.toml``,
group ``conclave.tools``) names :func:`tools`, which Conclave calls with its settings.
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
