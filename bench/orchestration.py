"""Orchestration overhead: the CoA team with a scripted model (no model time at all), and the share of a real run's
wall time spent outside model calls and tools.

Part 1 runs the real team (``workflows.runner.build_context`` + ``run_question``, the registry's real tools, the
real AutoGen GraphFlow) with autogen-ext's ``ReplayChatCompletionClient`` answering every model call instantly from a
script, so every millisecond measured is Conclave's and AutoGen's. Part 2 (``--profile``, on by default) attributes
that time to packages with cProfile. Part 3 (``--real MODEL``) answers a few GSM8K dev questions with a real model and
splits each run's wall time (RunFinished.seconds) into model calls (the Usage events' seconds), tool calls (the union
of the StepFinished intervals) and the rest.

    python bench/orchestration.py                                   # 50 scripted runs per variant + profile
    python bench/orchestration.py --real embedded --questions 5     # plus the split of 5 real runs
    python bench/orchestration.py --quick
"""

from __future__ import annotations

import asyncio
import cProfile
import json
import pstats
import time
from collections import defaultdict
from typing import Any

import common

# The scripted question, plan, chain and verdict of the team's own tests (tests/unit/test_team.py), not copies.
from tests.unit.test_team import ACCEPT, GOOD_CHAIN, JSON_INFO, PENS, PLAN, chain  # noqa: E402

WRONG_CHAIN = chain(
    ("pens", "y1", "calculator", {"expression": "3 + 12"}),
    ("change", "y2", "calculator", {"expression": "50 - y1"}),
    answer="y2",
)
REVISE = json.dumps({"verdict": "revise", "reasons": ["step y1 adds the price and the count; multiply them"]})

# name -> (method, coa settings, script, what it exercises)
VARIANTS: dict[str, tuple[str, dict[str, Any], list[str], str]] = {
    "coa, plan=always": (
        "coa",
        {"plan": "always"},
        [PLAN, GOOD_CHAIN, ACCEPT],
        "planner, retriever (no collection), reasoner, reifier (2 calculator calls), critic, writer",
    ),
    "coa, default (plan=auto)": (
        "coa",
        {},
        [GOOD_CHAIN, ACCEPT],
        "as above without the planner's model call (no collection: GSM8K-style)",
    ),
    "coa, one revision round": (
        "coa",
        {"plan": "always", "use_critic": True},  # critic auto accepts a chain that reified cleanly without a call
        [PLAN, WRONG_CHAIN, REVISE, GOOD_CHAIN, ACCEPT],
        "critic sends the chain back once: reasoner, reifier, critic run twice",
    ),
    "direct (reference)": (
        "direct",
        {},
        ["Tom pays 36 dollars, so he gets 14 back.\nAnswer: 14"],
        "one streamed call through the runner, no team",
    ),
}


async def scripted_run(settings: Any, method: str, script: list[str]) -> tuple[float, float, int, int]:
    """One question with a scripted model: (wall s incl. build_context, RunFinished.seconds, events, model calls)."""
    from autogen_ext.models.replay import ReplayChatCompletionClient
    from conclave.workflows.runner import build_context, run_question

    client = ReplayChatCompletionClient(list(script), model_info=JSON_INFO)  # type: ignore[arg-type]
    started = time.perf_counter()
    ctx = await build_context(
        PENS,
        settings,
        method=method,
        clients={role: client for role in ("planner", "retriever", "reasoner", "critic")},
        knowledge=False,
    )  # no knowledge store: nothing but orchestration and the calculator
    events = [e async for e in run_question(ctx)]
    wall = time.perf_counter() - started
    finished = events[-1]
    answer = next((e for e in events if e.kind == "answer"), None)
    if not getattr(finished, "ok", False) or answer is None or "14" not in (answer.value or answer.text):
        failure = next((e for e in events if e.kind == "run_failed"), None)
        raise SystemExit(f"scripted {method} run did not answer 14: {failure or answer}")
    calls = sum(e.calls for e in events if e.kind == "usage")
    return wall, finished.seconds, len(events), calls


def settings_for(coa: dict[str, Any]) -> Any:
    from conclave.settings import load_settings

    return load_settings(coa=coa) if coa else load_settings()


