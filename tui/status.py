"""The status bar: the model of each role, method, collection, and tokens and latency of the last answer."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from rich.text import Text
from textual.widgets import Static

from conclave.settings import AGENT_ROLES
from conclave.terminal import safe_text

__all__ = ["StatusBar", "StatusState", "models_label"]

_SHORT = {"planner": "plan", "reasoner": "reas", "critic": "crit", "writer": "writ"}


@dataclass(frozen=True)
class StatusState:
    """Everything the status bar shows."""

    models: dict[str, str] = field(default_factory=dict)
    method: str = ""
    collection: str | None = None
    activity: str = ""
    tokens: int | None = None
    seconds: float | None = None


def models_label(models: dict[str, str]) -> str:
    """``embedded`` when every role shares a model, else ``plan a · reas b · crit c · writ d``."""
    specs = [models.get(role, "auto") for role in AGENT_ROLES]
    if len(set(specs)) == 1:
        return specs[0]
    return " · ".join(f"{_SHORT[role]} {spec}" for role, spec in zip(AGENT_ROLES, specs, strict=True))


class StatusBar(Static):
    """One line at the bottom of the main screen."""

    def __init__(self, **kwargs: Any):
        super().__init__("", markup=False, **kwargs)
        self.state = StatusState()

    def set(self, **changes: Any) -> None:
        """Update some fields and redraw."""
        self.state = replace(self.state, **changes)
        self.update(self.render_state())

    def render_state(self) -> Text:
        """The bar's text."""
        s = self.state
        text = Text(no_wrap=True, overflow="ellipsis")
        if s.activity:
            text.append(f" ● {s.activity} ", style="bold reverse")
        else:
            text.append(" ready ", style="bold")
        text.append("│ ", style="dim")
        text.append(safe_text(models_label(s.models)), style="bold")
        text.append(" │ ", style="dim")
        text.append(safe_text(s.method) if s.method else "?")
        text.append(" │ ", style="dim")
        text.append(safe_text(f"◆ {s.collection}") if s.collection else "no collection")
        last = ([f"{s.tokens} tok"] if s.tokens is not None else []) + (
            [f"{s.seconds:.1f} s"] if s.seconds is not None else []
        )
        if last:
            text.append(" │ ", style="dim")
            text.append("last " + " · ".join(last))
        return text
