"""Which working-folder ``.env`` files the user allowed (``conclave trust``), remembered like ``direnv allow``.

A ``.env`` comes with whatever folder the user stands in, so the values in it that decide where requests, keys and
state go are withheld until the user allows that very file (settings.py). An allowance is the file's resolved path
and the SHA-256 of its content: any edit to the file withdraws it, with nothing to clean up.

The allowances live in ``trusted-env.json`` under the *trusted* home: ``CONCLAVE_HOME`` from the command line or the
environment, else the default data folder; never under a home that a ``.env`` chose (a folder could then vouch for
itself). The file is written atomically and readable by its owner only. One that cannot be read counts as no
allowance when settings load (nothing from a ``.env`` is applied), and ``conclave trust`` reports it rather than
overwriting it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from conclave import fileio
from conclave.errors import ConfigError

__all__ = ["TrustEntry", "allow", "entries", "file_digest", "is_allowed", "revoke", "store_path"]

STORE_NAME = "trusted-env.json"
_FORMAT = 1


@dataclass(frozen=True)
class TrustEntry:
    """One allowed file and whether the allowance still holds."""

    path: str
    sha256: str
    allowed_at: str
    state: Literal["allowed", "changed", "missing"]


def store_path(trusted_home: Path) -> Path:
    """Where allowances are kept, under the home chosen by the user (never by a ``.env``)."""
    return trusted_home / STORE_NAME


def file_digest(path: Path) -> str | None:
    """The SHA-256 of the file's bytes; ``None`` when it cannot be read."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _key(path: Path) -> str:
    return str(path.expanduser().resolve())


def _read(store: Path) -> dict[str, dict[str, Any]]:
    """The allowances; raises ``ValueError``/``OSError`` when the file exists but is not ours to read."""
    if not store.is_file():
        return {}
    data = json.loads(store.read_text(encoding="utf-8"))
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, dict):
        raise ValueError("no 'files' table")
    return {
        str(path): entry
        for path, entry in files.items()
        if isinstance(entry, dict) and isinstance(entry.get("sha256"), str)
    }


def _read_for_change(store: Path) -> dict[str, dict[str, Any]]:
    try:
        return _read(store)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot read the list of trusted .env files {store}: {exc}",
            hint="fix it, or delete it (every .env is then untrusted until you run `conclave trust` again)",
        ) from exc


def _write(store: Path, files: dict[str, dict[str, Any]]) -> None:
    text = json.dumps({"format": _FORMAT, "files": files}, indent=2, ensure_ascii=False) + "\n"
    try:
        store.parent.mkdir(parents=True, exist_ok=True)
        fileio.atomic_write(store, text, mode=0o600)  # the list of allowed files is the user's alone
    except OSError as exc:
        raise ConfigError(
            f"cannot write {store}: {exc.strerror or exc}", hint="check the folder's permissions and free space"
        ) from exc


def is_allowed(store: Path, dotenv: Path) -> bool:
    """Whether the user allowed this file with exactly its present content."""
    try:
        entry = _read(store).get(_key(dotenv))
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return entry is not None and entry["sha256"] == file_digest(dotenv)


def allow(store: Path, dotenv: Path) -> TrustEntry:
    """Allow ``dotenv`` as it is now."""
    if not dotenv.is_file():
        raise ConfigError(f"{dotenv} is not a file", hint="give the path of the .env file to trust")
    digest = file_digest(dotenv)
    if digest is None:
        raise ConfigError(f"cannot read {dotenv}", hint="check the file's permissions")
    files = _read_for_change(store)
    when = datetime.now(UTC).isoformat(timespec="seconds")
    files[_key(dotenv)] = {"sha256": digest, "allowed_at": when}
    _write(store, files)
    return TrustEntry(_key(dotenv), digest, when, "allowed")


def revoke(store: Path, dotenv: Path) -> bool:
    """Withdraw the allowance of ``dotenv`` (also when the file is gone); whether there was one."""
    files = _read_for_change(store)
    if files.pop(_key(dotenv), None) is None:
        return False
    _write(store, files)
    return True


def entries(store: Path) -> list[TrustEntry]:
    """Every remembered allowance, with whether it still holds."""
    out = []
    for path, entry in sorted(_read_for_change(store).items()):
        digest = file_digest(Path(path))
        state: Literal["allowed", "changed", "missing"] = (
            "missing" if digest is None else "allowed" if digest == entry["sha256"] else "changed"
        )
        out.append(TrustEntry(path, entry["sha256"], str(entry.get("allowed_at", "")), state))
    return out
