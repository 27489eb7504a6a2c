"""One conversation from the command line: ``conclave ask --continue`` and ``conclave ask --session ID``.

A conversation is a chat session (:mod:`conclave.sessions`, the same ones ``conclave chat`` keeps), so the chat can
resume what ``ask`` started and the other way round. ``--session ID`` continues that session. ``--continue``
continues the last conversation: the newer of the latest logged answer (``conclave logs``) and the most recently
updated session. A logged answer of a session continues that session; a one-off ``ask`` becomes a new session that
starts with its question and answer. Its earlier answered questions reach the run as ``RunContext.history`` (the
planner reads a follow-up against them, the prose methods see them as earlier turns).

Every file read here is under CONCLAVE_HOME (untrusted): the stores read it as data only.
"""

from __future__ import annotations

from typing import Any

from conclave.errors import ConfigError
from conclave.logs import LogRecord, LogStore
from conclave.sessions import SessionNotFound, SessionStore

__all__ = ["Conversation", "open_conversation"]


class Conversation:
    """The session an ``ask`` continues: its earlier turns, and where the new one is saved."""

    def __init__(self, store: SessionStore, session_id: str):
        self.store = store
        self.id = session_id

    def history(self) -> list[tuple[str, str]]:
        """The answered (question, answer) pairs so far."""
        return self.store.history(self.id)

    def save(self, result: dict[str, Any], failure: dict[str, Any] | None) -> None:
        """Add the question and the run's answer (its ``--json`` result) to the session."""
        ok = bool(result.get("ok")) and failure is None
        meta: dict[str, Any] = {
            "method": result.get("method"),
            "models": result.get("models") or {},
            "seconds": (result.get("timings") or {}).get("seconds"),
            "usage": (result.get("usage") or {}).get("agents") or {},
            "sources": result.get("sources") or [],
            "value": result.get("value"),
        }
        if not ok:
            meta["error"] = (failure or {}).get("error") or result.get("error")
        self.store.add_message(self.id, "user", str(result.get("question") or ""))
        self.store.add_message(
            self.id,
            "assistant",
            str(result.get("answer") or ""),
            status="ok" if ok else "failed",
            meta=meta,
            trace=[e for e in result.get("trace") or [] if e.get("kind") != "answer_delta"],
        )

    def close(self) -> None:
        self.store.close()


def open_conversation(settings: Any, *, session: str | None, continue_last: bool) -> Conversation | None:
    """The conversation ``--session ID`` or ``--continue`` names, or None for a question of its own."""
    if session is None and not continue_last:
        return None
    store = SessionStore.open(settings)
    try:
        session_id = store.resolve(session) if session is not None else _last_conversation(settings, store)
    except SessionNotFound as exc:
        store.close()
        raise ConfigError(exc.message, hint="see `conclave sessions list` (or `conclave logs`) for the ids") from exc
    except BaseException:
        store.close()
        raise
    return Conversation(store, session_id)


def _last_conversation(settings: Any, store: SessionStore) -> str:
    """The session of the newest of the latest logged answer and the latest session (see the module docstring)."""
    sessions = store.list_sessions()
    latest_session = sessions[0] if sessions else None
    logs = LogStore.open(settings)
    try:
        latest = next(iter(logs.recent(1)), None)
    finally:
        logs.close()
    if latest is not None and (latest_session is None or latest.created > latest_session.updated):
        if latest.session:
            try:
                return store.resolve(latest.session)
            except SessionNotFound:
                pass  # the session was deleted since: its logged answer starts a new one
        return _session_from(store, latest, settings)
    if latest_session is not None:
        return latest_session.id
    raise ConfigError(
        "there is no conversation to continue yet",
        hint='ask a first question (conclave ask "..."), then follow it up with conclave ask --continue "..."',
    )


def _session_from(store: SessionStore, record: LogRecord, settings: Any) -> str:
    """A new session that starts with a logged answer's question and answer."""
    info = store.create(settings=settings.redacted())
    store.add_message(info.id, "user", record.question)
    meta: dict[str, Any] = {"method": record.method, "models": record.models, "seconds": record.seconds}
    if record.error:
        meta["error"] = record.error
    store.add_message(info.id, "assistant", record.answer, status="ok" if record.ok else "failed", meta=meta)
    return info.id
