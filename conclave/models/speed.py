"""Decoding speed of the embedded models on this machine, as last measured (``conclave models`` shows it).

The embedded backend records each generation long enough to measure (:data:`MIN_TOKENS`) into
``CONCLAVE_HOME/models/speed.json``: per model file, the latest tokens per second and the thread count. The file is
read back as untrusted data: anything not a finite positive number is ignored.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

MIN_TOKENS = 16  # fewer decoded tokens measure the first token's latency more than the decoding rate
MAX_ENTRIES = 32

_WRITE_LOCK = threading.Lock()


@dataclass(frozen=True)
class Speed:
    tokens_per_s: float
    threads: int
    measured_at: float


def speed_path(home: Path) -> Path:
    return home / "models" / "speed.json"


def _read(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def measured(path: Path, model_file: str) -> Speed | None:
    """The last measurement for a model file (its name), if one is recorded and well-formed."""
    entry = _read(path).get(model_file)
    if not isinstance(entry, dict):
        return None
    rate, threads, when = entry.get("tokens_per_s"), entry.get("threads"), entry.get("measured_at")
    if not isinstance(rate, (int, float)) or isinstance(rate, bool) or not math.isfinite(rate) or not 0 < rate < 1e6:
        return None
    if type(threads) is not int or not 0 < threads <= 4096:
        return None
    if not isinstance(when, (int, float)) or isinstance(when, bool) or not math.isfinite(when):
        return None
    return Speed(float(rate), threads, float(when))


def record(path: Path, model_file: str, tokens: int, seconds: float, threads: int) -> None:
    """Record one generation's decoding rate (best effort: a read-only home only loses the figure)."""
    if tokens < MIN_TOKENS or seconds <= 0:
        return
    entry = {"tokens_per_s": round(tokens / seconds, 2), "threads": threads, "measured_at": time.time()}
    with _WRITE_LOCK, contextlib.suppress(OSError):
        data = {k: v for k, v in _read(path).items() if isinstance(k, str) and isinstance(v, dict)}
        data.pop(model_file, None)
        data[model_file] = entry
        data = dict(list(data.items())[-MAX_ENTRIES:])
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".speed.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh)
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
