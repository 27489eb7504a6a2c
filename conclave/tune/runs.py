"""One tuning run, end to end: check the inputs, prepare the data, train, write the adapter, register the model.

The run folder ``CONCLAVE_HOME/tune-runs/ID`` (or ``--out``) holds ``config.json`` (what was asked, the base model's
identity, the data files), ``data.json`` (file hashes and counts), ``loss.jsonl`` (one line per step),
``checkpoint.pt``, ``adapter.gguf``, ``result.json``, ``report.html`` (the loss curve) and ``commands.txt`` (how to
evaluate the tuned model).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from conclave import fileio
from conclave.errors import ConfigError
from conclave.models import tuned
from conclave.tune.train import TuneConfig

RUNS_DIR = "tune-runs"
GSM8K_DEV = "gsm8k:../shared/data/gsm8k/dev.jsonl"
FORM_METHOD = {"program": "coa", "json": "coa", "text": "coa", "cot": "cot"}
"""The evaluation method whose prompts the tuned model's training form matches."""


@dataclass
class TuneOutcome:
    run_dir: Path
    name: str
    result: dict[str, Any]
    commands: list[str]


def runs_root(home: Path) -> Path:
    return home / RUNS_DIR


def find_run(home: Path, run: str) -> Path:
    """A run folder by id (under ``tune-runs``) or by path."""
    for candidate in (runs_root(home) / run, Path(run).expanduser()):
        if (candidate / "config.json").is_file():
            return candidate
    raise ConfigError(f"no tuning run {run!r} to resume", hint=f"see the folders in {runs_root(home)}")


def _problem(stored: Any) -> str | None:
    """What is wrong with a resumed run's ``config.json`` (None: nothing), field by field."""
    if not isinstance(stored, dict):
        return "not a JSON object"
    texts = ("name", "base_spec", "base_path")
    for key in texts:
        value = stored.get(key)
        if not isinstance(value, str) or not value or any(ord(c) < 32 or ord(c) == 127 for c in value):
            return f"{key} is not a one-line string"
    if not Path(stored["base_path"]).is_absolute():
        return "base_path is not an absolute path"
    if not isinstance(stored.get("base_size"), int):
        return "base_size is not a number"
    data = stored.get("data")
    if not isinstance(data, list) or not data or not all(isinstance(p, str) and Path(p).is_absolute() for p in data):
        return "data is not a list of absolute paths"
    hashes = stored.get("data_sha256")
    if not isinstance(hashes, dict) or not all(isinstance(v, str) for v in hashes.values()):
        return "data_sha256 is not a table of hashes"
    if not isinstance(stored.get("config"), dict):
        return "config is not a JSON object"
    return None


def read_stored_run(run_dir: Path) -> dict[str, Any]:
    """A run's ``config.json``, every value checked: the run folder may come from anyone, and its name and base
    spec end up in file names, the store of tuned models and the shell lines of ``commands.txt``."""
    path = run_dir / "config.json"
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}", hint="the run folder is damaged; start a new run") from exc
    problem = _problem(stored)
    if problem is None:
        try:
            tuned.check_name(stored["name"])
            cfg = TuneConfig.from_dict(stored["config"])
        except (ConfigError, TypeError, ValueError) as exc:
            problem = exc.message if isinstance(exc, ConfigError) else f"config: {exc}"
        else:
            if cfg.form not in FORM_METHOD:
                problem = f"config.form {cfg.form!r} is not one of {', '.join(FORM_METHOD)}"
    if problem is not None:
        raise ConfigError(f"{path} is not a tuning run's configuration: {problem}", hint="start a new run")
    return dict(stored)


def eval_commands(name: str, form: str, base_spec: str, dataset: str = GSM8K_DEV) -> list[str]:
    """How to evaluate the tuned model against its base (GSM8K dev 1-100, paired)."""
    method = FORM_METHOD.get(form, "coa")
    base_spec, dataset = shlex.quote(base_spec), shlex.quote(dataset)  # shell lines: one argument each
    return [
        "# GSM8K dev items 1-100, base vs tuned, from the repository root (another copy of GSM8K: change the path)",
        f"conclave eval -d {dataset} -n 100 --concurrency 1 --method {method} -m {base_spec}   # the base (RUN_A)",
        f"conclave eval -d {dataset} -n 100 --concurrency 1 --method {method} -m embedded:{name}   # tuned (RUN_B)",
        "conclave eval compare RUN_A RUN_B   # paired test of the two",
    ]


def _base_gguf(base_spec: str, home: Path) -> tuple[str, Path]:
    from conclave.models.backends import parse_spec
    from conclave.models.catalog import gguf_for
    from conclave.models.embedded import check_gguf

    spec = parse_spec(base_spec)
    if spec.provider != "embedded":
        raise ConfigError(
            f"cannot tune {base_spec}: only embedded (GGUF) models are tuned here",
            hint="use embedded, embedded:smollm2, embedded:qwen or embedded:/path/to/model.gguf",
        )
    if spec.tuned:
        raise ConfigError(
            f"{base_spec} names a tuned model (or no model at all); tune a base GGUF",
            hint="use embedded:smollm2, embedded:qwen or embedded:/path/to/model.gguf (a file here: embedded:./NAME)",
        )
    from conclave.models.catalog import builtin_of

    builtin = builtin_of(spec)
    if builtin:  # plain `embedded` is whichever built-in model is installed now: record which one it was
        spec = parse_spec(f"embedded:{builtin}")
    return str(spec), check_gguf(gguf_for(spec, home))


