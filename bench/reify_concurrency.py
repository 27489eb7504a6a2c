"""Reification concurrency: a chain of k independent tool calls of fixed latency, wall time vs k.

Each chain has k steps ``y1 .. yk`` with no dependencies between them (one level), each calling a tool that takes
``--latency-ms``. ``workflows.coa.reify`` runs a level's calls concurrently, so the ideal wall time is one latency
whatever k is. Two tools are measured: an ``async`` tool (``await asyncio.sleep``) and a ``sync`` tool
(``time.sleep``, which LangChain runs in the event loop's default thread pool — as it runs the synchronous tools
Conclave registers, e.g. the calculator). No model and no network: this is Conclave's own scheduling.

    python bench/reify_concurrency.py             # k = 1, 2, 4, 8, 16; 200 ms tools; 20 repeats
    python bench/reify_concurrency.py --quick     # 3 repeats
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

import common

KS = (1, 2, 4, 8, 16)


def chain_text(k: int, tool: str, latency_ms: int) -> str:
    steps = [
        {"thought": f"independent lookup {i + 1}", "id": f"y{i + 1}", "tool": tool, "args": {"ms": latency_ms}}
        for i in range(k)
    ]
    return json.dumps({"steps": steps, "answer": "y1"})


def make_tools() -> dict[str, Any]:
    from langchain_core.tools import StructuredTool

    async def wait_async(ms: int) -> str:
        """Wait ms milliseconds without blocking (an I/O-bound tool)."""
        await asyncio.sleep(ms / 1000)
        return "done"

    def wait_sync(ms: int) -> str:
        """Block the calling thread for ms milliseconds (a synchronous tool)."""
        time.sleep(ms / 1000)
        return "done"

    return {
        "wait_async": StructuredTool.from_function(coroutine=wait_async, name="wait_async"),
        "wait_sync": StructuredTool.from_function(func=wait_sync, name="wait_sync"),
    }


async def measure(ks: tuple[int, ...], repeats: int, latency_ms: int) -> dict[str, dict[int, list[float]]]:
    from conclave.workflows.coa import parse_chain, reify

    tools = make_tools()
    events: list[Any] = []
    out: dict[str, dict[int, list[float]]] = {"async": {k: [] for k in ks}, "sync": {k: [] for k in ks}}
    # One untimed pass: imports, tool schemas, the thread pool's first threads.
    for kind in out:
        await reify(parse_chain(chain_text(2, f"wait_{kind}", 1)), tools, on_event=events.append)
    for _ in range(repeats):
        for k in ks:
            for kind in out:
                chain = parse_chain(chain_text(k, f"wait_{kind}", latency_ms))
                events.clear()
                started = time.perf_counter()
                result = await reify(chain, tools, on_event=events.append)
                out[kind][k].append(time.perf_counter() - started)
                if not result.ok or len(result.levels) != 1:
                    raise SystemExit(f"k={k} {kind}: the chain did not reify as one level: {result.failures()}")
    return out


def main() -> None:
    p = common.parser(__doc__.split("\n\n")[0], repeats=20)
    p.add_argument("--latency-ms", type=int, default=200, help="latency of every tool call (default 200)")
    p.add_argument("--k", type=int, action="append", help="chain widths (repeatable; default 1 2 4 8 16)")
    args = p.parse_args()
    repeats = args.repeats or (3 if args.quick else 20)
    ks = tuple(args.k or KS)
    info = common.machine()
    times = asyncio.run(measure(ks, repeats, args.latency_ms))
    lat = args.latency_ms / 1000
    workers = min(32, (os.cpu_count() or 1) + 4)
    rows = []
    for k in ks:
        a, s = times["async"][k], times["sync"][k]
        med_a = common.summary(a)["median"]
        med_s = common.summary(s)["median"]
        rows.append(
            [
                k,
                f"{args.latency_ms}",
                common.med_range(a, 0, 1000),
                f"{(med_a - lat) * 1000:+.1f}",
                f"{lat / med_a:.0%}",
                common.med_range(s, 0, 1000),
                f"{lat / med_s:.0%}",
                f"{k * args.latency_ms}",
            ]
        )
    table = common.md_table(
        [
            "k (independent calls)",
            "ideal ms",
            "async tool: wall ms",
            "overhead ms",
            "efficiency",
            "sync tool: wall ms",
            "efficiency",
            "sequential ms",
        ],
        rows,
    )
    notes = [
        f"Wall time of `workflows.coa.reify` on a parsed one-level chain of k calls, each tool taking "
        f"{args.latency_ms} ms; median (min–max) over {repeats} repeats; efficiency = ideal / median wall.",
        "async tool: `await asyncio.sleep`; sync tool: `time.sleep` run by LangChain in the event loop's default "
        f"thread pool (max_workers = min(32, cores + 4) = {workers} here), so more than {workers} blocking calls "
        "queue for a thread.",
        "sequential ms: what running the calls one after another would take.",
    ]
    data = {
        "latency_ms": args.latency_ms,
        "repeats": repeats,
        "ks": list(ks),
        "default_pool_workers": workers,
        "seconds": {kind: {str(k): v for k, v in per.items()} for kind, per in times.items()},
    }
    common.emit(
        "reify_concurrency",
        "Reification concurrency",
        table,
        notes=notes,
        data=data,
        info=info,
        quick=args.quick,
        out=args.out,
    )


if __name__ == "__main__":
    main()
