"""Summaries and reports of an evaluation run: ``summary.json``, ``report.md`` and a self-contained ``report.html``.

The HTML report carries its plots as inline SVG written here (no script, no CDN, no network): accuracy per method and
model with 95% Wilson intervals, latency distributions, and tokens per item. Everything is computed from the
records in ``items.jsonl``, so a report can be rebuilt at any time.
"""

from __future__ import annotations

import html
import json
import math
import statistics
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from itertools import combinations
from pathlib import Path
from typing import Any

from conclave.workflows.evaluation import runs
from conclave.workflows.evaluation.compare import compare_records
from conclave.workflows.evaluation.records import EvalSample, as_samples

from conclave.terminal import clip

__all__ = ["breakdown", "summarize", "render_markdown", "render_html", "wilson_interval", "write_reports"]

_PALETTE = ("#4269d0", "#efb118", "#ff725c", "#6cc5b0", "#3ca951", "#ff8ab7", "#a463f2", "#97bbf5", "#9c6b4e")


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for a proportion (sensible at 0 and n, unlike the normal approximation)."""
    if n == 0:
        return (0.0, 0.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    pos = (len(ordered) - 1) * q
    low, high = math.floor(pos), math.ceil(pos)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def _mean(values: Sequence[float]) -> float | None:
    return round(statistics.fmean(values), 4) if values else None


def _cells(records: Sequence[EvalSample]) -> dict[tuple[str, str], list[EvalSample]]:
    cells: dict[tuple[str, str], list[EvalSample]] = {}
    for record in records:
        cells.setdefault((record.method, record.model), []).append(record)
    return cells


def breakdown(recs: Sequence[EvalSample], scorers: Sequence[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """Scores per value of each item label (TAT-QA: answer_type, answer_from, scale): label -> value -> items,
    passes of the primary scorer, and every scorer's mean. Empty when the items carry no labels."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for label in dict.fromkeys(key for r in recs for key in r.labels):
        groups: dict[str, list[EvalSample]] = {}
        for r in recs:
            if label in r.labels:
                groups.setdefault(r.labels[label] or "(none)", []).append(r)
        out[label] = {}
        for value in sorted(groups):
            group = groups[value]
            scored = [r for r in group if r.correct is not None]
            out[label][value] = {
                "items": len(group),
                "accuracy": round(sum(1 for r in scored if r.correct) / len(scored), 4) if scored else None,
                "scores": {
                    name: _mean([v for r in group if (v := r.score_of(name).get("value")) is not None])
                    for name in scorers
                },
            }
    return out