def tune(
    home: Path,
    *,
    base_spec: str | None,
    data: Sequence[Path],
    name: str | None,
    config: TuneConfig | None,
    out: Path | None = None,
    resume: str | None = None,
    model: Any = None,
    on_step: Callable[[int, float], None] | None = None,
    console: Any = None,
    progress: bool = True,
    threads_setting: int | None = None,
) -> TuneOutcome:
    """Run (or resume) a tuning run and register its adapter as ``embedded:NAME``."""
    from conclave.models.weights import sha256_file
    from conclave.tune.data import ChatEncoder, DataReport, encode_all, read_conversations
    from conclave.tune.load import read_info
    from conclave.tune.report import write_report
    from conclave.tune.train import train

    checkpoint: dict[str, Any] | None = None
    if resume:
        run_dir = find_run(home, resume)
        stored = read_stored_run(run_dir)  # every value checked before anything is written
        name = stored["name"]
        cfg = TuneConfig.from_dict(stored["config"])
        if config is not None and config.threads:
            cfg.threads = config.threads  # how many CPUs to use may change between sessions; nothing else does
        data_paths = [Path(p) for p in stored["data"]]
        for path in data_paths:
            old = stored["data_sha256"].get(str(path))
            if not path.is_file() or sha256_file(path) != old:
                raise ConfigError(
                    f"training data {path} changed (or went) since run {run_dir.name} started",
                    hint="restore it, or start a new run without --resume",
                )
        base_path = Path(stored["base_path"])
        if not base_path.is_file() or base_path.stat().st_size != stored.get("base_size"):
            raise ConfigError(f"the base model {base_path} changed since run {run_dir.name} started")
        base_spec = stored["base_spec"]
        from conclave.tune.train import CHECKPOINT, read_checkpoint

        checkpoint = read_checkpoint(run_dir / CHECKPOINT)  # a bad one is refused before any write
    else:
        if not name:
            raise ConfigError("the tuned model needs a name", hint="add --name NAME (then use --model embedded:NAME)")
        tuned.check_name(name)
        if not base_spec:
            raise ConfigError("no base model given", hint="e.g. conclave tune embedded:smollm2 chains.jsonl --name X")
        base_spec, base_path = _base_gguf(base_spec, home)
        cfg = config or TuneConfig(base_spec=base_spec)
        cfg.base_spec = base_spec
        data_paths = [Path(p).expanduser().resolve() for p in data]
        run_dir = out or runs_root(home) / f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{name}"
        stored = {}
    info = read_info(base_path)  # refuses architectures it cannot tune, before anything is read or written
    report = DataReport()
    conversations = read_conversations(data_paths, report)
    encoder = ChatEncoder.from_gguf(base_path)
    examples = encode_all(conversations, encoder, cfg.max_length, report)

    if not resume:
        try:
            run_dir.mkdir(parents=True, exist_ok=False)
        except FileExistsError as exc:
            raise ConfigError(
                f"run folder {run_dir} already exists", hint="choose another --out, or --resume it"
            ) from exc
        except OSError as exc:
            raise ConfigError(f"cannot create {run_dir}: {exc.strerror}", hint="choose another --out") from exc
        stored = {
            "name": name,
            "base_spec": base_spec,
            "base_path": str(base_path),
            "base_size": base_path.stat().st_size,
            "base_sha256": sha256_file(base_path),
            "base_arch": info.arch,
            "data": [str(p) for p in data_paths],
            "data_sha256": dict(report.files),
            "config": asdict(cfg),
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        fileio.write_json(run_dir / "config.json", stored, within=run_dir)
    data_summary = {
        "files": report.files,
        "conversations": report.conversations,
        "examples": len(examples),
        "without_assistant": report.without_assistant,
        "truncated": report.truncated,
        "dropped_too_long": report.dropped_too_long,
        "tokens": sum(len(e) for e in examples),
        "assistant_tokens": sum(e.learnt for e in examples),
    }
    fileio.write_json(run_dir / "data.json", data_summary, within=run_dir)
    commands = eval_commands(str(name), cfg.form, str(base_spec))
    fileio.write_text(run_dir / "commands.txt", "\n".join(commands) + "\n", within=run_dir)

    result = train(
        run_dir,
        cfg,
        examples,
        info,
        pad_id=encoder.pad_id,
        resume=bool(resume),
        checkpoint=checkpoint,
        resume_hint=f"continue with: conclave tune --resume {run_dir if out is not None else run_dir.name}",
        model=model,
        on_step=on_step,
        console=console,
        progress=progress,
        threads_setting=threads_setting,
    )
    summary = {
        "name": name,
        "model": f"embedded:{name}",
        "base": base_spec,
        "steps": result.steps,
        "examples": len(examples),
        "final_loss": result.final_loss,
        "first_loss": result.losses[0]["loss"] if result.losses else None,
        "tokens": result.tokens,
        "tokens_per_s": round(result.tokens_per_s, 1),
        "train_seconds": round(result.seconds, 1),
        "peak_rss_mb": round(result.peak_rss_mb),
        "device": result.device,
        "threads": result.threads,
        "adapter": str(result.adapter),
    }
    fileio.write_json(run_dir / "result.json", summary, within=run_dir)
    write_report(
        run_dir,
        run_id=run_dir.name,
        config=stored["config"],
        data=data_summary,
        losses=result.losses,
        result=summary,
        commands=commands,
    )
    manifest = {
        "base_spec": base_spec,
        "base_path": str(base_path),
        "base_size": stored["base_size"],
        "base_sha256": stored["base_sha256"],
        "base_arch": info.arch,
        "form": cfg.form,
        "data_sha256": stored["data_sha256"],
        "config": stored["config"],
        "run": str(run_dir),
        "loss": [[e["step"], e["loss"]] for e in result.losses],
        "result": summary,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    tuned.register(home, str(name), result.adapter, manifest)
    return TuneOutcome(run_dir, str(name), summary, commands)