async def scripted(repeats: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    cold = None
    for name, (method, coa, script, _) in VARIANTS.items():
        settings = settings_for(coa)
        first = await scripted_run(settings, method, script)  # untimed: lazy imports, prompt files, schemas
        if cold is None:
            cold = first[0]
        walls, inner = [], []
        events = calls = 0
        for _ in range(repeats):
            wall, seconds, events, calls = await scripted_run(settings, method, script)
            walls.append(wall)
            inner.append(seconds)
        out[name] = {"wall": walls, "run_seconds": inner, "events": events, "model_calls": calls}
    out["_cold_first_run_s"] = cold
    return out


def _bucket(filename: str) -> str:
    path = filename.replace("\\", "/")
    for pkg in ("conclave", "agents", "workflows", "tools", "tui", "cli"):
        if path.startswith(f"{common.REPO.as_posix()}/{pkg}/"):
            return "Conclave (conclave/, agents/, workflows/, tools/)"
    if "/autogen_agentchat/" in path or "/autogen_core/" in path or "/autogen_ext/" in path:
        return "AutoGen (autogen_agentchat, autogen_core, autogen_ext)"
    if "/opentelemetry/" in path:
        return "OpenTelemetry (AutoGen's tracing hooks)"
    if "/langchain" in path:
        return "LangChain (tool schemas, tool calls)"
    if "/pydantic" in path:
        return "pydantic (schemas, validation, serialisation)"
    if "site-packages" in path:
        return "other libraries"
    return "Python standard library (asyncio, contextlib, json, ...)"


IDLE = "event loop idle (waiting for worker threads: chain kit, sync tools)"


async def profiled(repeats: int) -> tuple[dict[str, float], list[tuple[str, float]]]:
    """Self time per package over ``repeats`` scripted runs; a builtin's time goes to the package that called it."""
    method, coa, script, _ = VARIANTS["coa, plan=always"]
    settings = settings_for(coa)
    await scripted_run(settings, method, script)
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(repeats):
        await scripted_run(settings, method, script)
    prof.disable()
    stats = pstats.Stats(prof)
    shares: dict[str, float] = defaultdict(float)
    hot: list[tuple[str, float]] = []
    root = common.REPO.as_posix() + "/"
    entries = stats.stats.items()  # type: ignore[attr-defined]
    for (filename, line, func), (_cc, _nc, tottime, cumtime, callers) in entries:
        if filename.startswith(root) and not any(x in filename for x in ("/bench/", "/.venv/", "site-packages")):
            hot.append((f"{filename[len(root) :]}:{line} {func}", cumtime))
        if filename != "~":
            shares[_bucket(filename)] += tottime
        elif "poll" in func and ("epoll" in func or "select" in func):
            shares[IDLE] += tottime
        elif callers:
            for caller, (_c, _n, tt, _ct2) in callers.items():
                shares[_bucket(caller[0])] += tt
        else:
            shares["Python standard library (asyncio, contextlib, json, ...)"] += tottime
    # Conclave's functions by cumulative time (what they and everything they call cost), top-level entry points aside.
    skip = ("run_question", "run_coa", "drive", "guarded", "on_messages", "act", "scripted_run", "_run", "events")
    hot = sorted(((name, t) for name, t in hot if name.rsplit(" ", 1)[-1] not in skip), key=lambda x: -x[1])[:6]
    return dict(shares), hot


async def real_runs(spec: str, questions: int, overrides: dict[str, Any]) -> list[dict[str, Any]]:
    """Answer GSM8K dev questions with ``spec`` (no response cache) and split each run's wall time."""
    from conclave.workflows.runner import build_context, run_question

    from conclave.settings import load_settings

    settings = load_settings(model=spec, **overrides)
    warm = await common.warm_up(spec, settings)
    print(f"(warm-up: model ready in {warm:.1f} s)", flush=True)
    items = common.load_jsonl(common.require(common.GSM8K_DEV, "GSM8K dev"), questions)
    rows = []
    for item in items:
        ctx = await build_context(item["question"], settings, method="coa", knowledge=False)
        events = [e async for e in run_question(ctx)]
        finished = events[-1]
        model = sum(e.seconds for e in events if e.kind == "usage")
        intervals = sorted((e.started, e.ended) for e in events if e.kind == "step_finished" and e.status != "skipped")
        tools = 0.0
        cur_start = cur_end = None
        for start, end in intervals:  # union: concurrent calls count once
            if cur_end is None or start > cur_end:
                if cur_end is not None:
                    tools += cur_end - cur_start
                cur_start, cur_end = start, end
            else:
                cur_end = max(cur_end, end)
        if cur_end is not None:
            tools += cur_end - cur_start
        total = finished.seconds
        rows.append(
            {
                "id": item["id"],
                "total": total,
                "model": model,
                "tools": tools,
                "outside": total - model - tools,
                "calls": sum(e.calls for e in events if e.kind == "usage"),
                "ok": finished.ok,
            }
        )
        print(f"  {item['id']}: {total:.1f} s total, {model:.1f} s model, {tools * 1000:.1f} ms tools", flush=True)
    return rows


def main() -> None:
    p = common.parser(__doc__.split("\n\n")[0], repeats=50)
    p.add_argument("--no-profile", action="store_true", help="skip the cProfile attribution")
    p.add_argument("--real", metavar="MODEL", help="also split real runs with this model spec (e.g. embedded)")
    p.add_argument("--questions", type=int, default=3, help="GSM8K dev questions for --real (default 3)")
    p.add_argument("--base-url", help="OPENAI_BASE_URL for an openai/NAME model")
    p.add_argument("--model-info", help="JSON ModelInfo for an openai/NAME model the client does not know")
    p.add_argument("--max-tokens", type=int, help="override settings.max_tokens for --real (default 768)")
    args = p.parse_args()
    repeats = args.repeats or (5 if args.quick else 50)
    info = common.machine()
    notes: list[str] = []
    data: dict[str, Any] = {"repeats": repeats}
    with common.temp_home("orchestration", keep=args.keep_home):
        results = asyncio.run(scripted(repeats))
        cold = results.pop("_cold_first_run_s")
        rows = []
        for name, r in results.items():
            rows.append(
                [
                    name,
                    r["model_calls"],
                    r["events"],
                    common.med_range(r["wall"], 2, 1000),
                    common.med_range(r["run_seconds"], 2, 1000),
                    VARIANTS[name][3],
                ]
            )
        table = common.md_table(
            [
                "scripted run",
                "model calls",
                "events",
                "ms per question (wall)",
                "ms (RunFinished.seconds)",
                "what runs",
            ],
            rows,
            align="lrrrrl",
        )
        data["scripted"] = results
        data["cold_first_run_s"] = cold
        notes += [
            f"Median (min–max) over {repeats} runs per row after one untimed run; the model is autogen-ext's "
            "ReplayChatCompletionClient (instant, streams the scripted text word by word), so this is Conclave + "
            "AutoGen + LangChain tools only. Wall includes `build_context`; RunFinished.seconds is the runner's own "
            "timer (from RunStarted to the answer).",
            f"The very first run in the process took {cold * 1000:.0f} ms (lazy imports, prompt files, schemas).",
        ]
        if not args.no_profile:
            prof_runs = max(3, repeats // 2)
            shares, hot = asyncio.run(profiled(prof_runs))
            total = sum(shares.values()) or 1.0
            prof_rows = [
                [k, f"{v / prof_runs * 1000:.1f}", f"{v / total:.0%}"]
                for k, v in sorted(shares.items(), key=lambda kv: -kv[1])
            ]
            table += (
                "\n\nWhere the scripted `coa, plan=always` run spends its time (cProfile self time, "
                f"{prof_runs} runs; profiling inflates absolute times):\n\n"
            )
            table += common.md_table(["code", "ms per question (profiled)", "share"], prof_rows)
            data["profile_self_seconds"] = shares
            data["profile_runs"] = prof_runs
            data["profile_hot_conclave_cumulative_seconds"] = hot
            notes.append(
                "Conclave functions with the most cumulative time per question (profiled): "
                + "; ".join(f"`{name}` {t / prof_runs * 1000:.1f} ms" for name, t in hot)
                + "."
            )
        if args.real:
            overrides = common.openai_settings_overrides(args.real, args.base_url, args.model_info)
            if args.max_tokens:
                overrides["max_tokens"] = args.max_tokens
            questions = 1 if args.quick and args.questions == 3 else args.questions
            real = asyncio.run(real_runs(args.real, questions, overrides))
            data["real"] = {"model": args.real, "runs": real}
            share = [r["outside"] / r["total"] for r in real if r["total"] > 0]
            real_rows = [
                [
                    r["id"],
                    f"{r['total']:.2f}",
                    f"{r['model']:.2f}",
                    f"{r['tools'] * 1000:.1f}",
                    f"{r['outside'] * 1000:.0f}",
                    f"{r['outside'] / r['total']:.1%}",
                    r["calls"],
                ]
                for r in real
            ]
            real_rows.append(
                [
                    "median",
                    common.med_range([r["total"] for r in real], 2),
                    common.med_range([r["model"] for r in real], 2),
                    common.med_range([r["tools"] for r in real], 1, 1000),
                    common.med_range([r["outside"] for r in real], 0, 1000),
                    common.med_range(share, 1, 100) + "%",
                    "",
                ]
            )
            table += (
                f"\n\nA real run: coa with `{args.real}` on the first {len(real)} GSM8K dev questions "
                "(no response cache):\n\n"
            )
            table += common.md_table(
                ["question", "wall s", "model s", "tools ms", "outside ms", "outside share", "model calls"], real_rows
            )
            notes.append(
                "Real run: model s = sum of the Usage events' seconds (each call timed around the client "
                "call, so it includes waiting for the model and streaming); tools ms = union of the "
                "StepFinished intervals; outside = RunFinished.seconds − model − tools (orchestration, "
                "parsing, validation, events)."
            )
    common.emit(
        "orchestration",
        "Orchestration overhead",
        table,
        notes=notes,
        data=data,
        info=info,
        quick=args.quick,
        out=args.out,
    )


if __name__ == "__main__":
    main()
