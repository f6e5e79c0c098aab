"""A real single-node Apache Kafka (KRaft, combined broker + controller) for tests and demos.

The broker runs from the official jars on Maven Central (``kafka-pom.xml``), fetched once with
``mvn`` into ``cache_dir()/kafka-<version>/libs`` and started as ``java -cp 'libs/*' kafka.Kafka``.
It listens on 127.0.0.1 only, on free ports, with its data and log file in one folder.

    with KafkaBroker(num_partitions=3) as broker:
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers)

``python -m dupwatch.testing.kafka_broker`` runs one in the foreground.
"""

from __future__ import annotations

import argparse
import base64
import fcntl
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from dupwatch.paths import cache_dir as default_cache_dir
from dupwatch.testing._process import ServiceLifecycle, ManagedProcess, free_ports, port_accepts, tail
from dupwatch.testing.errors import ServiceStartError, ServiceUnavailable

__all__ = ["KAFKA_VERSION", "KafkaBroker", "ensure_kafka_jars", "find_java"]

log = logging.getLogger(__name__)

KAFKA_VERSION = "4.1.1"
"""Must match ``kafka.version`` in kafka-pom.xml."""
POM_PATH = Path(__file__).with_name("kafka-pom.xml")
MIN_JAVA = 17
_COMPLETE_MARKER = ".complete"

# Small heap, serial GC and the C1 compiler only: starts fast and stays light on a shared
# 2-core machine; throughput is irrelevant for tests.
JVM_OPTS = (
    "-Xms128m",
    "-Xmx512m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-Djava.awt.headless=true",
    "-Dorg.slf4j.simpleLogger.showDateTime=true",
    "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd HH:mm:ss.SSS",
)


def find_java() -> tuple[str, int]:
    """Path and major version of ``java`` on PATH; :class:`ServiceUnavailable` if missing or < 17."""
    java = shutil.which("java")
    hint = "install a JRE, e.g. `apt-get install openjdk-17-jre-headless`"
    if java is None:
        raise ServiceUnavailable(f"Java {MIN_JAVA}+ not found on PATH: {hint}")
    try:
        out = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServiceUnavailable(f"`{java} -version` failed ({exc}): {hint}") from exc
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if match is None:
        raise ServiceUnavailable(f"cannot read the Java version from `{java} -version`: {hint}")
    major = int(match.group(1))
    if major == 1 and match.group(2):  # "1.8.0_292" style
        major = int(match.group(2))
    if major < MIN_JAVA:
        raise ServiceUnavailable(f"Java {MIN_JAVA}+ needed for Kafka {KAFKA_VERSION}, found Java {major} at {java}: {hint}")
    return java, major


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock: several test sessions on one machine may fetch the jars at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_kafka_jars(cache: Path | None = None, *, timeout: float = 900.0) -> Path:
    """The folder of Kafka runtime jars, fetched with Maven on first use.

    Returns ``<cache>/kafka-<version>/libs``. A folder is used only once complete (a marker
    file is written last), so an interrupted download is redone rather than half-used.
    """
    home = (cache or default_cache_dir()) / f"kafka-{KAFKA_VERSION}"
    libs = home / "libs"
    if (libs / _COMPLETE_MARKER).is_file():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ServiceUnavailable(
            f"Maven (mvn) not found on PATH and the Kafka {KAFKA_VERSION} jars are not cached in {libs}: "
            "install Maven, e.g. `apt-get install maven`"
        )
    with _file_lock(home / ".lock"):
        if (libs / _COMPLETE_MARKER).is_file():
            return libs
        staging = Path(tempfile.mkdtemp(prefix="libs-", dir=home))
        cmd = [
            mvn, "-q", "-B", "-f", str(POM_PATH), "dependency:copy-dependencies",
            "-DincludeScope=runtime", f"-DoutputDirectory={staging}",
        ]
        log.info("fetching Kafka %s jars: %s", KAFKA_VERSION, " ".join(cmd))
        try:
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise ServiceStartError(f"`mvn dependency:copy-dependencies` for Kafka timed out after {timeout:.0f} s") from exc
        jars = list(staging.glob("kafka_2.13-*.jar"))
        if result.returncode != 0 or not jars:
            shutil.rmtree(staging, ignore_errors=True)
            output = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
            raise ServiceStartError(
                f"fetching the Kafka {KAFKA_VERSION} jars with Maven failed (exit {result.returncode}); "
                f"command: {' '.join(cmd)}\n{output}"
            )
        (staging / _COMPLETE_MARKER).write_text(KAFKA_VERSION + "\n")
        shutil.rmtree(libs, ignore_errors=True)
        staging.rename(libs)
    return libs


