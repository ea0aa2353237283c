"""Infrastructure rows share: the embedded broker with the platform's topics, raw producing,
consumer-group readiness, service processes and their memory."""

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Self

import psutil
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from bench import BENCH_ENV
from ragops_schemas.topics import TOPICS
from ragops_shared.embedded import EmbeddedKafka, create_topics, free_port
from ragops_shared.settings import EmbeddedBrokerSettings, KafkaSettings, aiokafka_options
from ragops_shared.watch import end_offsets


@asynccontextmanager
async def embedded_broker(
    workdir: Path,
    extra_topics: Iterable[str] = (),
    partitions: int | None = None,
) -> AsyncIterator[tuple[EmbeddedKafka, KafkaSettings]]:
    """A Tansu broker with every platform topic (and ``extra_topics``), with the platform's
    default partitions (or ``partitions``), fetch wait and storage (``RAGOPS_BROKER_STORAGE``,
    which ``python -m bench --broker-storage`` sets), as ``ragops up`` runs it."""
    durable = EmbeddedBrokerSettings().storage == "durable"
    with EmbeddedKafka(log_path=workdir / "tansu.log", data_dir=workdir / "broker" if durable else None) as kafka:
        settings = KafkaSettings(bootstrap_servers=kafka.bootstrap_servers)
        if partitions is not None:
            settings = settings.model_copy(update={"partitions": partitions})
        await create_topics(settings, [*TOPICS, *extra_topics])
        yield kafka, settings


async def produce(kafka: KafkaSettings, records: Sequence[tuple[str, bytes, bytes]]) -> float:
    """Produce ``(topic, key, value)`` records as fast as the broker takes them (pipelined
    sends, one flush); returns the seconds it took."""
    producer = AIOKafkaProducer(
        **aiokafka_options(kafka),
        acks="all",
        linger_ms=5,
        max_batch_size=1 << 20,
        max_request_size=kafka.max_message_bytes,
    )
    await producer.start()
    try:
        started = time.perf_counter()
        for topic, key, value in records:
            await producer.send(topic, value, key=key)
        await producer.flush()
        return time.perf_counter() - started
    finally:
        await producer.stop()


async def tail(kafka: KafkaSettings, topics: Iterable[str]) -> AIOKafkaConsumer:
    """A started consumer without a group, on every partition of ``topics`` from their current
    end as :class:`EventWatcher` finds it (how a caller waits for replies), with the platform's
    fetch wait."""
    consumer = AIOKafkaConsumer(
        **aiokafka_options(kafka), enable_auto_commit=False, fetch_max_wait_ms=kafka.fetch_max_wait_ms
    )
    await consumer.start()
    await consumer.topics()  # fetches the metadata partitions_for_topic reads
    partitions = [
        TopicPartition(topic, p) for topic in topics for p in sorted(consumer.partitions_for_topic(topic) or [])
    ]
    consumer.assign(partitions)
    for partition, end in (await end_offsets(kafka, partitions)).items():
        consumer.seek(partition, end)
    return consumer


async def group_members(kafka: KafkaSettings, group: str) -> int:
    """Members of a consumer group once it is ``Stable`` (0 while it rebalances or is empty).
    One group per request: aiokafka cannot decode Tansu's answer for several at once."""
    admin = AIOKafkaAdminClient(**aiokafka_options(kafka))
    await admin.start()
    try:
        [response] = await admin.describe_consumer_groups([group])
        # DescribeGroups rows: (error_code, group_id, state, protocol_type, protocol, members)
        return max((len(row[5]) for row in response.groups if row[2] == "Stable"), default=0)
    except KafkaError:
        return 0
    finally:
        await admin.close()


async def wait_for_group(kafka: KafkaSettings, group: str, members: int, timeout_s: float = 120.0) -> float:
    """Wait until ``group`` is stable with ``members`` members; returns the seconds waited.
    Raises ``TimeoutError``."""
    started = time.monotonic()
    while (await group_members(kafka, group)) != members:
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(f"consumer group {group} not stable with {members} members within {timeout_s:g} s")
        await asyncio.sleep(0.5)
    return time.monotonic() - started


def service_env(kafka: KafkaSettings, data_dir: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment ``ragops up`` gives a service (``ragops/platform.py``)."""
    return {
        **os.environ,
        **BENCH_ENV,
        "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "RAGOPS_DATA_DIR": str(data_dir),
        **(extra or {}),
    }


def spawn_service(service: str, env: Mapping[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """``python -m ragops_<service>`` with its log in ``log_path`` and its own free port for
    its /health, /ready and /metrics server (so replicas do not collide)."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", f"ragops_{service}"],
            env={**env, "RAGOPS_OPS_PORT": str(free_port())},
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def stop_process(process: subprocess.Popen[bytes], timeout_s: float = 20.0) -> None:
    """SIGTERM (a service drains in-flight work), SIGKILL after ``timeout_s``."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def platform_pids(services: Mapping[str, subprocess.Popen[bytes]]) -> dict[str, int]:
    """Process ids of a platform's services and of the broker (a ``tansu`` child of this
    process, and its object store ``weed`` when durable)."""
    pids = {name: process.pid for name, process in services.items()}
    for child in psutil.Process().children(recursive=True):
        try:
            if child.name() in ("tansu", "weed"):
                pids.setdefault(child.name(), child.pid)
        except psutil.NoSuchProcess:
            continue
    return pids


def cpu_seconds(pids: Mapping[str, int]) -> dict[str, float]:
    """User + system CPU seconds each process has used so far (0 once it is gone)."""
    used = {}
    for name, pid in pids.items():
        try:
            times = psutil.Process(pid).cpu_times()
            used[name] = times.user + times.system
        except psutil.NoSuchProcess:
            used[name] = 0.0
    return used


def _proc_kib(pid: int, file: str, field: str) -> int:
    """A ``kB`` field of ``/proc/<pid>/<file>``: ``status`` (``VmRSS``, ``VmHWM``) or
    ``smaps_rollup`` (``Pss``: resident pages, each shared by k processes counted 1/k);
    0 once the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/{file}").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def peak_rss_mib(pid: int) -> float:
    """Peak resident memory of a live process (``VmHWM``), MiB."""
    return _proc_kib(pid, "status", "VmHWM") / 1024


class RssSampler:
    """Samples the summed resident memory (``VmRSS``) of a set of processes every
    ``interval_s`` in a thread, for the peak of the sum (per-process peaks add up to more,
    since they need not coincide).

    A summed RSS counts a page shared by several processes (torch's and the tokenizers'
    libraries, the Python runtime) once per process; the machine holds it once, and so does
    the memory cgroup of a container or pod. ``pss_at_peak_mib`` is the summed PSS, which
    counts each page once in all, read whenever the summed RSS reaches a new peak (reading
    ``smaps_rollup`` walks every page, too costly to repeat every 0.25 s; the shared part
    barely moves, so both peak together)."""

    def __init__(self, pids: Mapping[str, int], interval_s: float = 0.5) -> None:
        self.pids = dict(pids)
        self.interval_s = interval_s
        self.peak_sum_mib = 0.0
        self.pss_at_peak_mib = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            total = sum(_proc_kib(pid, "status", "VmRSS") for pid in self.pids.values()) / 1024
            if total > self.peak_sum_mib:
                self.peak_sum_mib = total
                self.pss_at_peak_mib = sum(_proc_kib(pid, "smaps_rollup", "Pss") for pid in self.pids.values()) / 1024
            self._stop.wait(self.interval_s)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
