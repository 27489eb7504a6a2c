"""What ``conclave serve`` adds to an answer, and how many answers a minute it serves to 1, 2 and 4 clients.

Latency: the same questions answered in this process (``conclave.server.service.Team.run``, the pipeline ``ask``
runs) and through a real ``conclave serve`` on loopback with the official ``openai`` client, alternately, both warm
and with the response cache off; the difference of the medians is what the server adds (HTTP, JSON, the queue).
Throughput: C clients at once, each asking its share of the questions one after another; answers per minute of wall
time.

    python bench/serve_latency.py --model embedded:PATH.gguf [--method rag] [--n 4] [--clients 1 2 4] [--per-client 2]
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

QUESTIONS = [
    "What does the Adam optimiser combine?",
    "What do the weights and biases of a layer do?",
    "Why does weight initialisation matter?",
    "What does an activation function add to a network?",
    "What does a loss function measure?",
    "How does gradient descent update the weights?",
    "What does backpropagation compute?",
    "What is the difference between an epoch and a mini-batch?",
    "Why are learning rates scheduled?",
    "What do convolutional layers share?",
    "What problem do LSTMs address in recurrent networks?",
    "What does self-attention let a transformer do?",
    "What is an embedding?",
    "What does LoRA train instead of the whole model?",
    "What does retrieval-augmented generation add to a model?",
    "What is chain of abstraction?",
]
"""One per demo note: every request asks a question no earlier request asked (no prompt-cache hit beyond the
shared prefix)."""


async def in_process(team: Any, question: str, method: str) -> float:
    from conclave.server.service import Request

    started = time.perf_counter()
    async for event in team.run(Request(question=question, method=method)):
        if event.kind == "run_failed":
            raise SystemExit(f"in-process run failed: {event.error}")
    return time.perf_counter() - started


def served(base_url: str, question: str, method: str) -> tuple[float, float]:
    """(the client's wall time, the run's own time on the server)."""
    import openai

    client = openai.OpenAI(base_url=base_url, api_key="bench", max_retries=0, timeout=600)
    started = time.perf_counter()
    reply = client.chat.completions.create(model=f"conclave/{method}", messages=[{"role": "user", "content": question}])
    took = time.perf_counter() - started
    extension = (reply.model_extra or {}).get("conclave", {})
    if not extension.get("ok"):
        print(f"warning: no answer for {question!r}", file=sys.stderr)
    return took, float(extension.get("seconds") or 0.0)


def throughput(base_url: str, clients: int, per_client: int, method: str, offset: int) -> dict[str, Any]:
    latencies: list[float] = []
    errors: list[BaseException] = []

    def client(index: int) -> None:
        try:
            for j in range(per_client):
                question = QUESTIONS[(offset + index * per_client + j) % len(QUESTIONS)]
                latencies.append(served(base_url, question, method)[0])
        except BaseException as exc:  # reported below
            errors.append(exc)

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    if errors:
        raise SystemExit(f"{clients} clients: {errors[0]!r}")
    return {
        "clients": clients,
        "requests": len(latencies),
        "wall_s": wall,
        "per_minute": len(latencies) / wall * 60,
        "latency_median_s": statistics.median(latencies),
    }


def main() -> None:
    p = common.parser(__doc__ or "", repeats=1)
    p.add_argument("--model", required=True, help="the model spec (embedded:PATH for the assembled Qwen GGUF)")
    p.add_argument("--method", default="rag")
    p.add_argument("--n", type=int, default=4, help="questions per side for the latency comparison")
    p.add_argument("--clients", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--per-client", type=int, default=2)
    args = p.parse_args()
    if args.quick:
        args.n, args.clients, args.per_client = 1, [1, 2], 1
    info = common.machine()
    os.environ["CONCLAVE_CACHE"] = "false"  # every answer is generated, on both sides
    with common.temp_home("serve", keep=args.keep_home) as home:
        from conclave.server.service import Team

        from conclave.settings import load_settings

        team = Team(load_settings(), models=[args.model])
        loop = asyncio.new_event_loop()
        loop.run_until_complete(team.warm_up())  # loads the model, ingests the demo notes before the server starts
        loop.run_until_complete(in_process(team, QUESTIONS[-1], args.method))  # warm: the prompt cache's prefix
        port = common.free_port()
        cmd = [str(Path(sys.executable).with_name("conclave")), "serve", "--port", str(port), "--model", args.model]
        with common.Server(cmd, f"http://127.0.0.1:{port}/v1/models", home / "serve.log", timeout=600):
            base = f"http://127.0.0.1:{port}/v1"
            served(base, QUESTIONS[-1], args.method)  # warm (the last question is asked by no measured request)
            local, remote, overhead = [], [], []
            for i in range(args.n):
                question = QUESTIONS[i % len(QUESTIONS)]
                local.append(loop.run_until_complete(in_process(team, question, args.method)))
                wall, run = served(base, question, args.method)
                remote.append(wall)
                overhead.append(wall - run)
            rows_tp, offset = [], args.n
            for c in args.clients:
                rows_tp.append(throughput(base, c, args.per_client, args.method, offset))
                offset += c * args.per_client
        loop.close()
    local_med, remote_med = statistics.median(local), statistics.median(remote)
    added = remote_med - local_med
    table = common.md_table(
        ["measure", "value"],
        [
            [f"in-process answer, median of {len(local)} (s)", common.med_range(local, 2)],
            [f"through `conclave serve`, median of {len(remote)} (s)", common.med_range(remote, 2)],
            ["difference of the medians (s, % of in-process)", f"{added:+.2f} ({added / local_med * 100:+.1f}%)"],
            [
                "added by serve per request: client's wall time - the run's own (s, % of the answer)",
                f"{statistics.median(overhead):.3f} ({statistics.median(overhead) / remote_med * 100:.2f}%)",
            ],
            *[
                [
                    f"{r['clients']} client(s): answers per minute ({r['requests']} answers)",
                    f"{r['per_minute']:.1f} (median latency {r['latency_median_s']:.1f} s)",
                ]
                for r in rows_tp
            ],
        ],
    )
    common.emit(
        "serve_latency",
        f"conclave serve: added latency and throughput ({args.method}, {args.model})",
        table,
        notes=[
            "in-process: Team.run, the pipeline ask runs, in this process; served: the openai client against "
            "conclave serve on loopback; alternating, both warm, response cache off",
            f"throughput: each client asks {args.per_client} question(s) one after another",
        ],
        data={
            "in_process_s": local,
            "served_s": remote,
            "added_s": added,
            "overhead_s": overhead,
            "throughput": rows_tp,
        },
        info=info,
        quick=args.quick,
        out=args.out,
    )


if __name__ == "__main__":
    main()
