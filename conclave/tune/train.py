"""LoRA supervised fine-tuning (peft) of a GGUF base model, with checkpoints that survive Ctrl-C.

A plain loop rather than a trainer framework: each step is one length-bucketed batch (:func:`data.batches_from`),
the loss on the assistant tokens only, AdamW with a linear warm-up and decay, gradients clipped at 1. Every
``checkpoint_every`` steps, and when stopped, ``checkpoint.pt`` (LoRA weights, optimizer, scheduler, RNG, step) is
written to a temporary file and renamed into place, after checking there is room for it: a checkpoint is either the
previous one or the new one, never half of one. ``--resume`` loads it and continues at the next step with the same
batch order. The first Ctrl-C finishes the current step, saves and stops; a second one stops at once, keeping the
last checkpoint.

Device: CUDA when present (bf16 weights), else CPU (fp32) with ``torch.set_num_threads`` = the CPUs this process may
use, or ``--threads``, or the ``embedded_threads`` setting (``CONCLAVE_EMBEDDED_THREADS``).
"""

from __future__ import annotations

import json
import math
import os
import resource
import shutil
import signal
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from conclave import fileio, nesting
from conclave.errors import ConclaveError, ConfigError
from conclave.tune.data import IGNORE, Example, batches_from, collate
from conclave.tune.load import BaseInfo

TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
CHECKPOINT = "checkpoint.pt"
LOSS_FILE = "loss.jsonl"
ADAPTER = "adapter.gguf"
SPACE_MARGIN = 16 << 20
"""Free space kept beyond what a file needs (16 MiB)."""


@dataclass
class TuneConfig:
    """Everything that decides what a tuning run computes (written to the run's ``config.json``)."""

    base_spec: str
    form: str = "program"
    steps: int | None = None
    """Optimizer steps; ``None``: ``epochs`` passes over the data."""
    epochs: float = 1.0
    lr: float = 2e-4
    rank: int = 16
    alpha: int = 32
    dropout: float = 0.05
    batch_size: int = 4
    max_length: int = 1024
    checkpoint_every: int = 50
    warmup: int = 10
    seed: int = 0
    gradient_checkpointing: bool = False
    targets: tuple[str, ...] = TARGETS
    device: str = "auto"
    threads: int | None = None
    """Torch threads on CPU (``None``: :func:`thread_count`'s default)."""

    def total_steps(self, n_examples: int) -> int:
        if self.steps is not None:
            return self.steps
        per_epoch = max(1, math.ceil(n_examples / self.batch_size))
        return max(1, math.ceil(self.epochs * per_epoch))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TuneConfig:
        """The configuration a run folder recorded; ValueError naming the first field of the wrong kind (the file
        is data from the run folder, not something to trust)."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        if "targets" in known:
            targets = known["targets"]
            if not isinstance(targets, list | tuple) or not all(
                isinstance(t, str) and t.isidentifier() for t in targets
            ):
                raise ValueError("targets is not a list of module names")
            known["targets"] = tuple(targets)
        for key, value in known.items():
            kinds = _FIELD_KINDS.get(key)
            if kinds is not None and (isinstance(value, bool) is not (bool in kinds) or not isinstance(value, kinds)):
                raise ValueError(f"{key} is not {' or '.join(_KIND_WORDS[k] for k in kinds)}")
        return cls(**known)


_FIELD_KINDS: dict[str, tuple[type, ...]] = {
    "base_spec": (str,),
    "form": (str,),
    "steps": (int, type(None)),
    "epochs": (int, float),
    "lr": (int, float),
    "rank": (int,),
    "alpha": (int, float),
    "dropout": (int, float),
    "batch_size": (int,),
    "max_length": (int,),
    "checkpoint_every": (int,),
    "warmup": (int,),
    "seed": (int,),
    "gradient_checkpointing": (bool,),
    "device": (str,),
    "threads": (int, type(None)),
}
"""The JSON kinds of :class:`TuneConfig`'s fields (``targets`` is checked on its own)."""
_KIND_WORDS = {str: "a string", int: "a whole number", float: "a number", bool: "true or false", type(None): "null"}