def summarize(
    records: Sequence[EvalSample | Mapping[str, Any]], *, run_id: str = "", meta: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Per (method, model): accuracy with its interval, every scorer's mean, latency, tokens, calls, failures, and
    the scores per value of each item label (``breakdown``, when items carry labels)."""
    samples = as_samples(records)
    scorers: list[str] = []
    for record in samples:
        for name in record.scores:
            if name not in scorers:
                scorers.append(name)
    cells_out = []
    for (method, model), recs in _cells(samples).items():
        scored = [r for r in recs if r.correct is not None]
        correct = sum(1 for r in scored if r.correct)
        low, high = wilson_interval(correct, len(scored))
        latencies = [float(r.latency) for r in recs if r.latency is not None]
        totals = [r.total_tokens for r in recs]
        per_scorer = {}
        for name in scorers:
            values = [v for r in recs if (v := r.score_of(name).get("value")) is not None]
            passes = [p for r in recs if (p := r.score_of(name).get("passed")) is not None]
            per_scorer[name] = {
                "mean": _mean(values),
                "pass_rate": round(sum(passes) / len(passes), 4) if passes else None,
                "n": len(values),
                "missing": sum(1 for r in recs if r.score_of(name).get("missing")),
            }
        cells_out.append(
            {
                "method": method,
                "model": model,
                "items": len(recs),
                "scored": len(scored),
                "correct": correct,
                "accuracy": round(correct / len(scored), 4) if scored else None,
                "ci95": [round(low, 4), round(high, 4)],
                "failed": sum(1 for r in recs if not r.ok),
                "no_answer": sum(1 for r in recs if r.status == "no answer"),
                "scores": per_scorer,
                "latency": {
                    "mean": _mean(latencies),
                    "p50": round(_quantile(latencies, 0.5), 4) if latencies else None,
                    "p90": round(_quantile(latencies, 0.9), 4) if latencies else None,
                    "max": round(max(latencies), 4) if latencies else None,
                },
                "tokens": {
                    "prompt_mean": _mean([r.prompt_tokens for r in recs]),
                    "completion_mean": _mean([r.completion_tokens for r in recs]),
                    "total_mean": _mean(totals),
                    "total": sum(totals),
                },
                "llm_calls_mean": _mean([r.llm_calls for r in recs]),
                "tool_calls_mean": _mean([r.tool_calls for r in recs]),
                "replans_mean": _mean([r.replans for r in recs]),
                "critic_rounds_mean": _mean([r.critic_rounds for r in recs]),
                "backend_calls": sum(r.backend_calls for r in recs),
                "cached_items": sum(1 for r in recs if r.cached),
                **({"breakdown": groups} if (groups := breakdown(recs, scorers)) else {}),
            }
        )
    comparisons = []
    cells = _cells(samples)
    for key_a, key_b in combinations(list(cells), 2):
        comp = compare_records(
            cells[key_a], cells[key_b], a_name=f"{key_a[0]}@{key_a[1]}", b_name=f"{key_b[0]}@{key_b[1]}"
        )
        comparisons.append(comp.to_dict())
    return {
        "run_id": run_id,
        "generated": datetime.now(UTC).isoformat(timespec="seconds"),
        "primary_scorer": scorers[0] if scorers else None,
        "scorers": scorers,
        "units": len(samples),
        "backend_calls": sum(r.backend_calls for r in samples),
        "cached_units": sum(1 for r in samples if r.cached),
        "failed_units": sum(1 for r in samples if not r.ok),
        "no_answer_units": sum(1 for r in samples if r.status == "no answer"),
        "cells": cells_out,
        "comparisons": comparisons,
        **({"meta": meta} if meta else {}),
    }


# ------------------------------------------------------------------------------------------------ markdown


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def render_markdown(summary: dict[str, Any]) -> str:
    """The summary as a Markdown report."""
    meta = summary.get("meta", {})
    lines = [f"# Evaluation {summary['run_id']}", ""]
    dataset = meta.get("dataset") or {}
    if dataset:
        lines.append(
            f"Data set: `{dataset.get('kind')}:{dataset.get('path')}` — {dataset.get('items_selected')} of "
            f"{dataset.get('items_total')} items"
            + (f", collection `{dataset['collection']}`" if dataset.get("collection") else "")
        )
        if dataset.get("problems"):
            lines.append(
                f"Skipped {len(dataset['problems'])} malformed record(s): " + "; ".join(dataset["problems"][:5])
            )
    no_answer = summary.get("no_answer_units", 0)
    lines.append(
        f"Primary scorer: `{summary['primary_scorer']}`. Units: {summary['units']}; backend calls: "
        f"{summary['backend_calls']}; served wholly from cache: {summary['cached_units']}; failed: "
        f"{summary['failed_units']}" + (f" ({no_answer} with no answer)" if no_answer else "") + "."
    )
    header = [
        "method",
        "model",
        "accuracy",
        "95% CI",
        "n",
        *summary["scorers"],
        "latency mean (s)",
        "p50 (s)",
        "p90 (s)",
        "completion tokens/item",
        "tokens/item",
        "LLM calls",
        "tool calls",
        "re-plans",
        "critic rounds",
        "failed",
    ]
    lines += ["", _md_row(header), _md_row(["---"] * len(header))]
    for cell in summary["cells"]:
        lines.append(
            _md_row(
                [
                    cell["method"],
                    cell["model"],
                    _pct(cell["accuracy"]),
                    f"{_pct(cell['ci95'][0])}–{_pct(cell['ci95'][1])}",
                    cell["scored"],
                    *(_num(cell["scores"][s]["mean"], 3) for s in summary["scorers"]),
                    _num(cell["latency"]["mean"]),
                    _num(cell["latency"]["p50"]),
                    _num(cell["latency"]["p90"]),
                    _num(cell["tokens"]["completion_mean"], 0),
                    _num(cell["tokens"]["total_mean"], 0),
                    _num(cell["llm_calls_mean"], 1),
                    _num(cell["tool_calls_mean"], 1),
                    _num(cell["replans_mean"], 1),
                    _num(cell["critic_rounds_mean"], 1),
                    cell.get("failed", 0),
                ]
            )
        )
    lines += _breakdown_markdown(summary)
    if summary["comparisons"]:
        head = ["A", "B", "paired", "A won", "A lost", "p-value", "verdict"]
        lines += ["", "## Paired comparisons (McNemar's exact test)", "", _md_row(head), _md_row(["---"] * len(head))]
        for comp in summary["comparisons"]:
            lines.append(
                _md_row(
                    [
                        comp["a"],
                        comp["b"],
                        comp["paired"],
                        comp["a_only"],
                        comp["b_only"],
                        f"{comp['p_value']:.3g}",
                        _verdict(comp),
                    ]
                )
            )
    lines.append("")
    return "\n".join(lines)


def _breakdown_rows(summary: dict[str, Any]) -> dict[str, list[list[str]]]:
    """Label -> table rows (method, model, value, items, accuracy, every scorer's mean) of every cell's breakdown."""
    tables: dict[str, list[list[str]]] = {}
    for cell in summary["cells"]:
        for label, values in (cell.get("breakdown") or {}).items():
            for value, group in values.items():
                tables.setdefault(label, []).append(
                    [
                        cell["method"],
                        cell["model"],
                        value,
                        str(group["items"]),
                        _pct(group["accuracy"]),
                        *(_num(group["scores"].get(s), 3) for s in summary["scorers"]),
                    ]
                )
    return tables


def _breakdown_markdown(summary: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for label, rows in _breakdown_rows(summary).items():
        head = ["method", "model", label, "n", "accuracy", *summary["scorers"]]
        lines += ["", f"## By {label}", "", _md_row(head), _md_row(["---"] * len(head))]
        lines += [_md_row(row) for row in rows]
    return lines


def _breakdown_html(summary: dict[str, Any]) -> str:
    parts = []
    for label, rows in _breakdown_rows(summary).items():
        head = "".join(f"<th>{_esc(h)}</th>" for h in ["method", "model", label, "n", "accuracy", *summary["scorers"]])
        body = "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in row) + "</tr>" for row in rows)
        parts.append(f'<h2>By {_esc(label)}</h2><div class="wide"><table><tr>{head}</tr>{body}</table></div>')
    return "\n".join(parts)


def _md_row(cells: Sequence[Any]) -> str:
    """One GFM table row; every row is built here, so header, delimiter and body rows have the same cell count. A
    ``|`` in a value (a model spec, a method variant) is escaped, and a line break becomes a space."""
    return "| " + " | ".join(" ".join(str(c).split()).replace("|", "\\|") for c in cells) + " |"


def _verdict(comp: dict[str, Any]) -> str:
    if not comp["paired"]:
        return "no items in common"
    if comp["p_value"] >= 0.05:
        return "no significant difference"
    return f"{comp['a'] if comp['a_only'] > comp['b_only'] else comp['b']} better"


# ------------------------------------------------------------------------------------------------ SVG plots


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _svg(width: int, height: int, body: list[str], title: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label="{_esc(title)}" font-family="system-ui, sans-serif" '
        f'font-size="12"><title>{_esc(title)}</title>' + "".join(body) + "</svg>"
    )


def accuracy_svg(cells: Sequence[dict[str, Any]]) -> str:
    """Bars of accuracy per cell with 95% interval whiskers."""
    width, left, right, top, bottom = 90 + 120 * max(1, len(cells)), 50, 20, 44, 46
    height = 300
    plot_h = height - top - bottom
    step = (width - left - right) / max(1, len(cells))
    methods = list(dict.fromkeys(c["method"] for c in cells))
    body = [f'<text x="{left}" y="18" font-weight="bold">Accuracy (95% Wilson interval)</text>']
    for tick in range(0, 101, 25):
        y = top + plot_h * (1 - tick / 100)
        body.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{tick}%</text>'
        )
    for i, cell in enumerate(cells):
        x = left + step * i + step * 0.2
        w = step * 0.6
        acc = cell["accuracy"] or 0.0
        y = top + plot_h * (1 - acc)
        color = _PALETTE[methods.index(cell["method"]) % len(_PALETTE)]
        body.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{top + plot_h - y:.1f}" fill="{color}">'
            f"<title>{_esc(cell['method'])} @ {_esc(cell['model'])}: {_pct(cell['accuracy'])} "
            f"({cell['correct']}/{cell['scored']})</title></rect>"
        )
        lo, hi = cell["ci95"]
        cx = x + w / 2
        y_lo, y_hi = top + plot_h * (1 - lo), top + plot_h * (1 - hi)
        body.append(
            f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{y_lo:.1f}" y2="{y_hi:.1f}" stroke="#222"/>'
            f'<line x1="{cx - 6:.1f}" x2="{cx + 6:.1f}" y1="{y_lo:.1f}" y2="{y_lo:.1f}" stroke="#222"/>'
            f'<line x1="{cx - 6:.1f}" x2="{cx + 6:.1f}" y1="{y_hi:.1f}" y2="{y_hi:.1f}" stroke="#222"/>'
        )
        body.append(f'<text x="{cx:.1f}" y="{y_hi - 6:.1f}" text-anchor="middle">{_pct(cell["accuracy"])}</text>')
        body.append(
            f'<text x="{cx:.1f}" y="{top + plot_h + 16}" text-anchor="middle">{_esc(cell["method"])}</text>'
            f'<text x="{cx:.1f}" y="{top + plot_h + 31}" text-anchor="middle" fill="#555">'
            f"{_esc(clip(_model_label(cell['model']), 14))}</text>"
        )
    return _svg(int(width), height, body, "Accuracy per method and model")


def _model_label(spec: str) -> str:
    """A model spec short enough for an axis: GGUF paths shown by file name."""
    if spec.startswith("embedded:"):
        name = Path(spec[len("embedded:") :]).name
        return "embedded:" + (name[:-5] if name.endswith(".gguf") else name)
    return spec


def distribution_svg(groups: Sequence[tuple[str, Sequence[float]]], title: str, unit: str) -> str:
    """Horizontal box plots (quartiles, whiskers at min/max) with every value as a dot."""
    left, right, top, row = 250, 40, 34, 42
    width = 720
    height = top + row * max(1, len(groups)) + 36
    values = [v for _, vs in groups for v in vs]
    step = _nice_step(max(values) / 4 if values and max(values) > 0 else 0.25)
    ticks = max(1, math.ceil((max(values) if values else 1.0) / step - 1e-9))
    hi = step * ticks
    scale = (width - left - right) / hi
    body = [f'<text x="10" y="18" font-weight="bold">{_esc(title)}</text>']
    for t in range(ticks + 1):
        value = step * t
        x = left + value * scale
        body.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top - 6}" y2="{height - 30}" stroke="#eee"/>'
            f'<text x="{x:.1f}" y="{height - 14}" text-anchor="middle">{_tick(value)}{_esc(unit)}</text>'
        )
    for i, (label, vs) in enumerate(groups):
        y = top + row * i + row / 2
        color = _PALETTE[i % len(_PALETTE)]
        body.append(f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">{_esc(clip(label, 34))}</text>')
        if not vs:
            continue
        q1, med, q3 = (_quantile(vs, q) for q in (0.25, 0.5, 0.75))
        lo, top_v = min(vs), max(vs)
        body.append(
            f'<line x1="{left + lo * scale:.1f}" x2="{left + top_v * scale:.1f}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="#444"/>'
        )
        body.append(
            f'<rect x="{left + q1 * scale:.1f}" y="{y - 10:.1f}" width="{max(1.0, (q3 - q1) * scale):.1f}" '
            f'height="20" fill="{color}" fill-opacity="0.35" stroke="{color}"><title>{_esc(label)}: median '
            f"{_tick(med)}{_esc(unit)}, quartiles {_tick(q1)}–{_tick(q3)}, n={len(vs)}</title></rect>"
        )
        body.append(
            f'<line x1="{left + med * scale:.1f}" x2="{left + med * scale:.1f}" y1="{y - 10:.1f}" '
            f'y2="{y + 10:.1f}" stroke="#111" stroke-width="2"/>'
        )
        for j, v in enumerate(vs[:400]):
            jitter = ((j * 7919) % 17 - 8) * 0.9  # deterministic spread, so reports are reproducible
            body.append(
                f'<circle cx="{left + v * scale:.1f}" cy="{y + jitter:.1f}" r="2" fill="{color}" fill-opacity="0.8"/>'
            )
    return _svg(width, int(height), body, title)


def _nice_step(raw: float) -> float:
    """The smallest 1, 2, 2.5 or 5 x 10^k at or above ``raw`` (axis ticks people can read)."""
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if factor * power >= raw:
            return factor * power
    return 10 * power


def _tick(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10 or value == int(value):
        return f"{value:.0f}" if value == int(value) else f"{value:.1f}"
    return f"{value:g}"


# ---------------------------------------------------------------------------------------------------- HTML

_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px;padding:0 1rem;color:#222}
table{border-collapse:collapse;margin:1rem 0;font-size:13px}th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;
vertical-align:top}th{background:#f5f5f5}td.ok{color:#1a7f37}td.bad{color:#c62828}
.wide{overflow-x:auto;max-width:100%}.plots svg{display:block;margin:1rem 0;max-width:100%;height:auto}
code{background:#f5f5f5;padding:0 3px}details{margin:1rem 0}.muted{color:#666}
.drill>label{margin-right:.8rem}.drill .sep{margin:0 .8rem 0 0;color:#999}
.items details.item{margin:0;border-top:1px solid #eee;padding:3px 0}.items summary{cursor:pointer}
.items .mark{display:inline-block;width:1.2em}.items .mark.ok{color:#1a7f37}.items .mark.bad{color:#c62828}
.items .flag{color:#c62828;font-size:12px}.item-body{margin:.5rem 0 1rem 1.5rem}
.item-body dl{display:grid;grid-template-columns:9rem 1fr;gap:4px 12px;margin:0}.item-body dt{color:#666}
.item-body dd{margin:0}.text{white-space:pre-wrap;overflow-wrap:anywhere}
.trace{margin:.5rem 0;padding-left:1.5rem}.trace li{margin:3px 0}.trace pre{white-space:pre-wrap;overflow-wrap:anywhere;
background:#f7f7f7;padding:4px 6px;margin:2px 0}.trace .k{font-weight:bold}.trace .err{color:#c62828}
#show-errors:checked~.items .item:not(.wrong):not(.failed),#show-failed:checked~.items .item:not(.failed){display:none}
"""
_TRACE_CHARS = 4000
"""A trace's text (a chain, a tool's result) shown in the report; a runaway model can write far more."""


def render_html(summary: dict[str, Any], records: Sequence[EvalSample | Mapping[str, Any]]) -> str:
    """A single self-contained HTML page: tables, inline SVG plots, every item."""
    cells = summary["cells"]
    samples = as_samples(records)
    by_cell = _cells(samples)
    latency = [
        (
            f"{c['method']} @ {_model_label(c['model'])}",
            [float(r.latency) for r in by_cell[(c["method"], c["model"])] if r.latency is not None],
        )
        for c in cells
    ]
    tokens = [
        (
            f"{c['method']} @ {_model_label(c['model'])}",
            [float(r.total_tokens) for r in by_cell[(c["method"], c["model"])]],
        )
        for c in cells
    ]
    md_rows = []
    for cell in cells:
        scores = "".join(f"<td>{_num(cell['scores'][s]['mean'], 3)}</td>" for s in summary["scorers"])
        md_rows.append(
            f"<tr><td>{_esc(cell['method'])}</td><td>{_esc(cell['model'])}</td><td>{_pct(cell['accuracy'])}</td>"
            f"<td>{_pct(cell['ci95'][0])}–{_pct(cell['ci95'][1])}</td><td>{cell['scored']}</td>{scores}"
            f"<td>{_num(cell['latency']['p50'])}</td><td>{_num(cell['latency']['p90'])}</td>"
            f"<td>{_num(cell['tokens']['total_mean'], 0)}</td><td>{_num(cell['llm_calls_mean'], 1)}</td>"
            f"<td>{_num(cell['tool_calls_mean'], 1)}</td><td>{_num(cell['replans_mean'], 1)}</td>"
            f"<td>{_num(cell['critic_rounds_mean'], 1)}</td><td>{cell['failed']}</td></tr>"
        )
    score_heads = "".join(f"<th>{_esc(s)}</th>" for s in summary["scorers"])
    comp_rows = "".join(
        f"<tr><td>{_esc(c['a'])}</td><td>{_esc(c['b'])}</td><td>{c['paired']}</td><td>{c['a_only']}</td>"
        f"<td>{c['b_only']}</td><td>{c['p_value']:.3g}</td><td>{_esc(_verdict(c))}</td></tr>"
        for c in summary["comparisons"]
    )
    # The drill-down renders the records as written (every field escaped: they hold model and data-set text).
    items_css, items_html = _items_html([s.to_record() for s in samples])
    meta = summary.get("meta", {})
    dataset = meta.get("dataset") or {}
    problems = dataset.get("problems") or []
    problem_html = (
        (
            f"<details><summary>{len(problems)} malformed record(s) skipped</summary><ul>"
            + "".join(f"<li>{_esc(p)}</li>" for p in problems[:100])
            + "</ul></details>"
        )
        if problems
        else ""
    )
    config = meta.get("config") or {}
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Conclave evaluation {_esc(summary["run_id"])}</title>
<style>{_CSS}{items_css}</style></head><body>
<h1>Evaluation <code>{_esc(summary["run_id"])}</code></h1>
<p>Data set <code>{_esc(config.get("dataset", dataset.get("path", "")))}</code>
{_esc(dataset.get("items_selected", ""))} items{(", collection <code>" + _esc(dataset["collection"]) + "</code>") if dataset.get("collection") else ""}.
Primary scorer <code>{_esc(summary["primary_scorer"])}</code>. Units {summary["units"]}, backend calls {summary["backend_calls"]},
served wholly from cache {summary["cached_units"]}, failed {summary["failed_units"]}. Generated {_esc(summary["generated"])}.</p>
{problem_html}
<div class="wide"><table><tr><th>method</th><th>model</th><th>accuracy</th><th>95% CI</th><th>n</th>{score_heads}<th>latency p50 (s)</th>
<th>p90 (s)</th><th>tokens/item</th><th>LLM calls</th><th>tool calls</th><th>re-plans</th><th>critic rounds</th><th>failed</th></tr>
{"".join(md_rows)}</table></div>
{_breakdown_html(summary)}
<div class="plots">
{accuracy_svg(cells)}
{distribution_svg(latency, "Latency per item", "s")}
{distribution_svg(tokens, "Tokens per item (prompt + completion)", "")}
</div>
{("<h2>Paired comparisons (McNemar exact)</h2><div class='wide'><table><tr><th>A</th><th>B</th><th>paired</th><th>A won</th><th>A lost</th><th>p</th><th>verdict</th></tr>" + comp_rows + "</table></div>") if comp_rows else ""}
<h2>Items</h2>
<p class="muted">Open an item for its full question, gold and answer, the scorers' detail and its trace
(the same records as items.jsonl next to this file).</p>
{items_html}
</body></html>
"""


# ------------------------------------------------------------------------------------------ HTML: the items
# Everything below comes from items.jsonl: model output, data set text, server messages. It is untrusted, so every
# value is escaped (``_esc``) and read defensively (a hand-edited or damaged record must not break the report).


def _items_html(records: Sequence[dict[str, Any]]) -> tuple[str, str]:
    """Every item as a ``<details>`` that opens to its detail and trace, under radio filters (CSS only: no script):
    all, errors (wrong or failed), failed (no answer or an error); every method or one. Returns (CSS, HTML)."""
    methods = list(dict.fromkeys(str(r.get("method", "")) for r in records))
    filters = [
        '<input type="radio" name="show" id="show-all" checked><label for="show-all">all</label>',
        '<input type="radio" name="show" id="show-errors"><label for="show-errors">errors (wrong or failed)</label>',
        '<input type="radio" name="show" id="show-failed"><label for="show-failed">failed (no answer or error)</label>',
    ]
    rules = []
    if len(methods) > 1:
        filters.append(
            '<span class="sep">|</span><input type="radio" name="method" id="method-all" checked>'
            '<label for="method-all">every method</label>'
        )
        for i, method in enumerate(methods):
            filters.append(
                f'<input type="radio" name="method" id="method-{i}"><label for="method-{i}">{_esc(method)}</label>'
            )
            rules.append(f"#method-{i}:checked~.items .item:not(.m{i}){{display:none}}")
    items = "".join(_item_html(r, methods.index(str(r.get("method", "")))) for r in records)
    return "".join(rules), f'<section class="drill">{"".join(filters)}<div class="items">{items}</div></section>'


def _text(value: Any, limit: int | None = None) -> str:
    """A value as escaped text; cut at ``limit`` characters with a note of how much was left out."""
    text = (
        value
        if isinstance(value, str)
        else ("" if value is None else json.dumps(value, ensure_ascii=False, default=str))
    )
    if limit is not None and len(text) > limit:
        more = len(text) - limit
        return _esc(text[:limit]) + f'<span class="muted">… ({more} more characters in items.jsonl)</span>'
    return _esc(text)


def _item_html(r: dict[str, Any], method_index: int) -> str:
    correct = r.get("correct")
    mark, css = ("–", "") if correct is None else (("✓", "ok") if correct else ("✗", "bad"))
    outcome = r.get("outcome") or ("answered" if r.get("ok", True) else "error")
    classes = (
        ["item", f"m{method_index}"]
        + (["wrong"] if correct is False else [])
        + (["failed"] if not r.get("ok", True) else [])
    )
    flag = f' <span class="flag">{_esc(outcome)}</span>' if outcome != "answered" else ""
    tokens = _int(r.get("prompt_tokens")) + _int(r.get("completion_tokens"))
    value = r.get("value")
    shown = clip(value if value is not None else "–", 40)
    summary = (
        f'<span class="mark {css}">{mark}</span><code>{_esc(r.get("item_id", ""))}</code> · '
        f"{_esc(r.get('method', ''))} · {_esc(clip(_model_label(str(r.get('model', ''))), 24))} · "
        f"{_esc(clip(r.get('question', ''), 110))} → <b>{_esc(shown)}</b>"
        f'{flag} <span class="muted">{_n(r.get("latency"))} s · {tokens} tokens</span>'
    )
    gold = v if isinstance(v := r.get("gold"), list) else [r.get("gold", "")]
    rows = [
        ("question", f'<span class="text">{_text(r.get("question", ""))}</span>'),
        ("gold", " <b>|</b> ".join(f'<span class="text">{_text(g)}</span>' for g in gold) or "–"),
        ("compared answer", _compared_answer(r)),
        ("answer", f'<span class="text">{_text(r.get("answer", ""))}</span>'),
        ("outcome", _outcome_html(outcome, r.get("error"))),
        ("scores", _scores_html(r.get("scores"))),
        ("model", _esc(r.get("model", ""))),
    ]
    body = "".join(f"<dt>{name}</dt><dd>{html_}</dd>" for name, html_ in rows)
    trace = r.get("trace")
    trace_html = _trace_html(trace) if isinstance(trace, list) and trace else '<p class="muted">no trace recorded</p>'
    return (
        f'<details class="{" ".join(classes)}"><summary>{summary}</summary><div class="item-body"><dl>{body}</dl>'
        f"<h4>Trace</h4>{trace_html}</div></details>"
    )


def _compared_answer(r: dict[str, Any]) -> str:
    """What the scorers compared with the gold: the method's value when it gave one; else, for a numeric scorer, the
    last number of the answer text (as the scorer reads it); else the whole answer."""
    from conclave.workflows.evaluation.scorers import Outcome, answer_number, format_decimal

    value = r.get("value")
    if value is not None:
        return f'{_text(value)} <span class="muted">(the value the method gave)</span>'
    scores = r.get("scores")
    number = answer_number(Outcome(text=str(r.get("answer") or "")))
    if number is not None and isinstance(scores, dict) and "numeric" in scores:
        return f'{_esc(format_decimal(number))} <span class="muted">(the last number in the answer)</span>'
    return '<span class="muted">the whole answer (the method gave no separate value)</span>'


def _outcome_html(outcome: str, error: Any) -> str:
    if not error:
        return _esc(outcome)
    if str(error).startswith(outcome):  # "no answer: ..." says it already
        return f'<span class="text">{_text(error)}</span>'
    return f'{_esc(outcome)}: <span class="text">{_text(error)}</span>'


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _n(value: Any, digits: int = 2) -> str:
    """:func:`_num` of a value read from a record, which may be anything."""
    return _num(value if isinstance(value, (int, float)) and not isinstance(value, bool) else None, digits)


def _scores_html(scores: Any) -> str:
    if not isinstance(scores, dict) or not scores:
        return '<span class="muted">none</span>'
    rows = []
    for name, score in scores.items():
        score = score if isinstance(score, dict) else {}
        passed = score.get("passed")
        verdict = "–" if passed is None else ("✓ pass" if passed else "✗ fail")
        detail = _text(score.get("detail", ""))
        if score.get("missing"):
            detail += ' <span class="muted">(missing)</span>'
        rows.append(
            f"<tr><td>{_esc(name)}</td><td>{_n(score.get('value'), 3)}</td><td>{verdict}</td>"
            f'<td class="text">{detail}</td></tr>'
        )
    return "<table><tr><th>scorer</th><th>value</th><th></th><th>explanation</th></tr>" + "".join(rows) + "</table>"


def _trace_html(trace: Sequence[Any]) -> str:
    """The run's events as a list: plan, searches, chains, rejections, each step with its tool call and value, tool
    calls, votes, the critic's verdicts, failures."""
    items: list[str] = []
    args: dict[tuple[str, str], Any] = {}
    for event in trace:
        if not isinstance(event, dict):
            continue
        line = _event_html(event, args)
        if line:
            items.append(f"<li>{line}</li>")
    return f'<ol class="trace">{"".join(items)}</ol>' if items else '<p class="muted">no trace recorded</p>'


def _call(tool: Any, arguments: Any) -> str:
    if isinstance(arguments, dict):
        inner = ", ".join(f"{_esc(k)}={_text(v, 500)}" for k, v in arguments.items())
    else:
        inner = _text(arguments, 500)
    return f"{_esc(tool)}({inner})"


def _event_html(e: dict[str, Any], args: dict[tuple[str, str], Any]) -> str:
    kind = e.get("kind")
    sample = e.get("sample") or 0
    tag = f" (sample {_esc(sample + 1 if isinstance(sample, int) else sample)})" if sample else ""
    step = (str(sample), str(e.get("step_id")))
    if kind == "run_started":
        models = v if isinstance(v := e.get("models"), dict) else {}
        return f'<span class="k">Started</span> {_esc(e.get("method", ""))} · ' + _esc(
            ", ".join(sorted({str(m) for m in models.values()}))
        )
    if kind == "plan":
        subs = v if isinstance(v := e.get("subquestions"), list) else []
        listed = "".join(
            f'<li>{_text(s.get("question", ""))} <span class="muted">({_esc(s.get("needs", "?"))})</span></li>'
            for s in subs
            if isinstance(s, dict)
        )
        route = f' <span class="muted">{_esc(e.get("route"))}</span>' if e.get("route") else ""
        return f'<span class="k">Plan</span>{route}<ol>{listed}</ol>'
    if kind == "retrieval":
        passages = v if isinstance(v := e.get("passages"), list) else []
        listed = "".join(
            f"<li>{_n(p.get('score'))} <b>{_esc(p.get('title') or p.get('source', ''))}</b> "
            f"<code>{_esc(str(p.get('id', ''))[:12])}</code> {_text(p.get('text', ''), 300)}</li>"
            for p in passages
            if isinstance(p, dict)
        )
        listed = listed or "<li>no passages</li>"
        return f'<span class="k">Retrieve</span> “{_text(e.get("query", ""))}”<ul>{listed}</ul>'
    if kind == "chain":
        attempt = e.get("attempt", 0)
        attempt = attempt + 1 if isinstance(attempt, int) else attempt
        return (
            f'<span class="k">Chain</span> attempt {_esc(attempt)}{tag}, {_esc(e.get("form", ""))} form'
            f"<pre>{_text(e.get('text', ''), _TRACE_CHARS)}</pre>"
        )
    if kind == "replan":
        errors = v if isinstance(v := e.get("errors"), list) else []
        return (
            f'<span class="k err">Rejected</span>{tag}<ul>'
            + "".join(f'<li class="text">{_text(x, 1000)}</li>' for x in errors)
            + "</ul>"
        )
    if kind == "step_started":
        args[step] = e.get("args")
        return ""
    if kind == "step_finished":
        ok = e.get("status") == "ok"
        if ok:
            result = _text(e.get("value"), 1000)
        else:
            result = f'<span class="err">{_esc(e.get("status"))}: {_text(e.get("error"), 1000)}</span>'
        started, ended = e.get("started"), e.get("ended")
        timed = isinstance(started, (int, float)) and isinstance(ended, (int, float))
        ms = f" · {(float(ended or 0) - float(started or 0)) * 1000:.0f} ms" if timed else ""
        call = _call(e.get("tool", ""), args.get(step, {}))
        return (
            f'<span class="k">Step {_esc(e.get("step_id", ""))}</span>{tag} = {call} → {result}'
            f'<span class="muted">{ms}</span>'
        )
    if kind == "tool_call":
        css = "err text" if e.get("is_error") else "text"
        return (
            f'<span class="k">Tool</span> {_call(e.get("tool", ""), e.get("args", {}))} → '
            f'<span class="{css}">{_text(e.get("result", ""), _TRACE_CHARS)}</span>'
        )
    if kind == "vote":
        counts = v if isinstance(v := e.get("counts"), dict) else {}
        return (
            '<span class="k">Vote</span> '
            + _esc(", ".join(f"{k}: {v}" for k, v in counts.items()))
            + f" → {_esc(e.get('winner'))}"
        )
    if kind == "critique":
        reasons = v if isinstance(v := e.get("reasons"), list) else []
        verdict = str(e.get("verdict", ""))
        css = "" if verdict == "accept" else " err"
        return (
            f'<span class="k{css}">Critic: {_esc(verdict)}</span><ul>'
            + "".join(f'<li class="text">{_text(x, 1000)}</li>' for x in reasons)
            + "</ul>"
        )
    if kind == "usage":
        return (
            f'<span class="muted">{_esc(e.get("agent", ""))}: {_esc(e.get("prompt_tokens"))}+'
            f"{_esc(e.get('completion_tokens'))} tokens, {_n(e.get('seconds'), 1)} s</span>"
        )
    if kind == "run_failed":
        hint = f' <span class="muted">fix: {_text(e.get("hint"))}</span>' if e.get("hint") else ""
        return f'<span class="k err">Failed</span> <span class="text">{_text(e.get("error", ""))}</span>{hint}'
    if kind == "run_finished":
        seconds = e.get("seconds")
        took = f" in {seconds:.1f} s" if isinstance(seconds, (int, float)) else ""
        if e.get("ok", True):
            return f'<span class="k">Finished</span>{took}'
        if e.get("reason"):
            return f'<span class="k err">No answer</span>{took}: <span class="text">{_text(e.get("reason"))}</span>'
        return f'<span class="k err">Stopped</span>{took}'
    return ""


def write_reports(run_dir: Path, records: Sequence[EvalSample], *, run_id: str) -> dict[str, Any]:
    """Write summary.json, report.md and report.html into ``run_dir``; returns the summary."""
    meta: dict[str, Any] = {}
    manifest_path = run_dir / "manifest.json"
    if manifest_path.is_file():
        manifest = runs.read_json(manifest_path)
        meta = {"dataset": manifest.get("dataset"), "config": manifest.get("config"), "models": manifest.get("models")}
    summary = summarize(records, run_id=run_id, meta=meta)
    runs.write_json(run_dir / "summary.json", summary, run_id=run_id)
    runs.write_text(run_dir / "report.md", render_markdown(summary), run_id=run_id)
    runs.write_text(run_dir / "report.html", render_html(summary, records), run_id=run_id)
    return summary
