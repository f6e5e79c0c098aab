"""Root test set-up: ``--runslow``/``gpu`` handling and the real Kafka and Milvus services.

Services start lazily, once per session, the first time a test asks for them; each start is
announced in the terminal (``[services] ...``), and when tests fail the summary shows each
service's log path and last lines. Logs live under pytest's temporary folder (the last three
runs are kept), so they survive the session.

Missing prerequisites (no Java, no Maven with an empty jar cache, no ``milvus`` package) fail
the tests that need the service with a one-line message; set
``DUPWATCH_SKIP_MISSING_SERVICES=1`` to skip them instead.

Tests run as in a fresh clone: ``tests/outside_guard.py`` refuses, for the whole session, any
open or listing of ``../shared`` or of another folder beside the repository.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import pytest

from dupwatch.paths import REPO_ROOT, cache_dir
from dupwatch.testing._process import tail
from dupwatch.testing.errors import ServiceStartError, ServiceUnavailable
from dupwatch.testing.kafka_broker import KafkaBroker
from dupwatch.testing.milvus_server import MilvusServer
from tests.outside_guard import install as _install_outside_guard

# Every test runs as in a fresh clone: opening or listing ../shared or a sibling folder fails.
OUTSIDE_GUARD = _install_outside_guard(REPO_ROOT, allowed=[cache_dir()])

_LOG_TAIL_LINES = 40


class _Service(Protocol):
    @property
    def log_path(self) -> Path: ...

    def start(self) -> object: ...


class _StoppableService(_Service, Protocol):
    def stop(self) -> None: ...


_services_key = pytest.StashKey[dict[str, _Service]]()
# Log tails taken just before a service was stopped while tests had failed: the lines that
# matter, rather than the shutdown messages that end the file.
_tails_key = pytest.StashKey[dict[str, str]]()


# ---- options and markers ----------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_services_key] = {}
    config.stash[_tails_key] = {}
    # Also declared in pyproject.toml; repeated so the markers exist if run with another ini.
    for line in (
        "slow: long variants, run with --runslow",
        "gpu: needs a CUDA device (skipped without one)",
        "kafka: needs the real Kafka broker started by the test set-up",
        "milvus_server: needs the real Milvus standalone server",
    ):
        config.addinivalue_line("markers", line)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    runslow = config.getoption("--runslow")
    skip_slow = pytest.mark.skip(reason="slow: run with --runslow")
    cuda: bool | None = None
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        # Mark tests by the services they use, so `-m "not kafka"` works without bookkeeping.
        if names & {"kafka_broker", "kafka_topic", "kafka_topic_factory", "kafka_broker_factory"}:
            item.add_marker(pytest.mark.kafka)
        if names & {"milvus_server", "milvus_server_factory"}:
            item.add_marker(pytest.mark.milvus_server)
        if "slow" in item.keywords and not runslow:
            item.add_marker(skip_slow)
        if "gpu" in item.keywords:
            if cuda is None:
                cuda = _cuda_available()
            if not cuda:
                item.add_marker(pytest.mark.skip(reason="gpu: no CUDA device (torch.cuda.is_available() is False)"))


def _cuda_available() -> bool:
    try:
        import torch  # imported here: most test runs never need it
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


# ---- service start-up helpers -----------------------------------------------------------------


def _announce(config: pytest.Config, line: str) -> None:
    """Write a line to the terminal now, even while pytest captures output (without ``-s``)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    capture = config.pluginmanager.get_plugin("capturemanager")
    if capture is None:
        reporter.write_line(line)
        return
    with capture.global_and_fixture_disabled():
        if getattr(reporter._tw, "width_of_current_line", 0):  # mid-line after progress dots (-q)
            reporter.write("\n")
        reporter.write_line(line)


def _start(config: pytest.Config, label: str, service: _Service, describe: Callable[[], str]) -> str:
    """Start ``service``; register it for the failure summary; announce it in the terminal.

    Returns the name it is registered under (for :func:`_stop`).
    """
    registry = config.stash[_services_key]
    name = label if label not in registry else f"{label} #{len(registry) + 1}"
    registry[name] = service  # registered first: a failed start is what needs its log most
    try:
        service.start()
    except ServiceUnavailable as exc:
        if os.environ.get("DUPWATCH_SKIP_MISSING_SERVICES") == "1":
            pytest.skip(f"{label} unavailable: {exc}")
        pytest.fail(f"{label} unavailable: {exc}", pytrace=False)
    except ServiceStartError as exc:
        pytest.fail(f"{label} failed to start: {exc}", pytrace=False)
    _announce(config, f"[services] {describe()}")
    return name


def _stop(request: pytest.FixtureRequest, service: _StoppableService) -> None:
    """Stop ``service``; if tests failed, keep its log tail from before the shutdown."""
    if request.session.testsfailed:
        for name, registered in request.config.stash[_services_key].items():
            if registered is service:
                request.config.stash[_tails_key][name] = tail(service.log_path, _LOG_TAIL_LINES)
    service.stop()


