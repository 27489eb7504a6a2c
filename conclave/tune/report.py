"""A tuning run's ``report.html``: the loss curve as inline SVG (no script, no network), the configuration, the data
and the commands that evaluate the result; in the evaluation reports' style."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px;padding:0 1rem;color:#222}
table{border-collapse:collapse;margin:1rem 0;font-size:13px}th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;
vertical-align:top}th{background:#f5f5f5}code,pre{background:#f5f5f5;padding:0 3px}pre{padding:.6rem;overflow-x:auto}
.muted{color:#666}svg{display:block;margin:1rem 0}
"""


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def loss_svg(losses: Sequence[dict[str, Any]], width: int = 720, height: int = 280) -> str:
    """The training loss per step (thin line) and its moving average over 10 steps (thick line)."""
    points = [(int(e["step"]), float(e["loss"])) for e in losses if "step" in e and "loss" in e]
    title = "Training loss per step"
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{_esc(title)}" font-family="system-ui, sans-serif" font-size="12">'
        f"<title>{_esc(title)}</title>"
    )
    if not points:
        return head + '<text x="10" y="20">no steps yet</text></svg>'
    left, right, top, bottom = 56, 16, 16, 36
    steps = [s for s, _ in points]
    values = [v for _, v in points]
    x0, x1 = min(steps), max(steps)
    y0, y1 = min(0.0, min(values)), max(values) * 1.05 or 1.0

    def x(step: float) -> float:
        return left + (step - x0) / max(1, x1 - x0) * (width - left - right)

    def y(value: float) -> float:
        return top + (1 - (value - y0) / max(1e-9, y1 - y0)) * (height - top - bottom)

    body = [
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" stroke="#999"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="#999"/>',
    ]
    for k in range(5):
        value = y0 + (y1 - y0) * k / 4
        body.append(f'<text x="{left - 6}" y="{y(value) + 4:.1f}" text-anchor="end">{value:.2f}</text>')
        body.append(f'<line x1="{left}" y1="{y(value):.1f}" x2="{width - right}" y2="{y(value):.1f}" stroke="#eee"/>')
    for step in sorted({x0, (x0 + x1) // 2, x1}):
        body.append(f'<text x="{x(step):.1f}" y="{height - bottom + 16}" text-anchor="middle">{step}</text>')
    body.append(f'<text x="{(left + width - right) / 2}" y="{height - 4}" text-anchor="middle">step</text>')
    raw = " ".join(f"{x(s):.1f},{y(v):.1f}" for s, v in points)
    body.append(f'<polyline points="{raw}" fill="none" stroke="#97bbf5" stroke-width="1"/>')
    smooth = []
    for i, (s, _) in enumerate(points):
        window = values[max(0, i - 9) : i + 1]
        smooth.append(f"{x(s):.1f},{y(sum(window) / len(window)):.1f}")
    body.append(f'<polyline points="{" ".join(smooth)}" fill="none" stroke="#4269d0" stroke-width="2.5"/>')
    return head + "".join(body) + "</svg>"


def render_html(
    run_id: str,
    config: dict[str, Any],
    data: dict[str, Any],
    losses: Sequence[dict[str, Any]],
    result: dict[str, Any],
    commands: Sequence[str],
) -> str:
    rows = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in result.items())
    config_rows = "".join(
        f"<tr><th>{_esc(k)}</th><td>{_esc(json.dumps(v) if isinstance(v, list | tuple | dict) else v)}</td></tr>"
        for k, v in config.items()
    )
    files = "".join(
        f"<tr><td><code>{_esc(path)}</code></td><td><code>{_esc(sha[:16])}</code></td></tr>"
        for path, sha in data.get("files", {}).items()
    )
    counts = ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in data.items() if k != "files")
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>conclave tune {_esc(run_id)}</title>
<style>{_CSS}</style></head><body>
<h1>Tuning run <code>{_esc(run_id)}</code></h1>
<table>{rows}</table>
<h2>Loss</h2>
{loss_svg(losses)}
<p class="muted">Thin: the loss of each step's batch (assistant tokens only). Thick: its mean over 10 steps.</p>
<h2>Evaluate it</h2>
<pre>{_esc(chr(10).join(commands))}</pre>
<h2>Data</h2>
<table><tr><th>file</th><th>sha256</th></tr>{files}</table>
<p class="muted">{_esc(counts)}</p>
<h2>Configuration</h2>
<table>{config_rows}</table>
</body></html>
"""


def write_report(run_dir: Path, **parts: Any) -> Path:
    from conclave import fileio

    return fileio.write_text(run_dir / "report.html", render_html(**parts), within=run_dir)
