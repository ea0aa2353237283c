"""A console to look at, on real components: the sink's ``/sql`` on chDB (seeded with one
tenant's answered questions, their scores, feedback, a drift alert, the trainer's steps,
versions, an experiment and a dead letter, stored by the sink's own row code) and the
gateway with uvicorn on a free port (on a real broker), reading it with the platform key.
Shared by the console's HTTP tests and its browser tests."""

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import uvicorn

from ragops_analytics.client import AnalyticsSettings
from ragops_analytics.queries import insert_events
from ragops_gateway.app import create_app as create_gateway
from ragops_gateway.settings import GatewaySettings
from ragops_schemas import (
    AnswerEvaluated,
    AnswerGenerated,
    CandidateEvaluated,
    ContextRetrieved,
    DriftDetected,
    Event,
    FeedbackRecorded,
    MessageDeadLettered,
    QueryEmbedded,
    QueryRedacted,
    RetrainingRequested,
    VersionRegistered,
)
from ragops_schemas.experiments import ExperimentStarted
from ragops_schemas.ids import experiment_id
from ragops_schemas.topics import TOPICS, Topic
from ragops_shared.embedded import EmbeddedKafka, create_topics
from ragops_shared.identity import ApiKeyStore, Role
from ragops_shared.settings import KafkaSettings, PlatformSettings
from ragops_sink.app import Writer, create_app as create_sink
from ragops_sink.rows import events_to_arrow, to_row
from ragops_sink.schema import set_prices
from ragops_sink.settings import SinkSettings
from tests.helpers import example, record_of

TENANT = "default"
QUESTION = "In what country is Normandy located?"
INJECTED = "<script>document.title='pwned'</script> Who wrote this?"
DEAD_LETTER_REASON = "generation backend timed out after 30 s (console seed)"
SECRET = "console-test-csrf-key-of-32-characters"
MODEL = "SmolLM2-135M-Instruct"  # the golden answer's model: 312 input, 3 output tokens
COST_USD = "0.031800"  # 312 x 100 / 1e6 + 3 x 200 / 1e6
E = TypeVar("E", bound=Event)


@dataclass
class ConsoleSite:
    url: str
    credentials: dict[str, str]  # role (or "revoked", "producer") -> the raw credential
    request_id: str  # the seeded request whose question is QUESTION
    injected_request_id: str  # the one whose question is INJECTED
    keys: ApiKeyStore
    experiment_id: str


def _free_socket() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock


def _request(question: str, at: datetime, *, faithfulness: float, thumb: str | None) -> list[Event]:
    """One request's query events, a second apart, its scores and (with ``thumb``) its feedback."""
    request_id = str(uuid.uuid4())

    def of(event_type: type[E], offset_s: float, **update: object) -> E:
        golden = example(event_type)
        return golden.model_copy(
            update={
                "event_id": uuid.uuid4(),
                "request_id": request_id,
                "occurred_at": at + timedelta(seconds=offset_s),
                "tenant": TENANT,
                **update,
            }
        )

    answer = of(AnswerGenerated, 2.5, question=question)
    scores = [
        score.model_copy(update={"value": faithfulness}) if score.name == "faithfulness" else score
        for score in example(AnswerEvaluated).scores
    ]
    events: list[Event] = [
        of(QueryRedacted, 0, question=question),
        of(QueryEmbedded, 0.05),
        of(ContextRetrieved, 0.2, question=question),
        answer,
        of(AnswerEvaluated, 3.0, scores=scores, run_id=None, example_id=None, answer_event_id=str(answer.event_id)),
    ]
    if thumb is not None:
        events.append(of(FeedbackRecorded, 4.0, thumb=thumb, answer_event_id=str(answer.event_id)))
    return events


def seed_events(now: datetime) -> tuple[list[Event], str, str, str]:
    """(the events, the request id of QUESTION, that of INJECTED, the experiment's id)."""
    main = _request(QUESTION, now - timedelta(hours=2), faithfulness=0.875, thumb="down")
    injected = _request(INJECTED, now - timedelta(days=1), faithfulness=0.25, thumb="up")
    started_id = uuid.uuid4()
    loop = [
        example(event_type).model_copy(update={"event_id": uuid.uuid4(), "occurred_at": now - timedelta(hours=1)})
        for event_type in (DriftDetected, RetrainingRequested, CandidateEvaluated, VersionRegistered)
    ]
    started = example(ExperimentStarted).model_copy(
        update={
            "event_id": started_id,
            "experiment_id": experiment_id(started_id),
            "occurred_at": now - timedelta(hours=3),
            "signature": None,
        }
    )
    dead = example(MessageDeadLettered).model_copy(
        update={
            "event_id": uuid.uuid4(),
            "occurred_at": now - timedelta(minutes=30),
            # A kept topic's letter: the sink stores its reason (an intake topic's is withheld).
            "original_topic": Topic.CONTEXT_RETRIEVED.value,
            "consumer_group": "ragops-generation",
            "error_type": "transient",
            "reason": DEAD_LETTER_REASON,
        }
    )
    return (
        [*main, *injected, *loop, started, dead],
        main[0].request_id,  # type: ignore[attr-defined]
        injected[0].request_id,  # type: ignore[attr-defined]
        started.experiment_id,
    )


@contextmanager
def serving_console(tansu: EmbeddedKafka, data_dir: Path, **gateway: Any) -> Iterator[ConsoleSite]:
    """The seeded sink and the gateway, both serving HTTP on local ports, until the block ends;
    ``gateway``: more GatewaySettings fields."""
    kafka = KafkaSettings(bootstrap_servers=tansu.bootstrap_servers)
    asyncio.run(create_topics(kafka, TOPICS))
    platform = PlatformSettings(data_dir=data_dir, tenant=TENANT)
    keys = ApiKeyStore(data_dir / "auth" / "api-keys.json")
    credentials = {role.value: keys.create(role.value, TENANT, [role])[1] for role in Role}
    revoked, credentials["revoked"] = keys.create("revoked", TENANT, list(Role))
    keys.revoke(revoked.key_id)

    events, request_id, injected_id, started = seed_events(datetime.now(UTC))
    writer = Writer(SinkSettings(platform=platform))
    writer.open()
    received = datetime.now(UTC)
    insert_events(writer.store, events_to_arrow([to_row(record_of(e, i), received) for i, e in enumerate(events)]))
    # The answers' model priced per million tokens: each answer's token bill is COST_USD.
    set_prices(writer.store, {MODEL: (100.0, 200.0)})

    servers: list[tuple[uvicorn.Server, threading.Thread, socket.socket]] = []

    def serve(app: object, lifespan: str) -> str:
        sock = _free_socket()
        server = uvicorn.Server(uvicorn.Config(app, lifespan=lifespan, log_config=None))  # type: ignore[arg-type]
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        servers.append((server, thread, sock))
        deadline = time.monotonic() + 60
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        return f"http://127.0.0.1:{sock.getsockname()[1]}"

    try:
        sink_url = serve(create_sink(SinkSettings(platform=platform), writer), "off")
        settings = GatewaySettings(
            kafka=kafka,
            platform=platform,
            analytics=AnalyticsSettings(sql_url=f"{sink_url}/sql", api_key=credentials["platform"]),
            console_csrf_secret=SECRET,
            **gateway,
        )
        url = serve(create_gateway(settings), "on")
        yield ConsoleSite(url, credentials, request_id, injected_id, keys, started)
    finally:
        for server, thread, sock in reversed(servers):
            server.should_exit = True
            thread.join()
            sock.close()
        writer.close()
