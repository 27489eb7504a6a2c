"""Training examples: chat JSONL -> token ids and labels, the loss on the assistant turns only.

Each line is ``{"messages": [{"role": ..., "content": ...}, ...]}`` (what ``conclave eval export-traces`` writes).
A conversation is rendered with the GGUF's own chat template (Jinja, compiled as llama-cpp-python's formatter
compiles it), and tokenized by llama.cpp from the same file (xllamacpp): the tokens the embedded backend feeds the
model at inference.
The prompt part of each assistant turn (everything the template writes before the reply, including its generation
prompt) is masked out; the reply and the template's end-of-turn marker are learnt, so the tuned model stops there.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from conclave.errors import ConfigError
from conclave.models.weights import sha256_file
from conclave.nesting import loads

IGNORE = -100
"""The label of a token the loss ignores (PyTorch's cross-entropy default)."""

ROLES = ("system", "user", "assistant")
_FORMAT_HINT = 'each line must be one JSON object {"messages": [{"role": ..., "content": ...}, ...]}'


@dataclass(frozen=True)
class Conversation:
    messages: list[dict[str, str]]
    where: str
    """``file:line``, for messages about this example."""


@dataclass
class DataReport:
    """What the JSONL files held."""

    files: dict[str, str] = field(default_factory=dict)
    """File path -> SHA-256."""
    conversations: int = 0
    without_assistant: int = 0
    truncated: int = 0
    dropped_too_long: int = 0


def read_conversations(paths: Sequence[Path], report: DataReport | None = None) -> list[Conversation]:
    """Every conversation with at least one assistant turn; ConfigError (naming ``file:line``) for a malformed line,
    and when no file holds an assistant turn to learn from."""
    report = report if report is not None else DataReport()
    if not paths:
        raise ConfigError("no training data given", hint="name one or more chat JSONL files")
    out: list[Conversation] = []
    for path in paths:
        if not path.is_file():
            raise ConfigError(
                f"training data not found: {path}",
                hint="write one with `conclave eval export-traces --gsm8k TRAIN.jsonl -o chains.jsonl`",
            )
        report.files[str(path)] = sha256_file(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}", hint="give a UTF-8 chat JSONL file") from exc
        for number, raw in enumerate(text.splitlines(), 1):
            if not raw.strip():
                continue
            where = f"{path}:{number}"
            messages = _messages(raw, where)
            report.conversations += 1
            if not any(m["role"] == "assistant" and m["content"].strip() for m in messages):
                report.without_assistant += 1
                continue
            out.append(Conversation(messages, where))
    if not out:
        names = ", ".join(str(p) for p in paths)
        raise ConfigError(
            f"{names}: no assistant turns to learn from ({report.conversations} conversations)",
            hint="the loss is on assistant replies; export chains with `conclave eval export-traces`",
        )
    return out


def _messages(raw: str, where: str) -> list[dict[str, str]]:
    try:
        record = loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where}: not a JSON line ({exc.msg})", hint=_FORMAT_HINT) from exc
    messages = record.get("messages") if isinstance(record, dict) else None
    if not isinstance(messages, list) or not messages:
        raise ConfigError(f'{where}: no "messages" list', hint=_FORMAT_HINT)
    out = []
    for message in messages:
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise ConfigError(f"{where}: a message without a system, user or assistant role", hint=_FORMAT_HINT)
        if not isinstance(message.get("content"), str):
            raise ConfigError(f"{where}: a {message['role']} message without text content", hint=_FORMAT_HINT)
        out.append({"role": message["role"], "content": message["content"]})
    return out


@dataclass(frozen=True)
class Example:
    input_ids: list[int]
    labels: list[int]
    """``input_ids`` where the loss applies (assistant tokens), :data:`IGNORE` elsewhere."""

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def learnt(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE)