@dataclass
class TrainResult:
    steps: int
    total_steps: int
    final_loss: float | None
    tokens: int
    seconds: float
    peak_rss_mb: float
    device: str
    threads: int
    adapter: Path
    losses: list[dict[str, Any]] = field(default_factory=list)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


class TuneInterrupted(ConclaveError):
    """Stopped by Ctrl-C; the run can be resumed from its checkpoint."""

    exit_code = 130


def choose_device(requested: str = "auto") -> tuple[str, Any]:
    """``(device, dtype)``: CUDA with bf16 when present (or asked for), else CPU with fp32."""
    import torch

    if requested == "cuda" or (requested == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda, but PyTorch sees no CUDA device", hint="use --device cpu or auto")
        return "cuda", torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if requested not in ("auto", "cpu"):
        raise ConfigError(f"unknown device {requested!r}", hint="use auto, cpu or cuda")
    return "cpu", torch.float32


def thread_count(requested: int | None = None, setting: int | None = None) -> int:
    """Torch threads: the option, else the ``embedded_threads`` setting (``CONCLAVE_EMBEDDED_THREADS``: how many
    CPUs Conclave's local compute may use), else the CPUs this process may run on."""
    if requested:
        return max(1, requested)
    if setting:
        return max(1, setting)
    from conclave.models.embedded import default_threads

    return default_threads()


def ensure_space(folder: Path, need: int, what: str) -> None:
    """ConfigError unless ``folder``'s file system has ``need`` bytes free (and a margin)."""
    free = shutil.disk_usage(folder).free
    if free < need + SPACE_MARGIN:
        raise ConfigError(
            f"not enough disk space for the {what} in {folder}: {free / 1e6:.0f} MB free, "
            f"{(need + SPACE_MARGIN) / 1e6:.0f} MB needed",
            hint="free some space, or put the run folder elsewhere with --out",
        )


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def _checkpoint_bytes(trainable: int) -> int:
    # fp32 LoRA weights and AdamW's two moments, plus pickling overhead.
    return trainable * 4 * 3 + (1 << 20)


def _save_checkpoint(path: Path, state: dict[str, Any], need: int) -> None:
    import torch

    ensure_space(path.parent, need, "checkpoint")
    fileio.atomic_write(path, lambda fh: torch.save(state, fh), within=path.parent)


_CHECKPOINT_KEYS = {"step": int, "lora": dict, "optimizer": dict, "scheduler": dict}


def read_checkpoint(path: Path) -> dict[str, Any] | None:
    """A run's checkpoint, checked; ``None`` when there is none (a run stopped before its first one starts again).

    A file under CONCLAVE_HOME is data, never code: torch's restricted loader (tensors, numbers, strings, lists,
    dicts) refuses anything a full unpickle would execute, and a file that loads but lacks the parts a resume needs
    is refused too, so ``tune --resume`` can check it before it writes anything."""
    import torch

    if not path.exists() and not path.is_symlink():
        return None
    try:
        fd = fileio.open_regular(path, os.O_RDONLY)
        with os.fdopen(fd, "rb") as fh:
            state = torch.load(fh, map_location="cpu", weights_only=True)
    except Exception as exc:  # a checkpoint that cannot be read is never half-written (see _save_checkpoint)
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]  # torch explains at length
        raise ConfigError(f"cannot read {path}: {reason}", hint="start a new run") from exc
    wrong = (
        ["not a dict"]
        if not isinstance(state, dict)
        else [k for k, kind in _CHECKPOINT_KEYS.items() if not isinstance(state.get(k), kind)]
    )
    if not wrong and (state["step"] < 0 or not isinstance(state.get("rng"), torch.Tensor)):
        wrong = ["step" if state["step"] < 0 else "rng"]
    if wrong:
        raise ConfigError(
            f"cannot read {path}: not a tuning checkpoint ({', '.join(wrong)} missing or wrong)",
            hint="start a new run",
        )
    return state


