"""A damaged ``items.jsonl`` costs only its damaged lines: resume keeps every valid record before and after them.

A corrupt line in the middle is skipped and reported (``file:line``), and left in the file; a torn last line (a crash
mid-write) is cut off, and the next append starts on a line of its own instead of being glued to a partial one.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from conclave.workflows.evaluation import run_eval
from conclave.workflows.evaluation.runs import JsonlLog, read_jsonl

from conclave.settings import Settings, load_settings
from tests.unit.test_harness import Factory, comparable, config, write_gsm8k


def _records(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"key": f"k{i}", "ok": True, "n": i} for i in range(start, start + n)]


def _write(path: Path, lines: list[str], *, end: str = "\n") -> None:
    path.write_bytes(("\n".join(lines) + end).encode("utf-8"))


def _dumps(records: list[dict[str, Any]]) -> list[str]:
    return [json.dumps(r) for r in records]


def test_a_corrupt_middle_line_is_skipped_and_the_records_after_it_kept(tmp_path: Path) -> None:
    path = tmp_path / "items.jsonl"
    before, after = _records(3), _records(2, start=3)
    _write(path, [*_dumps(before), '{"key": "k-bad", "ok": tr#garbage', *_dumps(after)])
    original = path.read_bytes()
    notes: list[str] = []

    log = JsonlLog(path, on_problem=notes.append)
    assert log.load() == before + after
    assert len(notes) == 1 and f"{path}:4:" in notes[0] and "not valid JSON" in notes[0]
    assert [(p.path, p.line) for p in log.problems] == [(path, 4)]
    # Nothing the user had is cut away: the damaged line stays for inspection, the records after it stay too.
    assert path.read_bytes() == original

    log.append({"key": "k5", "ok": True, "n": 5})
    records, _ = read_jsonl(path, problems=(problems := []))
    assert [r["key"] for r in records] == ["k0", "k1", "k2", "k3", "k4", "k5"]
    assert [p.line for p in problems] == [4]


def test_several_kinds_of_bad_lines_are_each_reported(tmp_path: Path) -> None:
    path = tmp_path / "items.jsonl"
    path.write_bytes(b'{"key": "a"}\n\x00\x00\x00\n[1, 2]\n\xff\xfe{}\n\n{"key": "b"}\n')
    log = JsonlLog(path, on_problem=lambda _m: None)
    assert [r["key"] for r in log.load()] == ["a", "b"]
    assert [p.line for p in log.problems] == [2, 3, 4]
    assert "not a JSON object" in log.problems[1].reason


def test_problems_are_logged_as_warnings_without_a_callback(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "items.jsonl"
    _write(path, [*_dumps(_records(1)), "not json", *_dumps(_records(1, start=1))])
    with caplog.at_level(logging.WARNING, logger="conclave.workflows.evaluation.runs"):
        assert len(JsonlLog(path).load()) == 2
        assert len(read_jsonl(path)[0]) == 2
    assert sum(f"{path}:2:" in r.getMessage() for r in caplog.records) == 2


def test_a_torn_last_line_is_cut_off_and_the_next_append_starts_a_new_line(tmp_path: Path) -> None:
    path = tmp_path / "items.jsonl"
    _write(path, [*_dumps(_records(3)), '{"key": "k3", "ok": tr'], end="")
    notes: list[str] = []
    log = JsonlLog(path, on_problem=notes.append)
    assert log.load() == _records(3)
    assert len(notes) == 1 and f"{path}:4:" in notes[0] and "unfinished last line" in notes[0]
    log.append({"key": "k3", "ok": True, "n": 3})
    lines = path.read_text().splitlines()
    assert [json.loads(line) for line in lines] == _records(4)


def test_append_never_glues_a_record_to_an_unterminated_line(tmp_path: Path) -> None:
    """Even without a load first (another writer, an older version), a record gets a line of its own."""
    path = tmp_path / "items.jsonl"
    _write(path, [*_dumps(_records(2)), '{"key": "k2", "o'], end="")
    JsonlLog(path).append({"key": "k9", "ok": True, "n": 9})
    problems: list[Any] = []
    records, _ = read_jsonl(path, problems=problems)
    assert [r["key"] for r in records] == ["k0", "k1", "k9"]
    assert [p.line for p in problems] == [3]


def test_a_complete_record_missing_only_its_newline_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "items.jsonl"
    _write(path, _dumps(_records(3)), end="")
    log = JsonlLog(path, on_problem=lambda m: pytest.fail(m))
    assert log.load() == _records(3)
    log.append(_records(1, start=3)[0])
    assert [json.loads(line) for line in path.read_text().splitlines()] == _records(4)


@pytest.fixture
def settings(conclave_home: Path) -> Settings:
    return load_settings(model="openai/scripted")


async def test_resume_keeps_the_records_after_a_corrupt_line(settings: Settings, tmp_path: Path) -> None:
    dataset = f"gsm8k:{write_gsm8k(tmp_path / 'dev.jsonl')}"
    first = await run_eval(config(dataset, cache=False, concurrency=1), settings, client_factory=Factory())
    items = first.run_dir / "items.jsonl"
    lines = items.read_text().splitlines()
    assert len(lines) == 8
    # A damaged line in the middle (a bad sector, a stray edit), and a torn last line.
    damaged = [*lines[:3], '{"key": "q4|cot|scr\x00\x00', *lines[3:], '{"key": "q1|di']
    items.write_text("\n".join(damaged), encoding="utf-8")

    resumed_backend = Factory()
    notes: list[str] = []
    resumed = await run_eval(
        config(dataset), settings, resume=first.run_id, client_factory=resumed_backend, on_note=notes.append
    )
    assert resumed_backend.calls == 0, "every finished unit is on disk: nothing runs again"
    assert comparable(sorted(resumed.records, key=lambda r: r.key)) == comparable(
        sorted(first.records, key=lambda r: r.key)
    )
    messages = notes  # the run's own notes (the CLI prints them), not a log line
    assert any(f"{items}:4:" in m and "not valid JSON" in m for m in messages), messages
    assert any(f"{items}:10:" in m and "unfinished last line" in m for m in messages), messages
    # The damaged line is still there to be looked at; the torn tail is gone and the file ends with a newline.
    after = items.read_text()
    assert after.endswith("\n") and after.splitlines() == damaged[:-1]