def _cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding (22 characters).

    Never starting with ``-``: the storage tool's argument parser would take it for an option
    (``--cluster-id: expected one argument``, 1 start in 64)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):
            return cid


class KafkaBroker(ServiceLifecycle):
    """One Kafka process acting as KRaft controller and broker on 127.0.0.1.

    ``start()`` formats the data folder (first start only) and waits until the broker answers
    metadata requests. ``restart()`` keeps the ports and the data folder, so committed offsets
    and topics survive, as fault-injection tests need.

    Args:
        num_partitions: default partition count of auto-created topics.
        data_dir: folder for ``server.properties``, the log segments and ``kafka.log``. A fresh
            temporary folder if not given (removed by ``cleanup()`` / leaving the ``with``).
        cache_dir: where the jars are cached; defaults to ``dupwatch.paths.cache_dir()``.
        startup_timeout: seconds to wait for readiness before giving up.
        properties: extra or overriding ``server.properties`` entries.
        die_with_parent: SIGKILL the broker if the Python thread that started it dies.
    """

    def __init__(
        self,
        *,
        num_partitions: int = 1,
        data_dir: Path | str | None = None,
        cache_dir: Path | str | None = None,
        startup_timeout: float = 120.0,
        properties: Mapping[str, str | int | bool] | None = None,
        die_with_parent: bool = True,
    ) -> None:
        if num_partitions < 1:
            raise ValueError(f"num_partitions must be >= 1, got {num_partitions}")
        self.num_partitions = num_partitions
        self._owns_data_dir = data_dir is None
        self.data_dir = Path(data_dir) if data_dir is not None else Path(tempfile.mkdtemp(prefix="dupwatch-kafka-"))
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.startup_timeout = startup_timeout
        self.extra_properties = dict(properties or {})
        self.die_with_parent = die_with_parent
        self.version = KAFKA_VERSION
        self.host = "127.0.0.1"
        self.port: int | None = None
        self.controller_port: int | None = None
        self.startup_seconds: float | None = None
        self._proc: ManagedProcess | None = None
        self._formatted = False
        self._java: str | None = None
        self._libs: Path | None = None

    # ---- properties -------------------------------------------------------------------------

    @property
    def bootstrap_servers(self) -> str:
        """``127.0.0.1:<port>``; valid once started (and across restarts)."""
        if self.port is None:
            raise RuntimeError("KafkaBroker has not been started")
        return f"{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        """The broker's combined stdout/stderr log (kept across restarts, appended)."""
        return self.data_dir / "kafka.log"

    @property
    def properties_path(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def is_running(self) -> bool:
        return self._proc is not None and self._proc.is_alive()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    # ---- life cycle -------------------------------------------------------------------------

    def check_prerequisites(self) -> None:
        """Java 17+ on PATH and the jars (cached, or Maven to fetch them); raises ServiceUnavailable."""
        self._java, _ = find_java()
        self._libs = ensure_kafka_jars(self.cache_dir)

    def start(self) -> KafkaBroker:
        """Start the broker and wait until it is ready; returns ``self``."""
        if self.is_running:
            return self
        self.check_prerequisites()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.port is None or self.controller_port is None:
            self.port, self.controller_port = free_ports(2, self.host)
        self._write_properties()
        if not self._formatted:
            self._format_storage()
        began = time.monotonic()
        self._proc = ManagedProcess(
            [self._java_path, *JVM_OPTS, "-cp", self._classpath, "kafka.Kafka", str(self.properties_path)],
            log_path=self.log_path,
            cwd=self.data_dir,
            env=self._env(),
            die_with_parent=self.die_with_parent,
        )
        try:
            self._wait_ready(began)
        except BaseException:
            self.kill()
            raise
        self.startup_seconds = time.monotonic() - began
        log.info("Kafka %s ready at %s in %.1f s", self.version, self.bootstrap_servers, self.startup_seconds)
        return self

    def stop(self, timeout: float = 20.0) -> None:
        """Graceful shutdown (SIGTERM), SIGKILL after ``timeout`` seconds."""
        if self._proc is not None:
            self._proc.stop(timeout)
            self._proc = None


    # ---- admin helpers ----------------------------------------------------------------------

    def create_topic(self, name: str, partitions: int = 1, *, timeout: float = 30.0) -> str:
        """Create a topic (replication 1) and wait until it has leaders; returns ``name``.

        An already existing topic is accepted as is.
        """
        from kafka import KafkaAdminClient
        from kafka.errors import TopicAlreadyExistsError

        if partitions < 1:
            raise ValueError(f"partitions must be >= 1, got {partitions}")
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap_servers, client_id="dupwatch-test-admin")
        try:
            try:
                admin.create_topics(
                    {name: {"num_partitions": partitions, "replication_factor": 1}},
                    timeout_ms=int(timeout * 1000),
                )
            except TopicAlreadyExistsError:
                pass
            admin.wait_for_topics([name], timeout_ms=int(timeout * 1000))
            return name
        finally:
            admin.close()

    # ---- internals --------------------------------------------------------------------------

    @property
    def _java_path(self) -> str:
        assert self._java is not None
        return self._java

    @property
    def _classpath(self) -> str:
        assert self._libs is not None
        return str(self._libs / "*")

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        # Stop a KAFKA_OPTS / JAVA_TOOL_OPTIONS from the caller's shell changing the broker.
        for key in ("KAFKA_OPTS", "KAFKA_HEAP_OPTS", "JAVA_TOOL_OPTIONS", "CLASSPATH"):
            env.pop(key, None)
        return env

    def _write_properties(self) -> None:
        assert self.port is not None and self.controller_port is not None
        props: dict[str, str | int | bool] = {
            "process.roles": "broker,controller",
            "node.id": 1,
            "controller.quorum.voters": f"1@{self.host}:{self.controller_port}",
            "listeners": f"PLAINTEXT://{self.host}:{self.port},CONTROLLER://{self.host}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{self.host}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.data_dir / "kraft-logs"),
            "num.partitions": self.num_partitions,
            "default.replication.factor": 1,
            "auto.create.topics.enable": True,
            "delete.topic.enable": True,
            "offsets.topic.replication.factor": 1,
            "offsets.topic.num.partitions": 4,
            "transaction.state.log.replication.factor": 1,
            "transaction.state.log.min.isr": 1,
            "transaction.state.log.num.partitions": 4,
            "share.coordinator.state.topic.replication.factor": 1,
            "share.coordinator.state.topic.min.isr": 1,
            "group.initial.rebalance.delay.ms": 0,
            # After a kill the new process waits for the dead one's session to expire before it
            # is unfenced (default 9 s); a shorter session keeps restart(hard=True) quicker, while
            # 5 s still tolerates a starved JVM on a loaded test machine.
            "broker.heartbeat.interval.ms": 500,
            "broker.session.timeout.ms": 5000,
            "log.segment.bytes": 1024 * 1024,
            "log.retention.check.interval.ms": 60_000,
            "num.network.threads": 2,
            "num.io.threads": 2,
            "num.recovery.threads.per.data.dir": 1,
            "background.threads": 2,
        }
        props.update(self.extra_properties)
        lines = [f"{key}={str(val).lower() if isinstance(val, bool) else val}" for key, val in props.items()]
        self.properties_path.write_text("# written by dupwatch.testing.kafka_broker\n" + "\n".join(lines) + "\n")

    def _format_storage(self) -> None:
        """``kafka-storage format`` (kafka.tools.StorageTool); ``--ignore-formatted`` keeps data."""
        cmd = [
            self._java_path, *JVM_OPTS, "-cp", self._classpath, "kafka.tools.StorageTool",
            "format", "-t", _cluster_id(), "-c", str(self.properties_path), "--ignore-formatted",
        ]
        with open(self.log_path, "ab") as fh:
            fh.write(f"===== format: {' '.join(cmd)}\n".encode())
            fh.flush()
            result = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=self._env(),
                                    timeout=120, check=False)
        if result.returncode != 0:
            raise ServiceStartError(
                f"Kafka storage format failed (exit {result.returncode}); log {self.log_path}:\n{tail(self.log_path, 40)}"
            )
        self._formatted = True

    def _wait_ready(self, began: float) -> None:
        """Poll until a metadata request lists this broker (and the process is alive)."""
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        deadline = began + self.startup_timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            assert self._proc is not None
            if not self._proc.is_alive():
                raise ServiceStartError(
                    f"Kafka broker exited with code {self._proc.returncode} during start-up; "
                    f"log {self.log_path}:\n{tail(self.log_path, 40)}"
                )
            if not port_accepts(self.host, self.port):  # keeps kafka-python from logging refusals
                time.sleep(0.2)
                continue
            try:
                admin = KafkaAdminClient(
                    bootstrap_servers=self.bootstrap_servers,
                    client_id="dupwatch-readiness",
                    request_timeout_ms=5000,
                    reconnect_backoff_max_ms=200,
                )
                try:
                    cluster = admin.describe_cluster()
                    if cluster.get("brokers"):
                        return
                finally:
                    admin.close()
            except (KafkaError, OSError, ValueError) as exc:
                last_error = exc
            time.sleep(0.2)
        raise ServiceStartError(
            f"Kafka broker not ready at {self.bootstrap_servers} after {self.startup_timeout:.0f} s "
            f"(last error: {last_error!r}); log {self.log_path}:\n{tail(self.log_path, 40)}"
        )


