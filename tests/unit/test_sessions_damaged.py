"""A damaged sessions database is refused with a clear error and left exactly as it was; failed writes raise.

Decision (see the docstring of ``conclave.sessions``): a missing or 0-byte ``sessions.sqlite`` holds nothing, so it
becomes a new, empty database; any other file that is not an intact Conclave sessions database is never written.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conclave.errors import ConclaveError
from conclave.sessions import SessionStore, SessionStoreError
from conclave.settings import load_settings


def _real_database(path: Path, messages: int = 200) -> None:
    store = SessionStore(path)
    session = store.create("kept")
    for i in range(messages):
        store.add_message(session.id, "user", f"question {i} " + "words " * 40)
    store.close()
    # Fold the WAL into the main file, so the file alone is the whole database (as after a clean exit).
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.execute("PRAGMA journal_mode=DELETE")
    db.close()


def _assert_clear(error: SessionStoreError, path: Path) -> None:
    assert isinstance(error, ConclaveError)
    assert "\n" not in error.message and str(path) in error.message
    assert error.hint and "mv " in error.hint and ".bak" in error.hint


@pytest.mark.parametrize(
    "content",
    [b"x", b" ", b"hello, this is not a database\n", b"\x00" * 4096, os.urandom(5000)],
    ids=["one-byte", "one-space", "text", "zeros", "random"],
)
def test_a_file_that_is_not_a_database_is_refused_and_never_written(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "home" / "sessions.sqlite"
    path.parent.mkdir()
    path.write_bytes(content)
    with pytest.raises(SessionStoreError, match="is damaged") as info:
        SessionStore(path)
    _assert_clear(info.value, path)
    assert path.read_bytes() == content
    assert [p.name for p in path.parent.iterdir()] == ["sessions.sqlite"]  # no -wal, -shm or -journal either


def test_a_truncated_database_is_refused_and_never_written(tmp_path: Path) -> None:
    path = tmp_path / "sessions.sqlite"
    _real_database(path)
    path.write_bytes(path.read_bytes()[:50])  # the header survives, the rest is gone
    content = path.read_bytes()
    with pytest.raises(SessionStoreError, match="is damaged") as info:
        SessionStore(path)
    _assert_clear(info.value, path)
    assert path.read_bytes() == content


def test_damaged_pages_are_refused_at_open_and_never_written(tmp_path: Path) -> None:
    path = tmp_path / "sessions.sqlite"
    _real_database(path)
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    for i in range(page, len(data), 7):  # every page but the first (header and schema) is scribbled on
        data[i] = 0xAB
    path.write_bytes(bytes(data))
    with pytest.raises(SessionStoreError, match="is damaged") as info:
        SessionStore(path)
    _assert_clear(info.value, path)
    assert path.read_bytes() == bytes(data)


def test_another_programs_database_is_refused_and_never_written(tmp_path: Path) -> None:
    path = tmp_path / "sessions.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE notes (body TEXT)")
    db.execute("INSERT INTO notes VALUES ('mine')")
    db.commit()
    db.close()
    content = path.read_bytes()
    with pytest.raises(SessionStoreError, match="not a Conclave sessions database") as info:
        SessionStore(path)
    _assert_clear(info.value, path)
    assert path.read_bytes() == content


def test_a_zero_byte_file_holds_nothing_and_becomes_a_new_database(tmp_path: Path) -> None:
    path = tmp_path / "sessions.sqlite"
    path.write_bytes(b"")
    store = SessionStore(path)
    session = store.create()
    store.add_message(session.id, "user", "still here?")
    store.close()
    assert [m.content for m in SessionStore(path).messages(session.id)] == ["still here?"]


def test_an_intact_database_opens_with_everything_in_it(tmp_path: Path) -> None:
    path = tmp_path / "sessions.sqlite"
    _real_database(path, messages=3)
    store = SessionStore(path)
    assert [s.messages for s in store.list_sessions()] == [3]


def _full(store: SessionStore) -> None:
    """Make the next write that needs a new page fail as on a full disk (SQLITE_FULL)."""
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count={pages}")


def test_a_write_to_a_full_disk_raises_and_keeps_what_was_saved(tmp_path: Path) -> None:
    path = tmp_path / "sessions.sqlite"
    store = SessionStore(path)
    session = store.create()
    store.add_message(session.id, "user", "saved before")
    _full(store)
    with pytest.raises(SessionStoreError, match="the disk is full") as info:
        store.add_message(session.id, "user", "lost? " * 5000)
    assert "\n" not in info.value.message and info.value.hint
    assert [m.content for m in store.messages(session.id)] == ["saved before"]
    # The connection is usable again once there is room.
    store._db.execute("PRAGMA max_page_count=1073741823")
    store.add_message(session.id, "user", "after")
    assert len(store.messages(session.id)) == 2


def test_a_write_to_a_locked_database_raises(tmp_path: Path) -> None:
    path = tmp_path / "sessions.sqlite"
    store = SessionStore(path)
    session = store.create()
    store._db.execute("PRAGMA busy_timeout=50")
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(SessionStoreError, match="locked by another program"):
            store.add_message(session.id, "user", "a question")
    finally:
        other.execute("ROLLBACK")
        other.close()
    store.add_message(session.id, "user", "a question")
    assert len(store.messages(session.id)) == 1


def test_a_read_that_fails_raises(tmp_path: Path) -> None:
    store = SessionStore(tmp_path / "sessions.sqlite")
    store._db.execute("DROP TABLE traces")  # as if the schema were damaged after opening
    store.create()
    with pytest.raises(SessionStoreError, match="cannot read the sessions database"):
        store.messages(store.list_sessions()[0].id)


def test_the_cli_reports_a_damaged_database_in_one_line(conclave_home: Path) -> None:
    from conclave.cli.main import app

    path = load_settings().sessions_path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    result = CliRunner().invoke(app, ["sessions", "list"])
    assert isinstance(result.exception, SessionStoreError)
    assert result.exception.exit_code == 2
    assert path.read_bytes() == b"x"


async def test_a_question_the_chat_cannot_save_is_reported_not_lost(conclave_home: Path) -> None:
    from conclave.tui import create_app

    from tests.tui.conftest import Script, ask, fixed_store, notices, wait_for

    settings = load_settings(method="direct")
    store = fixed_store(settings.sessions_path)
    store.create()  # the session row exists; the question is what does not fit
    _full(store)
    app = create_app(settings, runner=Script(), store=store)
    async with app.run_test(size=(120, 40)) as pilot:
        await ask(pilot, "a long question " * 2000)
        await wait_for(pilot, lambda: any("Cannot save the question" in n for n in notices(app)), timeout=5)
        shown = next(n for n in notices(app) if "Cannot save the question" in n)
        assert "the disk is full" in shown and "fix:" in shown
