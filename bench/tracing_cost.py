"""The cost of OpenTelemetry tracing (issue 28): questions answered with tracing off and on, alternating, and the
time the trace's own work takes on the answer's path.

With tracing on, every question is exported over OTLP/HTTP to a receiver on loopback (a plain HTTP server that
reads each request and answers 200, as a collector would). Two parts:

1. scripted: the coa team with autogen-ext's replay client (no model time; what remains is orchestration, the
   worst case for a fixed cost), ``--repeats`` runs per mode;
2. real (``--model SPEC``): a few questions on a real model (default: the embedded model), each answered off and on
   in alternating order, no response cache.

For every traced question the script also sums the time spent in ``QuestionTrace.add`` and ``QuestionTrace.finish``
(the only tracing work on the answer's path; the export runs in the batch processor's thread).

    python bench/tracing_cost.py                         # scripted 50 x 2 + the real questions on `embedded`
    python bench/tracing_cost.py --model embedded:/path/qwen.gguf
    python bench/tracing_cost.py --quick
"""

from __future__ import annotations

import asyncio
import os
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import common
from orchestration import GOOD_CHAIN, JSON_INFO, PENS, PLAN

ACCEPT = '{"verdict": "accept", "reasons": ["the steps match the question"]}'
REAL_QUESTIONS = (
    PENS,
    "What does the Adam optimiser combine?",
)


class Receiver:
    """An OTLP/HTTP endpoint on loopback that accepts every export (counts requests and bytes)."""

    def __init__(self) -> None:
        self.requests = 0
        self.bytes = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.requests += 1
                receiver.bytes += len(body)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


class TraceClock:
    """Sums the time spent in the trace's own work on the answer's path (add per event, finish per question)."""

    def __init__(self) -> None:
        self.seconds = 0.0

    @contextmanager
    def installed(self) -> Iterator[None]:
        from conclave.tracing import QuestionTrace

        add, finish = QuestionTrace.add, QuestionTrace.finish

        def timed(method: Any) -> Any:
            def wrapper(*args: Any) -> Any:
                started = time.perf_counter()
                try:
                    return method(*args)
                finally:
                    self.seconds += time.perf_counter() - started

            return wrapper

        QuestionTrace.add, QuestionTrace.finish = timed(add), timed(finish)  # type: ignore[method-assign]
        try:
            yield
        finally:
            QuestionTrace.add, QuestionTrace.finish = add, finish  # type: ignore[method-assign]


@contextmanager
def tracing(on: bool, url: str) -> Iterator[None]:
    """Tracing on (OTLP to ``url``) or off for the questions inside. The exporter, made on the first traced question,
    stays for the process, as it does in ``conclave serve`` or an evaluation."""
    if on:
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = url
    try:
        yield
    finally:
        os.environ.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)


def first_traced_setup(url: str) -> float:
    """Seconds the first traced question of a process spends making the exporter (imports, provider, thread)."""
    from conclave import tracing as conclave_tracing
    from conclave.settings import load_settings

    with tracing(True, url):
        settings = load_settings()
        started = time.perf_counter()
        conclave_tracing.tracing_for(settings)
        return time.perf_counter() - started


async def one_question(question: str, settings: Any, clients: dict[str, Any] | None) -> tuple[float, int, bool]:
    """(wall s incl. build_context, events, ok)."""
    from conclave.workflows.runner import build_context, run_question

    started = time.perf_counter()
    if clients is None:
        ctx = await build_context(question, settings)
    else:
        ctx = await build_context(question, settings, clients=clients, knowledge=False)
    events = [e async for e in run_question(ctx)]
    return time.perf_counter() - started, len(events), bool(getattr(events[-1], "ok", False))


async def scripted(repeats: int, receiver: Receiver) -> dict[str, Any]:
    from autogen_ext.models.replay import ReplayChatCompletionClient

    from conclave.settings import load_settings

    settings = load_settings(coa={"plan": "always", "form": "auto", "use_critic": True})

    def clients() -> dict[str, Any]:
        client = ReplayChatCompletionClient([PLAN, GOOD_CHAIN, ACCEPT], model_info=JSON_INFO)  # type: ignore[arg-type]
        return {role: client for role in ("planner", "reasoner", "critic", "writer")}

    await one_question(PENS, settings, clients())  # untimed: imports, prompt files, schemas
    setup = first_traced_setup(receiver.url)
    with tracing(True, receiver.url):
        await one_question(PENS, settings, clients())  # untimed: the exporter's first connection
    walls: dict[str, list[float]] = {"off": [], "on": []}
    clock = TraceClock()
    for i in range(repeats):
        for mode in ("off", "on") if i % 2 == 0 else ("on", "off"):
            with tracing(mode == "on", receiver.url), clock.installed():
                wall, _, ok = await one_question(PENS, settings, clients())
            if not ok:
                raise SystemExit("the scripted question did not answer")
            walls[mode].append(wall)
    return {"walls": walls, "trace_seconds": clock.seconds, "traced": repeats, "setup_seconds": setup}