class ChatEncoder:
    """Conversations -> :class:`Example`, with a chat template and a tokenizer.

    ``render(messages, add_generation_prompt)`` gives the prompt text; ``tokenize(text)`` its ids (special tokens
    parsed, no BOS added: the template writes its own).
    """

    def __init__(
        self,
        render: Callable[[list[dict[str, str]], bool], str],
        tokenize: Callable[[str], list[int]],
        *,
        pad_id: int = 0,
    ):
        self.render = render
        self.tokenize = tokenize
        self.pad_id = pad_id
        self._keep: Any = None

    @classmethod
    def from_gguf(cls, path: Path) -> ChatEncoder:
        """The chat template and the tokenizer of a GGUF file, as llama.cpp loads them for inference."""
        from conclave.models.xllama import Vocabulary

        vocab = Vocabulary(path)
        if not vocab.chat_template:
            raise ConfigError(
                f"{path.name} carries no chat template", hint="tune an instruction model whose GGUF has one"
            )
        template = chat_template(vocab.chat_template)

        def render(messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
            return template.render(
                messages=messages,
                eos_token=vocab.eos_token,
                bos_token=vocab.bos_token,
                add_generation_prompt=add_generation_prompt,
                raise_exception=_raise_exception,
                strftime_now=lambda f: datetime.now().strftime(f),
                functions=None,
                function_call=None,
                tools=None,
                tool_choice=None,
            )

        encoder = cls(render, vocab.tokenize, pad_id=max(0, vocab.eos_id))
        encoder._keep = vocab  # the vocabulary lives as long as the encoder
        return encoder

    def encode(self, messages: list[dict[str, str]]) -> Example:
        """Ids of the whole conversation; labels on every assistant reply (and its end-of-turn marker) only."""
        ids: list[int] = []
        labels: list[int] = []
        done = ""  # the text rendered so far; each step appends what one more message adds
        for index, message in enumerate(messages):
            if message["role"] == "assistant":
                prompt = self.render(messages[:index], True)
                prompt_part = _extension(done, prompt)
                ids += (part := self.tokenize(prompt_part))
                labels += [IGNORE] * len(part)
                done = prompt
            through = self.render(messages[: index + 1], False)
            added = _extension(done, through)
            part = self.tokenize(added) if added else []
            ids += part
            labels += list(part) if message["role"] == "assistant" else [IGNORE] * len(part)
            done = through
        return Example(ids, labels)


def chat_template(source: str) -> Any:
    """A GGUF's Jinja chat template, compiled as llama-cpp-python's formatter and Transformers compile one: a
    sandbox (the template is data from the model file), trimmed blocks, loop controls, ``{% generation %}`` passed
    through, ``tojson`` without ASCII escapes."""
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class IgnoreGenerationTags(jinja2.ext.Extension):
        tags = {"generation"}

        def parse(self, parser: Any) -> Any:
            parser.stream.skip(1)
            return parser.parse_statements(("name:endgeneration",), drop_needle=True)

    environment = ImmutableSandboxedEnvironment(
        loader=jinja2.BaseLoader(),
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=[IgnoreGenerationTags, jinja2.ext.loopcontrols],
    )
    environment.filters["tojson"] = lambda x, ensure_ascii=False, indent=None, separators=None, sort_keys=False: (
        json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)
    )
    try:
        return environment.from_string(source)
    except jinja2.TemplateError as exc:
        raise ConfigError(f"the model's chat template does not compile: {exc}", hint="tune another model") from exc


def _raise_exception(message: str) -> None:
    """What a chat template calls to refuse a conversation (``raise_exception('...')``)."""
    raise ConfigError(f"the model's chat template refused the conversation: {message}")


def _extension(done: str, text: str) -> str:
    """What ``text`` adds to ``done``. Chat templates render a conversation's prefix as a prefix of its rendering;
    one that does not (a template that rewrites earlier turns) cannot be masked turn by turn."""
    if not text.startswith(done):
        raise ConfigError(
            "the model's chat template rewrites earlier turns, so replies cannot be masked turn by turn",
            hint="train on single-turn conversations (system, user, assistant)",
        )
    return text[len(done) :]


def encode_all(
    conversations: Sequence[Conversation], encoder: ChatEncoder, max_length: int, report: DataReport | None = None
) -> list[Example]:
    """Examples for every conversation; those cut off at ``max_length`` before any reply token are left out."""
    report = report if report is not None else DataReport()
    out = []
    for conversation in conversations:
        full = encoder.encode(conversation.messages)
        example = full
        if len(full) > max_length:
            report.truncated += 1
            example = Example(full.input_ids[:max_length], full.labels[:max_length])
        if example.learnt == 0:
            report.dropped_too_long += 1
            continue
        out.append(example)
    if not out:
        raise ConfigError(
            f"every example's reply lies beyond --max-length {max_length} tokens", hint="raise --max-length"
        )
    return out


def batch_order(lengths: Sequence[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """One epoch's batches of example indices, length-bucketed: shuffled, sorted by length within windows of 64
    batches (so a batch pads little), then the batches shuffled. Deterministic in (seed, epoch): a resumed run
    sees the same order."""
    rng = random.Random(seed * 1_000_003 + epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * 64
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def batches_from(
    lengths: Sequence[int], batch_size: int, seed: int, start_step: int = 0
) -> Iterator[tuple[int, list[int]]]:
    """``(epoch, batch)`` for every step from ``start_step`` on, epoch after epoch (endless; the caller stops)."""
    per_epoch = max(1, -(-len(lengths) // batch_size))
    epoch, skip = divmod(start_step, per_epoch)
    while True:
        for batch in batch_order(lengths, batch_size, seed, epoch)[skip:]:
            yield epoch, batch
        epoch, skip = epoch + 1, 0


def collate(examples: Sequence[Example], pad_id: int) -> dict[str, Any]:
    """A padded batch as tensors: ``input_ids``, ``attention_mask``, ``labels`` (padding ignored by the loss)."""
    import torch

    width = max(len(e) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example)
        ids[row, :n] = torch.tensor(example.input_ids)
        labels[row, :n] = torch.tensor(example.labels)
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}
