"""A trained LoRA as a llama.cpp GGUF adapter (what ``llama_cpp.Llama(lora_path=...)`` loads).

The file holds ``general.type = adapter``, ``adapter.type = lora``, ``adapter.lora.alpha`` and, for every adapted
weight, ``blk.N.<tensor>.weight.lora_a`` (rank x in) and ``.lora_b`` (out x rank), named as llama.cpp names the base
tensors (gguf's own name map). llama.cpp scales the product by alpha / rank, as peft does.

Llama GGUFs store ``attn_q`` and ``attn_k`` with their rows permuted for llama.cpp's RoPE (``convert_hf_to_gguf.py``,
``LlamaModel.permute``); transformers undoes that when it reads the GGUF, so the adapter is trained in the
un-permuted layout. ``W + B A`` permuted is ``P W + (P B) A``: the rows of ``lora_b`` get the same permutation.
Qwen2 GGUFs are not permuted.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from conclave.errors import ConfigError
from conclave.tune.load import BaseInfo

_LORA_KEY = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<part>[AB])(?:\.[^.]+)?\.weight$")


def permute_rows(weights: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's RoPE row order for a q or k projection's output rows (``LlamaModel.permute``)."""
    rows = weights.shape[0]
    return weights.reshape(n_head, 2, rows // n_head // 2, *weights.shape[1:]).swapaxes(1, 2).reshape(weights.shape)


def lora_pairs(state: Mapping[str, Any]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{hf module name: (A, B)}`` from a peft state dict (tensors or arrays), as float32 arrays."""
    parts: dict[str, dict[str, np.ndarray]] = {}
    for key, value in state.items():
        found = _LORA_KEY.match(key)
        if not found:
            continue
        array = value.detach().float().cpu().numpy() if hasattr(value, "detach") else np.asarray(value, np.float32)
        parts.setdefault(found["module"], {})[found["part"]] = array
    pairs = {}
    for module, ab in parts.items():
        if set(ab) != {"A", "B"}:
            raise ValueError(f"LoRA weights of {module} are incomplete: {sorted(ab)}")
        pairs[module] = (ab["A"], ab["B"])
    return pairs


def gguf_tensor_name(module: str, info: BaseInfo) -> str:
    """``model.layers.3.self_attn.q_proj`` -> ``blk.3.attn_q.weight`` (llama.cpp's name of the base tensor)."""
    import gguf

    arch = {"llama": gguf.MODEL_ARCH.LLAMA, "qwen2": gguf.MODEL_ARCH.QWEN2}[info.arch]
    name = gguf.get_tensor_name_map(arch, info.n_layers).get_name(module)
    if name is None:
        raise ValueError(f"no GGUF tensor for {module} in a {info.arch} model")
    return name + ".weight"


def write_adapter(
    path: Path, pairs: Mapping[str, tuple[np.ndarray, np.ndarray]], info: BaseInfo, *, alpha: float
) -> Path:
    """Write the GGUF adapter atomically (a temporary file renamed into place)."""
    try:
        import gguf
    except ImportError as exc:
        raise ConfigError("writing the adapter needs the gguf package", hint="pip install 'conclave[tune]'") from exc
    if not pairs:
        raise ValueError("no LoRA weights to write")
    # GGUFWriter opens its file by name, following links: it writes into a folder made for it alone (mkdtemp: new,
    # private, random name), never at a fixed name a resumed run folder could have planted.
    private = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    writer_path = private / path.name
    writer = gguf.GGUFWriter(str(writer_path), info.arch)
    writer.add_string("general.type", "adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", float(alpha))
    writer.add_string("general.name", f"{info.name} LoRA")
    for module in sorted(pairs, key=_module_order):
        a, b = pairs[module]
        name = gguf_tensor_name(module, info)
        if info.arch == "llama" and module.endswith("self_attn.q_proj"):
            b = permute_rows(b, info.n_head)
        elif info.arch == "llama" and module.endswith("self_attn.k_proj"):
            b = permute_rows(b, info.n_head_kv)
        writer.add_tensor(name + ".lora_a", np.ascontiguousarray(a, dtype=np.float32))
        writer.add_tensor(name + ".lora_b", np.ascontiguousarray(b, dtype=np.float32))
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(writer_path, path)
    except OSError as exc:
        raise ConfigError(f"cannot write the adapter {path}: {exc.strerror or exc}", hint="check free space") from exc
    finally:
        shutil.rmtree(private, ignore_errors=True)
    return path


def _module_order(module: str) -> tuple[int, str]:
    found = re.search(r"\.layers\.(\d+)\.", module)
    return (int(found.group(1)) if found else -1, module)
