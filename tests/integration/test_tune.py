"""``conclave tune`` for real: SmolLM2-135M (the bundled GGUF) tuned a few steps on CPU, its adapter loaded by
llama.cpp and used through ``embedded:NAME``; Ctrl-C and ``--resume``; the adapter's layout checked against torch.

Needs the ``tune`` extra (torch, transformers, peft, gguf); one thread throughout; the base is loaded once."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("peft")
pytest.importorskip("gguf")
torch = pytest.importorskip("torch")

from conclave.errors import ConfigError  # noqa: E402
from conclave.tune.train import TuneConfig, TuneInterrupted  # noqa: E402

pytestmark = pytest.mark.integration

GSM8K_ITEMS = [
    {
        "question": "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
        "How many clips did Natalia sell altogether in April and May?",
        "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
        "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72",
    },
    {
        "question": "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. "
        "How much did she earn?",
        "answer": "Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.\n"
        "Working 50 minutes, she earned 0.2 x 50 = $<<0.2*50=10>>10.\n#### 10",
    },
    {
        "question": "James writes a 3-page letter to 2 different friends twice a week. How many pages does he write "
        "a year?",
        "answer": "He writes each friend 3*2=<<3*2=6>>6 pages a week\nSo he writes 6*2=<<6*2=12>>12 pages every "
        "week\nThat means he writes 12*52=<<12*52=624>>624 pages a year\n#### 624",
    },
    {
        "question": "Albert buys 2 large pizzas and 2 small pizzas. A large pizza has 16 slices and a small pizza "
        "has 8 slices. How many pieces does he eat that day?",
        "answer": "He eats 32 from the largest pizzas because 2 x 16 = <<2*16=32>>32\nHe eats 16 from the small "
        "pizza because 2 x 8 = <<2*8=16>>16\nHe eats 48 pieces because 32 + 16 = <<32+16=48>>48\n#### 48",
    },
]


def _config(**overrides: Any) -> TuneConfig:
    values: dict[str, Any] = {
        "base_spec": "embedded:smollm2",
        "steps": 3,
        "batch_size": 1,
        "max_length": 256,
        "rank": 4,
        "alpha": 8.0,
        "dropout": 0.0,
        "checkpoint_every": 0,
        "lr": 1e-3,
        "threads": 1,
    }
    values.update(overrides)
    return TuneConfig(**values)


@pytest.fixture(scope="module")
def base() -> Any:
    """SmolLM2-135M read from its GGUF by transformers, once for the module (each test tunes a copy)."""
    torch.set_num_threads(1)
    from conclave.models.embedded import bundled_model_path
    from conclave.tune.load import load_base, read_info

    info = read_info(bundled_model_path())
    return info, load_base(info, dtype=torch.float32, device="cpu")


@pytest.fixture
def chains(tmp_path: Path) -> Path:
    """Four GSM8K training answers exported as program chains (the real export path)."""
    from conclave.workflows.evaluation.export import export_chains

    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(item) + "\n" for item in GSM8K_ITEMS), encoding="utf-8")
    report = export_chains(tmp_path / "chains.jsonl", gsm8k=[train], form="program", with_system=False)
    assert report.exported == 4
    return report.path


def test_tune_a_few_steps_then_answer_through_embedded_name(
    base: Any, chains: Path, conclave_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conclave.models.tuned import list_tuned
    from conclave.tune.runs import tune

    outcome = tune(
        conclave_home,
        base_spec="embedded:smollm2",
        data=[chains],
        name="smol-test",
        config=_config(),
        model=copy.deepcopy(base[1]),
        progress=False,
    )
    run = outcome.run_dir
    losses = [json.loads(line) for line in (run / "loss.jsonl").read_text().splitlines()]
    assert [e["step"] for e in losses] == [1, 2, 3] and all(e["loss"] > 0 for e in losses)
    assert outcome.result["tokens_per_s"] > 0 and outcome.result["steps"] == 3
    assert "<svg" in (run / "report.html").read_text() and "embedded:smol-test" in (run / "commands.txt").read_text()
    assert json.loads((run / "config.json").read_text())["data_sha256"]
    (listed,) = list_tuned(conclave_home)
    assert listed["name"] == "smol-test" and listed["base_spec"] == "embedded:smollm2" and len(listed["loss"]) == 3

    monkeypatch.setenv("CONCLAVE_EMBEDDED_THREADS", "1")
    from autogen_core.models import UserMessage

    from conclave.models.clients import make_client
    from conclave.settings import load_settings

    async def ask() -> str:
        client = await make_client("embedded:smol-test", load_settings(max_tokens=24, context_length=512))
        result = await client.create([UserMessage(content="What is 12 times 7?", source="user")])
        return str(result.content)

    import asyncio

    assert asyncio.run(ask()).strip()

    from conclave.workflows.evaluation.cache import cache_identity

    identity = cache_identity(load_settings(), "embedded:smol-test")["backend"]
    assert identity["model"] == "tuned:smol-test" and len(identity["adapter_sha256"]) == 64

    from conclave.models.discovery import list_models

    entries = {e.spec: e for e in asyncio.run(list_models(load_settings()))}
    assert entries["embedded:smol-test"].status == "tuned" and "3 steps" in entries["embedded:smol-test"].detail


def test_ctrl_c_saves_a_checkpoint_and_resume_continues(base: Any, chains: Path, conclave_home: Path) -> None:
    from conclave.tune.runs import tune

    def stop_after_two(step: int, loss: float) -> None:
        if step == 2:
            raise KeyboardInterrupt

    with pytest.raises(TuneInterrupted) as caught:
        tune(
            conclave_home,
            base_spec="embedded:smollm2",
            data=[chains],
            name="smol-resume",
            config=_config(steps=4),
            model=copy.deepcopy(base[1]),
            on_step=stop_after_two,
            progress=False,
        )
    assert "step 2 of 4" in caught.value.message and "--resume" in (caught.value.hint or "")
    (run,) = (conclave_home / "tune-runs").iterdir()
    assert (run / "checkpoint.pt").is_file() and not (run / "checkpoint.pt.tmp").exists()
    assert not (run / "adapter.gguf").exists() and not (conclave_home / "tuned" / "smol-resume").exists()
    assert torch.load(run / "checkpoint.pt", weights_only=True)["step"] == 2

    outcome = tune(
        conclave_home,
        base_spec=None,
        data=[],
        name=None,
        config=None,
        resume=run.name,
        model=copy.deepcopy(base[1]),
        progress=False,
    )
    losses = [json.loads(line) for line in (run / "loss.jsonl").read_text().splitlines()]
    assert [e["step"] for e in losses] == [1, 2, 3, 4]
    assert outcome.result["steps"] == 4 and (run / "adapter.gguf").is_file()
    assert (conclave_home / "tuned" / "smol-resume" / "adapter.gguf").is_file()


def test_no_room_for_the_checkpoint(
    base: Any, chains: Path, conclave_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from conclave.tune import train
    from conclave.tune.runs import tune

    monkeypatch.setattr(train.shutil, "disk_usage", lambda _p: shutil._ntuple_diskusage(10**9, 10**9, 4 << 20))
    with pytest.raises(ConfigError, match="not enough disk space"):
        tune(
            conclave_home,
            base_spec="embedded:smollm2",
            data=[chains],
            name="smol-full",
            config=_config(),
            model=copy.deepcopy(base[1]),
            progress=False,
        )
    (run,) = (conclave_home / "tune-runs").iterdir()
    assert not (run / "checkpoint.pt").exists() and not (run / "adapter.gguf").exists()


def _llama_logits(gguf: Path, tokens: list[int], lora: Path | None = None) -> np.ndarray:
    # Every position's logits: llama-cpp-python's logits_all (xllamacpp's server gives only the last position's).
    Llama = pytest.importorskip(  # noqa: N806 - the class, by its own name
        "llama_cpp", reason="llama-cpp-python (the llama-cpp extra) is not installed: it reads every position's logits"
    ).Llama

    llm = Llama(
        model_path=str(gguf),
        n_ctx=128,
        n_threads=1,
        verbose=False,
        logits_all=True,
        lora_path=str(lora) if lora else None,
    )
    try:
        llm.eval(tokens)
        return np.array(llm.scores[: len(tokens)])
    finally:
        llm.close()


@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize(("targets", "std", "least"), [(("q_proj", "k_proj"), 0.1, 0.6), (None, 0.05, 0.8)])
def test_adapter_in_llama_cpp_moves_logits_as_in_torch(
    base: Any, tmp_path: Path, targets: tuple[str, ...] | None, std: float, least: float
) -> None:
    """llama.cpp's base + adapter against the torch model with the same LoRA: the change the adapter makes to the
    logits agrees. q/k alone checks the RoPE row permutation of lora_b (unpermuted, the correlation is about 0);
    all seven projections check the tensor names. (The two bases differ a little: llama.cpp quantizes activations.)"""
    from peft import LoraConfig, get_peft_model

    from conclave.tune.adapter import lora_pairs, write_adapter

    info, model = base
    torch.manual_seed(0)
    tokens = [1, 504, 3458, 282, 4649, 314, 1001, 2000, 3000, 45, 67, 89]
    tuned = get_peft_model(
        copy.deepcopy(model),
        LoraConfig(r=8, lora_alpha=16, target_modules=list(targets or TuneConfig.targets), lora_dropout=0.0),
    )
    for name, weight in tuned.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(weight, std=std)
    with torch.no_grad():
        base_t = model(torch.tensor([tokens])).logits[0].numpy()
        tuned_t = tuned(torch.tensor([tokens])).logits[0].numpy()
    adapter = write_adapter(tmp_path / "a.gguf", lora_pairs(tuned.state_dict()), info, alpha=16)
    base_c = _llama_logits(info.path, tokens)
    tuned_c = _llama_logits(info.path, tokens, adapter)
    d_t, d_c = tuned_t - base_t, tuned_c - base_c
    agreement = np.mean([np.corrcoef(d_t[i], d_c[i])[0, 1] for i in range(1, len(tokens))])
    assert agreement > least, agreement


def test_cli_one_line_errors(tmp_path: Path) -> None:
    """Through the real command: a malformed line is one `error:` line naming file:line, then one `fix:` line."""
    from tests.integration.test_cli_errors import assert_clean_error, run_cli

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n{oops\n', encoding="utf-8")
    error, fix = assert_clean_error(
        run_cli("tune", "embedded:smollm2", str(bad), "--name", "x", CONCLAVE_EMBEDDED_THREADS="1"), code=2
    )
    assert f"{bad}:2: not a JSON line" in error and "messages" in fix
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n', encoding="utf-8")
    error, fix = assert_clean_error(run_cli("tune", "embedded:smollm2", str(prompts), "--name", "x"), code=2)
    assert "no assistant turns to learn from" in error


class _Payload:
    """A pickle that would run code when fully unpickled (it writes a marker file)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.write_text, (self.marker, "code ran"))


def test_a_checkpoint_that_would_run_code_is_refused(
    base: Any, chains: Path, conclave_home: Path, tmp_path: Path
) -> None:
    """Files under CONCLAVE_HOME are data: resuming never unpickles anything but tensors and plain values."""
    from conclave.tune.runs import tune

    def stop_at_once(step: int, loss: float) -> None:
        raise KeyboardInterrupt

    with pytest.raises(TuneInterrupted):
        tune(
            conclave_home,
            base_spec="embedded:smollm2",
            data=[chains],
            name="smol-hostile",
            config=_config(steps=2),
            model=copy.deepcopy(base[1]),
            on_step=stop_at_once,
            progress=False,
        )
    (run,) = (conclave_home / "tune-runs").iterdir()
    marker = tmp_path / "marker"
    torch.save({"step": 1, "lora": _Payload(marker)}, run / "checkpoint.pt")
    with pytest.raises(ConfigError, match="cannot read .*checkpoint.pt"):
        tune(conclave_home, base_spec=None, data=[], name=None, config=None, resume=run.name, progress=False)
    assert not marker.exists()