async def real(model: str, questions: list[str], repeats: int, receiver: Receiver) -> list[dict[str, Any]]:
    from conclave.settings import load_settings

    settings = load_settings(model=model, cache=False)
    for question in questions:  # untimed: loads the model, ingests the demo notes, each question's first prefill
        await one_question(question, settings, None)
    rows = []
    for q_index, question in enumerate(questions):
        walls: dict[str, list[float]] = {"off": [], "on": []}
        clock = TraceClock()
        events = 0
        for i in range(repeats):
            for mode in ("off", "on") if (i + q_index) % 2 == 0 else ("on", "off"):
                with tracing(mode == "on", receiver.url), clock.installed():
                    wall, events, _ = await one_question(question, settings, None)
                walls[mode].append(wall)
        rows.append({"question": question, "walls": walls, "trace_seconds": clock.seconds, "events": events})
    return rows


def main() -> None:
    p = common.parser(__doc__ or "", repeats=50)
    p.add_argument("--model", default="embedded", help="the real model's spec (default: embedded)")
    p.add_argument("--real-repeats", type=int, default=2, help="runs per mode and real question (default 2)")
    p.add_argument("--no-real", action="store_true", help="only the scripted part")
    args = p.parse_args()
    repeats = args.repeats or (5 if args.quick else 50)
    real_repeats = 1 if args.quick else args.real_repeats
    info = common.machine()
    receiver = Receiver()
    from conclave import tracing as conclave_tracing

    with common.temp_home("tracing", keep=args.keep_home):
        part1 = asyncio.run(scripted(repeats, receiver))
        part2 = [] if args.no_real else asyncio.run(real(args.model, list(REAL_QUESTIONS), real_repeats, receiver))
        conclave_tracing.shutdown(10)

    def row(label: str, walls: dict[str, list[float]], trace_s: float, traced: int) -> list[Any]:
        off, on = statistics.median(walls["off"]), statistics.median(walls["on"])
        per = trace_s / traced
        mean_on = statistics.fmean(walls["on"])
        return [
            label,
            f"{len(walls['off'])} + {len(walls['on'])}",
            f"{off * 1000:.1f}" if off < 1 else f"{off:.2f} s",
            f"{on * 1000:.1f}" if on < 1 else f"{on:.2f} s",
            f"{100 * (on - off) / off:+.1f}%",
            f"{per * 1000:.2f}",
            f"{100 * per / mean_on:.3f}%",
        ]

    rows = [row("scripted coa (no model time)", part1["walls"], part1["trace_seconds"], part1["traced"])]
    for r in part2:
        rows.append(row(f"{args.model}: {r['question'][:48]}", r["walls"], r["trace_seconds"], len(r["walls"]["on"])))
    table = common.md_table(
        [
            "question",
            "runs off + on",
            "median wall off (ms)",
            "median wall on (ms)",
            "wall on vs off",
            "trace work per question (ms)",
            "trace work / wall",
        ],
        rows,
        "lrrrrrr",
    )
    notes = [
        f"tracing on: OTLP/HTTP to a receiver on loopback ({receiver.requests} export requests, "
        f"{receiver.bytes / 1024:.0f} KiB in all)",
        "trace work = time in QuestionTrace.add (per event) and QuestionTrace.finish (spans built and queued) on the "
        "answer's path; the export itself runs in the batch processor's thread",
        f"once per process, the first traced question also makes the exporter: {part1['setup_seconds'] * 1000:.0f} ms "
        "(imports, provider, batch thread)",
    ]
    common.emit(
        "tracing_cost",
        "Tracing cost (OpenTelemetry, issue 28)",
        table,
        notes=notes,
        data={"scripted": part1, "real": part2, "export_requests": receiver.requests, "export_bytes": receiver.bytes},
        info=info,
        quick=args.quick,
        out=args.out,
    )


if __name__ == "__main__":
    main()
