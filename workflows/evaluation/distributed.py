"""Evaluation units on Ray (``conclave eval --executor ray``): the same units, run by workers across a cluster.

The driver (the ``conclave eval`` process) resolves the run as always and alone writes the run folder: each unit
goes to a Ray actor, its sample comes back, and the driver appends it to ``items.jsonl`` as it arrives, so
``--resume``, the reports and exports work as for a local run. A worker is an async actor that builds its own
clients once (response cache included: on one machine the workers share ``CONCLAVE_HOME``'s cache folder) and runs
up to ``per_worker`` units at once. Worker i of n is told so (``settings.pool_shard``): an endpoint pool
(``openai_base_urls``) sends that worker's requests to its own share of the endpoints first and to the others only
when its share is down, so workers that route on their own do not pile onto the same endpoints.

What leaves this process: the run's settings (API key included) and its items, to the cluster at
``settings.ray_address`` (set by the user: a workflow file cannot), or to a local Ray started for the run when it is
unset. Workers on other machines need Conclave installed, and a run that searches a collection needs a Chroma
server there (``chroma_url``); a local Ray's workers read this machine's store. A unit whose worker died is tried
once more on a restarted worker, and if that fails too it is recorded as an error, which ``--resume`` runs again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

from conclave.workflows.evaluation.datasets import Item
from conclave.workflows.evaluation.records import EvalSample
from conclave.workflows.evaluation.units import UnitPlan, UnitRunner, build_sample

from conclave.errors import ConfigError
from conclave.settings import Settings

__all__ = ["INSTALL_HINT", "RayUnits", "check_address", "import_ray", "preflight"]

INSTALL_HINT = "install it with `pip install 'conclave[ray]'` (or `pip install ray`), or run without --executor ray"


def import_ray() -> ModuleType:
    """The ``ray`` module, or a ConfigError that says how to install it."""
    # Ray reports usage statistics to its makers unless told not to; a local-first tool does not phone home.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError:
        raise ConfigError("--executor ray needs Ray, which is not installed", hint=INSTALL_HINT) from None
    return ray


def _host_port(address: str) -> tuple[str, int] | None:
    """Where a Ray address points: ``ray://HOST[:PORT]`` (Ray Client, port 10001) or ``HOST[:PORT]`` (a cluster's
    GCS, port 6379); None for ``auto``/``local`` (Ray finds or starts one on this machine)."""
    raw = address.strip()
    if raw in ("auto", "local"):
        return None
    client = raw.startswith("ray://")
    rest = raw.removeprefix("ray://").rstrip("/")
    host, sep, port = rest.rpartition(":")
    if not sep or "]" in port:  # no port given (an IPv6 literal's colons are inside brackets)
        host, port = rest, ""
    host = host.strip("[]")
    if not host:
        raise ConfigError(f"not a Ray address: {address!r}", hint="give HOST:PORT or ray://HOST:PORT")
    try:
        number = int(port) if port else (10001 if client else 6379)
    except ValueError:
        raise ConfigError(
            f"not a Ray address: {address!r} (port {port!r})", hint="give HOST:PORT or ray://HOST:PORT"
        ) from None
    return host, number


def check_address(address: str, timeout: float = 5.0) -> None:
    """Fail at once, naming the address, when a Ray cluster cannot be reached (``ray.init`` would keep retrying
    for a minute or more before saying much less)."""
    target = _host_port(address)
    if target is None:
        return
    try:
        with socket.create_connection(target, timeout=timeout):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise ConfigError(
            f"cannot reach the Ray cluster at {address}: {reason}",
            hint="start it (`ray start --head` on that machine) or fix ray_address / --address; "
            "leave the address out to run on a local Ray",
        ) from None


def preflight(plan: UnitPlan, settings: Settings) -> ModuleType:
    """What can be checked before a run folder is made: Ray installed, the cluster reachable, the store readable
    from it. Returns the ``ray`` module."""
    ray = import_ray()
    address = settings.ray_address
    if address and plan.collection is not None and not settings.chroma_url:
        raise ConfigError(
            f"this run searches the collection {plan.collection!r}, and workers on a Ray cluster cannot read "
            "this machine's knowledge folder",
            hint="serve the store with `chroma run --path <CONCLAVE_HOME>/chroma` and set chroma_url, or run "
            "on a local Ray (no --address)",
        )
    if address:
        check_address(address)
    return ray


WARM_MODULES = (
    "autogen_agentchat.agents",
    "conclave.workflows.runner",
    "conclave.workflows.team",
    "conclave.workflows.react",
    "conclave.models.openai_compat",
    "conclave.tools.toolset",
)


class _Worker:
    """A Ray actor: runs units with its own clients, ``per_worker`` at once (an async actor's max_concurrency)."""

    def __init__(
        self, plan: UnitPlan, settings: Settings, judge_spec: str | None, concurrency: int, shard: tuple[int, int]
    ) -> None:
        from conclave.redact import register_secret

        self.plan = plan
        self.settings = settings.model_copy(update={"pool_shard": shard})
        self.judge_spec = judge_spec
        self.concurrency = concurrency
        self.units: Any = None
        self.starting = asyncio.Lock()  # the first units arrive together: one set of clients for all of them
        # Errors this worker records must not carry the key it was given (the driver registered it, not us).
        if settings.openai_api_key is not None:
            register_secret(settings.openai_api_key.get_secret_value())

    async def run(self, item: Item, method: str, model: str) -> dict[str, Any]:
        from conclave.workflows.evaluation.cache import CacheSet
        from conclave.workflows.evaluation.units import LocalUnits

        async with self.starting:
            if self.units is None:
                caches = CacheSet(self.settings, enabled=self.settings.cache)
                self.units = await LocalUnits.start(self.plan, self.settings, caches, self.judge_spec, self.concurrency)
        sample: EvalSample = await self.units(item, method, model)
        return sample.to_record()

    def ready(self) -> int:
        """Import what units need (AutoGen, the team and its agents, the tools: seconds in a new process) before
        the first unit is sent; the process id."""
        import importlib

        for module in WARM_MODULES:
            importlib.import_module(module)
        return os.getpid()


class RayUnits(UnitRunner):
    """Units as calls on Ray actors; each call goes to the worker with the fewest units in flight."""

    def __init__(self, ray: ModuleType, plan: UnitPlan, workers: list[Any], started_ray: bool) -> None:
        self.ray = ray
        self.plan = plan
        self.workers = workers
        self.in_flight = [0] * len(workers)
        self.started_ray = started_ray

    @classmethod
    async def start(
        cls,
        plan: UnitPlan,
        settings: Settings,
        judge_spec: str | None,
        concurrency: int,
        note: Callable[[str], None],
    ) -> RayUnits:
        ray = import_ray()  # the run's preflight (harness._resolve) checked the address and the store
        address = settings.ray_address
        started_ray = not ray.is_initialized()
        if started_ray:
            await asyncio.to_thread(start_ray, ray, address)
        cpus = int(ray.available_resources().get("CPU", 1)) or 1
        count = max(1, min(concurrency, cpus))
        per_worker = math.ceil(concurrency / count)
        actor = ray.remote(_Worker).options(
            num_cpus=0,  # a worker mostly waits on endpoints; how many there are is ``count``'s business
            max_concurrency=per_worker,
            max_restarts=1,
            max_task_retries=1,
            scheduling_strategy="SPREAD",
        )
        if not address and settings.embedded_threads is None:
            # An embedded model is loaded by every worker; on one machine they share its cores rather than each
            # taking all of them (llama.cpp's threads wait on each other when oversubscribed).
            settings = settings.model_copy(update={"embedded_threads": max(1, (os.cpu_count() or 1) // count)})
        handles = [actor.remote(plan, settings, judge_spec, per_worker, (n, count)) for n in range(count)]
        try:
            await asyncio.gather(*(h.ready.remote() for h in handles))  # every worker up before the first unit
        except Exception as exc:
            await asyncio.to_thread(_stop, ray, handles, started_ray)
            raise ConfigError(
                f"Ray could not start the workers: {type(exc).__name__}: {exc}",
                hint="check that this Conclave and Ray are installed alike on every node of the cluster",
            ) from None
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        note(f"running on {where}: {count} worker(s), up to {per_worker} unit(s) each")
        return cls(ray, plan, handles, started_ray)

    async def __call__(self, item: Item, method: str, model: str) -> EvalSample:
        n = min(range(len(self.workers)), key=lambda i: self.in_flight[i])
        self.in_flight[n] += 1
        try:
            record = await self.workers[n].run.remote(item, method, model)
        except self.ray.exceptions.RayError as exc:
            from conclave.redact import redact

            crash = redact(
                f"the Ray worker failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            )
            return await build_sample(self.plan, item, method, model, [], crash, 0, None)
        finally:
            self.in_flight[n] -= 1
        return EvalSample.model_validate(record)

    async def close(self) -> None:
        await asyncio.to_thread(_stop, self.ray, self.workers, self.started_ray)


@contextlib.contextmanager
def _without_ray_address() -> Iterator[None]:
    """RAY_ADDRESS hidden while the local Ray starts, so that the processes it starts do not inherit it; put back
    after (the user's environment is theirs)."""
    saved = os.environ.pop("RAY_ADDRESS", None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ["RAY_ADDRESS"] = saved


def start_ray(ray: ModuleType, address: str | None) -> None:
    """Connect to the cluster at ``address``, or start a local Ray (no dashboard, its logs kept out of ours)."""
    try:
        if address:
            ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
        else:
            # Ray's servers listen on every interface; its token authentication, the default for local clusters
            # since 2.59 (the ray extra's floor), keeps other machines from running code on this one. "local":
            # a plain ray.init() would join RAY_ADDRESS or this machine's latest `ray start` cluster instead.
            with _without_ray_address():
                ray.init(address="local", include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    except (ConnectionError, RuntimeError, TimeoutError) as exc:
        raise ConfigError(
            f"cannot start Ray{f' on the cluster at {address}' if address else ''}: {exc}",
            hint="check the address (`ray status` on the cluster) or leave it out to run on a local Ray",
        ) from None


def _stop(ray: ModuleType, workers: list[Any], started_ray: bool) -> None:
    for handle in workers:
        try:
            ray.kill(handle)
        except Exception:  # noqa: S110 - an actor already gone is what we wanted
            pass
    if started_ray:
        ray.shutdown()
