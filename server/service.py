"""One team serving many requests: what ``conclave serve`` and ``conclave mcp`` share.

A :class:`Team` is made once per server process from the settings it was started with. It loads each model's clients
once (every request to the same model shares them, and so one loaded GGUF), opens the knowledge store once, and
admits requests through a :class:`Limiter` per model: at most what the model serves at once runs
(``backends.parallel_requests``), a bounded number wait, and the rest are turned away with how long to wait
(:class:`Busy`).

Requests choose only among what the server was started with: a method by name, a model from its served list, a
collection from its allowed list. They cannot name a file, an endpoint or another collection (:class:`Refused`).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from conclave.errors import ConclaveError
from conclave.events import Event
from conclave.settings import RoleModels, Settings

__all__ = ["Busy", "Limiter", "Refused", "Request", "Team"]

DEFAULT_QUEUE = 8
"""Requests that may wait for a model that is busy; more are turned away (HTTP 429)."""
REMOTE_PARALLEL = 4
"""Requests run at once on a model with no limit of its own (a remote endpoint): its server decides the rest."""


class Refused(ConclaveError):
    """A request names something the server does not offer (a model, a method, a collection); ``status`` is the
    HTTP status it maps to and ``param`` the request field at fault."""

    def __init__(self, message: str, *, hint: str | None = None, status: int = 400, param: str | None = None):
        super().__init__(message, hint=hint)
        self.status = status
        self.param = param


class Busy(ConclaveError):
    """Every slot of a model is taken and its queue is full; ``retry_after`` seconds is a fair wait."""

    def __init__(self, retry_after: int, queue: int):
        super().__init__(
            f"the server is busy: {queue} request(s) are already waiting for the model",
            hint=f"retry in about {retry_after} s",
        )
        self.retry_after = retry_after


class Limiter:
    """At most ``parallel`` requests run at once and ``queue`` more wait (first come, first served); past that
    :meth:`slot` raises :class:`Busy` at once. ``Retry-After`` is the queue's expected wait, from the mean time the
    model took per request so far."""

    def __init__(self, parallel: int, queue: int, *, guess_seconds: float = 10.0):
        self.parallel = max(1, parallel)
        self.queue = max(0, queue)
        self.running = 0
        self.waiting = 0
        self._free = asyncio.Semaphore(self.parallel)
        self._mean = guess_seconds
        self._done = 0

    def retry_after(self) -> int:
        return max(1, math.ceil(self._mean * (self.waiting + 1) / self.parallel))

    async def acquire(self) -> Callable[[], None]:
        """Wait for a slot (:class:`Busy` at once when the queue is full); returns its release, which may be called
        more than once (a reply that never started and one that ended both release it)."""
        if self.running + self.waiting >= self.parallel + self.queue:
            raise Busy(self.retry_after(), self.waiting)
        self.waiting += 1
        try:
            await self._free.acquire()
        finally:
            self.waiting -= 1
        self.running += 1
        started = time.monotonic()
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            self.running -= 1
            self._free.release()
            self._done += 1
            took = time.monotonic() - started
            self._mean += (took - self._mean) / min(self._done, 20)  # a running mean that follows recent requests

        return release

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        release = await self.acquire()
        try:
            yield
        finally:
            release()


@dataclass(frozen=True)
class Request:
    """One question for the team, as a protocol hands it over (checked by :meth:`Team.check`)."""

    question: str
    method: str | None = None
    """A method name or variant (``coa:k=3``); None: the server's."""
    model: str | None = None
    """One of the served model specs; None: the server's default."""
    collection: str | None = None
    """One of the allowed collections; None: the server's default."""
    history: list[tuple[str, str]] = field(default_factory=list)
    system: str | None = None