def main(argv: list[str] | None = None) -> int:
    """Run a broker in the foreground until Ctrl-C."""
    parser = argparse.ArgumentParser(
        prog="python -m dupwatch.testing.kafka_broker",
        description=f"Run a single-node Kafka {KAFKA_VERSION} (KRaft) broker on 127.0.0.1 in the foreground.",
    )
    parser.add_argument("--partitions", type=int, default=1, help="default partitions of auto-created topics")
    parser.add_argument("--data-dir", type=Path, default=None, help="data folder (kept); default: a temporary one")
    parser.add_argument("--topic", action="append", default=[], help="topic to create (repeatable)")
    args = parser.parse_args(argv)
    broker = KafkaBroker(num_partitions=args.partitions, data_dir=args.data_dir)
    try:
        broker.start()
    except (ServiceUnavailable, ServiceStartError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        for topic in args.topic:
            broker.create_topic(topic, args.partitions)
        print(f"Kafka {broker.version} KRaft broker ready in {broker.startup_seconds:.1f} s", flush=True)
        print(f"bootstrap_servers={broker.bootstrap_servers}", flush=True)
        print(f"log: {broker.log_path}   (Ctrl-C to stop)", flush=True)
        while broker.is_running:
            time.sleep(0.5)
        print(f"broker exited; see {broker.log_path}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        if args.data_dir is None:
            broker.cleanup()
        else:
            broker.stop()


if __name__ == "__main__":
    sys.exit(main())
