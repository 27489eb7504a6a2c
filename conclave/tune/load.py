"""The base model's weights, read from its GGUF file by transformers (which dequantizes them): no other download.

Only architectures whose GGUF tensors transformers reads *and* whose adapter layout :mod:`conclave.tune.adapter`
knows are accepted: Llama (SmolLM2, Llama 2/3) and Qwen2 (Qwen2.5, Qwen2.5-Coder).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conclave.errors import ConfigError

SUPPORTED = ("llama", "qwen2")
"""GGUF ``general.architecture`` values this module loads."""

_UNSUPPORTED_HINT = (
    "tune a Llama or Qwen2 GGUF: embedded:smollm2, embedded:qwen, or embedded:/path/to/llama-or-qwen2.gguf"
)


@dataclass(frozen=True)
class BaseInfo:
    """What the trainer and the adapter writer need to know about a base GGUF."""

    path: Path
    arch: str
    n_layers: int
    n_head: int
    n_head_kv: int
    context_length: int
    name: str = ""


def _field(reader: Any, key: str) -> Any:
    field = reader.fields.get(key)
    if field is None:
        return None
    try:
        return field.contents()
    except Exception:  # an old gguf package or an odd value type
        return None


def read_info(path: Path) -> BaseInfo:
    """Architecture and shape of a GGUF model; ConfigError if it is not a model transformers can tune here."""
    try:
        from gguf import GGUFReader
    except ImportError as exc:
        raise ConfigError("tuning needs the gguf package", hint="pip install 'conclave[tune]'") from exc
    try:
        reader = GGUFReader(str(path))
    except Exception as exc:  # the reader raises ValueError, KeyError, struct errors... for a damaged file
        raise ConfigError(f"cannot read {path} as a GGUF model: {exc}", hint="give an intact .gguf model file") from exc
    arch = str(_field(reader, "general.architecture") or "")
    kind = str(_field(reader, "general.type") or "model")
    if kind != "model":
        raise ConfigError(f"{path} is a GGUF {kind}, not a model", hint="tune a base model's GGUF file")
    if arch not in SUPPORTED:
        raise ConfigError(
            f"cannot tune {path.name}: transformers cannot read {arch or 'unknown'!r} models from GGUF here "
            "(Llama and Qwen2 only)",
            hint=_UNSUPPORTED_HINT,
        )
    n_head = int(_field(reader, f"{arch}.attention.head_count") or 0)
    return BaseInfo(
        path=path,
        arch=arch,
        n_layers=int(_field(reader, f"{arch}.block_count") or 0),
        n_head=n_head,
        n_head_kv=int(_field(reader, f"{arch}.attention.head_count_kv") or n_head),
        context_length=int(_field(reader, f"{arch}.context_length") or 0),
        name=str(_field(reader, "general.name") or path.stem),
    )


def load_base(info: BaseInfo, *, dtype: Any, device: str) -> Any:
    """The base model as a transformers ``PreTrainedModel`` on ``device``, weights dequantized to ``dtype``."""
    try:
        from transformers import AutoModelForCausalLM
        from transformers.utils import logging as hf_logging
    except ImportError as exc:
        raise ConfigError("tuning needs transformers and torch", hint="pip install 'conclave[tune]'") from exc
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    logging.getLogger("transformers").setLevel(logging.ERROR)
    _quiet_gguf_progress()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from_pretrained: Any = AutoModelForCausalLM.from_pretrained  # its decorator's stub misleads mypy
            model = from_pretrained(
                str(info.path.parent), gguf_file=info.path.name, dtype=dtype, low_cpu_mem_usage=True
            )
    except (ValueError, KeyError, NotImplementedError, OSError) as exc:
        raise ConfigError(
            f"transformers cannot read {info.path.name} ({info.arch}): {str(exc).splitlines()[0][:200]}",
            hint=_UNSUPPORTED_HINT,
        ) from exc
    model.config.use_cache = False
    return model.to(device)


def _quiet_gguf_progress() -> None:
    """transformers draws its own tqdm bar while it dequantizes; the tuning run has its own progress display."""
    try:
        from transformers import modeling_gguf_pytorch_utils as gguf_utils
    except ImportError:  # pragma: no cover - another transformers layout: its bar stays
        return
    if hasattr(gguf_utils, "tqdm"):
        gguf_utils.tqdm = lambda iterable, *args, **kwargs: iterable