def _describe_kafka(broker: KafkaBroker) -> str:
    return (
        f"Kafka {broker.version} KRaft broker ready at {broker.bootstrap_servers} "
        f"in {broker.startup_seconds:.1f} s (pid {broker.pid}, log {broker.log_path})"
    )


def _describe_milvus(server: MilvusServer) -> str:
    return (
        f"Milvus {server.version} standalone server ready at {server.uri} "
        f"in {server.startup_seconds:.1f} s (pid {server.pid}, log {server.log_path})"
    )


# ---- session services -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def kafka_broker(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """The session's Kafka broker (started on first use). Do not stop or kill it in a test:
    use ``kafka_broker_factory`` for a private broker instead."""
    broker = KafkaBroker(data_dir=tmp_path_factory.mktemp("kafka"))
    try:
        _start(request.config, "Kafka", broker, lambda: _describe_kafka(broker))
        yield broker
    finally:
        _stop(request, broker)


@pytest.fixture(scope="session")
def milvus_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MilvusServer]:
    """The session's Milvus standalone server (started on first use); ``milvus_server.uri``."""
    server = MilvusServer(data_dir=tmp_path_factory.mktemp("milvus"))
    try:
        _start(request.config, "Milvus", server, lambda: _describe_milvus(server))
        yield server
    finally:
        _stop(request, server)


@pytest.fixture
def kafka_broker_factory(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., KafkaBroker]]:
    """Private brokers for tests that stop, kill or restart them; stopped at test end.

    ``kafka_broker_factory(num_partitions=1, **KafkaBroker kwargs)`` returns a started broker.
    """
    started: list[KafkaBroker] = []

    def make(**kwargs: object) -> KafkaBroker:
        broker = KafkaBroker(data_dir=tmp_path_factory.mktemp("kafka-private"), **kwargs)  # type: ignore[arg-type]
        started.append(broker)
        _start(request.config, "Kafka (private)", broker, lambda: _describe_kafka(broker))
        return broker

    yield make
    for broker in started:
        _stop(request, broker)


@pytest.fixture
def milvus_server_factory(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., MilvusServer]]:
    """Private Milvus servers for tests that stop, kill or restart them; stopped at test end."""
    started: list[MilvusServer] = []

    def make(**kwargs: object) -> MilvusServer:
        server = MilvusServer(data_dir=tmp_path_factory.mktemp("milvus-private"), **kwargs)  # type: ignore[arg-type]
        started.append(server)
        _start(request.config, "Milvus (private)", server, lambda: _describe_milvus(server))
        return server

    yield make
    for server in started:
        _stop(request, server)


# ---- per-test resources -----------------------------------------------------------------------


def _unique_topic_name(request: pytest.FixtureRequest, prefix: str = "test") -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name)[:80].strip("-.")
    return f"{prefix}.{stem}.{uuid.uuid4().hex[:8]}"


@pytest.fixture
def kafka_topic_factory(kafka_broker: KafkaBroker, request: pytest.FixtureRequest) -> Callable[..., str]:
    """``kafka_topic_factory(partitions=1, prefix="test")`` creates a fresh, uniquely named topic
    on the session broker and returns its name."""

    def make(partitions: int = 1, prefix: str = "test") -> str:
        return kafka_broker.create_topic(_unique_topic_name(request, prefix), partitions)

    return make


@pytest.fixture
def kafka_topic(kafka_topic_factory: Callable[..., str]) -> str:
    """A fresh one-partition topic on the session broker (unique per test)."""
    return kafka_topic_factory(1)


@pytest.fixture
def milvus_lite_uri(tmp_path: Path) -> str:
    """A fresh Milvus Lite database file for ``MilvusClient(uri=...)``."""
    return str(tmp_path / "milvus.db")


# ---- failure summary --------------------------------------------------------------------------


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config) -> None:
    services = config.stash.get(_services_key, {})
    if not services:
        return
    failed = bool(terminalreporter.stats.get("failed") or terminalreporter.stats.get("error")) or exitstatus not in (0, 5)
    if not failed:
        logs = ", ".join(f"{name}: {service.log_path}" for name, service in services.items())
        terminalreporter.write_line(f"[services] logs: {logs}")
        return
    terminalreporter.section("test service logs")
    tails = config.stash.get(_tails_key, {})
    for name, service in services.items():
        if name in tails:
            terminalreporter.write_line(f"{name} log: {service.log_path} (last {_LOG_TAIL_LINES} lines before shutdown)", bold=True)
            text = tails[name]
        else:
            terminalreporter.write_line(f"{name} log: {service.log_path} (last {_LOG_TAIL_LINES} lines)", bold=True)
            text = tail(service.log_path, _LOG_TAIL_LINES)
        terminalreporter.write_line(text if text else "(empty or missing)")
        terminalreporter.write_line("")
