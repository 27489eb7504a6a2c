"""The chain model: frozen dataclasses, shared by both chain forms (text and JSON).

An argument is a literal JSON value (:class:`Lit`), a whole placeholder (:class:`Ref`) or a ``+``-joined
concatenation of strings and placeholders (:class:`Concat`). Strings anywhere in an argument are templates: a
placeholder in them counts as a reference when it is a whole word (``y1`` never matches inside ``y10``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

PLACEHOLDER_PATTERN = r"^y[0-9]+$"
# A reference inside a string: a whole word y<digits>. Lowercase only: "Model Y2" in a query is not a reference.
PLACEHOLDER_RE = re.compile(r"\by[0-9]+\b")
# What a placeholder may look like where the syntax expects one (ids, bare arguments, answers): case drift allowed.
LOOSE_PLACEHOLDER_RE = re.compile(r"[yY][0-9]+")

JSONValue: TypeAlias = Any
"""None, bool, int, float, str, or lists/dicts of those."""


def is_placeholder(text: str) -> bool:
    """Whether ``text`` is exactly a placeholder name such as ``y3`` (case-insensitive)."""
    return LOOSE_PLACEHOLDER_RE.fullmatch(text) is not None


def placeholders_in(text: str) -> list[str]:
    """Placeholders that occur in ``text`` as whole words, in order of first appearance, without repeats."""
    return list(dict.fromkeys(PLACEHOLDER_RE.findall(text)))


@dataclass(frozen=True)
class Lit:
    """A literal JSON value; placeholders inside its strings are references."""

    value: JSONValue


@dataclass(frozen=True)
class Ref:
    """A whole placeholder used as an argument (``y1``)."""

    id: str


@dataclass(frozen=True)
class Concat:
    """``"population of " + y1``: strings and placeholders joined into one string."""

    parts: tuple[Lit | Ref, ...]


Arg: TypeAlias = Lit | Ref | Concat


def _strings(value: JSONValue) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)


def arg_refs(arg: Arg) -> list[str]:
    """Placeholders an argument depends on, in order, without repeats."""
    found: list[str] = []
    parts: tuple[Lit | Ref, ...] = arg.parts if isinstance(arg, Concat) else (arg,)
    for part in parts:
        if isinstance(part, Ref):
            found.append(part.id)
        else:
            for text in _strings(part.value):
                found.extend(placeholders_in(text))
    return list(dict.fromkeys(found))


@dataclass(frozen=True)
class Step:
    """One call: ``id`` names its result; ``args`` are by name, ``positional`` until bound to a tool's schema."""

    id: str
    tool: str
    args: Mapping[str, Arg] = field(default_factory=dict)
    positional: tuple[Arg, ...] = ()
    thought: str = ""

    def __post_init__(self) -> None:
        # A private copy keeps the frozen step independent of the caller's dict.
        object.__setattr__(self, "args", dict(self.args))
        object.__setattr__(self, "positional", tuple(self.positional))

    def all_args(self) -> list[Arg]:
        """Positional then named arguments."""
        return [*self.positional, *self.args.values()]

    def refs(self) -> list[str]:
        """Placeholders this step's arguments depend on, in order, without repeats."""
        found: list[str] = []
        for arg in self.all_args():
            found.extend(arg_refs(arg))
        return list(dict.fromkeys(found))


@dataclass(frozen=True)
class Chain:
    """Steps in order, the answer (a placeholder, or a short template such as ``"y2 dollars"``) and, for the text
    form, the prose between the last step and the answer."""

    steps: tuple[Step, ...]
    answer: str
    tail: str = ""
    names: Mapping[str, str] = field(default_factory=dict, compare=False)
    """For the program form: the variable name the model gave each placeholder (``{"y1": "pens_cost"}``)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "steps", tuple(self.steps))
        object.__setattr__(self, "names", dict(self.names))

    @property
    def ids(self) -> list[str]:
        """Step ids in order."""
        return [step.id for step in self.steps]

    def step(self, step_id: str) -> Step:
        """The step with this id (the first, if ids repeat)."""
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    @property
    def answer_step(self) -> Step | None:
        """The step whose value is the answer (``answer`` names one placeholder), or None (a template, no step)."""
        return next((step for step in self.steps if step.id == self.answer), None)

    def answer_refs(self) -> list[str]:
        """Placeholders the answer names."""
        return placeholders_in(self.answer)


def calculator_step(step_id: str, expression: str, thought: str = "") -> Step:
    """A calculator step (``[expression = step_id]``)."""
    return Step(id=step_id, tool=CALCULATOR, args={"expression": expression_arg(expression)}, thought=thought)


def expression_arg(expression: str) -> Arg:
    """The argument for a calculator expression; a bare placeholder is a :class:`Ref`."""
    expression = re.sub(r"\bY([0-9]+)\b", r"y\1", expression.strip())
    return Ref(expression) if PLACEHOLDER_RE.fullmatch(expression) else Lit(expression)


CALCULATOR = "calculator"
