"""The whole platform on one machine (the embedded default): a Tansu broker and every
service as its own process (``python -m ragops_<service>``), as in a cluster, so each can
crash, restart and be measured alone. Kafka topics are the only link between them."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal, TypedDict

import httpx
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from ragops.specs import SERVICE_SPECS
from ragops_schemas.topics import TOPICS
from ragops_shared.embedded import EmbeddedKafka, create_topics, free_port
from ragops_shared.settings import EmbeddedBrokerSettings, KafkaSettings, aiokafka_options
from ragops_shared.spec import OPS_PORT_SETTING

SERVICES = tuple(spec.name for spec in SERVICE_SPECS)
# Consumer groups that must have members before the platform takes traffic.
CONSUMER_GROUPS = tuple(group for spec in SERVICE_SPECS for group in spec.consumer_groups)
# Services whose /health, /ready and /metrics are on the ops port (the gateway's are on its API port).
_OPS_PORT_SERVICES = tuple(spec.name for spec in SERVICE_SPECS if spec.port_setting == OPS_PORT_SETTING)
STATE_FILE = "platform.json"


class PlatformState(TypedDict):
    """What ``platform.json`` records of a running platform: its addresses and process ids."""

    bootstrap_servers: str
    gateway_url: str
    sql_url: str
    ops_urls: dict[str, str]
    pids: dict[str, int]


class PlatformError(RuntimeError):
    """A service process exited, or the platform did not become ready in time."""


@dataclass
class EmbeddedPlatform:
    """Start with :meth:`start` (or ``with``); :meth:`wait_ready` blocks until every consumer
    group has members and the gateway answers; :meth:`stop` ends everything.

    Args:
        data_dir: stores, logs (``logs/<service>.log``) and ``platform.json``, which tells
            ``ragops ingest``/``ask`` where the running platform's broker is.
        env: extra environment for every service (settings such as ``RAGOPS_GENERATION_MODEL``).
        broker_storage: ``durable`` keeps the broker's topics, events and committed offsets in
            ``<data_dir>/broker`` across restarts; ``memory`` loses them when it stops.
            Default: ``RAGOPS_BROKER_STORAGE`` (``durable``).
    """

    data_dir: Path
    gateway_port: int | None = None
    ops_ports: dict[str, int] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    broker_storage: Literal["durable", "memory"] = field(default_factory=lambda: EmbeddedBrokerSettings().storage)
    kafka: EmbeddedKafka | None = None
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    restarts: dict[str, int] = field(default_factory=dict)
    _env: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def kafka_settings(self) -> KafkaSettings:
        assert self.kafka is not None, "start() first"
        return KafkaSettings(bootstrap_servers=self.kafka.bootstrap_servers)

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def sql_url(self) -> str:
        """The sink's read-only SQL endpoint (the process that owns the embedded ClickHouse)."""
        return f"http://127.0.0.1:{self.ops_ports['sink']}/sql"

    def ops_url(self, service: str) -> str:
        """Where ``service`` serves ``/health``, ``/ready`` and ``/metrics``."""
        return self.gateway_url if service == "gateway" else f"http://127.0.0.1:{self.ops_ports[service]}"

    def start(self) -> "EmbeddedPlatform":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        logs = self.data_dir / "logs"
        logs.mkdir(exist_ok=True)
        self.gateway_port = self.gateway_port or free_port()
        self.ops_ports = {service: free_port() for service in _OPS_PORT_SERVICES}
        self.kafka = EmbeddedKafka(
            log_path=logs / "tansu.log",
            data_dir=self.data_dir / "broker" if self.broker_storage == "durable" else None,
        ).start()
        # Every start: a durable broker already has them (a no-op), a fresh one gets them.
        asyncio.run(create_topics(self.kafka_settings, TOPICS))
        self._env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka.bootstrap_servers,
            "RAGOPS_DATA_DIR": str(self.data_dir.resolve()),
            "RAGOPS_GATEWAY_PORT": str(self.gateway_port),
            # Models come from local directories only: there is no hub to reach.
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            # Idle OpenMP threads sleep instead of spinning on the cores other services need.
            "OMP_WAIT_POLICY": "PASSIVE",
            "TOKENIZERS_PARALLELISM": "false",
            # The monitor and the trainer read ClickHouse through the sink, which owns it.
            "RAGOPS_ANALYTICS_SQL_URL": self.sql_url,
            **self.env,
        }
        for service in SERVICES:
            self._spawn(service)
        self._write_state()
        return self

    def _spawn(self, service: str) -> None:
        env = {**self._env, OPS_PORT_SETTING: str(self.ops_ports.get(service, 0))}
        with open(self.data_dir / "logs" / f"{service}.log", "ab") as log:
            self.processes[service] = subprocess.Popen(
                [sys.executable, "-m", f"ragops_{service}"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def _write_state(self) -> None:
        assert self.kafka is not None
        state: PlatformState = {
            "bootstrap_servers": self.kafka.bootstrap_servers,
            "gateway_url": self.gateway_url,
            "sql_url": self.sql_url,
            "ops_urls": {service: self.ops_url(service) for service in SERVICES},
            "pids": {name: process.pid for name, process in self.processes.items()},
        }
        (self.data_dir / STATE_FILE).write_text(json.dumps(state))

    def restart_exited(self, max_restarts: int = 5) -> list[str]:
        """Start again every service whose process exited (a crash, an OOM kill), as a
        Kubernetes Deployment would; Kafka keeps their input meanwhile and their consumer
        groups resume from the last committed offsets. Returns the services restarted.

        Raises:
            PlatformError: a service exited more than ``max_restarts`` times.
        """
        restarted = []
        for name, process in list(self.processes.items()):
            if process.poll() is None:
                continue
            self.restarts[name] = self.restarts.get(name, 0) + 1
            if self.restarts[name] > max_restarts:
                raise PlatformError(
                    f"{name} exited {self.restarts[name]} times (last status {process.returncode}), "
                    f"see {self.data_dir / 'logs' / (name + '.log')}"
                )
            self._spawn(name)
            restarted.append(name)
        if restarted:
            self._write_state()
        return restarted

    def check(self) -> None:
        """Raise :class:`PlatformError` naming any service process that has exited."""
        dead = {name: process.returncode for name, process in self.processes.items() if process.poll() is not None}
        if dead:
            details = "; ".join(
                f"{name} exited with {code}, see {self.data_dir / 'logs' / (name + '.log')}"
                for name, code in dead.items()
            )
            raise PlatformError(details)

    def wait_ready(self, timeout_s: float = 300.0) -> None:
        """Block until the gateway is ready and every consumer group has a member.

        Raises:
            PlatformError: a service died, or readiness took longer than ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check()
            if self._gateway_ready() and asyncio.run(self._groups_ready()):
                return
            time.sleep(0.5)
        raise PlatformError(f"platform not ready within {timeout_s:g} s (logs in {self.data_dir / 'logs'})")

    def _gateway_ready(self) -> bool:
        try:
            return httpx.get(f"{self.gateway_url}/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    async def _groups_ready(self) -> bool:
        admin = AIOKafkaAdminClient(**aiokafka_options(self.kafka_settings))
        await admin.start()
        try:
            for group in CONSUMER_GROUPS:
                # One group per request: aiokafka cannot decode Tansu's DescribeGroups answer
                # for several groups at once while members join.
                [response] = await admin.describe_consumer_groups([group])
                # DescribeGroups v2 rows: (error_code, group_id, state, protocol_type, protocol, members)
                if not any(row[2] == "Stable" and row[5] for row in response.groups):
                    return False
            return True
        except KafkaError:
            return False
        finally:
            await admin.close()

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM every service (they drain in-flight work), SIGKILL stragglers, stop Kafka."""
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for process in self.processes.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self.kafka is not None:
            self.kafka.stop()
        (self.data_dir / STATE_FILE).unlink(missing_ok=True)

    def __enter__(self) -> "EmbeddedPlatform":
        return self.start()

    def __exit__(self, *exc: tuple[type[BaseException], BaseException, TracebackType]) -> None:
        self.stop()


def running_platform(data_dir: Path) -> PlatformState:
    """The broker, gateway and other addresses of the platform ``ragops up`` runs with ``data_dir``.

    Raises:
        PlatformError: no platform runs there.
    """
    state = data_dir / STATE_FILE
    if not state.is_file():
        raise PlatformError(
            f"no running platform found in {data_dir} (start one with `ragops up`, or set KAFKA_BOOTSTRAP_SERVERS)"
        )
    found: PlatformState = json.loads(state.read_text())
    if not any(_alive(pid) for pid in found.get("pids", {}).values()):
        raise PlatformError(f"the platform recorded in {state} is not running any more (start one with `ragops up`)")
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True