def _lora_state(model: Any) -> dict[str, Any]:
    from peft import get_peft_model_state_dict

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "could not find a config file": the base is a GGUF, its vocabulary as is
        state = get_peft_model_state_dict(model)
    return {k: v.detach().cpu().clone() for k, v in state.items()}


def _read_losses(path: Path, up_to: int) -> list[dict[str, Any]]:
    if not path.exists() and not path.is_symlink():
        return []
    fd = fileio.open_regular(path, os.O_RDONLY)  # a link planted in the run folder is refused, not read
    with os.fdopen(fd, "r", encoding="utf-8", errors="replace") as fh:
        text = fh.read()
    out = []
    for line in text.splitlines():
        try:
            entry = nesting.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a crash
        if isinstance(entry, dict) and isinstance(entry.get("step"), int) and entry["step"] <= up_to:
            out.append(entry)
    return out


def _append_line(path: Path, line: str) -> None:
    fd = fileio.open_regular(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    with os.fdopen(fd, "a", encoding="utf-8") as fh:
        fh.write(line + "\n")


class _StopFlag:
    """First Ctrl-C: stop after the current step. Second: stop now (KeyboardInterrupt)."""

    def __init__(self, console: Any):
        self.requested = False
        self._console = console
        self._previous: Any = None

    def __enter__(self) -> _StopFlag:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        if self._console is not None:
            self._console.print("[yellow]stopping after this step (Ctrl-C again to stop now)[/]")


def train(
    run_dir: Path,
    config: TuneConfig,
    examples: Sequence[Example],
    info: BaseInfo,
    *,
    pad_id: int,
    resume: bool = False,
    checkpoint: dict[str, Any] | None = None,
    resume_hint: str = "run the same command with --resume",
    model: Any = None,
    on_step: Callable[[int, float], None] | None = None,
    console: Any = None,
    progress: bool = True,
    threads_setting: int | None = None,
) -> TrainResult:
    """Train a LoRA on ``examples`` in ``run_dir`` and write ``adapter.gguf`` there.

    ``model``: a loaded base model (tests share one); ``on_step(step, loss)`` runs after each step (a test raises
    KeyboardInterrupt from it). ``checkpoint``: the state :func:`read_checkpoint` returned for a resumed run (read
    here when not given). Raises :class:`TuneInterrupted` after saving a checkpoint when stopped."""
    import torch
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict

    from conclave.tune.adapter import lora_pairs, write_adapter
    from conclave.tune.load import load_base

    device, dtype = choose_device(config.device)
    threads = thread_count(config.threads, threads_setting)
    torch.set_num_threads(threads)
    torch.manual_seed(config.seed)
    total = config.total_steps(len(examples))
    checkpoint_path = run_dir / CHECKPOINT
    loss_path = run_dir / LOSS_FILE

    state = checkpoint if checkpoint is not None or not resume else read_checkpoint(checkpoint_path)

    if model is None:
        model = load_base(info, dtype=dtype, device=device)
    else:
        model = model.to(device)
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    lora = LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=list(config.targets),
        bias="none",
        task_type="CAUSAL_LM",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # transformers' deprecation notes about its own internals
        model = get_peft_model(model, lora)
    params = [p for p in model.parameters() if p.requires_grad]
    trainable = sum(p.numel() for p in params)
    need = _checkpoint_bytes(trainable)
    ensure_space(run_dir, need * 2, "checkpoint and adapter")  # before any work is done

    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
    warmup = max(1, min(config.warmup, total // 10))

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    step, tokens, seconds = 0, 0, 0.0
    if state is not None:
        set_peft_model_state_dict(model, state["lora"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        step, tokens, seconds = int(state["step"]), int(state.get("tokens", 0)), float(state.get("seconds", 0.0))
    losses = _read_losses(loss_path, step)
    fileio.write_text(loss_path, "".join(json.dumps(e) + "\n" for e in losses), within=run_dir)

    def snapshot() -> dict[str, Any]:
        return {
            "step": step,
            "lora": _lora_state(model),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": torch.get_rng_state(),
            "tokens": tokens,
            "seconds": seconds,
            "config": asdict(config),
        }

    lengths = [len(e) for e in examples]
    batches = batches_from(lengths, config.batch_size, config.seed, start_step=step)
    model.train()
    bar = _progress(console, progress, total, step)
    phase = "step"  # "update" while the optimizer writes the weights: an interruption there leaves them half-updated
    saved_at = step if state is not None else -1
    try:
        with _StopFlag(console) as stop, bar:
            task = bar.add_task("tuning", total=total, completed=step, loss=float("nan"), rate=0.0)
            while step < total:
                epoch, batch_ids = next(batches)
                batch = {k: v.to(device) for k, v in collate([examples[i] for i in batch_ids], pad_id).items()}
                started = time.perf_counter()
                loss = assistant_loss(model, batch)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                phase = "update"
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                phase = "step"
                elapsed = time.perf_counter() - started
                seconds += elapsed
                batch_tokens = int(batch["attention_mask"].sum())
                tokens += batch_tokens
                value = float(loss.detach().float())
                entry = {
                    "step": step,
                    "epoch": epoch,
                    "loss": round(value, 5),
                    "lr": scheduler.get_last_lr()[0],
                    "tokens": batch_tokens,
                    "seconds": round(elapsed, 3),
                }
                losses.append(entry)
                _append_line(loss_path, json.dumps(entry))
                bar.update(task, completed=step, loss=value, rate=tokens / seconds if seconds else 0.0)
                if config.checkpoint_every and step % config.checkpoint_every == 0 and step < total:
                    _save_checkpoint(checkpoint_path, snapshot(), need)
                    saved_at = step
                if on_step is not None:
                    on_step(step, value)
                if stop.requested and step < total:
                    raise KeyboardInterrupt
    except KeyboardInterrupt:
        if phase == "step" and saved_at != step:
            _save_checkpoint(checkpoint_path, snapshot(), need)
            saved_at = step
        where = f"step {saved_at} of {total}" if saved_at > 0 else "the start (no checkpoint yet)"
        raise TuneInterrupted(
            f"tuning stopped; it will continue from {where} ({run_dir.name})", hint=resume_hint
        ) from None
    # The finished run: the final adapter (the checkpoint stays, so a run can be extended or inspected).
    _save_checkpoint(checkpoint_path, snapshot(), need)
    ensure_space(run_dir, need // 3, "adapter")
    adapter = write_adapter(run_dir / ADAPTER, lora_pairs(_lora_state(model)), info, alpha=config.alpha)
    final = statistics_tail(losses)
    return TrainResult(
        steps=step,
        total_steps=total,
        final_loss=final,
        tokens=tokens,
        seconds=seconds,
        peak_rss_mb=peak_rss_mb(),
        device=device,
        threads=threads,
        adapter=adapter,
        losses=losses,
    )


def assistant_loss(model: Any, batch: dict[str, Any]) -> Any:
    """Next-token cross-entropy over the labelled (assistant) positions, the mean over those tokens, as the model's
    own loss would give; but the output layer runs on those positions only. With a 49k-151k vocabulary the logits of
    every prompt token are most of a step's memory (and a fifth of a small model's compute) for nothing."""
    import torch.nn.functional as F  # noqa: N812

    causal = model.get_base_model()  # the *ForCausalLM, its layers carrying the LoRA
    hidden = causal.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    labels = batch["labels"][:, 1:]
    keep = labels != IGNORE
    logits = causal.lm_head(hidden[:, :-1][keep]).float()
    return F.cross_entropy(logits, labels[keep])


def statistics_tail(losses: Sequence[dict[str, Any]], window: int = 10) -> float | None:
    """The mean loss of the last ``window`` steps (one step's loss is noisy)."""
    tail = [float(e["loss"]) for e in losses[-window:]]
    return round(sum(tail) / len(tail), 4) if tail else None


def _progress(console: Any, enabled: bool, total: int, step: int) -> Any:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]tuning[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.3f}"),
        TextColumn("{task.fields[rate]:.0f} tok/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not enabled,
        transient=False,
    )
