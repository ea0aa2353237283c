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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal, NamedTuple, NotRequired, TypedDict

import httpx
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from ragops.credentials import EmbeddedKeys, bearer_of, bootstrap_keys
from ragops.specs import SERVICE_SPECS
from ragops.supervision import RestartPolicy, SupervisorSettings, bound_log
from ragops_analytics.client import AnalyticsClient
from ragops_schemas.topics import TOPICS
from ragops_shared.embedded import EmbeddedKafka, create_topics, free_port
from ragops_shared.settings import EmbeddedBrokerSettings, KafkaSettings, PlatformSettings, aiokafka_options
from ragops_shared.spec import OPS_PORT_SETTING

SERVICES = tuple(spec.name for spec in SERVICE_SPECS)
# Consumer groups that must have members before the platform takes traffic.
CONSUMER_GROUPS = tuple(group for spec in SERVICE_SPECS for group in spec.consumer_groups)
_GROUPS_OF = {spec.name: spec.consumer_groups for spec in SERVICE_SPECS}
# The supervisor's name for the Kafka broker among the children it restarts.
BROKER = "broker"
# Services whose /health, /ready and /metrics are on the ops port (the gateway's are on its API port).
_OPS_PORT_SERVICES = tuple(spec.name for spec in SERVICE_SPECS if spec.port_setting == OPS_PORT_SETTING)
STATE_FILE = "platform.json"
ANALYTICS_READERS = frozenset({"monitor", "trainer", "gateway", "generation"})
"""The services that read ClickHouse (the sink's ``/sql``) on their own credential: the only
ones given the platform key, which reads every tenant's rows. The gateway reads on it for its
callers (``GET /v1/answers/...``, the review queue and agreement, the console), restricting each
statement to the caller's tenant (every tenant for a platform caller); its ``POST /v1/sql``
presents its caller's credential instead."""
_PLATFORM_KEY = "RAGOPS_ANALYTICS_API_KEY"


class PlatformState(TypedDict):
    """What ``platform.json`` records of a running platform: its addresses and process ids."""

    bootstrap_servers: str
    gateway_url: str
    sql_url: str
    ops_urls: dict[str, str]
    pids: dict[str, int]
    restarts: NotRequired[dict[str, int]]
    """Restarts so far per child (service or ``tansu``); absent in files of older releases."""


class PlatformError(RuntimeError):
    """A service process exited, or the platform did not become ready in time."""


class Exit(NamedTuple):
    """A child (a service or ``BROKER``) found dead by :meth:`EmbeddedPlatform.supervise`.

    ``code``: its exit status (negative: the signal), ``None`` when the supervisor ended a
    service: one that did not rejoin after a broker restart, or every service after a broker
    that lost its log; ``delay_s``: seconds before its
    restart; ``used``: restarts within the budget window so far, this one included."""

    name: str
    code: int | None
    delay_s: float
    used: int
    reason: str


