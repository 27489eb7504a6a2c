"""Memory: peak resident set size of ``conclave ask`` with the embedded model, and of ingesting 10k chunks.

Each measurement is a fresh ``conclave`` process (the console script next to this Python) in a temporary
CONCLAVE_HOME; its peak RSS is the ``ru_maxrss`` that ``os.wait4`` reports for it (what ``/usr/bin/time -v`` prints as
"Maximum resident set size"). Rows:

- ``ask``, first in a fresh home: the README's question with the default demo collection, which this first ask
  ingests (the embedding model, Chroma and llama.cpp all in one process);
- ``ask`` again in the same home (the demo collection exists);
- ``ingest`` of N chunks (default 10,000): SQuAD dev paragraphs written as N text files (cycled, each prefixed with
  its copy number so every text differs), chunk_size 4000 so each file is one chunk.

    python bench/memory.py                 # 3 repeats, 10k chunks
    python bench/memory.py --quick         # 1 repeat, 300 chunks
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common

QUESTION = "What does the Adam optimiser combine?"


def run_measured(cmd: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run ``cmd``; its wall seconds, peak RSS (MiB), exit status and output tail."""
    with tempfile.TemporaryFile() as out:
        started = time.perf_counter()
        proc = subprocess.Popen(
            cmd, cwd=common.REPO, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - started
        out.seek(0)
        tail = out.read().decode(errors="replace")[-1500:]
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return {
        "seconds": seconds,
        "peak_rss_mib": usage.ru_maxrss * scale / 2**20,
        "exit": proc.returncode,
        "user_s": usage.ru_utime,
        "sys_s": usage.ru_stime,
        "tail": tail,
    }


def write_corpus(folder: Path, n: int) -> Path:
    data = json.loads(common.require(common.SQUAD_DEV, "SQuAD dev").read_text(encoding="utf-8"))
    paragraphs = [p["context"] for a in data["data"] for p in a["paragraphs"]]
    root = folder / "corpus"
    for i in range(n):
        sub = root / f"d{i // 1000:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"c{i:05d}.txt").write_text(
            f"Copy {i // len(paragraphs)}. {paragraphs[i % len(paragraphs)]}", encoding="utf-8"
        )
    return root


def main() -> None:
    p = common.parser(__doc__.split("\n\n")[0], repeats=3)
    p.add_argument("--model", default="embedded", help="model spec for ask (default: embedded)")
    p.add_argument("--chunks", type=int, help="chunks to ingest (default 10000; 300 with --quick)")
    p.add_argument(
        "--conclave",
        default=None,
        help="command that runs the conclave CLI (default: the console script next to this Python)",
    )
    p.add_argument("--max-tokens", type=int, help="CONCLAVE_MAX_TOKENS for the ask runs (default: the settings')")
    p.add_argument("--skip-ask", action="store_true")
    p.add_argument("--skip-ingest", action="store_true")
    args = p.parse_args()
    repeats = args.repeats or (1 if args.quick else 3)
    chunks = args.chunks or (300 if args.quick else 10000)
    exe = shlex.split(args.conclave) if args.conclave else [str(Path(sys.executable).with_name("conclave"))]
    info = common.machine()
    results: dict[str, list[dict[str, Any]]] = {"ask_first": [], "ask_again": [], "ingest": []}

    def env_for(home: Path, **extra: str) -> dict[str, str]:
        env = dict(os.environ, CONCLAVE_HOME=str(home), **extra)
        if args.max_tokens:
            env["CONCLAVE_MAX_TOKENS"] = str(args.max_tokens)
        return env

    def check(name: str, res: dict[str, Any]) -> None:
        if res["exit"] != 0:
            raise SystemExit(f"{name} failed (exit {res['exit']}):\n{res['tail']}")
        print(f"  {name}: peak RSS {res['peak_rss_mib']:.0f} MiB, {res['seconds']:.1f} s", flush=True)

    for r in range(repeats):
        if not args.skip_ask:
            with common.temp_home("memory-ask", keep=args.keep_home) as home:
                cmd = [*exe, "ask", "--model", args.model, "--json", QUESTION]
                first = run_measured(cmd, env_for(home))
                check(f"ask (first, ingests the demo) {r + 1}", first)
                again = run_measured(cmd, env_for(home))
                check(f"ask (again) {r + 1}", again)
                results["ask_first"].append(first)
                results["ask_again"].append(again)
        if not args.skip_ingest:
            with common.temp_home("memory-ingest", keep=args.keep_home) as home:
                root = write_corpus(home, chunks)
                res = run_measured(
                    [*exe, "ingest", str(root), "--collection", "bench", "--json"],
                    env_for(home, CONCLAVE_CHUNK_SIZE="4000"),
                )
                check(f"ingest {chunks} chunks {r + 1}", res)
                try:
                    report = json.loads(res["tail"].strip().splitlines()[-1])
                    res["chunks_total"] = report.get("chunks_total")
                except (ValueError, IndexError):
                    res["chunks_total"] = None
                if res["chunks_total"] != chunks:
                    raise SystemExit(f"ingest made {res['chunks_total']} chunks, expected {chunks}:\n{res['tail']}")
                results["ingest"].append(res)

    labels = {
        "ask_first": f"`conclave ask --model {args.model}`, first run (ingests the demo collection)",
        "ask_again": f"`conclave ask --model {args.model}`, again (demo collection exists)",
        "ingest": f"`conclave ingest` of {chunks:,} chunks",
    }
    rows = []
    for key, runs in results.items():
        if runs:
            rows.append(
                [
                    labels[key],
                    common.med_range([x["peak_rss_mib"] for x in runs], 0),
                    common.med_range([x["seconds"] for x in runs], 1),
                    common.med_range([x["user_s"] + x["sys_s"] for x in runs], 1),
                ]
            )
    table = common.md_table(["process", "peak RSS MiB", "wall s", "CPU s"], rows)
    notes = [
        f"Each row: a fresh `conclave` process in a temporary CONCLAVE_HOME; peak RSS = ru_maxrss from os.wait4; "
        f"median (min–max) over {repeats} run(s).",
        f'ask: "{QUESTION}" (default method coa, default collection `demo`, embedder `local`)'
        + (f", CONCLAVE_MAX_TOKENS={args.max_tokens}" if args.max_tokens else "")
        + ".",
        f"ingest: {chunks:,} SQuAD dev paragraphs as text files (cycled over the 1,023 paragraphs, each prefixed with "
        "its copy number), CONCLAVE_CHUNK_SIZE=4000 so one chunk per file, embedder `local`, persistent store.",
    ]
    for runs in results.values():
        for x in runs:
            x.pop("tail", None)
    data = {"repeats": repeats, "chunks": chunks, "model": args.model, "command": exe, **results}
    common.emit("memory", "Memory", table, notes=notes, data=data, info=info, quick=args.quick, out=args.out)


if __name__ == "__main__":
    main()
