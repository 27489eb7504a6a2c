"""Run folders under ``$CONCLAVE_HOME/runs/``: ids, manifests, atomic JSON and append-only, fsynced JSONL.

A run folder is the unit of reproducibility and of resumption: ``manifest.json`` records what produced it (settings
with secrets masked, model specs, prompt hashes, package versions, git revision), and per-item results are appended
to JSONL and fsynced as they finish, so a killed process loses at most the item in flight.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, BinaryIO

from conclave import fileio, nesting
from conclave.errors import ConclaveError, ConfigError
from conclave.settings import Settings

__all__ = [
    "RunFolderError",
    "JsonlLog",
    "JsonlProblem",
    "JsonlScan",
    "build_manifest",
    "create_run_dir",
    "find_run",
    "git_revision",
    "new_run_id",
    "package_versions",
    "read_json",
    "read_jsonl",
    "resumable",
    "scan_jsonl",
    "write_json",
    "write_text",
    "writer_lock",
]

log = logging.getLogger(__name__)

_PACKAGES = (
    "conclave",
    "autogen-agentchat",
    "autogen-core",
    "autogen-ext",
    "xllamacpp",
    "llama-cpp-python",
    "langchain-core",
    "chromadb",
    "sentence-transformers",
    "pydantic",
    "typer",
)


class RunFolderError(ConclaveError):
    """The run folder cannot be written (permissions, disk full); finished items stay on disk."""


def resumable(folder: Path) -> bool:
    """Whether ``--resume`` can find and continue the run in ``folder``: it holds a manifest and a configuration
    (``config.json`` for an evaluation, ``run.json`` for a workflow)."""
    return (folder / "manifest.json").is_file() and any((folder / n).is_file() for n in ("config.json", "run.json"))


def _run_folder_of(path: Path, run_id: str) -> Path | None:
    return next((p for p in (path, *path.parents) if p.name == run_id), None)


def _write_error(path: Path, exc: OSError, run_id: str | None = None) -> RunFolderError:
    reason = exc.strerror or str(exc)
    folder = _run_folder_of(path, run_id) if run_id else None
    if folder is not None and resumable(folder):
        hint = f"free disk space or make CONCLAVE_HOME writable; finished items are kept: resume with --resume {run_id}"
    else:  # nothing that --resume could find: naming it would only earn a "no run" error
        hint = "free disk space or make CONCLAVE_HOME writable (or set CONCLAVE_HOME to a folder with room), then start the run again"
    return RunFolderError(f"cannot write {path}: {reason}", hint=hint)


@contextlib.contextmanager
def writer_lock(run_dir: Path, run_id: str) -> Iterator[None]:
    """One writer per run folder: a second ``--resume`` of a run still being written stops with one line."""
    held = contextlib.ExitStack()
    try:
        held.enter_context(
            fileio.exclusive_lock(
                run_dir,
                f"run {run_id}",
                hint="wait for it to finish (or stop it), then resume; two writers would repeat items and calls",
            )
        )
    except OSError as exc:
        raise _write_error(run_dir / fileio.LOCK_FILE, exc, run_id) from exc
    with held:
        yield


def new_run_id(prefix: str) -> str:
    """``<prefix>-YYYYmmdd-HHMMSS-xxxx`` (sortable, unique enough for one machine)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"{prefix}-{stamp}-{secrets.token_hex(2)}"


def create_run_dir(settings: Settings, run_id: str) -> Path:
    """Make ``runs/<run_id>``; a clear RunFolderError when that is impossible."""
    folder = settings.runs_path / run_id
    try:
        folder.mkdir(parents=True, exist_ok=False)
    except FileExistsError as exc:
        raise ConfigError(f"run {run_id} already exists", hint=f"resume it with --resume {run_id}") from exc
    except OSError as exc:
        raise RunFolderError(
            f"cannot create the run folder {folder}: {exc.strerror or exc}",
            hint="make CONCLAVE_HOME writable (or set CONCLAVE_HOME to a writable folder)",
        ) from exc
    return folder