@dataclass
class EmbeddedPlatform:
    """Start with :meth:`start` (or ``with``); :meth:`wait_ready` blocks until every consumer
    group has members and the gateway answers; :meth:`supervise`, called every
    ``supervisor.poll_interval_s``, restarts what died; :meth:`stop` ends everything.

    Args:
        data_dir: stores, logs (``logs/<service>.log``, ``logs/tansu.log``) and ``platform.json``,
            which tells ``ragops ingest``/``ask`` where the running platform's broker is.
        env: extra environment for every service (settings such as ``RAGOPS_GENERATION_MODEL``).
        services: the services to run (default: all, in start order).
        supervisor: backoff, restart budget and reconnection grace of :meth:`supervise`.
        clock: seconds on a monotonic clock, read by :meth:`supervise` (tests move it by hand).
        broker_storage: ``durable`` keeps the broker's topics, events and committed offsets in
            ``<data_dir>/broker`` across restarts; ``memory`` loses them when it stops.
            Default: ``RAGOPS_BROKER_STORAGE`` (``durable``).

    Every HTTP route but ``/health`` and ``/ready`` asks for a credential: :meth:`start` creates
    (once per ``data_dir``) the admin and platform keys, :attr:`keys`
    (:func:`ragops.credentials.bootstrap_keys`); the services of :data:`ANALYTICS_READERS`
    present the platform key to the sink's ``/sql`` (no other service gets it), :attr:`auth`
    and :meth:`analytics` present them for the caller.
    """

    data_dir: Path
    gateway_port: int | None = None
    ops_ports: dict[str, int] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    services: tuple[str, ...] = SERVICES
    supervisor: SupervisorSettings = field(default_factory=SupervisorSettings)
    clock: Callable[[], float] = time.monotonic
    broker_storage: Literal["durable", "memory"] = field(default_factory=lambda: EmbeddedBrokerSettings().storage)
    kafka: EmbeddedKafka | None = None
    keys: EmbeddedKeys | None = None
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    # Restarts done per child (services and BROKER) over the platform's life.
    restarts: dict[str, int] = field(default_factory=dict)
    _env: dict[str, str] = field(default_factory=dict, repr=False)
    _policies: dict[str, RestartPolicy] = field(default_factory=dict, repr=False)
    # Dead children waiting for their restart: when it is due (on ``clock``).
    _due: dict[str, float] = field(default_factory=dict, repr=False)
    # After a broker restart: services whose consumer groups have not rejoined yet, and until when they may.
    _rejoining: set[str] = field(default_factory=set, repr=False)
    _rejoin_deadline: float = field(default=0.0, repr=False)
    _failure: PlatformError | None = field(default=None, repr=False)

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

    @property
    def auth(self) -> httpx.Auth:
        """The admin key as ``Authorization: Bearer`` for an httpx client (every role but ``platform``)."""
        assert self.keys is not None, "start() first"
        return bearer_of(self.keys.admin)

    def analytics(self) -> AnalyticsClient:
        """A reader of the sink's ``/sql`` with the platform key: every tenant's rows, as the monitor sees them."""
        assert self.keys is not None, "start() first"
        return AnalyticsClient(sql_url=self.sql_url, api_key=self.keys.platform)

    def ops_url(self, service: str) -> str:
        """Where ``service`` serves ``/health``, ``/ready`` and ``/metrics``."""
        return self.gateway_url if service == "gateway" else f"http://127.0.0.1:{self.ops_ports[service]}"

    def start(self) -> "EmbeddedPlatform":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.keys = bootstrap_keys(PlatformSettings(data_dir=self.data_dir.resolve()))
        logs = self.data_dir / "logs"
        logs.mkdir(exist_ok=True)
        self.gateway_port = self.gateway_port or free_port()
        self.ops_ports = {service: free_port() for service in _OPS_PORT_SERVICES}
        self._policies = {name: RestartPolicy.from_settings(self.supervisor) for name in (BROKER, *self.services)}
        self.kafka = EmbeddedKafka(
            log_path=self._log(BROKER),
            data_dir=self.data_dir / "broker" if self.broker_storage == "durable" else None,
        )
        self._start_broker()
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
            "RAGOPS_AUTH_API_KEYS_FILE": str(self.keys.api_keys_file),
            **self.env,
        }
        for service in self.services:
            self._spawn(service)
        self._write_state()
        return self

    def _start_broker(self) -> list[str]:
        """Start the broker (again: on the same port) and create the platform's topics, which
        a broker that keeps its log in memory has lost; existing topics are left as they are.
        Returns the topics that were missing.

        Raises:
            RuntimeError: the broker did not listen (see :meth:`EmbeddedKafka.start`).
            TimeoutError: it listened but did not answer the Kafka protocol.
        """
        assert self.kafka is not None
        self.kafka.start()
        self._policies[BROKER].started(self.clock())
        return asyncio.run(create_topics(self.kafka_settings, TOPICS))

    def _spawn(self, service: str) -> None:
        assert self.keys is not None, "start() first"
        env = {**self._env, OPS_PORT_SETTING: str(self.ops_ports.get(service, 0))}
        if service in ANALYTICS_READERS:
            env[_PLATFORM_KEY] = self.env.get(_PLATFORM_KEY, self.keys.platform)
        else:
            # Nor one inherited: a service that does not read analytics never holds a cross-tenant key.
            env.pop(_PLATFORM_KEY, None)
        with open(self._log(service), "ab") as log:
            self.processes[service] = subprocess.Popen(
                [sys.executable, "-m", f"ragops_{service}"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._policies[service].started(self.clock())

    def _log(self, name: str) -> Path:
        return log_path(self.data_dir, name)

    def _write_state(self) -> None:
        assert self.kafka is not None
        state: PlatformState = {
            "bootstrap_servers": self.kafka.bootstrap_servers,
            "gateway_url": self.gateway_url,
            "sql_url": self.sql_url,
            "ops_urls": {service: self.ops_url(service) for service in self.services},
            "pids": {name: process.pid for name, process in self.processes.items()},
            "restarts": dict(self.restarts),
        }
        (self.data_dir / STATE_FILE).write_text(json.dumps(state))

    def supervise(self) -> list[Exit]:
        """Look at every child once, as a Kubernetes kubelet would, without waiting for a
        restart that is not due: schedule the restart of each child found dead (after its
        backoff), start the children whose restart is due (the broker first, then its topics;
        services resume from their groups' committed offsets), and after a broker restart
        end the services whose consumer groups have not rejoined within
        ``supervisor.reconnect_grace_s`` (they restart like a crash); rotate each service's
        log past ``supervisor.log_max_bytes`` (:func:`~ragops.supervision.bound_log`). Returns the exits
        found by this call; :attr:`restarts` counts the restarts done.

        Raises:
            PlatformError: a child exited beyond its restart budget (the message names it,
                its last exit statuses and its log); stop the platform then.
        """
        if self._failure is not None:
            raise self._failure
        assert self.kafka is not None, "start() first"
        now = self.clock()
        found: list[Exit] = []
        if BROKER not in self._due and (code := self.kafka.poll()) is not None:
            found.append(self._exited(BROKER, code, now, "exited"))
        for name, process in self.processes.items():
            if name not in self._due and (code := process.poll()) is not None:
                found.append(self._exited(name, code, now, "exited"))
        if self._due.get(BROKER, float("inf")) <= now:
            found += self._restart_broker(now)
        for name, due in list(self._due.items()):
            if name != BROKER and due <= now:
                del self._due[name]
                self._spawn(name)
                self.restarts[name] = self.restarts.get(name, 0) + 1
                self._write_state()
        if self._rejoining and BROKER not in self._due:
            found += self._check_rejoined(now)
        for name in self.processes:
            bound_log(self._log(name), self.supervisor.log_max_bytes)
        return found

    def _exited(self, name: str, code: int | None, now: float, reason: str) -> Exit:
        policy = self._policies[name]
        delay = policy.exited(now, code)
        if delay is None:
            codes = ", ".join("ended by the supervisor" if c is None else str(c) for c in policy.exit_codes)
            self._failure = PlatformError(
                f"{name} {reason}, and it was restarted {policy.budget.max_restarts} times within "
                f"{policy.budget.window_s:g} s already (the restart budget): the platform stops. "
                f"Last exit statuses: {codes}; see {self._log(name)}"
            )
            raise self._failure
        self._due[name] = now + delay
        return Exit(name, code, delay, policy.budget.used(now), reason)

    def _restart_broker(self, now: float) -> list[Exit]:
        assert self.kafka is not None
        del self._due[BROKER]
        try:
            self._start_broker()
        except (RuntimeError, TimeoutError):
            # Counted like a crash: the next try waits longer, and the budget bounds the tries.
            self.kafka.stop()
            return [self._exited(BROKER, self.kafka.poll(), now, "did not come back")]
        self.restarts[BROKER] = self.restarts.get(BROKER, 0) + 1
        self._write_state()
        if self.broker_storage == "memory":
            return self._restart_services_with_lost_log(now)
        # Clients reconnect by themselves to a broker that kept its log: consumer groups rejoin
        # at their committed offsets and readers without a group read on from their positions.
        # The supervisor checks that each consumer group rejoins.
        self._rejoining = {name for name in self.processes if _GROUPS_OF[name] and name not in self._due}
        self._rejoin_deadline = self.clock() + self.supervisor.reconnect_grace_s
        return []

    def _restart_services_with_lost_log(self, now: float) -> list[Exit]:
        """Restart every running service at once after a broker that lost its log (memory):
        their positions, the views they folded from the topics and the event ids they
        de-duplicate describe a log that no longer exists. A reader cannot always tell: a new
        log that has grown back to its old length before the reader's next fetch looks like
        the old one (seen in CI: an answer published just after the restart was never read).
        Not counted against a service's restart budget: the service did not fail."""
        found = []
        for name, process in self.processes.items():
            if name in self._due:
                continue  # restarts when due, on the new log anyway
            process.kill()
            process.wait()
            self._spawn(name)
            self.restarts[name] = self.restarts.get(name, 0) + 1
            used = self._policies[name].budget.used(now)
            found.append(Exit(name, None, 0.0, used, "restarted with the broker, which lost its log"))
        self._write_state()
        return found

    def _check_rejoined(self, now: float) -> list[Exit]:
        stable = asyncio.run(self._stable_groups([group for name in self._rejoining for group in _GROUPS_OF[name]]))
        self._rejoining = {name for name in self._rejoining if not set(_GROUPS_OF[name]) <= stable}
        if now < self._rejoin_deadline:
            return []
        found = []
        for name in sorted(self._rejoining):
            self.processes[name].kill()
            self.processes[name].wait()
            found.append(self._exited(name, None, now, "did not rejoin its consumer groups after the broker restart"))
        self._rejoining = set()
        return found

    def check(self) -> None:
        """Raise :class:`PlatformError` naming every child (service or broker) that is not
        running, or the supervisor's reason for giving up."""
        if self._failure is not None:
            raise self._failure
        dead = {name: process.returncode for name, process in self.processes.items() if process.poll() is not None}
        if self.kafka is not None and (code := self.kafka.poll()) is not None:
            dead[BROKER] = code
        if dead:
            details = "; ".join(f"{name} exited with {code}, see {self._log(name)}" for name, code in dead.items())
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
        if "gateway" not in self.services:
            return True
        try:
            return httpx.get(f"{self.gateway_url}/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    async def _groups_ready(self) -> bool:
        groups = [group for name in self.services for group in _GROUPS_OF[name]]
        return set(groups) <= await self._stable_groups(groups)

    async def _stable_groups(self, groups: list[str]) -> set[str]:
        """Those of ``groups`` that are ``Stable`` with members (those answered before Kafka
        stopped answering, if it does)."""
        admin = AIOKafkaAdminClient(**aiokafka_options(self.kafka_settings), request_timeout_ms=5000)
        stable: set[str] = set()
        try:
            await admin.start()
            for group in groups:
                # One group per request: aiokafka cannot decode Tansu's DescribeGroups answer
                # for several groups at once while members join.
                [response] = await admin.describe_consumer_groups([group])
                # DescribeGroups v2 rows: (error_code, group_id, state, protocol_type, protocol, members)
                if any(row[2] == "Stable" and row[5] for row in response.groups):
                    stable.add(group)
        except KafkaError:
            pass  # the groups not answered count as not rejoined; asked again at the next look
        finally:
            await admin.close()
        return stable

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM every service (they drain in-flight work), SIGKILL stragglers, stop Kafka."""
        self._due.clear()
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
    if not any(alive(pid) for pid in found.get("pids", {}).values()):
        raise PlatformError(f"the platform recorded in {state} is not running any more (start one with `ragops up`)")
    return found


def log_path(data_dir: Path, service: str) -> Path:
    """Where the embedded platform writes ``service``'s output (``tansu`` for the broker's)."""
    return data_dir / "logs" / ("tansu.log" if service == BROKER else f"{service}.log")


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists (it may be a zombie, or another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True
