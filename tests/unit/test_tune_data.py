"""conclave tune's data side: the loss mask, malformed input, batch order, the cot export form, tuned-model names.

No training here (tests/integration/test_tune.py trains); the real SmolLM2 vocabulary is read from its GGUF (cheap)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conclave.errors import ConfigError
from conclave.tune.data import (
    IGNORE,
    ChatEncoder,
    DataReport,
    batch_order,
    batches_from,
    encode_all,
    read_conversations,
)

CONVERSATION = [
    {"role": "system", "content": "Solve it with a program."},
    {"role": "user", "content": "Natalia sold 48 clips in April and half as many in May. How many in all?"},
    {"role": "assistant", "content": "```python\ny1 = 48 / 2\ny2 = 48 + y1\nanswer = y2\n```"},
    {"role": "user", "content": "And in May alone?"},
    {"role": "assistant", "content": "Answer: 24"},
]


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def _chat(messages: list[dict[str, str]]) -> str:
    return json.dumps({"messages": messages})


# ------------------------------------------------------------------------------------------------ the loss mask


@pytest.fixture(scope="module")
def smollm2_encoder() -> ChatEncoder:
    from conclave.models.embedded import bundled_model_path

    return ChatEncoder.from_gguf(bundled_model_path())


def test_loss_mask_covers_only_assistant_tokens_with_the_real_template(smollm2_encoder: ChatEncoder) -> None:
    enc = smollm2_encoder
    example = enc.encode(CONVERSATION)
    # The ids are exactly what llama.cpp's tokenizer makes of the whole conversation.
    assert example.input_ids == enc.tokenize(enc.render(CONVERSATION, False))
    learnt = [t for t, label in zip(example.input_ids, example.labels, strict=True) if label != IGNORE]
    assert all(label in (IGNORE, t) for t, label in zip(example.input_ids, example.labels, strict=True))
    text = enc._keep.detokenize(learnt)
    # Both replies and their end-of-turn markers, nothing of the system, user or template's prompt text.
    assert text == (CONVERSATION[2]["content"] + "<|im_end|>\n" + CONVERSATION[4]["content"] + "<|im_end|>\n"), text
    masked = enc._keep.detokenize(
        [t for t, label in zip(example.input_ids, example.labels, strict=True) if label == IGNORE]
    )
    assert "Natalia" in masked and "And in May alone?" in masked and "<|im_start|>assistant\n" in masked
    assert "y1 = 48 / 2" not in masked and "Answer: 24" not in masked


def test_the_same_ids_as_llama_cpp_python_renders_and_tokenizes(smollm2_encoder: ChatEncoder) -> None:
    """The encoder no longer needs llama-cpp-python; where it is installed (the llama-cpp extra), its Jinja formatter
    and tokenizer give the same ids for the whole conversation and for the generation prompt."""
    pytest.importorskip("llama_cpp", reason="llama-cpp-python (the llama-cpp extra) is not installed")
    from llama_cpp import Llama
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    from conclave.models.embedded import bundled_model_path

    vocab = Llama(model_path=str(bundled_model_path()), vocab_only=True, verbose=False)
    template = vocab.metadata["tokenizer.chat_template"]
    eos, bos = (vocab._model.token_get_text(t) for t in (vocab.token_eos(), vocab.token_bos()))
    for messages, generation in ((CONVERSATION, False), (CONVERSATION[:2], True)):
        text = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos, add_generation_prompt=generation)(
            messages=messages  # type: ignore[arg-type]
        ).prompt
        assert smollm2_encoder.render(messages, generation) == text
        assert smollm2_encoder.tokenize(text) == vocab.tokenize(text.encode("utf-8"), add_bos=False, special=True)
    assert smollm2_encoder.pad_id == vocab.token_eos()


def test_the_generation_prompt_is_masked_so_training_matches_inference(smollm2_encoder: ChatEncoder) -> None:
    enc = smollm2_encoder
    example = enc.encode(CONVERSATION[:3])
    prompt = enc.tokenize(enc.render(CONVERSATION[:2], True))  # what inference sends before the reply
    assert example.input_ids[: len(prompt)] == prompt
    assert set(example.labels[: len(prompt)]) == {IGNORE}
    assert all(label != IGNORE for label in example.labels[len(prompt) :])


def test_mask_with_a_tiny_template() -> None:
    def render(messages: list[dict[str, str]], generation: bool) -> str:
        text = "".join(f"<{m['role']}>{m['content']}</>" for m in messages)
        return text + ("<assistant>" if generation else "")

    enc = ChatEncoder(render, lambda text: [ord(c) for c in text])
    example = enc.encode([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}])
    learnt = "".join(chr(t) for t, label in zip(example.input_ids, example.labels, strict=True) if label != IGNORE)
    assert learnt == "yo</>"
    assert "".join(chr(t) for t in example.input_ids) == "<user>hi</><assistant>yo</>"


def test_examples_cut_before_any_reply_are_left_out() -> None:
    def render(messages: list[dict[str, str]], generation: bool) -> str:
        text = "".join(("|" if m["role"] == "assistant" else "") + f"[{m['content']}]" for m in messages)
        return text + ("|" if generation else "")

    enc = ChatEncoder(render, lambda text: list(text.encode()))
    from conclave.tune.data import Conversation

    long_prompt = Conversation([{"role": "user", "content": "x" * 50}, {"role": "assistant", "content": "ok"}], "f:1")
    short = Conversation([{"role": "user", "content": "q"}, {"role": "assistant", "content": "ok"}], "f:2")
    report = DataReport()
    examples = encode_all([long_prompt, short], enc, max_length=20, report=report)
    assert len(examples) == 1 and report.dropped_too_long == 1 and report.truncated == 1
    with pytest.raises(ConfigError, match="--max-length"):
        encode_all([long_prompt], enc, max_length=20)


# ------------------------------------------------------------------------------------------------ bad input


def test_malformed_jsonl_names_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "data.jsonl", [_chat(CONVERSATION[:3]), "", "{not json"])
    with pytest.raises(ConfigError) as caught:
        read_conversations([path])
    assert f"{path}:3" in caught.value.message and "not a JSON line" in caught.value.message
    assert caught.value.hint and "messages" in caught.value.hint


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ('{"text": "no messages"}', 'no "messages" list'),
        ('{"messages": [{"role": "robot", "content": "x"}]}', "role"),
        ('{"messages": [{"role": "user", "content": 3}]}', "without text content"),
        ("[1, 2]", 'no "messages" list'),
    ],
)
def test_malformed_records(tmp_path: Path, line: str, says: str) -> None:
    path = _write(tmp_path / "data.jsonl", [_chat(CONVERSATION[:3]), line])
    with pytest.raises(ConfigError, match=says) as caught:
        read_conversations([path])
    assert f"{path}:2" in caught.value.message


def test_no_assistant_turns_is_a_clear_error(tmp_path: Path) -> None:
    path = _write(tmp_path / "prompts.jsonl", [_chat(CONVERSATION[:2]), _chat(CONVERSATION[:1])])
    with pytest.raises(ConfigError, match="no assistant turns to learn from") as caught:
        read_conversations([path])
    assert "2 conversations" in caught.value.message and "export-traces" in (caught.value.hint or "")


def test_conversations_without_a_reply_are_counted_and_skipped(tmp_path: Path) -> None:
    path = _write(tmp_path / "mixed.jsonl", [_chat(CONVERSATION[:2]), _chat(CONVERSATION[:3])])
    report = DataReport()
    found = read_conversations([path], report)
    assert len(found) == 1 and report.without_assistant == 1 and found[0].where == f"{path}:2"
    assert len(report.files[str(path)]) == 64


def test_missing_data_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="training data not found"):
        read_conversations([tmp_path / "nope.jsonl"])


# ------------------------------------------------------------------------------------------------ batches


def test_batch_order_is_bucketed_complete_and_deterministic() -> None:
    lengths = [5, 100, 7, 98, 6, 99, 8, 97]
    first = batch_order(lengths, 2, seed=1, epoch=0)
    assert first == batch_order(lengths, 2, seed=1, epoch=0)
    assert sorted(i for batch in first for i in batch) == list(range(8))
    assert all(abs(lengths[a] - lengths[b]) < 10 for a, b in first)  # similar lengths share a batch


def test_batches_resume_where_they_stopped() -> None:
    lengths = list(range(10, 30))
    full = batches_from(lengths, 3, seed=0)
    steps = [next(full) for _ in range(12)]  # 7 batches per epoch: into the second epoch
    resumed = batches_from(lengths, 3, seed=0, start_step=9)
    assert [next(resumed) for _ in range(3)] == steps[9:12]


# ------------------------------------------------------------------------------------------------ disk space


def test_not_enough_disk_space_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from conclave.tune import train

    monkeypatch.setattr(train.shutil, "disk_usage", lambda _path: shutil._ntuple_diskusage(10**9, 10**9, 1 << 20))
    with pytest.raises(ConfigError, match="not enough disk space for the checkpoint") as caught:
        train.ensure_space(tmp_path, 5 << 20, "checkpoint")
    assert "--out" in (caught.value.hint or "")


# ------------------------------------------------------------------------------------------------ the cot form


def test_cot_form_is_gsm8k_rationale_with_the_answer_line(tmp_path: Path) -> None:
    from conclave.workflows.answers import answer_value
    from conclave.workflows.evaluation.export import gsm8k_chain_lines

    item = {
        "question": "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
        "How many clips did Natalia sell altogether in April and May?",
        "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
        "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72",
    }
    no_notes = {"question": "What is 1,000 + 1?", "answer": "It is 1001.\n#### 1,001"}
    path = _write(tmp_path / "train.jsonl", [json.dumps(item), json.dumps(no_notes)])
    lines, skipped = gsm8k_chain_lines(path, form="cot")
    assert skipped == 1  # the same questions as the chain forms: an answer without notes gives no chain
    messages = json.loads(lines[0])["messages"]
    reply = messages[2]["content"]
    assert "<<" not in reply and reply.endswith("Answer: 72") and "48/2 = 24 clips in May." in reply
    assert answer_value(reply) == "72"
    from conclave.agents.prompting import load_prompt

    assert messages[0]["content"] == load_prompt("cot")


# ------------------------------------------------------------------------------------------------ names and specs


def test_tuned_model_specs() -> None:
    from conclave.models.backends import parse_spec

    assert parse_spec("embedded:smol-coa").tuned == "smol-coa"
    assert parse_spec("embedded:smol-coa").gguf_path is None
    assert parse_spec("embedded:./smol-coa").tuned is None and parse_spec("embedded:./smol-coa").gguf_path
    assert parse_spec("embedded:model.gguf").tuned is None
    assert parse_spec("embedded:/x/y.gguf").tuned is None
    assert parse_spec("embedded:qwen").tuned is None and parse_spec("embedded").tuned is None


def test_tuned_names_and_a_missing_tuned_model(conclave_home: Path) -> None:
    from conclave.models.backends import parse_spec
    from conclave.models.catalog import adapter_for, builtin_of, gguf_for
    from conclave.models.tuned import check_name

    for bad in ("a/b", "x.gguf", "", "qwen", "-x"):
        with pytest.raises(ConfigError):
            check_name(bad)
    spec = parse_spec("embedded:not-tuned-yet")
    assert builtin_of(spec) is None
    with pytest.raises(ConfigError, match="no tuned model named 'not-tuned-yet'") as caught:
        gguf_for(spec, conclave_home)
    assert "conclave tune list" in (caught.value.hint or "")
    assert adapter_for(parse_spec("embedded:smollm2"), conclave_home) is None


def test_a_base_that_transformers_cannot_read_from_gguf(tmp_path: Path, conclave_home: Path) -> None:
    gguf = pytest.importorskip("gguf")
    import numpy as np

    from conclave.tune.runs import tune

    path = tmp_path / "mamba.gguf"
    writer = gguf.GGUFWriter(str(path), "mamba")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    data = _write(tmp_path / "d.jsonl", [_chat(CONVERSATION[:3])])
    with pytest.raises(ConfigError, match="transformers cannot read 'mamba' models from GGUF") as caught:
        tune(conclave_home, base_spec=f"embedded:{path}", data=[data], name="m", config=None)
    assert "Llama or Qwen2" in (caught.value.hint or "")
    assert not (conclave_home / "tune-runs").exists()  # refused before anything was written
