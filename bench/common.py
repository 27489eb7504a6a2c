"""Shared pieces of the benchmark scripts: machine and version info, statistics, Markdown tables, result files.

Every script prints one Markdown table (with the command that produced it and the machine it ran on) and writes the
same data as JSON to ``bench/results/NAME[-quick].json``. Nothing here downloads anything; every benchmark runs in a
temporary ``CONCLAVE_HOME`` (see :func:`temp_home`) so it never touches the user's data or a running evaluation's.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import math
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
RESULTS = REPO / "bench" / "results"
GSM8K_DEV = SHARED_DATA / "gsm8k" / "dev.jsonl"
SQUAD_DEV = SHARED_DATA / "squad" / "dev-v1.1-even.json"

# Never reach for a network: every model and data file is local.
for _name, _value in (
    ("HF_HUB_OFFLINE", "1"),
    ("TRANSFORMERS_OFFLINE", "1"),
    ("ANONYMIZED_TELEMETRY", "False"),
    ("TOKENIZERS_PARALLELISM", "false"),
):
    os.environ.setdefault(_name, _value)

PACKAGES = (
    "xllamacpp",
    "llama-cpp-python",
    "chromadb",
    "autogen-agentchat",
    "autogen-core",
    "autogen-ext",
    "sentence-transformers",
    "torch",
    "langchain-core",
)


# ------------------------------------------------------------------------------------------------ the machine


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    except (ValueError, OSError, AttributeError):
        return None


def _git() -> str:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{rev}{' + uncommitted changes' if dirty else ''}" if rev else "unknown"


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def machine() -> dict[str, Any]:
    """Cores, memory, CPU, OS, versions, the git revision and the load when the benchmark started."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = []
    memory = _memory_gib()
    return {
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "cpu": _cpu_model(),
        "memory_gib": round(memory, 1) if memory else None,
        "os": platform.platform(),
        "load_average_at_start": load,
        "nice": os.nice(0) if hasattr(os, "nice") else None,
        "versions": versions(),
        "git": _git(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def machine_block(info: dict[str, Any]) -> str:
    """Two lines for under a table: the machine, then the versions."""
    v = info["versions"]
    load = info.get("load_average_at_start") or []
    nice = f", nice {info['nice']}" if info.get("nice") else ""
    lines = [
        f"Machine: {info['cores']} cores ({info['cpu']}), {info['memory_gib']} GiB RAM, {info['os']}; "
        f"load average at start {' / '.join(map(str, load)) or 'n/a'}{nice}; {info['date']}.",
        "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()) + f"; conclave git {info['git']}.",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ statistics


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation; NaN for no values."""
    data = sorted(values)
    if not data:
        return math.nan
    pos = (len(data) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def summary(values: Sequence[float]) -> dict[str, float | int]:
    """n, median, min, max, mean, p95 of ``values`` (NaN when empty)."""
    data = [float(v) for v in values]
    if not data:
        return {"n": 0, "median": math.nan, "min": math.nan, "max": math.nan, "mean": math.nan, "p95": math.nan}
    return {
        "n": len(data),
        "median": statistics.median(data),
        "min": min(data),
        "max": max(data),
        "mean": statistics.fmean(data),
        "p95": percentile(data, 95),
    }


def num(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:,.{digits}f}"


def med_range(values: Sequence[float], digits: int = 1, scale: float = 1.0) -> str:
    """``median (min–max)`` of values (times ``scale``), or the single value when there is one."""
    data = [v * scale for v in values]
    if not data:
        return "–"
    s = summary(data)
    if s["n"] == 1 or s["min"] == s["max"]:
        return num(s["median"], digits)
    return f"{num(s['median'], digits)} ({num(s['min'], digits)}–{num(s['max'], digits)})"


def ratio(a: float, b: float, digits: int = 2) -> str:
    if not b or math.isnan(a) or math.isnan(b):
        return "–"
    return f"{a / b:.{digits}f}×"


# ------------------------------------------------------------------------------------------------ output


def md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None) -> str:
    """A GitHub Markdown table; ``align`` is one of l/r per column (default: first left, the rest right)."""
    align = align or "l" + "r" * (len(headers) - 1)
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return (
            "| "
            + " | ".join(c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(row, widths, align, strict=False))
            + " |"
        )

    marks = ("-" * (w + 1) + ":" if a == "r" else ":" + "-" * (w + 1) for w, a in zip(widths, align, strict=False))
    rule = "|" + "|".join(marks) + "|"
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


def command_line() -> str:
    """How this script was invoked, relative to the repository root (what PERFORMANCE.md records)."""
    script = Path(sys.argv[0]).resolve()
    try:
        shown = script.relative_to(REPO).as_posix()
    except ValueError:
        shown = str(script)
    return shlex.join(["python", shown, *sys.argv[1:]])


def emit(
    name: str,
    title: str,
    table: str,
    *,
    notes: Sequence[str] = (),
    data: dict[str, Any],
    info: dict[str, Any],
    quick: bool,
    out: Path | None = None,
) -> Path:
    """Print the table (with its command, notes and machine) and write the JSON record; returns the JSON path."""
    size = "smoke size (--quick), to be replaced by the full run" if quick else "full size"
    text = [f"### {title}", "", f"`{command_line()}` — {size}", "", table, ""]
    text += [f"- {n}" for n in notes]
    text += ["", machine_block(info)]
    print("\n".join(text), flush=True)
    path = out or RESULTS / f"{name}{'-quick' if quick else ''}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "benchmark": name,
        "title": title,
        "command": command_line(),
        "quick": quick,
        "machine": info,
        "table_markdown": table,
        "notes": list(notes),
        "data": data,
    }
    path.write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(f"\n(results written to {path.relative_to(REPO) if path.is_relative_to(REPO) else path})", file=sys.stderr)
    return path


def parser(description: str, *, repeats: int) -> argparse.ArgumentParser:
    """The options every script has: --quick, --repeats, --out, --keep-home."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke size: seconds to a minute, numbers not for the record")
    p.add_argument(
        "--repeats", type=int, default=None, help=f"repeated runs per point (default {repeats}; fewer with --quick)"
    )
    p.add_argument("--out", type=Path, default=None, help="JSON output (default bench/results/NAME[-quick].json)")
    p.add_argument("--keep-home", action="store_true", help="keep the temporary CONCLAVE_HOME (prints its path)")
    return p


# ------------------------------------------------------------------------------------------------ isolation


@contextlib.contextmanager
def temp_home(prefix: str, keep: bool = False) -> Iterator[Path]:
    """A fresh ``CONCLAVE_HOME`` for the duration (never the user's, never a running evaluation's)."""
    folder = Path(tempfile.mkdtemp(prefix=f"conclave-bench-{prefix}-"))
    old = os.environ.get("CONCLAVE_HOME")
    os.environ["CONCLAVE_HOME"] = str(folder)
    try:
        yield folder
    finally:
        if old is None:
            os.environ.pop("CONCLAVE_HOME", None)
        else:
            os.environ["CONCLAVE_HOME"] = old
        if keep:
            print(f"(kept CONCLAVE_HOME {folder})", file=sys.stderr)
        else:
            shutil.rmtree(folder, ignore_errors=True)


def require(path: Path, what: str) -> Path:
    if not path.exists():
        raise SystemExit(f"{what} not found at {path} (the shared data sets live in ../shared/data next to the repo)")
    return path


def require_llama_cpp_python(what: str) -> None:
    """Exit with one line naming the extra when llama-cpp-python (``llama_cpp.server``) is not installed."""
    import importlib.util

    if importlib.util.find_spec("llama_cpp") is None:
        raise SystemExit(
            f"{what} needs llama-cpp-python, which is not installed: pip install -e '.[llama-cpp]' (it compiles "
            "llama.cpp: a C++ compiler and minutes), or use --engine xllamacpp"
        )


def load_jsonl(path: Path, limit: int | None = None) -> list[dict[str, Any]]:
    rows = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                rows.append(json.loads(line))
                if limit is not None and len(rows) >= limit:
                    break
    return rows


def openai_settings_overrides(spec: str, base_url: str | None, model_info: str | None) -> dict[str, Any]:
    """Settings for an ``openai/NAME`` spec served at ``base_url`` (a local OpenAI-compatible server)."""
    overrides: dict[str, Any] = {}
    if base_url:
        overrides["openai_base_url"] = base_url
    if spec.startswith("openai/") and model_info:
        overrides["openai_model_info"] = {spec.split("/", 1)[1]: json.loads(model_info)}
    return overrides


async def warm_up(spec: str, settings: Any) -> float:
    """Load the model (or wake the server) before anything is timed; returns the seconds it took."""
    from autogen_core.models import UserMessage

    from conclave.models import make_client

    started = time.perf_counter()
    client = await make_client(spec, settings)
    await client.create([UserMessage(content="Say OK.", source="user")], extra_create_args={"max_tokens": 4})
    return time.perf_counter() - started


# ------------------------------------------------------------------------------------------------ servers


# The test suite's own (tests/fixtures/servers.py, tests/fixtures/chroma.py): one way to start a server on loopback,
# wait for it and stop it. ``Server`` is the name the bench scripts use for ``start_server``.
sys.path.insert(0, str(REPO))
from tests.fixtures.chroma import start_chroma_server as start_chroma_server  # noqa: E402
from tests.fixtures.servers import free_port as free_port  # noqa: E402
from tests.fixtures.servers import start_server  # noqa: E402

Server = start_server