def find_run(settings: Settings, run: str) -> Path:
    """A run folder from its id (under ``runs/``) or a path; ConfigError listing recent runs otherwise."""
    candidates = [Path(run).expanduser(), settings.runs_path / run]
    for path in candidates:
        if path.is_dir() and (path / "manifest.json").is_file():
            return path
    recent = (
        sorted((p.name for p in settings.runs_path.glob("*") if p.is_dir()), reverse=True)[:5]
        if settings.runs_path.is_dir()
        else []
    )
    listed = f" (recent: {', '.join(recent)})" if recent else " (there are no runs yet)"
    raise ConfigError(
        f"no run {run!r} under {settings.runs_path}{listed}",
        hint="give a run id from `conclave runs list` or the path of a run folder",
    )


def write_json(path: Path, data: Any, *, run_id: str | None = None, within: Path | None = None) -> None:
    """Write JSON atomically (:func:`conclave.fileio.atomic_write`: a reader never sees half a file, and a link or
    a planted temporary file in the run folder is replaced, never written through)."""
    try:
        fileio.write_json(path, data, within=within)
    except OSError as exc:
        raise _write_error(path, exc, run_id) from exc


def write_text(path: Path, text: str, *, run_id: str | None = None, within: Path | None = None) -> None:
    """Write a text file atomically (as :func:`write_json`)."""
    try:
        fileio.write_text(path, text, within=within)
    except OSError as exc:
        raise _write_error(path, exc, run_id) from exc


def read_json(path: Path) -> Any:
    """Parse a JSON file; ConfigError naming the file when it is missing or broken."""
    try:
        return nesting.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{path} is missing", hint="is this a Conclave run folder?") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc.msg}", hint="the run folder is damaged") from exc


@dataclass(frozen=True)
class JsonlProblem:
    """A line of a JSONL file that holds no record: its file, 1-based line number and what is wrong with it."""

    path: Path
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


@dataclass
class JsonlScan:
    """What :func:`scan_jsonl` found: the records, the lines it skipped, and where the complete lines end.

    ``end`` is the byte length of the file up to a torn last line (all of it when there is none); ``torn`` says
    whether there is one, i.e. an unterminated last line that does not parse (a write cut short by a crash).
    """

    records: list[dict[str, Any]] = field(default_factory=list)
    problems: list[JsonlProblem] = field(default_factory=list)
    end: int = 0
    torn: bool = False


def _reason(exc: ValueError) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg.removesuffix(' at')}, column {exc.colno}"
    return str(exc).split("\n")[0]


def scan_jsonl(path: Path) -> JsonlScan:
    """Every record of a JSONL file, skipping (and listing) the lines that are not a JSON object.

    A damaged line in the middle costs only that line: the records before and after it are all kept. An
    unterminated last line that parses is a whole record (only its newline is missing); one that does not is a
    write torn by a crash, listed as a problem and marked in ``torn``/``end`` so a writer can cut it off.
    """
    scan = JsonlScan()
    if not path.is_file():
        return scan
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise RunFolderError(f"cannot read {path}: {exc.strerror or exc}", hint="make the run folder readable") from exc
    start = 0
    number = 0
    while start < len(raw):
        end = raw.find(b"\n", start)
        last = end == -1
        line = raw[start:] if last else raw[start:end]
        number += 1
        if line.strip():
            try:
                value = nesting.loads(line)
            except ValueError as exc:  # JSONDecodeError, or bytes that are not UTF-8
                if last:
                    scan.torn = True
                    scan.problems.append(
                        JsonlProblem(
                            path,
                            number,
                            f"unfinished last line ({len(line)} bytes, cut short by a crash while it was "
                            "written): ignored",
                        )
                    )
                    break
                scan.problems.append(JsonlProblem(path, number, f"not valid JSON ({_reason(exc)}): line skipped"))
            else:
                if isinstance(value, dict):
                    scan.records.append(value)
                else:
                    scan.problems.append(
                        JsonlProblem(path, number, f"not a JSON object (a {type(value).__name__}): line skipped")
                    )
        if last:
            start = len(raw)
            break
        start = end + 1
    scan.end = start
    return scan


