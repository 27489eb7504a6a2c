"""Paired comparison of two sets of results on the same items: items won and lost, McNemar's exact test.

McNemar's test looks only at the discordant items (right in one, wrong in the other). Under the null hypothesis that
both are equally good each discordant item is a fair coin, so the exact two-sided p-value is a binomial tail:
``p = min(1, 2 * P[X <= min(b, c)])`` with ``X ~ Binomial(b + c, 1/2)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from math import comb
from pathlib import Path
from typing import Any

from conclave.workflows.evaluation.records import EvalSample, as_samples, latest_samples

from conclave.errors import ConfigError

__all__ = ["Comparison", "Flip", "compare_records", "compare_runs", "load_cells", "mcnemar_exact"]


def mcnemar_exact(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value for ``b`` items only A got right and ``c`` only B got right."""
    if b < 0 or c < 0:
        raise ValueError("counts must be non-negative")
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


@dataclass(frozen=True)
class Flip:
    """An item right on one side and wrong on the other: what the counts are made of."""

    item_id: str
    question: str
    gold: list[str]
    a_answer: str
    b_answer: str
    winner: str
    """``A`` or ``B``: the side that got it right."""


@dataclass(frozen=True)
class Comparison:
    """A against B on the items both answered."""

    a: str
    b: str
    paired: int
    both_right: int
    a_only: int
    """Items A won (A right, B wrong)."""
    b_only: int
    """Items A lost."""
    both_wrong: int
    a_accuracy: float | None
    b_accuracy: float | None
    p_value: float
    unpaired: int = 0
    flips: list[Flip] = field(default_factory=list)
    """The discordant items (``a_only`` + ``b_only``), by item id."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def verdict(self, alpha: float = 0.05) -> str:
        if self.paired == 0:
            return "no items in common"
        if self.p_value >= alpha:
            return f"no significant difference (p = {self.p_value:.3g})"
        better = self.a if self.a_only > self.b_only else self.b
        return f"{better} is better (p = {self.p_value:.3g})"


def compare_records(
    a: Sequence[EvalSample | Mapping[str, Any]],
    b: Sequence[EvalSample | Mapping[str, Any]],
    *,
    a_name: str = "A",
    b_name: str = "B",
) -> Comparison:
    """Pair records by item id; items either side could not score (judge missing) are left out."""
    scored_a = {r.item_id: r for r in as_samples(a) if r.correct is not None}
    scored_b = {r.item_id: r for r in as_samples(b) if r.correct is not None}
    common = sorted(set(scored_a) & set(scored_b))
    table = {"both": 0, "a": 0, "b": 0, "none": 0}
    flips = []
    for item in common:
        x, y = scored_a[item], scored_b[item]
        cell = "both" if x.correct and y.correct else "a" if x.correct else "b" if y.correct else "none"
        table[cell] += 1
        if cell in ("a", "b"):
            flips.append(Flip(item, x.question or y.question, x.gold, x.answer, y.answer, cell.upper()))
    n = len(common)
    return Comparison(
        a=a_name,
        b=b_name,
        paired=n,
        both_right=table["both"],
        a_only=table["a"],
        b_only=table["b"],
        both_wrong=table["none"],
        a_accuracy=(table["both"] + table["a"]) / n if n else None,
        b_accuracy=(table["both"] + table["b"]) / n if n else None,
        p_value=mcnemar_exact(table["a"], table["b"]),
        unpaired=len(set(scored_a) ^ set(scored_b)),
        flips=flips,
    )


def load_cells(run_dir: Path) -> dict[tuple[str, str], list[EvalSample]]:
    """A run's latest record per unit, grouped by (method, model)."""
    cells: dict[tuple[str, str], list[EvalSample]] = {}
    for sample in latest_samples(run_dir / "items.jsonl"):
        cells.setdefault((sample.method, sample.model), []).append(sample)
    return cells


def select_cells(
    cells: dict[tuple[str, str], list[EvalSample]], selector: str | None, run: str
) -> dict[tuple[str, str], list[EvalSample]]:
    """The result sets a ``METHOD[@MODEL]`` selector picks (all of them without one); ConfigError naming the run's
    result sets when it picks none."""
    if not selector:
        return cells
    method, _, model = selector.partition("@")
    chosen = {key: recs for key, recs in cells.items() if key[0] == method and (not model or key[1] == model)}
    if not chosen:
        have = ", ".join(f"{m}@{s}" for m, s in sorted(cells))
        raise ConfigError(f"run {run} has no results for {selector!r}", hint=f"it has: {have}")
    return chosen


def compare_runs(settings: Any, run_a: str, run_b: str) -> list[Comparison]:
    """Compare two runs (``RUN[:METHOD[@MODEL]]``); cells with the same method and model are paired, or the only
    cell of each run with the other's."""
    from conclave.workflows.evaluation.runs import find_run

    def open_run(spec: str) -> tuple[str, dict[tuple[str, str], list[EvalSample]]]:
        run, _, selector = spec.partition(":")
        folder = find_run(settings, run)
        cells = load_cells(folder)
        if not cells:
            raise ConfigError(f"run {run} has no finished items", hint="run or resume it first")
        return folder.name, select_cells(cells, selector or None, run)

    name_a, cells_a = open_run(run_a)
    name_b, cells_b = open_run(run_b)
    common = sorted(set(cells_a) & set(cells_b))
    if name_a == name_b:
        common = []  # comparing a cell with itself says nothing
    pairs = [(key, key) for key in common]
    if not pairs:
        if len(cells_a) == 1 and len(cells_b) == 1:
            pairs = [(next(iter(cells_a)), next(iter(cells_b)))]
        else:
            raise ConfigError(
                "the runs have no method/model in common to pair",
                hint="pick one result set on each side, e.g. RUN_A:coa@embedded RUN_B:cot@embedded",
            )
    out = []
    for key_a, key_b in pairs:
        label_a = f"{name_a}:{key_a[0]}@{key_a[1]}"
        label_b = f"{name_b}:{key_b[0]}@{key_b[1]}"
        out.append(compare_records(cells_a[key_a], cells_b[key_b], a_name=label_a, b_name=label_b))
    return out
