"""What a method runs with: one question's settings, clients, store and conversation (built by
``runner.build_context``, read by every method, the team and react)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conclave.settings import Settings

__all__ = ["RunContext"]


@dataclass
class RunContext:
    """What a method needs: settings, the question, the chat history, and model clients per role."""

    settings: Settings
    question: str
    method: str
    models: dict[str, str]
    clients: dict[str, Any]
    collection: str | None
    history: list[tuple[str, str]] = field(default_factory=list)
    """Earlier (question, answer) pairs of the conversation."""
    tools: dict[str, Any] | None = None
    store: Any = None
    """The knowledge store; opened on demand when None."""
    source: str | None = None
    """Search only the passages of this one document (their ``source``), not the whole collection."""
    answer_style: str = "short"
    """How the answer's "Answer:" line is written (``answers.ANSWER_STYLES``): a data set can ask for its own."""
    turns: list[Any] = field(default_factory=list)
    """Each team agent's turn as it ends (``conclave.tracing.AgentTurn``), for the question's trace."""
    trace_attributes: dict[str, str] = field(default_factory=dict)
    """What the caller adds to the question's trace (an evaluation unit: its item and model)."""
