"""Spec string -> ``ChatCompletionClient`` (the backend registry, ``backends.py``, builds it by the prefix); a role's
client, its name in usage, and the default model when none is set."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence

from autogen_core.models import ChatCompletionClient

from conclave.errors import BackendError
from conclave.models.backends import parse_spec
from conclave.models.resilience import ResilientClient
from conclave.models.spec import ModelSpec
from conclave.settings import Role, Settings

log = logging.getLogger(__name__)


async def make_client(spec: str | ModelSpec | None, settings: Settings) -> ChatCompletionClient:
    """Build the client a spec names (``None``: the automatic default, see :func:`default_spec`), through the
    backend registry (``conclave/models/backends.py``)."""
    from conclave.models.backends import BACKENDS

    if spec is None:
        spec = await default_spec(settings)
    parsed = spec if isinstance(spec, ModelSpec) else parse_spec(spec)
    return await BACKENDS.get(parsed.provider).build(parsed, settings)


_DEFAULT_CACHE: dict[str, str] = {}


async def default_spec(settings: Settings) -> str:
    """An Ollama model if Ollama answers and has one (a chat model), else ``embedded``."""
    host = settings.ollama_host.rstrip("/")
    if host in _DEFAULT_CACHE:
        return _DEFAULT_CACHE[host]
    from conclave.models.ollama import tags

    choice = "embedded"
    try:
        models = await tags(host, timeout=1.5)
    except BackendError:
        models = []
    for entry in models:
        name = str(entry.get("name") or entry.get("model") or "")
        if name and "embed" not in name:
            choice = f"ollama/{name}"
            break
    log.debug("default model: %s", choice)
    _DEFAULT_CACHE[host] = choice
    return choice


async def role_spec(settings: Settings, role: Role) -> str:
    """The spec a role runs on: its own setting, else ``model``, else the automatic default."""
    return settings.role_model(role) or await default_spec(settings)


async def role_clients(
    settings: Settings,
    make: Callable[[str], Awaitable[ChatCompletionClient]],
    roles: Sequence[Role],
    given: Mapping[str, ChatCompletionClient] | None = None,
) -> dict[str, ChatCompletionClient]:
    """A client per role: ``given`` ones kept, the others made once per distinct spec (roles naming the same spec
    share one client, and so one loaded model)."""
    out: dict[str, ChatCompletionClient] = dict(given or {})
    by_spec = {client_name(c): c for c in out.values()}
    for role in roles:
        if role in out:
            continue
        spec = await role_spec(settings, role)
        if spec not in by_spec:
            by_spec[spec] = await make(spec)
        out[role] = by_spec[spec]
    return out


def client_name(client: ChatCompletionClient) -> str:
    """The spec string a client was built from."""
    if isinstance(client, ResilientClient):
        return client.spec
    inner = getattr(client, "client", None)  # autogen-ext's ChatCompletionCache and similar wrappers
    if isinstance(inner, ChatCompletionClient):
        return client_name(inner)
    return str(getattr(client, "conclave_name", None) or getattr(client, "name", None) or type(client).__name__)