class Team:
    """The team a server answers with (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        *,
        models: Sequence[str] = (),
        collections: Sequence[str] = (),
        queue: int = DEFAULT_QUEUE,
        clients: dict[str, Any] | None = None,
        store: Any = None,
    ):
        """``models``: the specs a request may choose (default: the configured model, else ``embedded``); the first
        given is also the default. ``collections``: those a request may search (default: the configured one); the
        first is the default. ``clients`` (per role) replaces every model with given clients: tests run the server
        on scripted models this way."""
        self.settings = settings
        self.models: tuple[str, ...] = tuple(dict.fromkeys(models)) or (settings.model or "embedded",)
        self.default_model: str | None = models[0] if models else None
        self.collections: tuple[str, ...] = tuple(dict.fromkeys(collections)) or (settings.collection,)
        self.queue = queue
        self._given = clients
        self._clients: dict[str | None, dict[str, Any]] = {}
        self._limiters: dict[str | None, Limiter] = {}
        self._locks: dict[str | None, asyncio.Lock] = {}
        self._store = store
        self._store_lock: asyncio.Lock | None = None
        self._demo_checked = False

    # ------------------------------------------------------------------ what a request may choose

    def check(self, request: Request) -> Request:
        """The request with its choices checked against what the server offers (:class:`Refused` otherwise)."""
        from conclave.workflows.runner import parse_method

        if request.model is not None and request.model not in self.models:
            raise Refused(
                f"model {request.model!r} is not served here",
                hint=f"use one of: {', '.join(self.models)} (the server's --model list)",
                status=404,
                param="model",
            )
        if request.method is not None:
            try:
                parse_method(request.method)
            except ConclaveError as exc:
                raise Refused(exc.message, hint=exc.hint, status=404, param="model") from None
        if request.collection is not None and request.collection not in self.collections:
            raise Refused(
                f"collection {request.collection!r} is not served here",
                hint=f"use one of: {', '.join(self.collections)} (the server's --collection list)",
                param="collection",
            )
        if request.system is not None and len(request.system) > 4000:
            raise Refused("the system message is longer than 4,000 characters", param="messages")
        if not request.question.strip():
            raise Refused("the question (the last user message) is empty", param="messages")
        return request

    def settings_for(self, model: str | None) -> Settings:
        """The server's settings with every role on ``model`` (a request's explicit choice beats per-role
        settings), or as they are for the default."""
        spec = model if model is not None else self.default_model
        if spec is None:
            return self.settings
        return self.settings.model_copy(update={"model": spec, "roles": RoleModels()})

    def limiter(self, model: str | None) -> Limiter:
        key = model if model is not None else self.default_model
        if key not in self._limiters:
            from conclave.models.backends import parallel_requests

            settings = self.settings_for(key)
            spec = settings.role_model("reasoner") or "embedded"
            parallel = 1 if self._given is not None else parallel_requests(spec, settings)
            self._limiters[key] = Limiter(parallel or REMOTE_PARALLEL, self.queue)
        return self._limiters[key]

    # ------------------------------------------------------------------ shared resources

    async def clients(self, model: str | None) -> dict[str, Any]:
        """The clients per role for ``model``, made on first use and shared by every later request."""
        from conclave.models import make_client, role_clients
        from conclave.settings import AGENT_ROLES

        if self._given is not None:
            return self._given
        key = model if model is not None else self.default_model
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            if key not in self._clients:
                settings = self.settings_for(key)
                self._clients[key] = await role_clients(settings, lambda spec: make_client(spec, settings), AGENT_ROLES)
        return self._clients[key]

    async def store(self) -> Any:
        """The knowledge store, opened once (the demo notes ingested on first use, as ``ask`` does)."""
        from conclave.tools.demo import DEMO_COLLECTION, ensure_demo_collection
        from conclave.tools.store import KnowledgeStore

        if self._store_lock is None:
            self._store_lock = asyncio.Lock()
        async with self._store_lock:
            if self._store is None:
                self._store = await asyncio.to_thread(KnowledgeStore.open, self.settings)
            if not self._demo_checked and DEMO_COLLECTION in self.collections:
                await ensure_demo_collection(self.settings, self._store)
            self._demo_checked = True
        return self._store

    async def warm_up(self) -> None:
        """Load the default model's clients and open the store before the first request."""
        from conclave.workflows.methods import searches_knowledge

        await self.clients(None)
        if searches_knowledge(self.settings.method):
            await self.store()

    # ------------------------------------------------------------------ answering

    async def run(self, request: Request) -> AsyncIterator[Event]:
        """The run's events (``workflows.runner.run_question``) for a checked request. Admission is the caller's
        (:meth:`limiter`), so a protocol can refuse before it starts its reply."""
        from conclave.workflows.methods import searches_knowledge
        from conclave.workflows.runner import build_context, run_question

        settings = self.settings_for(request.model)
        if request.system:
            settings = settings.model_copy(update={"system": request.system})
        ctx = await build_context(
            request.question,
            settings,
            method=request.method,
            collection=request.collection or self.collections[0],
            history=request.history,
            clients=await self.clients(request.model),
        )
        if searches_knowledge(ctx.method):
            ctx.store = await self.store()
        async for event in run_question(ctx):
            yield event