def read_jsonl(path: Path, *, problems: list[JsonlProblem] | None = None) -> tuple[list[dict[str, Any]], int]:
    """The records of a JSONL file and the byte length up to a torn last line (see :func:`scan_jsonl`).

    Lines that hold no record are skipped, never the records after them; they are added to ``problems`` when a
    list is given, and logged as warnings (file:line: what is wrong) otherwise.
    """
    scan = scan_jsonl(path)
    if problems is not None:
        problems.extend(scan.problems)
    else:
        for problem in scan.problems:
            log.warning("%s", problem)
    return scan.records, scan.end


class JsonlLog:
    """Append-only JSONL whose every record is flushed and fsynced before ``append`` returns.

    ``load`` skips damaged lines instead of stopping at them, and reports each one (``file:line: what``) to
    ``on_problem`` (a logged warning when none is given); ``problems`` keeps those of the last load.
    """

    def __init__(self, path: Path, *, run_id: str | None = None, on_problem: Callable[[str], None] | None = None):
        self.path = path
        self.run_id = run_id
        self.on_problem = on_problem
        self.problems: list[JsonlProblem] = []

    def load(self) -> list[dict[str, Any]]:
        """Records written so far. Damaged lines are skipped and reported but left in the file; a torn last line
        (killed mid-write) is cut off, and a missing final newline added, so the next append starts a new line."""
        scan = scan_jsonl(self.path)
        self.problems = list(scan.problems)
        for problem in scan.problems:
            if self.on_problem is not None:
                self.on_problem(str(problem))
            else:
                log.warning("%s", problem)
        if self.path.is_file():
            try:
                fd = fileio.open_regular(self.path, os.O_RDWR)
                with os.fdopen(fd, "r+b") as fh:
                    if scan.torn:
                        fh.truncate(scan.end)
                        os.fsync(fh.fileno())
                    self._terminate_last_line(fh)
            except OSError as exc:
                raise _write_error(self.path, exc, self.run_id) from exc
        return scan.records

    @staticmethod
    def _terminate_last_line(fh: BinaryIO) -> None:
        if fh.seek(0, os.SEEK_END) == 0:
            return
        fh.seek(-1, os.SEEK_END)
        if fh.read(1) != b"\n":
            fh.seek(0, os.SEEK_END)
            fh.write(b"\n")
            fh.flush()
            os.fsync(fh.fileno())

    def append(self, record: dict[str, Any]) -> None:
        """Write one record durably, on a line of its own even when the file ends in an unfinished line.

        The file is opened without following a link (a planted ``items.jsonl -> ~/.bashrc`` is refused)."""
        from conclave.redact import redact_secrets

        data = (redact_secrets(json.dumps(record, ensure_ascii=False, default=str)) + "\n").encode("utf-8")
        try:
            fd = fileio.open_regular(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND)
            with os.fdopen(fd, "a+b") as fh:
                if fh.seek(0, os.SEEK_END) > 0:
                    fh.seek(-1, os.SEEK_END)
                    if fh.read(1) != b"\n":
                        data = b"\n" + data
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise _write_error(self.path, exc, self.run_id) from exc

    def extend(self, records: Iterable[dict[str, Any]]) -> None:
        for record in records:
            self.append(record)


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that shape results."""
    out = {}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def git_revision() -> dict[str, Any] | None:
    """The source tree's git commit and whether it has uncommitted changes (None outside a checkout)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        status = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0:
        return {"commit": None, "dirty": True}
    return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip())}


def build_manifest(
    settings: Settings, *, kind: str, run_id: str, config: dict[str, Any], models: dict[str, Any]
) -> dict[str, Any]:
    """What produced a run: everything needed to reproduce it, with secrets masked."""
    from conclave.agents.prompting import prompt_hashes
    from conclave.workflows.evaluation import prompts

    from conclave.redact import redact_command

    return {
        "run_id": run_id,
        "kind": kind,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "created_unix": time.time(),
        "command": redact_command([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else [],
        "config": config,
        "models": models,
        "settings": settings.redacted(),
        "prompt_hashes": {**prompt_hashes(), **{f"evaluation/{k}": v for k, v in prompts.hashes().items()}},
        "packages": package_versions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "git": git_revision(),
    }
