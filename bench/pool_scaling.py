"""Scale-out over a pool of endpoints, measured without a cluster: the evaluation harness against 1, 2, 4 and 8
loopback stub endpoints of fixed latency (``tests/servers/openai_stub.py``: every chat completion answered after
``--delay`` seconds, no model), as one model through ``openai_base_urls`` (``conclave/models/pool.py``).

After one unmeasured warm-up run (imports, first client), each run evaluates ``8 x N`` GSM8K dev items with ``direct`` (one call per item) at harness concurrency N, response
cache off, in a fresh CONCLAVE_HOME. The ideal is N endpoints each busy all the time: N x 60 / delay items per minute;
efficiency is the measured rate over that. This measures the pool's routing and the harness's in-process concurrency;
it says nothing about model speed (the stub has none).

    python bench/pool_scaling.py                 # 1, 2, 4, 8 endpoints, 1 s per call
    python bench/pool_scaling.py --quick         # 1 and 2 endpoints, 0.2 s per call
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import common

sys.path.insert(0, str(common.REPO))  # tests/servers/openai_stub.py

INFO = {"stub": {"function_calling": False, "json_output": True, "structured_output": True}}


async def one_run(endpoints: int, delay: float) -> dict[str, Any]:
    from conclave.workflows.evaluation import EvalConfig, run_eval

    from conclave.settings import load_settings
    from tests.servers.openai_stub import StubEndpoint

    stubs = [StubEndpoint(delay=delay).start() for _ in range(endpoints)]
    try:
        settings = load_settings(
            openai_base_urls=[s.base_url for s in stubs], openai_model_info=INFO, request_timeout=30, cache=False
        )
        items = 8 * endpoints
        config = EvalConfig(
            dataset=f"gsm8k:{common.GSM8K_DEV}",
            methods=["direct"],
            models=["openai/stub"],
            limit=items,
            concurrency=endpoints,
            cache=False,
        )
        result = await run_eval(config, settings)
    finally:
        for stub in stubs:
            stub.stop()
    failed = sum(not r.ok for r in result.records)
    if failed == len(result.records):
        raise SystemExit(f"every item failed with {endpoints} endpoint(s): {result.records[0].error}")
    rate = 60 * len(result.records) / result.seconds
    ideal = endpoints * 60 / delay
    return {
        "endpoints": endpoints,
        "items": len(result.records),
        "seconds": round(result.seconds, 2),
        "items_per_min": round(rate, 1),
        "ideal_per_min": round(ideal, 1),
        "efficiency": round(rate / ideal, 3),
        "served": [s.served for s in stubs],
        "peak_in_flight": [s.peak for s in stubs],
        "failed": failed,
    }


def main() -> None:
    p = common.parser(__doc__ or "", repeats=1)
    p.add_argument("--delay", type=float, default=None, help="seconds per call at each stub (default 1; 0.2 quick)")
    args = p.parse_args()
    delay = args.delay or (0.2 if args.quick else 1.0)
    counts = (1, 2) if args.quick else (1, 2, 4, 8)
    info = common.machine()
    rows, data = [], []
    with common.temp_home("pool-warmup"):
        asyncio.run(one_run(1, 0.01))  # imports and first-client set-up, not measured
    for n in counts:
        with common.temp_home("pool", keep=args.keep_home):
            run = asyncio.run(one_run(n, delay))
        data.append(run)
        rows.append(
            [
                n,
                run["items"],
                f"{run['seconds']:.1f}",
                f"{run['items_per_min']:.1f}",
                f"{run['ideal_per_min']:.0f}",
                f"{100 * run['efficiency']:.0f}%",
                " ".join(map(str, run["served"])),
                " ".join(map(str, run["peak_in_flight"])),
            ]
        )
    table = common.md_table(
        [
            "endpoints",
            "items",
            "seconds",
            "items/min",
            "ideal items/min",
            "efficiency",
            "served per endpoint",
            "peak in flight per endpoint",
        ],
        rows,
        align="rrrrrrll",
    )
    common.emit(
        "pool_scaling",
        f"Harness over a pool of stub endpoints ({delay:g} s per call)",
        table,
        data={"delay": delay, "runs": data},
        info=info,
        quick=args.quick,
        notes=[
            "`direct`, 8 x N GSM8K dev items at harness concurrency N, response cache off; stub endpoints "
            "on loopback (tests/servers/openai_stub.py) pooled through openai_base_urls",
            "efficiency: measured items/min over N x 60 / delay",
        ],
        out=args.out,
    )


if __name__ == "__main__":
    main()
