"""``conclave tune``: LoRA fine-tuning of an embedded model on chat JSONL (the ``tune`` extra), and
``conclave tune list``. The work is in :mod:`conclave.tune`; heavy imports happen inside the command."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import typer
from conclave.cli import cli_settings
from rich.console import Console

from conclave.errors import ConfigError
from conclave.terminal import escape_markup as escape

__all__ = ["register"]

out = Console(highlight=False, soft_wrap=True, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)

FORMS = ("program", "json", "text", "cot")


def _home() -> Path:
    return Path(cli_settings().home)


def _list(as_json: bool) -> None:
    from rich.table import Table

    from conclave.models.tuned import list_tuned

    models = list_tuned(_home())
    if as_json:
        typer.echo(json.dumps(models))
        return
    if not models:
        out.print("no tuned models yet (`conclave tune BASE DATA.jsonl --name NAME` makes one)")
        return
    table = Table(title="Tuned models (use with --model embedded:NAME)", title_justify="left")
    for column in ("name", "base", "form", "steps", "final loss", "created"):
        table.add_column(column)
    for m in models:
        result = m.get("result") or {}
        table.add_row(
            escape(f"embedded:{m.get('name')}"),
            escape(str(m.get("base_spec"))),
            escape(str(m.get("form"))),
            str(result.get("steps", "")),
            str(result.get("final_loss", "")),
            escape(str(m.get("created", ""))),
        )
    out.print(table)


def tune(
    base: str | None = typer.Argument(
        None,
        metavar="BASE",
        help="Base model: embedded, embedded:smollm2, embedded:qwen, embedded:/path.gguf; or `list`.",
    ),
    data: list[Path] | None = typer.Argument(
        None, metavar="DATA.jsonl...", help="Chat JSONL (what `conclave eval export-traces` writes)."
    ),
    name: str | None = typer.Option(None, "--name", help="Register the result as --model embedded:NAME."),
    form: str = typer.Option("program", "--form", help="What the assistant turns hold: program, json, text or cot."),
    steps: int | None = typer.Option(None, "--steps", min=1, help="Optimizer steps (default: --epochs over the data)."),
    epochs: float = typer.Option(1.0, "--epochs", min=0.01, help="Passes over the data when --steps is not given."),
    lr: float = typer.Option(2e-4, "--lr", min=0.0, help="Peak learning rate (linear warm-up and decay)."),
    rank: int = typer.Option(16, "--rank", min=1, max=256, help="LoRA rank."),
    alpha: int = typer.Option(32, "--alpha", min=1, help="LoRA alpha (the update is scaled by alpha/rank)."),
    batch_size: int = typer.Option(4, "--batch-size", min=1, help="Conversations per step (length-bucketed)."),
    max_length: int = typer.Option(1024, "--max-length", min=16, help="Tokens per conversation (longer are cut)."),
    checkpoint_every: int = typer.Option(50, "--checkpoint-every", min=0, help="Save a checkpoint every N steps."),
    gradient_checkpointing: bool = typer.Option(
        False, "--gradient-checkpointing", help="Recompute activations in the backward pass (less memory, slower)."
    ),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when present), cpu or cuda."),
    threads: int | None = typer.Option(
        None, "--threads", min=1, help="CPU threads for torch (default: CONCLAVE_EMBEDDED_THREADS, else all CPUs)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the batch order, dropout and LoRA initialisation."),
    resume: str | None = typer.Option(
        None, "--resume", help="Continue the run with this id (or folder) from its checkpoint; its configuration wins."
    ),
    out_dir: Path | None = typer.Option(None, "--out", help="Run folder (default: CONCLAVE_HOME/tune-runs/ID)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result (or the list) as JSON."),
) -> None:
    """Fine-tune an embedded model with LoRA on chat JSONL (loss on the assistant turns); register its GGUF adapter.

    E.g. `conclave tune embedded:smollm2 chains.jsonl --name smol-coa --steps 200`, then `conclave ask -m
    embedded:smol-coa ...`. `conclave tune list` lists the tuned models. Needs the `tune` extra.
    """
    if base == "list" and not data:
        _list(as_json)
        return
    if form not in FORMS:
        raise ConfigError(f"unknown --form {form!r}", hint="use program, json, text or cot")
    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"unknown --device {device!r}", hint="use auto, cpu or cuda")
    if not resume and (not base or not data):
        raise ConfigError("give a base model and one or more chat JSONL files", hint="see `conclave tune --help`")
    missing = [m for m in ("torch", "transformers", "peft", "gguf") if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(f"tuning needs {', '.join(missing)}", hint="pip install 'conclave[tune]'")
    from conclave.tune.runs import tune as run_tune
    from conclave.tune.train import TuneConfig

    config = TuneConfig(
        base_spec=base or "",
        form=form,
        steps=steps,
        epochs=epochs,
        lr=lr,
        rank=rank,
        alpha=alpha,
        batch_size=batch_size,
        max_length=max_length,
        checkpoint_every=checkpoint_every,
        seed=seed,
        gradient_checkpointing=gradient_checkpointing,
        device=device,
        threads=threads,
    )
    settings = cli_settings()
    outcome = run_tune(
        Path(settings.home),
        base_spec=base,
        data=data or [],
        name=name,
        config=config,
        out=out_dir,
        resume=resume,
        console=err,
        threads_setting=settings.embedded_threads,
    )
    if as_json:
        typer.echo(json.dumps({"run": str(outcome.run_dir), **outcome.result, "commands": outcome.commands}))
        return
    r = outcome.result
    out.print(
        f"tuned [bold]embedded:{escape(outcome.name)}[/]: {r['steps']} steps, loss {r['first_loss']} -> "
        f"{r['final_loss']}, {r['tokens_per_s']} tokens/s on {r['device']} ({r['threads']} threads), "
        f"peak memory {r['peak_rss_mb']} MB"
    )
    out.print(f"run folder: {escape(outcome.run_dir)} (report.html: the loss curve)")
    out.print("evaluate it:")
    for command in outcome.commands:
        out.print(f"  {escape(command)}")


def register(app: typer.Typer) -> None:
    """Add ``tune`` to the ``conclave`` command."""
    app.command("tune")(tune)
