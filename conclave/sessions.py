"""Chat sessions in SQLite: sessions, their messages, each answer's trace (a JSON list of run events), and the
settings in force (redacted).

Every message is written (and committed) the moment it completes, and the database runs in WAL mode, so a crash
or ``kill`` loses nothing said before it. Session ids are short random hex strings; any unique prefix finds one.

The file the user has is never replaced: a missing or 0-byte ``sessions.sqlite`` (it holds nothing, so nothing can
be lost) becomes a new, empty database; anything else that is not an intact Conclave sessions database (other
bytes, a damaged SQLite file, another program's database) is a :class:`SessionStoreError` that says how to move it
aside, raised before a single byte of it is written. Every failed read or write (disk full, locked, read-only,
damaged) is a :class:`SessionStoreError` too, never swallowed.
"""

from __future__ import annotations

import json
import secrets
import shlex
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from conclave.errors import ConclaveError, ConfigError
from conclave.redact import redact_secrets

__all__ = [
    "Message",
    "SessionInfo",
    "SessionNotFound",
    "SessionStore",
    "SessionStoreError",
    "export_json",
    "export_markdown",
]

Role = Literal["user", "assistant"]
Status = Literal["ok", "failed", "cancelled"]
TITLE_LIMIT = 60

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id       TEXT PRIMARY KEY,
    title    TEXT NOT NULL DEFAULT '',
    created  REAL NOT NULL,
    updated  REAL NOT NULL,
    settings TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS messages (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    role       TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
    content    TEXT NOT NULL,
    created    REAL NOT NULL,
    status     TEXT NOT NULL DEFAULT 'ok',
    meta       TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS messages_by_session ON messages(session_id, id);
CREATE TABLE IF NOT EXISTS traces (
    message_id INTEGER PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
    events     TEXT NOT NULL
);
"""


_COLUMNS = {
    "sessions": {"id", "title", "created", "updated", "settings"},
    "messages": {"id", "session_id", "role", "content", "created", "status", "meta"},
    "traces": {"message_id", "events"},
}
_SQLITE_HEADER = b"SQLite format 3\x00"
_DAMAGED = {"SQLITE_CORRUPT", "SQLITE_NOTADB"}


class SessionNotFound(ConfigError):
    """No session has the given id (or the prefix is ambiguous)."""


class SessionStoreError(ConfigError):
    """The sessions database cannot be opened, read or written (damaged, disk full, locked, read-only)."""


def _moved_aside(path: Path) -> str:
    return (
        f"move it aside: mv {shlex.quote(str(path))} {shlex.quote(str(path) + '.bak')}; "
        "a new, empty one is created on the next start"
    )


def _damaged(path: Path, why: str, what: str, error: type[ConclaveError]) -> ConclaveError:
    return error(f"the {what} database {path} is damaged ({why})", hint=_moved_aside(path))


def check_database_file(path: Path, what: str, error: type[ConclaveError]) -> None:
    """Refuse (without touching it) a non-empty file that is not an SQLite database.

    SQLite itself would silently turn a 1-byte file into a new database; only a missing or 0-byte file, which holds
    nothing, may become one. ``what`` names the store in messages ("sessions", "logs"); ``error`` is its error class.
    """
    try:
        if not path.exists():
            return
        if not path.is_file():
            raise error(f"the {what} database {path} is not a file", hint=_moved_aside(path))
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(100)
    except OSError as exc:
        raise error(
            f"cannot read the {what} database {path}: {exc.strerror or exc}",
            hint="check the permissions of the file and of CONCLAVE_HOME",
        ) from exc
    if not head:
        return
    if not head.startswith(_SQLITE_HEADER):
        raise _damaged(path, "it is not an SQLite database", what, error)
    page = int.from_bytes(head[16:18], "big") if len(head) >= 18 else 0
    if len(head) < 100 or size < (65536 if page == 1 else page):
        raise _damaged(path, f"it is cut short at {size} bytes", what, error)


def connect_database(path: Path, what: str, error: type[ConclaveError]) -> sqlite3.Connection:
    """A connection to the ``what`` database at ``path`` (autocommit, shared across threads behind the store's lock),
    after :func:`check_database_file`; its folder is created when missing."""
    check_database_file(path, what, error)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    except (sqlite3.Error, OSError) as exc:
        raise error(
            f"cannot open the {what} database {path}: {' '.join(str(exc).split())}",
            hint="check that CONCLAVE_HOME is writable, or move the damaged file aside",
        ) from exc


def check_database_tables(
    db: sqlite3.Connection, path: Path, what: str, tables: Mapping[str, set[str]], error: type[ConclaveError]
) -> None:
    """Refuse, reading only, a database that SQLite finds damaged or that belongs to another program: one whose
    tables are none of ``tables`` (name -> required columns), or whose table of ours lacks a column."""
    problems = [str(r[0]) for r in db.execute("PRAGMA quick_check").fetchall()]
    if problems != ["ok"]:
        first = " ".join(" ".join(problems[:1]).split())
        why = first if len(first) <= 120 else first[:119] + "…"
        raise _damaged(path, why, what, error)
    present = {str(r[0]) for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    ours = present & set(tables)
    if present - {"sqlite_sequence"} and not ours:
        raise error(
            f"{path} is not a Conclave {what} database (it holds other tables: {', '.join(sorted(present)[:5])})",
            hint=_moved_aside(path),
        )
    for table in sorted(ours):
        columns = {str(r[1]) for r in db.execute(f"PRAGMA table_info({table})")}
        if not tables[table] <= columns:
            raise error(
                f"{path} is not a Conclave {what} database (table {table} lacks "
                f"{', '.join(sorted(tables[table] - columns))})",
                hint=_moved_aside(path),
            )


def store_error(
    path: Path, doing: str, exc: sqlite3.Error, what: str = "sessions", error: type[ConclaveError] = SessionStoreError
) -> ConclaveError:
    """A one-line error for a failed SQLite call on the ``what`` database, with the fix for its cause."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = " ".join(str(exc).split())
    if name in _DAMAGED or "malformed" in text or "not a database" in text:
        return _damaged(path, text, what, error)
    if name == "SQLITE_FULL" or "is full" in text:
        return error(
            f"cannot {doing} the {what} database {path}: the disk is full",
            hint="free some disk space and try again; everything saved before is kept",
        )
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in text:
        return error(
            f"cannot {doing} the {what} database {path}: it is locked by another program",
            hint="close the other `conclave chat` (or whatever holds the file) and try again",
        )
    if name.startswith("SQLITE_READONLY") or "readonly" in text:
        return error(
            f"cannot {doing} the {what} database {path}: it is read-only",
            hint=f"make it writable: chmod u+w {shlex.quote(str(path))} (and its folder)",
        )
    return error(
        f"cannot {doing} the {what} database {path}: {text}", hint="check the disk and the permissions of CONCLAVE_HOME"
    )


@dataclass(frozen=True)
class SessionInfo:
    """One session's header: id, title, times, message count and the settings in force (redacted)."""

    id: str
    title: str
    created: float
    updated: float
    messages: int = 0
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Message:
    """One message. Assistant messages carry ``meta`` (method, models, usage, seconds, sources) and a trace."""

    id: int
    session_id: str
    role: Role
    content: str
    created: float
    status: Status = "ok"
    meta: dict[str, Any] = field(default_factory=dict)
    trace: list[dict[str, Any]] = field(default_factory=list)


def _title_from(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= TITLE_LIMIT else line[: TITLE_LIMIT - 1].rstrip() + "…"


class SessionStore:
    """The sessions database. Thread-safe (one connection behind a lock); every write commits at once."""

    def __init__(
        self,
        path: Path,
        *,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] = lambda: secrets.token_hex(4),
    ):
        self.path = Path(path)
        self._clock = clock
        self._new_id = new_id
        self._lock = threading.Lock()
        self._db = connect_database(self.path, "sessions", SessionStoreError)
        try:
            self._prepare()
        except BaseException:
            self._db.close()
            raise

    def _prepare(self) -> None:
        """Check the database (reading only), then switch it to WAL and create the tables it lacks."""
        db = self._db
        try:
            db.execute("PRAGMA busy_timeout=5000")
            check_database_tables(db, self.path, "sessions", _COLUMNS, SessionStoreError)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA foreign_keys=ON")
            db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise store_error(self.path, "open", exc) from exc

    @classmethod
    def open(cls, settings: Any) -> SessionStore:
        """The store at ``settings.sessions_path``."""
        return cls(settings.sessions_path)

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed on success, rolled back on any error; a failed write is a
        SessionStoreError (disk full, locked, read-only, damaged), never silently lost."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:
                        try:
                            self._db.execute("ROLLBACK")
                        except sqlite3.Error:
                            pass  # the error being raised says more than this one
                    raise
            except sqlite3.Error as exc:
                raise store_error(self.path, "save to", exc) from exc

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return list(self._db.execute(sql, args).fetchall())
            except sqlite3.Error as exc:
                raise store_error(self.path, "read", exc) from exc

    # ------------------------------------------------------------------ sessions

    def create(self, title: str = "", settings: dict[str, Any] | None = None) -> SessionInfo:
        """Start a new, empty session."""
        now = self._clock()
        session_id = self._new_id()
        with self._tx() as db:
            db.execute(
                "INSERT INTO sessions (id, title, created, updated, settings) VALUES (?, ?, ?, ?, ?)",
                (session_id, title.strip(), now, now, json.dumps(settings or {}, default=str)),
            )
        return SessionInfo(session_id, title.strip(), now, now, 0, dict(settings or {}))

    def resolve(self, session_id: str) -> str:
        """The full id for an id or a unique prefix of one."""
        key = session_id.strip()
        if not key:
            raise SessionNotFound("no session id given", hint="see `conclave sessions list`")
        rows = self._query("SELECT id FROM sessions WHERE id = ?", (key,))
        if rows:
            return str(rows[0][0])
        escaped = key.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = self._query("SELECT id FROM sessions WHERE id LIKE ? ESCAPE '\\'", (escaped + "%",))
        if len(rows) == 1:
            return str(rows[0][0])
        if not rows:
            raise SessionNotFound(f"no session {key!r}", hint="see `conclave sessions list` for the ids")
        raise SessionNotFound(f"session id {key!r} is ambiguous ({len(rows)} match)", hint="give more characters")

    def get(self, session_id: str) -> SessionInfo:
        """One session's header (id or unique prefix)."""
        full = self.resolve(session_id)
        rows = self._query(
            "SELECT s.id, s.title, s.created, s.updated, s.settings, "
            "(SELECT COUNT(*) FROM messages m WHERE m.session_id = s.id) FROM sessions s WHERE s.id = ?",
            (full,),
        )
        sid, title, created, updated, settings, count = rows[0]
        return SessionInfo(sid, title, created, updated, count, json.loads(settings))

    def list_sessions(self) -> list[SessionInfo]:
        """Every session, most recently updated first."""
        rows = self._query(
            "SELECT s.id, s.title, s.created, s.updated, s.settings, "
            "(SELECT COUNT(*) FROM messages m WHERE m.session_id = s.id) FROM sessions s "
            "ORDER BY s.updated DESC, s.created DESC, s.id"
        )
        return [SessionInfo(r[0], r[1], r[2], r[3], r[5], json.loads(r[4])) for r in rows]

    def rename(self, session_id: str, title: str) -> SessionInfo:
        """Give a session a new title."""
        full = self.resolve(session_id)
        title = " ".join(title.split())
        if not title:
            raise ConfigError("a session title cannot be empty", hint="type a title, e.g. 'adam notes'")
        with self._tx() as db:
            db.execute("UPDATE sessions SET title = ? WHERE id = ?", (title, full))
        return self.get(full)

    def delete(self, session_id: str) -> None:
        """Delete a session with its messages and traces."""
        full = self.resolve(session_id)
        with self._tx() as db:
            db.execute("DELETE FROM sessions WHERE id = ?", (full,))

    def update_settings(self, session_id: str, settings: dict[str, Any]) -> None:
        """Record the settings now in force (pass ``Settings.redacted()``: secrets must never reach the file)."""
        full = self.resolve(session_id)
        with self._tx() as db:
            db.execute("UPDATE sessions SET settings = ? WHERE id = ?", (json.dumps(settings, default=str), full))

    # ------------------------------------------------------------------ messages

    def add_message(
        self,
        session_id: str,
        role: Role,
        content: str,
        *,
        status: Status = "ok",
        meta: dict[str, Any] | None = None,
        trace: list[dict[str, Any]] | None = None,
    ) -> Message:
        """Append one completed message (and its trace) and commit; the first question titles an untitled session."""
        full = self.resolve(session_id)
        now = self._clock()
        content = redact_secrets(content)  # a configured key, pasted or echoed by a server, never reaches the file
        meta = json.loads(redact_secrets(json.dumps(meta or {}, default=str)))
        events = json.loads(redact_secrets(json.dumps(trace, default=str, ensure_ascii=False))) if trace else trace
        with self._tx() as db:
            cursor = db.execute(
                "INSERT INTO messages (session_id, role, content, created, status, meta) VALUES (?, ?, ?, ?, ?, ?)",
                (full, role, content, now, status, json.dumps(meta, default=str)),
            )
            message_id = int(cursor.lastrowid or 0)
            if events is not None:
                db.execute(
                    "INSERT INTO traces (message_id, events) VALUES (?, ?)",
                    (message_id, json.dumps(events, default=str, ensure_ascii=False)),
                )
            db.execute("UPDATE sessions SET updated = ? WHERE id = ?", (now, full))
            if role == "user":
                db.execute("UPDATE sessions SET title = ? WHERE id = ? AND title = ''", (_title_from(content), full))
        return Message(message_id, full, role, content, now, status, meta, list(events or []))

    def messages(self, session_id: str) -> list[Message]:
        """A session's messages in order, with their traces."""
        full = self.resolve(session_id)
        rows = self._query(
            "SELECT m.id, m.role, m.content, m.created, m.status, m.meta, t.events FROM messages m "
            "LEFT JOIN traces t ON t.message_id = m.id WHERE m.session_id = ? ORDER BY m.id",
            (full,),
        )
        return [
            Message(r[0], full, r[1], r[2], r[3], r[4], json.loads(r[5]), json.loads(r[6]) if r[6] else [])
            for r in rows
        ]

    def history(self, session_id: str) -> list[tuple[str, str]]:
        """(question, answer) pairs the model should see: answered questions only, in order."""
        pairs: list[tuple[str, str]] = []
        question: str | None = None
        for message in self.messages(session_id):
            if message.role == "user":
                question = message.content
            elif question is not None and message.status == "ok" and message.content.strip():
                pairs.append((question, message.content))
                question = None
        return pairs

    # ------------------------------------------------------------------ export

    def export(self, session_id: str, path: Path, fmt: Literal["md", "json"] = "md") -> Path:
        """Write a session to ``path`` as Markdown or JSON; returns the path."""
        info = self.get(session_id)
        messages = self.messages(info.id)
        text = (
            export_markdown(info, messages)
            if fmt == "md"
            else json.dumps(export_json(info, messages), indent=2, ensure_ascii=False, default=str) + "\n"
        )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot write {path}: {exc}", hint="choose a writable path") from exc
        return path


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


def export_json(info: SessionInfo, messages: list[Message]) -> dict[str, Any]:
    """The whole session as JSON data: header, settings, messages with meta and traces."""
    return {
        "id": info.id,
        "title": info.title,
        "created": info.created,
        "updated": info.updated,
        "settings": info.settings,
        "messages": [
            {
                "role": m.role,
                "content": m.content,
                "created": m.created,
                "status": m.status,
                "meta": m.meta,
                "trace": m.trace,
            }
            for m in messages
        ],
    }


def export_markdown(info: SessionInfo, messages: list[Message]) -> str:
    """The conversation as Markdown: questions, answers with method/model/timing, and cited sources."""
    lines = [f"# {info.title or 'Conclave session'}", ""]
    lines.append(f"Session `{info.id}` · started {_when(info.created)} · last message {_when(info.updated)}")
    settings = info.settings
    if settings:
        model = settings.get("model") or "automatic"
        lines.append(
            f"Method `{settings.get('method', '?')}` · model `{model}` · collection `{settings.get('collection', '?')}`"
        )
    lines.append("")
    for m in messages:
        if m.role == "user":
            lines += ["## You", "", m.content.strip(), ""]
            continue
        facts = [str(m.meta.get("method", ""))]
        models = m.meta.get("models") or {}
        if models:
            facts.append(", ".join(sorted(set(map(str, models.values())))))
        if m.meta.get("seconds") is not None:
            facts.append(f"{float(m.meta['seconds']):.1f} s")
        if m.status != "ok":
            facts.append(m.status)
        heading = "## Conclave" + (f" ({' · '.join(f for f in facts if f)})" if any(facts) else "")
        body = m.content.strip() or ("_(no answer: " + str(m.meta.get("error", m.status)) + ")_")
        lines += [heading, "", body, ""]
        sources = m.meta.get("sources") or []
        if sources:
            lines.append("Sources:")
            lines.append("")
            for i, s in enumerate(sources, 1):
                snippet = " ".join(str(s.get("text", "")).split())
                snippet = snippet if len(snippet) <= 160 else snippet[:159] + "…"
                lines.append(f"{i}. `{s.get('source', '?')}` — {snippet}")
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"
