"""Suite-wide guards and fixtures.

* Any attempt to open a non-loopback network connection fails the test.
* Every test gets its own ``CONCLAVE_HOME`` in a temporary folder, so nothing touches the user's data.
* Plain ``embedded`` is the bundled SmolLM2-135M, as in CI (which does not install the ``qwen`` extra), even where
  Qwen's part packages are installed: the suite stays fast and never assembles or loads the 1.1 GB model.
* Shared fixtures (real servers on loopback, the bundled model) live in ``tests/fixtures/``.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path

import pytest

pytest_plugins = [
    "tests.fixtures.models",
    "tests.fixtures.servers",
    "tests.fixtures.chroma",
]

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

HANG_GUARD_S = 10.0
"""How long a hostile-input test (an exponent tower, a YAML alias bomb, a 2,000-deep expression) may take: a guard
against work that blows up, not a speed claim (speed is measured in bench/). Generous, so that a machine busy with
other work never fails it; a blow-up it guards against takes minutes or never ends."""

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
# Never let a developer's real credentials or servers leak into tests.
for _var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OLLAMA_HOST"):
    os.environ.pop(_var, None)


def _is_loopback(host: object) -> bool:
    if not isinstance(host, str):
        return True  # AF_UNIX paths and the like
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getaddrinfo = socket.getaddrinfo


class NonLoopbackConnection(RuntimeError):
    pass


def _guarded_connect(self: socket.socket, address: object) -> object:
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):  # type: ignore[index]
        raise NonLoopbackConnection(f"test tried to connect to non-loopback address {address!r}")
    return _real_connect(self, address)  # type: ignore[arg-type]


def _guarded_connect_ex(self: socket.socket, address: object) -> int:
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):  # type: ignore[index]
        raise NonLoopbackConnection(f"test tried to connect to non-loopback address {address!r}")
    return _real_connect_ex(self, address)  # type: ignore[arg-type]


def _guarded_getaddrinfo(host: object, *args: object, **kwargs: object) -> object:
    if isinstance(host, bytes):
        host = host.decode()
    if host is not None and not _is_loopback(host) and not str(host).endswith(".localhost"):
        raise NonLoopbackConnection(f"test tried to resolve non-loopback host {host!r}")
    return _real_getaddrinfo(host, *args, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any test that opens a connection beyond this machine."""
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", _guarded_connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", _guarded_getaddrinfo)


@pytest.fixture(autouse=True)
def conclave_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private CONCLAVE_HOME for every test; other CONCLAVE_ variables are cleared."""
    for key in list(os.environ):
        if key.startswith("CONCLAVE_") and not key.startswith("CONCLAVE_TEST_"):
            monkeypatch.delenv(key, raising=False)
    home = tmp_path / "conclave-home"
    home.mkdir()
    monkeypatch.setenv("CONCLAVE_HOME", str(home))
    # Point auto-detection at a closed port unless a test says otherwise.
    monkeypatch.setenv("CONCLAVE_OLLAMA_HOST", "http://127.0.0.1:9")
    monkeypatch.chdir(tmp_path)
    return home


@pytest.fixture(autouse=True)
def _without_qwen(monkeypatch: pytest.MonkeyPatch) -> None:
    """Qwen's parts look uninstalled, so `embedded` means SmolLM2 (tests of the parts bring fake ones of their own).

    Subprocesses do not see this: tests that run the CLI on a model name ``embedded:smollm2``."""
    from dataclasses import replace

    from conclave.models import weights

    absent = (("conclave_tests_qwen_part_not_installed", "data/part01.bin"),)
    monkeypatch.setattr(weights, "QWEN", replace(weights.QWEN, parts=absent))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder not found at {SHARED_DATA}")
    return SHARED_DATA
