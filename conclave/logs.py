"""The answer log: every ``ask`` and chat answer in SQLite at ``$CONCLAVE_HOME/logs.sqlite`` (like ``llm logs``).

One row per answer: question, answer, value, ok, error, the model(s), the method, token usage, seconds, the trace
events as JSON, when, and where it came from (``ask`` or ``chat``). Every text is passed through
:func:`conclave.redact.redact` before it is written, so a key echoed in an error (or pasted in a question) never
reaches the file.

The file is treated as :mod:`conclave.sessions` treats its own: a missing or 0-byte file becomes a new database;
anything else that is not an intact Conclave logs database is a :class:`LogStoreError` that says how to move it
aside, raised before a byte of it is written. Callers that only want to *add* to the log (``ask``, the chat) catch
that error and go on without logging: an answer is never lost because its log cannot be written.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from conclave.errors import ConclaveError, ConfigError
from conclave.redact import redact
from conclave.sessions import check_database_tables, connect_database, store_error

__all__ = ["LogRecord", "LogStore", "LogStoreError", "logs_path", "redacted"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    created  REAL NOT NULL,
    origin   TEXT NOT NULL DEFAULT 'ask',
    question TEXT NOT NULL,
    answer   TEXT NOT NULL DEFAULT '',
    value    TEXT,
    ok       INTEGER NOT NULL,
    error    TEXT,
    method   TEXT NOT NULL DEFAULT '',
    model    TEXT NOT NULL DEFAULT '',
    models   TEXT NOT NULL DEFAULT '{}',
    usage    TEXT NOT NULL DEFAULT '{}',
    seconds  REAL,
    trace    TEXT NOT NULL DEFAULT '[]',
    session  TEXT
);
CREATE INDEX IF NOT EXISTS answers_by_time ON answers(created);
"""
_COLUMNS = (
    "id",
    "created",
    "origin",
    "question",
    "answer",
    "value",
    "ok",
    "error",
    "method",
    "model",
    "models",
    "usage",
    "seconds",
    "trace",
    "session",
)
_JSON_COLUMNS = {"models", "usage", "trace"}


class LogStoreError(ConfigError):
    """The logs database cannot be opened, read or written (damaged, another program's file, disk full)."""


def logs_path(settings: Any) -> Path:
    """Where the answer log lives: ``logs.sqlite`` in ``CONCLAVE_HOME``."""
    return Path(settings.home) / "logs.sqlite"


