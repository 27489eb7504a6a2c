"""The knowledge-answer table of docs/QUALITY.md from evaluation runs (no model is run): per method, exact match and
token F1 with 95% intervals, the paired difference against a reference method (F1: mean difference with a paired
bootstrap interval and a sign test; exact match: McNemar's exact test), and cost per item (model calls, tokens, median
seconds over items not served from the cache).

    python bench/knowledge_table.py RUN_DIR [RUN_DIR ...] --against rag
    python bench/knowledge_table.py ~/.local/share/conclave/runs/eval-20261130-095118-e712 --against rag

Each RUN_DIR is a ``conclave eval`` run folder (its ``items.jsonl``); with several, each gets its own table.
"""

from __future__ import annotations

import json
import math
import random
import statistics
from pathlib import Path
from typing import Any

import common


def _wilson(k: int, n: int) -> tuple[float, float]:
    if n == 0:
        return (0.0, 0.0)
    z = 1.96
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def _bootstrap(values: list[float], rounds: int = 4000, seed: int = 0) -> tuple[float, float]:
    rng = random.Random(seed)
    n = len(values)
    means = sorted(statistics.fmean(rng.choices(values, k=n)) for _ in range(rounds))
    return (means[int(0.025 * rounds)], means[int(0.975 * rounds) - 1])


def _binom_two_sided(k: int, n: int) -> float:
    """Exact two-sided sign/McNemar p-value for k of n discordant pairs."""
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(0, min(k, n - k) + 1)) / 2**n
    return min(1.0, 2 * tail)


def _score(record: dict[str, Any], name: str) -> float:
    value = ((record.get("scores") or {}).get(name) or {}).get("value")
    return float(value) if value is not None else 0.0


def table(run: Path, against: str) -> tuple[str, dict[str, Any]]:
    records = [json.loads(line) for line in (run / "items.jsonl").read_text(encoding="utf-8").splitlines() if line]
    latest: dict[str, dict[str, Any]] = {}
    for r in records:
        latest[r["key"]] = r
    by_method: dict[str, dict[str, dict[str, Any]]] = {}
    for r in latest.values():
        by_method.setdefault(r["method"], {})[r["item_id"]] = r
    reference = by_method.get(against, {})
    rows, data = [], {}
    for method, items in by_method.items():
        ids = sorted(items)
        f1 = [_score(items[i], "f1") for i in ids]
        em = [_score(items[i], "exact_match") for i in ids]
        em_k = int(sum(em))
        lo, hi = _bootstrap(f1)
        em_lo, em_hi = _wilson(em_k, len(ids))
        cost = [items[i] for i in ids]
        latency = [r["latency"] for r in cost if r.get("latency") is not None and not r.get("cached")]
        entry: dict[str, Any] = {
            "items": len(ids),
            "exact_match": em_k / len(ids),
            "exact_match_ci": [em_lo, em_hi],
            "f1": statistics.fmean(f1),
            "f1_ci": [lo, hi],
            "no_answer": sum(1 for r in cost if r.get("outcome") != "answered"),
            "calls": statistics.fmean(r.get("llm_calls") or 0 for r in cost),
            "prompt_tokens": statistics.fmean(r.get("prompt_tokens") or 0 for r in cost),
            "completion_tokens": statistics.fmean(r.get("completion_tokens") or 0 for r in cost),
            "median_s": statistics.median(latency) if latency else None,
            "timed_items": len(latency),
            "recall": statistics.fmean(_score(items[i], "recall") for i in ids),
        }
        paired = ""
        if method != against and reference:
            both = [i for i in ids if i in reference]
            diffs = [_score(items[i], "f1") - _score(reference[i], "f1") for i in both]
            d_lo, d_hi = _bootstrap(diffs, seed=1)
            better = sum(1 for d in diffs if d > 0)
            worse = sum(1 for d in diffs if d < 0)
            only_this = sum(1 for i in both if _score(items[i], "exact_match") > _score(reference[i], "exact_match"))
            only_ref = sum(1 for i in both if _score(items[i], "exact_match") < _score(reference[i], "exact_match"))
            entry["against"] = {
                "method": against,
                "paired": len(both),
                "f1_diff": statistics.fmean(diffs),
                "f1_diff_ci": [d_lo, d_hi],
                "f1_better": better,
                "f1_worse": worse,
                "f1_sign_p": _binom_two_sided(better, better + worse),
                "em_only_this": only_this,
                "em_only_ref": only_ref,
                "em_mcnemar_p": _binom_two_sided(only_this, only_this + only_ref),
            }
            a = entry["against"]
            paired = (
                f"F1 {100 * a['f1_diff']:+.1f} ({100 * d_lo:+.1f} to {100 * d_hi:+.1f}); better on {better}, "
                f"worse on {worse}, sign p = {a['f1_sign_p']:.2g}; EM only this {only_this}, only {against} "
                f"{only_ref}, p = {a['em_mcnemar_p']:.2g}"
            )
        data[method] = entry
        rows.append(
            [
                f"`{method}`",
                len(ids),
                f"{100 * entry['exact_match']:.1f} ({100 * em_lo:.0f}–{100 * em_hi:.0f})",
                f"{100 * entry['f1']:.1f} ({100 * lo:.0f}–{100 * hi:.0f})",
                entry["no_answer"],
                f"{entry['calls']:.2f}",
                f"{entry['prompt_tokens']:.0f} + {entry['completion_tokens']:.0f}",
                "–" if entry["median_s"] is None else f"{entry['median_s']:.1f}",
                paired or "–",
            ]
        )
    text = common.md_table(
        [
            "method",
            "items",
            "EM % (95% CI)",
            "F1 % (95% CI)",
            "no answer",
            "calls / item",
            "prompt + completion tokens / item",
            "median s / item",
            f"paired against `{against}`",
        ],
        rows,
        align="lrrrrrrrl",
    )
    return text, data


def main() -> None:
    p = common.parser(__doc__ or "", repeats=1)
    p.add_argument("runs", nargs="+", type=Path, help="conclave eval run folders")
    p.add_argument("--against", default="rag", help="the reference method of the paired columns (default rag)")
    args = p.parse_args()
    info = common.machine()
    tables, data = [], {}
    for run in args.runs:
        text, entry = table(run.expanduser(), args.against)
        tables.append(f"Run `{run.name}`:\n\n{text}")
        data[run.name] = entry
    common.emit(
        "knowledge_table",
        "Knowledge answers: exact match and F1 per method",
        "\n\n".join(tables),
        data=data,
        info=info,
        quick=args.quick,
        out=args.out,
        notes=[
            "EM interval: Wilson; F1 interval and the paired F1 difference: bootstrap over items (4,000 "
            "rounds); sign test over items whose F1 differs; McNemar exact test over EM disagreements",
            "median seconds over items not served from the response cache",
        ],
    )


if __name__ == "__main__":
    main()
