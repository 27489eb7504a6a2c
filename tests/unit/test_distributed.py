"""The Ray executor's parts that need no cluster (issue 19 §2): address checks, the missing extra, a pool's share
of endpoints per worker, and the CLI and workflow options. The runs themselves: tests/integration/test_eval_ray.py."""

from __future__ import annotations

import builtins
from pathlib import Path
from typing import Any

import pytest
from conclave.cli.main import app
from conclave.workflows.evaluation import EvalConfig, run_eval
from conclave.workflows.evaluation.distributed import _host_port, check_address, import_ray
from conclave.workflows.files.schema import parse_workflow
from typer.testing import CliRunner

from conclave.errors import ConfigError
from conclave.models.pool import Endpoint, EndpointPool, shard
from conclave.settings import load_settings
from tests.fixtures.servers import free_port
from tests.unit.test_harness import Factory, write_gsm8k


@pytest.mark.parametrize(
    ("address", "target"),
    [
        ("10.0.0.5:6379", ("10.0.0.5", 6379)),
        ("head.example", ("head.example", 6379)),
        ("ray://head.example", ("head.example", 10001)),
        ("ray://head.example:20001/", ("head.example", 20001)),
        ("[::1]:6380", ("::1", 6380)),
        ("auto", None),
    ],
)
def test_ray_addresses(address: str, target: tuple[str, int] | None) -> None:
    assert _host_port(address) == target


@pytest.mark.parametrize("address", ["ray://:10001", "head:port"])
def test_a_malformed_ray_address_is_refused(address: str) -> None:
    with pytest.raises(ConfigError, match="not a Ray address"):
        _host_port(address)


def test_an_unreachable_address_names_itself() -> None:
    port = free_port()
    with pytest.raises(ConfigError) as info:
        check_address(f"127.0.0.1:{port}", timeout=2)
    assert f"cannot reach the Ray cluster at 127.0.0.1:{port}" in info.value.message
    assert "ray start --head" in (info.value.hint or "")


