"""Scale-out over a pool of endpoints, measured without a cluster: the evaluation harness against 1, 2, 4 and 8
loopback stub endpoints of fixed latency (``tests/servers/openai_stub.py``: every chat completion answered after
``--delay`` seconds, no model), as one model through ``openai_base_urls`` (``conclave/models/pool.py``).

After one unmeasured warm-up run (imports, first client), each run evaluates ``P x N`` GSM8K dev items (P =
``--per-endpoint``, default 8) with ``direct`` (one call per item) at harness concurrency N, response cache off, in a
fresh CONCLAVE_HOME. The ideal is N endpoints each busy all the time: N x 60 / delay items per minute; efficiency is
the measured rate over that, the whole run included (with Ray: starting its workers too). It says nothing about
model speed (the stub has none).

``--executor ray`` runs the units on local Ray workers (``workflows/evaluation/distributed.py``; one Ray started
for the whole bench, its workers started per run). ``--servers`` adds a correctness run: two real
``llama_cpp.server`` processes serving the bundled SmolLM2, the same items locally and through Ray, answers compared.

    python bench/pool_scaling.py                                  # 1, 2, 4, 8 endpoints, 1 s per call, in-process
    python bench/pool_scaling.py --executor ray --per-endpoint 16 --servers
    python bench/pool_scaling.py --quick                          # 1 and 2 endpoints, 0.2 s per call
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import common

sys.path.insert(0, str(common.REPO))  # tests/servers/openai_stub.py

INFO = {"stub": {"function_calling": False, "json_output": True, "structured_output": True}}


async def one_run(endpoints: int, delay: float, executor: str = "local", per_endpoint: int = 8) -> dict[str, Any]:
    from conclave.workflows.evaluation import EvalConfig, run_eval

    from conclave.settings import load_settings
    from tests.servers.openai_stub import StubEndpoint

    stubs = [StubEndpoint(delay=delay).start() for _ in range(endpoints)]
    try:
        settings = load_settings(
            openai_base_urls=[s.base_url for s in stubs], openai_model_info=INFO, request_timeout=30, cache=False
        )
        items = per_endpoint * endpoints
        config = EvalConfig(
            dataset=f"gsm8k:{common.GSM8K_DEV}",
            methods=["direct"],
            models=["openai/stub"],
            limit=items,
            concurrency=endpoints,
            cache=False,
            executor=executor,
        )
        notes: list[tuple[float, str]] = []
        started = time.perf_counter()
        result = await run_eval(config, settings, on_note=lambda m: notes.append((time.perf_counter(), m)))
        ended = time.perf_counter()
    finally:
        for stub in stubs:
            stub.stop()
    failed = sum(not r.ok for r in result.records)
    if failed == len(result.records):
        raise SystemExit(f"every item failed with {endpoints} endpoint(s): {result.records[0].error}")
    rate = 60 * len(result.records) / result.seconds
    ideal = endpoints * 60 / delay
    # The moment every Ray worker was up (the "running on ..." note), or the run's start in-process.
    up, workers = next(((t, n.partition(": ")[2]) for t, n in notes if n.startswith("running on")), (started, None))
    return {
        "endpoints": endpoints,
        "items": len(result.records),
        "seconds": round(result.seconds, 2),
        "items_per_min": round(rate, 1),
        "ideal_per_min": round(ideal, 1),
        "efficiency": round(rate / ideal, 3),
        "efficiency_working": round(60 * len(result.records) / (ended - up) / ideal, 3),
        "served": [s.served for s in stubs],
        "peak_in_flight": [s.peak for s in stubs],
        "failed": failed,
        "workers": workers or "in-process",
        "working_seconds": round(ended - up, 2),
    }


async def server_answers(executor: str, urls: list[str], limit: int) -> dict[str, tuple[str, str | None]]:
    """Per item (answer, value) of ``direct`` over two real servers pooled as ``openai/bench``."""
    from conclave.workflows.evaluation import EvalConfig, run_eval

    from conclave.settings import load_settings

    info = {"bench": {"function_calling": False, "json_output": True, "structured_output": True}}
    settings = load_settings(openai_base_urls=urls, openai_model_info=info, temperature=0.0, max_tokens=96, cache=False)
    config = EvalConfig(
        dataset=f"gsm8k:{common.GSM8K_DEV}",
        methods=["direct"],
        models=["openai/bench"],
        limit=limit,
        concurrency=2,
        cache=False,
        executor=executor,
    )
    result = await run_eval(config, settings)
    if all(not r.ok for r in result.records):
        raise SystemExit(f"every item failed ({executor}): {result.records[0].error}")
    return {r.item_id: (r.answer, r.value) for r in result.records}


def correctness(limit: int, folder: Any) -> dict[str, Any]:
    """Two llama_cpp.server processes with the bundled SmolLM2: the same items locally and through Ray."""
    from conclave.models.embedded import bundled_model_path

    common.require_llama_cpp_python("--servers (two llama_cpp.server processes)")
    servers, urls = [], []
    try:
        for n in range(2):
            port = common.free_port()
            cmd = [
                sys.executable, "-m", "llama_cpp.server", "--model", str(bundled_model_path()),
                "--model_alias", "bench", "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048",
                "--n_threads", "1", "--interrupt_requests", "False", "--verbose", "False",
            ]  # fmt: skip
            servers.append(common.Server(cmd, f"http://127.0.0.1:{port}/v1/models", folder / f"server{n}.log"))
            urls.append(f"http://127.0.0.1:{port}/v1")
        local = asyncio.run(server_answers("local", urls, limit))
        ray = asyncio.run(server_answers("ray", urls, limit))
    finally:
        for server in servers:
            server.stop()
    same = sum(local[k] == ray.get(k) for k in local)
    return {"items": len(local), "same_answers": same, "differ": sorted(k for k in local if local[k] != ray.get(k))}


def main() -> None:
    p = common.parser(__doc__ or "", repeats=1)
    p.add_argument("--delay", type=float, default=None, help="seconds per call at each stub (default 1; 0.2 quick)")
    p.add_argument("--executor", choices=["local", "ray"], default="local", help="where the units run (default local)")
    p.add_argument("--per-endpoint", type=int, default=8, help="items per endpoint in each run (default 8)")
    p.add_argument("--servers", action="store_true", help="add the two-llama_cpp.server correctness run")
    args = p.parse_args()
    delay = args.delay or (0.2 if args.quick else 1.0)
    counts = (1, 2) if args.quick else (1, 2, 4, 8)
    info = common.machine()
    rows, data = [], []
    ray = None
    if args.executor == "ray":
        from conclave.workflows.evaluation.distributed import import_ray, start_ray

        ray = import_ray()
        start_ray(ray, None)  # one local Ray for every run; each run starts (and stops) its own workers
    with common.temp_home("pool-warmup"):
        asyncio.run(one_run(1, 0.01, args.executor, 2))  # imports and first-client set-up, not measured
    for n in counts:
        with common.temp_home("pool", keep=args.keep_home):
            run = asyncio.run(one_run(n, delay, args.executor, args.per_endpoint))
        data.append(run)
        rows.append(
            [
                n,
                run["items"],
                f"{run['seconds']:.1f}",
                f"{run['items_per_min']:.1f}",
                f"{run['ideal_per_min']:.0f}",
                f"{100 * run['efficiency']:.0f}%",
                f"{100 * run['efficiency_working']:.0f}%",
                " ".join(map(str, run["served"])),
                " ".join(map(str, run["peak_in_flight"])),
                run["workers"],
            ]
        )
    checked = None
    if args.servers:
        with common.temp_home("pool-servers", keep=args.keep_home) as folder:
            checked = correctness(4 if args.quick else 8, folder)
    if ray is not None:
        ray.shutdown()
    table = common.md_table(
        [
            "endpoints",
            "items",
            "seconds",
            "items/min",
            "ideal items/min",
            "efficiency",
            "efficiency once started",
            "served per endpoint",
            "peak in flight per endpoint",
            "workers",
        ],
        rows,
        align="rrrrrrrlll",
    )
    common.emit(
        "pool_scaling",
        f"Harness over a pool of stub endpoints ({delay:g} s per call)",
        table,
        data={"delay": delay, "executor": args.executor, "runs": data, "servers": checked},
        info=info,
        quick=args.quick,
        notes=[
            f"`direct`, {args.per_endpoint} x N GSM8K dev items at harness concurrency N, executor "
            f"{args.executor}, response cache off; stub endpoints on loopback (tests/servers/openai_stub.py) "
            "pooled through openai_base_urls",
            "efficiency: measured items/min over N x 60 / delay, the whole run (worker start included); once "
            "started: from the moment every Ray worker is up (in-process: the whole run) to the last item",
            *(
                [
                    f"two llama_cpp.server (SmolLM2) pooled, local vs Ray, temperature 0: {checked['same_answers']} "
                    f"of {checked['items']} items gave the same answer"
                    + (f" (differ: {', '.join(checked['differ'])})" if checked["differ"] else "")
                ]
                if checked
                else []
            ),
        ],
        out=args.out,
    )


if __name__ == "__main__":
    main()