def redacted(value: Any) -> Any:
    """``value`` with every string in it (nested in dicts and lists too) passed through :func:`redact`."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact(str(k)): redacted(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redacted(v) for v in value]
    return value


@dataclass(frozen=True)
class LogRecord:
    """One logged answer."""

    question: str
    answer: str
    ok: bool
    method: str = ""
    model: str = ""
    value: str | None = None
    error: str | None = None
    models: dict[str, str] = field(default_factory=dict)
    usage: dict[str, Any] = field(default_factory=dict)
    seconds: float | None = None
    trace: list[dict[str, Any]] = field(default_factory=list)
    origin: str = "ask"
    session: str | None = None
    created: float = 0.0
    id: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _store_error(path: Path, doing: str, exc: sqlite3.Error) -> ConclaveError:
    return store_error(path, doing, exc, "logs", LogStoreError)


class LogStore:
    """The answer log. One connection behind a lock; every write commits at once."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time):
        self.path = Path(path)
        self._clock = clock
        self._lock = threading.Lock()
        self._db = connect_database(self.path, "logs", LogStoreError)
        try:
            self._prepare()
        except BaseException:
            self._db.close()
            raise

    @classmethod
    def open(cls, settings: Any) -> LogStore:
        return cls(logs_path(settings))

    def _prepare(self) -> None:
        db = self._db
        try:
            db.execute("PRAGMA busy_timeout=5000")
            check_database_tables(db, self.path, "logs", {"answers": set(_COLUMNS)}, LogStoreError)
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise _store_error(self.path, "open", exc) from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add(self, record: LogRecord) -> int:
        """Log one answer (every text redacted); returns its id."""
        clean = redacted(record.to_dict())
        created = record.created or self._clock()
        row = (
            created,
            clean["origin"],
            clean["question"],
            clean["answer"] or "",
            clean["value"],
            int(bool(record.ok)),
            clean["error"],
            clean["method"] or "",
            clean["model"] or "",
            json.dumps(clean["models"], ensure_ascii=False, default=str),
            json.dumps(clean["usage"], ensure_ascii=False, default=str),
            record.seconds,
            json.dumps(clean["trace"], ensure_ascii=False, default=str),
            clean["session"],
        )
        with self._lock:
            try:
                cursor = self._db.execute(
                    "INSERT INTO answers (created, origin, question, answer, value, ok, error, method, model, models, "
                    "usage, seconds, trace, session) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    row,
                )
            except sqlite3.Error as exc:
                raise _store_error(self.path, "write to", exc) from exc
        return int(cursor.lastrowid or 0)

    def recent(self, limit: int = 20, search: str | None = None) -> list[LogRecord]:
        """The latest answers, newest first; ``search`` keeps those whose question or answer contains it."""
        sql = f"SELECT {', '.join(_COLUMNS)} FROM answers"
        args: list[Any] = []
        if search:
            pattern = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            sql += " WHERE question LIKE ? ESCAPE '\\' OR answer LIKE ? ESCAPE '\\'"
            args += [pattern, pattern]
        sql += " ORDER BY created DESC, id DESC LIMIT ?"
        args.append(max(0, limit))
        with self._lock:
            try:
                rows = self._db.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise _store_error(self.path, "read", exc) from exc
        return [self._record(row) for row in rows]

    def get(self, record_id: int) -> LogRecord:
        """One logged answer by its id (the first column of ``conclave logs``); ConfigError when there is none."""
        with self._lock:
            try:
                row = self._db.execute(
                    f"SELECT {', '.join(_COLUMNS)} FROM answers WHERE id = ?", (record_id,)
                ).fetchone()
            except sqlite3.Error as exc:
                raise _store_error(self.path, "read", exc) from exc
        if row is None:
            raise ConfigError(f"no logged answer {record_id}", hint="see `conclave logs` for the ids")
        return self._record(row)

    def _record(self, row: tuple[Any, ...]) -> LogRecord:
        data = dict(zip(_COLUMNS, row, strict=True))
        for name in _JSON_COLUMNS:
            try:
                data[name] = json.loads(data[name]) if data[name] else ({} if name != "trace" else [])
            except ValueError:  # a hand-edited row: show it as text rather than fail the listing
                data[name] = {"unreadable": str(data[name])[:200]} if name != "trace" else []
        data["ok"] = bool(data["ok"])
        data["question"] = str(data["question"] or "")
        data["answer"] = str(data["answer"] or "")
        return LogRecord(**data)


def record_from_ask(result: dict[str, Any], *, failure: dict[str, Any] | None = None) -> LogRecord:
    """The log record of one ``conclave ask`` run (its ``--json`` result); ``failure``: the run's RunFailed."""
    error = (failure or {}).get("error") or result.get("error")
    return LogRecord(
        question=str(result.get("question") or ""),
        answer=str(result.get("answer") or ""),
        ok=bool(result.get("ok")) and failure is None,
        method=str(result.get("method") or ""),
        model=str(result.get("model") or ""),
        value=None if result.get("value") is None else str(result["value"]),
        error=None if error is None else str(error),
        models=dict(result.get("models") or {}),
        usage=dict(result.get("usage") or {}),
        seconds=(result.get("timings") or {}).get("seconds"),
        trace=[e for e in result.get("trace") or [] if e.get("kind") != "answer_delta"],
        origin="ask",
        session=None if result.get("session") is None else str(result["session"]),
    )


def log_answer(settings: Any, record: LogRecord) -> LogStoreError | None:
    """Add ``record`` to the log; the error (for a one-line warning) instead of raising when it cannot be written."""
    try:
        store = LogStore.open(settings)
    except LogStoreError as exc:
        return exc
    try:
        store.add(record)
    except LogStoreError as exc:
        return exc
    finally:
        store.close()
    return None