def test_without_ray_the_error_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    real = builtins.__import__

    def no_ray(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(ConfigError) as info:
        import_ray()
    assert "needs Ray" in info.value.message and "conclave[ray]" in (info.value.hint or "")


def test_each_worker_has_its_own_share_of_the_endpoints() -> None:
    assert [shard(i, 2, 8) for i in range(2)] == [[0, 2, 4, 6], [1, 3, 5, 7]]
    assert [shard(i, 4, 8) for i in range(4)] == [[0, 4], [1, 5], [2, 6], [3, 7]]
    assert [shard(i, 3, 2) for i in range(3)] == [[0], [1], [0]], "fewer endpoints than workers: shared"
    every = sorted(n for i in range(3) for n in shard(i, 3, 8))
    assert every == list(range(8)), "every endpoint belongs to some worker"


def _pool(home: list[int] | None, now: list[float]) -> EndpointPool:
    endpoints = [Endpoint(f"e{n}", client=None) for n in range(4)]  # type: ignore[arg-type]  # routing only
    return EndpointPool(endpoints, spec="openai/x", cooldown=10, clock=lambda: now[0], home=home)


def test_a_pool_routes_to_its_share_first_and_to_the_rest_when_the_share_is_out() -> None:
    now = [0.0]
    pool = _pool([1, 3], now)
    for _ in range(4):
        first = pool._order()[0]
        assert first.name in ("e1", "e3")
        first.in_flight += 1
    assert {e.name: e.in_flight for e in pool.endpoints} == {"e0": 0, "e1": 2, "e2": 0, "e3": 2}, (
        "busy share endpoints are still preferred: the others are another worker's"
    )
    for name in ("e1", "e3"):
        pool._take_out(next(e for e in pool.endpoints if e.name == name))
    assert {pool._order()[0].name for _ in range(4)} == {"e0", "e2"}, "share out: the others serve"
    now[0] = 11.0
    assert pool._order()[0].name in ("e1", "e3"), "back after the cooldown"
    assert _pool(None, now)._order()[0].in_flight == 0 and all(e.home for e in _pool(None, now).endpoints)


def test_cli_address_needs_the_ray_executor(tmp_path: Path, conclave_home: Path) -> None:
    dataset = f"gsm8k:{write_gsm8k(tmp_path / 'dev.jsonl')}"
    runner = CliRunner()
    result = runner.invoke(app, ["eval", "-d", dataset, "--address", "127.0.0.1:6379"])
    assert isinstance(result.exception, ConfigError) and "--executor ray" in (result.exception.hint or "")
    result = runner.invoke(app, ["eval", "-d", dataset, "--executor", "spark"])
    assert isinstance(result.exception, ConfigError) and "unknown executor 'spark'" in result.exception.message
    assert not (conclave_home / "runs").exists(), "refused before any run folder"


async def test_an_unreachable_cluster_is_refused_before_the_run_folder(tmp_path: Path, conclave_home: Path) -> None:
    dataset = f"gsm8k:{write_gsm8k(tmp_path / 'dev.jsonl')}"
    settings = load_settings(ray_address=f"127.0.0.1:{free_port()}")
    factory = Factory()
    config = EvalConfig(dataset=dataset, models=["openai/scripted"], executor="ray")
    with pytest.raises(ConfigError, match="cannot reach the Ray cluster"):
        await run_eval(config, settings, client_factory=factory)
    assert factory.calls == 0 and not list(conclave_home.glob("runs/eval-*"))


def test_a_workflow_eval_step_may_ask_for_ray_but_not_name_the_cluster() -> None:
    workflow = parse_workflow("name: w\nsteps:\n  - eval: {dataset: 'gsm8k:dev.jsonl', executor: ray}\n")
    assert workflow.steps[0].eval.executor == "ray"
    with pytest.raises(Exception, match="address"):
        parse_workflow("name: w\nsteps:\n  - eval: {dataset: 'gsm8k:dev.jsonl', executor: ray, address: 'h:1'}\n")


async def test_a_worker_builds_its_clients_once_for_units_that_arrive_together(
    monkeypatch: pytest.MonkeyPatch, conclave_home: Path
) -> None:
    """A Ray worker's first units arrive at once; one set of clients must serve them all (two would be two pools
    routing apart). The actor class is exercised directly here, in this process, against a loopback stub."""
    import asyncio

    from conclave.workflows.evaluation import units
    from conclave.workflows.evaluation.datasets import Item
    from conclave.workflows.evaluation.distributed import _Worker

    from tests.servers.openai_stub import StubEndpoint

    starts: list[int] = []
    real_start = units.LocalUnits.start

    async def slow_start(*args: Any, **kwargs: Any) -> Any:
        starts.append(1)
        await asyncio.sleep(0.05)  # building clients awaits (a judge's client, a pool's /models check)
        return await real_start(*args, **kwargs)

    monkeypatch.setattr(units.LocalUnits, "start", staticmethod(slow_start))
    stub = StubEndpoint().start()
    try:
        info = {"stub": {"function_calling": False, "json_output": True, "structured_output": True}}
        settings = load_settings(openai_base_url=stub.base_url, openai_model_info=info, cache=False)
        worker = _Worker(units.UnitPlan(None, 4, ("numeric",), False), settings, None, 3, (0, 1))
        items = [Item(f"q{i}", "What is 6 times 7?", ("42",), "number") for i in range(3)]
        records = await asyncio.gather(*(worker.run(item, "direct", "openai/stub") for item in items))
    finally:
        stub.stop()
    assert starts == [1]
    assert [r["value"] for r in records] == ["42", "42", "42"] and all(r["ok"] for r in records)


class _RecordingRay:
    """Stands in for the ray module: records how ray.init was called and whether RAY_ADDRESS was visible then."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, Any], str | None]] = []

    def init(self, **kwargs: Any) -> None:
        import os

        self.calls.append((kwargs, os.environ.get("RAY_ADDRESS")))


def test_without_an_address_a_local_ray_is_started_whatever_ray_address_says(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no address, ``ray.init()`` would join RAY_ADDRESS or the machine's latest `ray start` cluster; Conclave
    starts a local Ray of its own (address "local"), with RAY_ADDRESS kept from it and the processes it starts."""
    from conclave.workflows.evaluation.distributed import start_ray

    monkeypatch.setenv("RAY_ADDRESS", "10.1.2.3:6379")
    ray = _RecordingRay()
    start_ray(ray, None)  # type: ignore[arg-type]
    ((kwargs, seen),) = ray.calls
    assert kwargs["address"] == "local" and kwargs["include_dashboard"] is False
    assert seen is None
    import os

    assert os.environ["RAY_ADDRESS"] == "10.1.2.3:6379"  # the user's environment is left as it was

    start_ray(ray, "ray.example:6379")  # type: ignore[arg-type]
    assert ray.calls[1][0]["address"] == "ray.example:6379"
