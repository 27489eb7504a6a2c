"""The store of tuned models: ``CONCLAVE_HOME/tuned/NAME/`` holds ``adapter.gguf`` and ``manifest.json``.

The manifest records the base model (its spec, GGUF path, size and SHA-256), the adapter file, the chain form and
the data it was tuned on (file hashes), the training configuration and the loss curve. ``--model embedded:NAME``
runs the base GGUF with the adapter applied (llama.cpp's ``lora_path``; ``catalog.gguf_for`` finds the base). It
lives with the models, not in ``conclave/tune/``: running a tuned model needs no training dependencies, and
resolving a spec needs this store.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from conclave import fileio, nesting
from conclave.errors import ConfigError
from conclave.models.spec import EMBEDDED_NAMES, TUNED_NAME
from conclave.models.weights import sha256_file

ADAPTER_FILE = "adapter.gguf"
MANIFEST_FILE = "manifest.json"


def tuned_root(home: Path) -> Path:
    return home / "tuned"


def check_name(name: str) -> str:
    """The name, if it can name a tuned model; else ConfigError."""
    # fullmatch: the pattern's `$` would let a final newline through (a name lands in commands and file names).
    if not isinstance(name, str) or not TUNED_NAME.fullmatch(name):
        raise ConfigError(
            f"{name!r} cannot name a tuned model",
            hint="use letters, digits, - and _ (up to 64, no dots or slashes), e.g. --name smol-coa",
        )
    if name.lower() in EMBEDDED_NAMES:
        raise ConfigError(f"{name!r} is a built-in model's name", hint="choose another --name")
    return name


def register(home: Path, name: str, adapter: Path, manifest: dict[str, Any]) -> Path:
    """Install ``adapter`` and ``manifest`` as tuned model ``name`` (replacing an older one of that name)."""
    check_name(name)
    folder = tuned_root(home) / name
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / ADAPTER_FILE
    try:
        with adapter.open("rb") as source:
            fileio.atomic_write(target, lambda fh: shutil.copyfileobj(source, fh, 1 << 20))
        record = dict(manifest, name=name, adapter=ADAPTER_FILE, adapter_sha256=sha256_file(target))
        fileio.write_json(folder / MANIFEST_FILE, record)
    except OSError as exc:
        raise ConfigError(
            f"cannot register tuned model {name!r} in {folder}: {exc.strerror or exc}",
            hint="check the free space and permissions of CONCLAVE_HOME",
        ) from exc
    return folder


def manifest(home: Path, name: str) -> dict[str, Any]:
    """The manifest of tuned model ``name``; ConfigError when there is none (or it is damaged)."""
    path = tuned_root(home) / name / MANIFEST_FILE
    if not path.is_file():
        raise ConfigError(
            f"no tuned model named {name!r} (and no built-in model of that name)",
            hint="see `conclave tune list`; a GGUF file in this folder is `embedded:./NAME`",
        )
    try:
        data = nesting.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"tuned model {name!r}: cannot read {path}", hint="tune it again") from exc
    if not isinstance(data, dict) or "base_spec" not in data:
        raise ConfigError(f"tuned model {name!r}: {path} is not a tuned model's manifest", hint="tune it again")
    return data


def list_tuned(home: Path) -> list[dict[str, Any]]:
    """Every registered tuned model's manifest (damaged ones are left out), by name."""
    root = tuned_root(home)
    out = []
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        try:
            out.append(manifest(home, folder.name))
        except ConfigError:
            continue
    return out


def adapter_path(home: Path, name: str) -> Path:
    """The adapter GGUF of tuned model ``name``."""
    data = manifest(home, name)
    path = tuned_root(home) / name / str(data.get("adapter") or ADAPTER_FILE)
    if not path.is_file():
        raise ConfigError(f"tuned model {name!r} has lost its adapter file {path}", hint="tune it again")
    return path


def identity(home: Path, name: str) -> dict[str, Any]:
    """What makes a tuned model this model (for response caches): the base and adapter hashes."""
    data = manifest(home, name)
    return {
        "provider": "embedded",
        "model": f"tuned:{name}",
        "base_sha256": data.get("base_sha256"),
        "adapter_sha256": data.get("adapter_sha256"),
    }
