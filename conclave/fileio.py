"""Writing files into folders that may hold files someone else put there: run folders, tuning runs, CONCLAVE_HOME.

A run folder can be copied from another machine or shared, so whatever is already in it is untrusted (SECURITY.md):
a ``status.json`` or ``commands.txt`` may be a symbolic link to ``~/.bashrc``, a fixed temporary name such as
``.status.json.tmp`` may be planted in advance, a ``steps/ID`` folder may be a link out of the run. So every write
into such a folder goes through this module:

* :func:`atomic_write` creates its temporary file exclusively (``O_CREAT | O_EXCL | O_NOFOLLOW``) under a random
  name in the target's folder, then renames it over the target: ``os.replace`` replaces a link instead of writing
  through it, and a reader sees the old file or the new one, never half of one;
* :func:`open_regular` opens an existing file for appending or reading without following a link and refuses
  anything but a regular file (a FIFO would block, a device would be written to);
* :func:`check_inside` refuses a folder that, after links, lies outside the run folder;
* :func:`exclusive_lock` lets one process at a time write a run folder (``fcntl.flock`` on a lock file opened
  without following links); the second is told who holds it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from conclave.errors import ConclaveError, ConfigError

__all__ = [
    "LOCK_FILE",
    "FolderBusy",
    "UnsafePathError",
    "atomic_write",
    "check_inside",
    "exclusive_lock",
    "open_regular",
    "refuse_link",
    "write_json",
    "write_text",
]

LOCK_FILE = ".lock"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


class UnsafePathError(ConfigError):
    """A file or folder of a run folder is a link, or not a regular file, where Conclave would write: not touched."""


class FolderBusy(ConclaveError):
    """Another process holds the folder's lock (it is writing the same run)."""


def _within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def check_inside(folder: Path, root: Path) -> Path:
    """``folder`` resolved (links followed); UnsafePathError when that leaves ``root`` (a planted link)."""
    resolved, base = folder.resolve(), root.resolve()
    if not _within(resolved, base):
        raise UnsafePathError(
            f"{folder} leads to {resolved}, outside the run folder {base}: not written",
            hint="a run folder's files and subfolders must not be links out of it; remove the link or start a new run",
        )
    return resolved


def refuse_link(path: Path) -> Path:
    """UnsafePathError when ``path`` is a link or something other than a regular file: for a file that a library
    opens by name (and would write through a link), checked before it is handed over."""
    if path.is_symlink():
        raise UnsafePathError(
            f"{path} is a symbolic link: not followed",
            hint="a run folder's files must not be links; remove it or start a new run",
        )
    if path.exists() and not path.is_file():
        raise UnsafePathError(f"{path} is not a regular file: not written", hint="remove it")
    return path


def _create_temp(folder: Path, name: str, mode: int = 0o666) -> tuple[int, Path]:
    """A new, empty file beside the target that no one else can have prepared (exclusive create, random name)."""
    for _ in range(16):
        tmp = folder / f".{name}.{secrets.token_hex(6)}.tmp"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, mode), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(folder))


def atomic_write(
    path: Path,
    data: bytes | str | Callable[[IO[bytes]], None],
    *,
    within: Path | None = None,
    sync: bool = True,
    mode: int = 0o666,
) -> Path:
    """Replace ``path`` with ``data`` (bytes, text as UTF-8, or a function writing to a binary file) atomically.

    Never writes through a link at ``path`` or at a fixed temporary name: the temporary file is created exclusively
    under a random name, and the rename replaces whatever ``path`` was. ``within``: refuse (UnsafePathError) when
    ``path``'s folder lies outside that folder after links. ``mode``: the new file's permissions (before the umask;
    0o600 for a file only its owner may read). OSError (disk full, permissions) is the caller's to word.
    """
    if within is not None:
        check_inside(path.parent, within)
    fd, tmp = _create_temp(path.parent, path.name, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            if callable(data):
                data(fh)
            else:
                fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            fh.flush()
            if sync:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def write_text(path: Path, text: str, *, within: Path | None = None) -> Path:
    """:func:`atomic_write` of a text file (UTF-8)."""
    return atomic_write(path, text, within=within)


def write_json(path: Path, data: Any, *, within: Path | None = None) -> Path:
    """:func:`atomic_write` of JSON (indented, UTF-8, values it cannot encode as strings, a final newline)."""
    text = json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n"
    return atomic_write(path, text, within=within)


def open_regular(path: Path, flags: int, mode: int = 0o666) -> int:
    """``os.open`` that follows no link at ``path`` and returns only a regular file's descriptor.

    A link (even a dangling one, with ``O_CREAT``), a FIFO, a device or a folder is an UnsafePathError; other
    OSErrors (missing, permissions, disk full) pass through. The descriptor is blocking again when returned.
    """
    try:
        fd = os.open(path, flags | _NOFOLLOW | _CLOEXEC | _NONBLOCK, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePathError(
                f"{path} is a symbolic link: not followed",
                hint="a run folder's files must not be links; remove it or start a new run",
            ) from exc
        if exc.errno in (errno.ENXIO, errno.EISDIR):  # a FIFO without a reader; a folder
            raise UnsafePathError(f"{path} is not a regular file: not opened", hint="remove it") from exc
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnsafePathError(f"{path} is not a regular file: not opened", hint="remove it")
        if _NONBLOCK:
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _holder(fd: int) -> int | None:
    """The pid the lock's holder wrote into the lock file (data: only a small positive integer is believed)."""
    with contextlib.suppress(OSError, ValueError):
        text = os.pread(fd, 32, 0).decode("ascii").strip()
        if text.isdigit() and 0 < int(text) < 1 << 32:
            return int(text)
    return None


@contextlib.contextmanager
def exclusive_lock(folder: Path, what: str, hint: str) -> Iterator[None]:
    """Hold ``folder``'s lock file while the block runs; FolderBusy (naming the holder's pid) when another has it.

    ``fcntl.flock`` locks go when their holder exits, even when it is killed, so a crashed writer never leaves the
    folder locked. Where there is no ``fcntl`` (Windows) the block runs without the lock.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    fd = open_regular(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _holder(fd)
            by = f"another process (pid {pid})" if pid else "another process"
            raise FolderBusy(f"{what} is being written by {by}", hint=hint) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
