"""The whole platform on the embedded default, every service in its own process, on a small
slice of the real corpus: documents in, answers with lineage out, through Kafka only.

Each test stands alone (``-k`` runs any one of them): the module's platform starts with the
slice ingested and questions answered (the ``workload`` fixture, before any test), and a
test that needs more (a dead letter, a retraining request) makes it itself."""

import asyncio
import json
import time
from collections import defaultdict
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from ragops.client import PUBLISHES, PlatformClient
from ragops.demo import run_workload
from ragops.platform import EmbeddedPlatform
from ragops.specs import SERVICE_SPECS
from ragops_analytics.store import QueryError
from ragops_schemas import (
    AnswerGenerated,
    DocumentIndexed,
    DocumentRejected,
    FeedbackRecorded,
    FeedbackSubmitted,
    MessageDeadLettered,
    Topic,
)
from ragops_shared.datasets import Question
from ragops_shared.settings import KafkaSettings, aiokafka_options
from tests.helpers import read_jsonl
from tests.integration.services import produce_raw

pytestmark = [pytest.mark.kafka, pytest.mark.qdrant, pytest.mark.model, pytest.mark.slow]
ARTICLE = "Normans"


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory):
    with EmbeddedPlatform(data_dir=tmp_path_factory.mktemp("platform")) as running:
        running.wait_ready(timeout_s=600)  # the first start converts the generation model once
        yield running


def _questions(data_dir: Path, passages: set[str], count: int) -> list[Question]:
    rows = read_jsonl(data_dir / "questions.jsonl")
    picked = [row for row in rows if row["context_ids"][0] in passages][:count]
    return [Question(**{k: row[k] for k in ("id", "question", "answers", "context_ids")}) for row in picked]


@pytest.fixture(scope="module", autouse=True)
def workload(
    platform: EmbeddedPlatform, data_dir: Path, corpus_rows: list[dict], tmp_path_factory: pytest.TempPathFactory
) -> dict:
    """The first 12 passages of the article ingested into the fresh platform and 6 of their
    questions asked as an evaluation run with feedback: the demo's report of it, with the
    ``slice`` and ``questions`` used. Every test in the module starts from here."""
    from rich.console import Console

    corpus = tmp_path_factory.mktemp("workload") / "corpus.jsonl"
    slice_ = [row for row in corpus_rows if row["title"] == ARTICLE][:12]
    corpus.write_text("".join(json.dumps(row) + "\n" for row in slice_))
    questions = _questions(data_dir, {row["id"] for row in slice_}, 6)
    analytics = platform.analytics()
    report = asyncio.run(
        run_workload(platform.kafka_settings, analytics, corpus, questions, concurrency=3, console=Console(quiet=True))
    )
    return {"report": report, "slice": slice_, "questions": questions}


def test_documents_in_answers_out(platform: EmbeddedPlatform, workload: dict) -> None:
    report, slice_, questions = workload["report"], workload["slice"], workload["questions"]
    analytics = platform.analytics()

    # Every figure below was computed by SQL in ClickHouse from what the sink stored.
    assert report["events_match"], report["events_per_topic"]
    assert report["passages_indexed"] == len(slice_) and report["passages_rejected"] == 0
    assert report["chunks_indexed"] >= len(slice_)
    assert report["questions_answered"] == len(questions)
    assert report["scores"]["hit@5"] >= 0.5, report["scores"]
    assert {"faithfulness", "answer_relevancy", "context_relevance", "f1", "exact_match"} <= set(report["scores"])
    assert all(report["latency_ms"][stage]["n"] == len(questions) for stage in ("embedding", "retrieval", "generation"))
    assert report["feedback"]["n"] == len(questions) == report["feedback_sent"]
    assert set(report["spearman_vs_f1"]) == {"faithfulness", "answer_relevancy", "context_relevance"}
    runs = analytics.query(
        "SELECT questions, answered FROM evaluation_runs FINAL WHERE run_id = {run_id:String}",
        {"run_id": report["run_id"]},
    ).rows
    assert runs == [(len(questions), len(questions))]
    lineage = report["lineage_example"]
    assert lineage["prompt"]["name"] == "rag-answer" and lineage["embedding"]["dimension"] == 384
    assert set(lineage["document_versions"]) <= {row["id"] for row in slice_}
    platform.check()


def test_versions_rejections_and_dead_letters(platform: EmbeddedPlatform) -> None:
    async def scenario() -> tuple:
        async with PlatformClient(platform.kafka_settings, name="e2e") as client:
            first = client.document("handbook", "# Handbook\n\nThe office opens at nine.", content_type="text/markdown")
            changed = client.document(
                "handbook", "# Handbook\n\nThe office opens at ten on Mondays.", content_type="text/markdown"
            )
            empty = client.document("blank.rst", "   \n", content_type="text/x-rst")
            [(_, v1)] = await client.ingest([first])
            [(_, v2), (_, rejected)] = await client.ingest([changed, empty])
            # A record no schema accepts: dead-lettered by the privacy service; the stream goes on.
            await produce_raw(platform.kafka_settings, Topic.QUERY_SUBMITTED, [(b"broken", b'{"question": 42}')])
            [trace] = await client.ask(
                [client.question("When does the office open on Mondays?", filters={"document_id": "handbook"})]
            )
            return v1, v2, rejected, trace

    v1, v2, rejected, trace = asyncio.run(scenario())
    assert isinstance(v1, DocumentIndexed) and isinstance(v2, DocumentIndexed)
    assert v2.document_version != v1.document_version and v2.superseded_chunks == v1.chunk_count
    assert isinstance(rejected, DocumentRejected) and "empty" in rejected.reason
    assert isinstance(trace.outcome, AnswerGenerated)
    assert [c.document_version for c in trace.outcome.contexts] == [v2.document_version], (
        "only the new version is retrievable"
    )


def test_gateway_round_trip_and_failures(platform: EmbeddedPlatform) -> None:
    with httpx.Client(base_url=platform.gateway_url, auth=platform.auth, timeout=120) as http:
        answered = http.post(
            "/v1/queries", json={"question": "Who was the duke in the battle of Hastings?", "top_k": 3}
        )
        assert answered.status_code == 200, answered.text
        body = answered.json()
        assert body["lineage"]["generation_model"] and body["generation"]["usage"]["gen_ai.usage.input_tokens"] > 0

        unknown_prompt = http.post("/v1/queries", json={"question": "Anything?", "prompt_name": "no-such-prompt"})
        assert unknown_prompt.status_code == 502
        # Where it failed and a trace id; the reason (it may quote paths or backends) is in the log only.
        assert "generation" in unknown_prompt.json()["detail"] and unknown_prompt.json()["trace_id"]

    async def dead_letter_of_broken_record() -> MessageDeadLettered:
        async with PlatformClient(platform.kafka_settings, name="e2e-dlq") as client:
            waiting = client.expect("broken-2", (MessageDeadLettered,))
            await produce_raw(platform.kafka_settings, Topic.QUERY_SUBMITTED, [(b"broken-2", b"\x00not json")])
            return await asyncio.wait_for(waiting, 60)

    letter = asyncio.run(dead_letter_of_broken_record())
    assert letter.original_topic == Topic.QUERY_SUBMITTED and letter.consumer_group == "ragops-privacy-queries"


def test_feedback_outcomes(platform: EmbeddedPlatform) -> None:
    async def scenario() -> tuple:
        async with PlatformClient(platform.kafka_settings, name="e2e-feedback") as client:
            [trace] = await client.ask([client.question("Who was the duke in the battle of Hastings?")])
            request_id = trace.answer.request_id
            liked = FeedbackSubmitted(producer=client.producer, request_id=request_id, rating=5, comment="👍 très bien")
            [recorded] = await client.send_feedback([liked])
            await client.publish(liked)  # the same event delivered again
            [refused] = await client.send_feedback(
                [FeedbackSubmitted(producer=client.producer, request_id="never-asked", thumb="down")]
            )
            from_the_future = FeedbackSubmitted(
                producer=client.producer,
                request_id=request_id,
                thumb="up",
                occurred_at=liked.occurred_at + timedelta(days=1),
            )
            letter = client.expect(request_id, (MessageDeadLettered,))
            await client.publish(from_the_future)  # as stamped by its producer (send_feedback stamps "now")
            late = await asyncio.wait_for(letter, 60)
            return request_id, recorded, refused, late

    request_id, recorded, refused, late = asyncio.run(scenario())
    assert (
        isinstance(recorded, FeedbackRecorded)
        and recorded.sentiment == "positive"
        and recorded.comment == "👍 très bien"
    )
    assert recorded.lineage.generation_model and recorded.answer
    assert (
        isinstance(refused, MessageDeadLettered)
        and refused.error_type == "rejected"
        and "unknown request_id" in refused.reason
    )
    assert isinstance(late, MessageDeadLettered) and late.error_type == "rejected" and "future" in late.reason

    analytics = platform.analytics()
    deadline = time.monotonic() + 60
    letters = "SELECT count() FROM events WHERE event_type = 'message.dead_lettered' AND message_key = {key:String}"
    while analytics.query(letters, {"key": request_id}).rows[0][0] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.5)
    # The duplicate delivery produced no second FeedbackRecorded (the service remembers ids).
    recorded_count = (
        "SELECT count() FROM events WHERE event_type = 'feedback.recorded' AND request_id = {request_id:String}"
    )
    assert analytics.query(recorded_count, {"request_id": request_id}).rows[0][0] == 1

    with httpx.Client(base_url=platform.gateway_url, auth=platform.auth, timeout=30) as http:
        assert http.post("/v1/feedback", json={"request_id": "r", "rating": 6}).status_code == 422
        assert http.post("/v1/feedback", json={"request_id": "r"}).status_code == 422
        assert http.post("/v1/feedback", json={"request_id": "r", "thumb": "up"}).status_code == 202


def test_analysts_sql_is_read_only(platform: EmbeddedPlatform) -> None:
    analytics = platform.analytics()
    assert analytics.query("SELECT count() FROM events").rows[0][0] > 0
    for view in (
        "quality_by_day",
        "quality_by_prompt_version",
        "latency_by_stage",
        "feedback_rates",
        "cost_per_request",
        "cost_per_day",
        "dead_letters_by_reason",
    ):
        # Names formatted in: analyst SQL takes no {x:Identifier}, which would hide the table from its guard.
        analytics.query(f"SELECT * FROM {view} LIMIT 1")
    with pytest.raises((QueryError, ValueError)):
        analytics.query("DROP TABLE events")
    with pytest.raises((QueryError, ValueError)):
        analytics.query("SELECT 1; INSERT INTO model_prices VALUES ('x', 1, 1, now())")
    with pytest.raises((QueryError, ValueError)):
        analytics.query("SELECT * FROM file('/etc/passwd')")


def test_cli_against_the_running_platform(platform: EmbeddedPlatform, data_dir: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ragops.cli import app

    runner = CliRunner()
    where = ["--data-dir", str(platform.data_dir)]
    note = tmp_path / "notes.md"
    note.write_text("# Parking\n\nVisitors park on level 3 of the north garage.")
    ingested = runner.invoke(app, ["ingest", str(note), *where])
    assert ingested.exit_code == 0, ingested.output
    assert "1 documents indexed" in ingested.output

    answered = runner.invoke(
        app, ["ask", "Where do visitors park?", "--json", "--filter", f"document_id={note.resolve()}", *where]
    )
    assert answered.exit_code == 0, answered.output
    assert json.loads(answered.stdout)["contexts"][0]["document_id"] == str(note.resolve())

    dataset = tmp_path / "questions.jsonl"
    picked = [
        row for row in read_jsonl(data_dir / "questions.jsonl") if row["context_ids"][0].startswith(f"{ARTICLE}-p00")
    ][:5]
    dataset.write_text("".join(json.dumps(row) + "\n" for row in picked))
    evaluated = runner.invoke(
        app, ["eval", "--dataset", str(dataset), "--questions", "3", "--run-id", "cli-run", *where]
    )
    assert evaluated.exit_code == 0, evaluated.output
    assert "faithfulness" in evaluated.stdout and "Spearman" in evaluated.stdout

    counted = runner.invoke(
        app, ["sql", "SELECT count() FROM queries FINAL WHERE run_id = 'cli-run'", "--json", *where]
    )
    deadline = time.monotonic() + 60
    while json.loads(counted.stdout)["rows"] != [[3]]:
        assert time.monotonic() < deadline, counted.stdout
        time.sleep(0.5)
        counted = runner.invoke(
            app, ["sql", "SELECT count() FROM queries FINAL WHERE run_id = 'cli-run'", "--json", *where]
        )
    refused = runner.invoke(app, ["sql", "DROP TABLE events", *where])
    assert refused.exit_code == 1 and "DROP" in refused.output


def test_an_operator_reindex_builds_a_new_collection_and_switches_queries_to_it(platform: EmbeddedPlatform) -> None:
    from typer.testing import CliRunner

    from ragops.cli import app
    from ragops_shared.identity import ApiKeyStore, Role

    runner = CliRunner()
    where = ["--data-dir", str(platform.data_dir)]
    # A person's retraining request is a four-eyes change: one operator asks, another person approves.
    keys = ApiKeyStore(platform.data_dir / "auth" / "api-keys.json")
    operator = keys.create("e2e-operator", "default", [Role.OPERATOR])[1]
    approver = keys.create("e2e-approver", "default", [Role.APPROVER])[1]
    requested = runner.invoke(
        app, ["retrain", "reindex", "--reason", "e2e: rebuild by replay", *where], env={"RAGOPS_API_KEY": operator}
    )
    assert requested.exit_code == 0, requested.output
    change = requested.stdout.strip().splitlines()[-1]
    approved = runner.invoke(
        app, ["changes", "approve", change, "--reason", "e2e", *where], env={"RAGOPS_API_KEY": approver}
    )
    assert approved.exit_code == 0, approved.output
    analytics = platform.analytics()
    deadline = time.monotonic() + 180
    promoted = []
    while not promoted:
        assert time.monotonic() < deadline, analytics.query("SELECT event_type, reason FROM training_steps FINAL").rows
        time.sleep(1)
        promoted = analytics.query(
            "SELECT version, uri, reason FROM versions FINAL "
            "WHERE kind = 'index' AND event_type = 'registry.version_promoted'"
        ).rows
    build, collection, reason = promoted[0]
    assert "re-indexed" in reason and "e2e: rebuild by replay" in reason
    indexed, live = analytics.query(
        "SELECT countIf(event_type = 'document.indexed'), "
        "countDistinctIf(document_id, event_type = 'document.chunked') "
        "FROM events FINAL WHERE JSONExtractString(payload, 'index_build', 'build_id') = {build:String}",
        {"build": build},
    ).rows[0]
    assert indexed == live > 0, "every replayed document was indexed into the build"
    # Each retrieval replica switches when it reads the promotion from the registry, up to
    # KAFKA_REGISTRY_FETCH_MAX_WAIT_MS later on the embedded broker: ask until it has.
    searched = []
    while collection not in searched:
        assert time.monotonic() < deadline, f"queries still search {searched}, not the promoted build {collection}"
        answered = runner.invoke(app, ["ask", "Who ruled Normandy?", "--json", *where])
        assert answered.exit_code == 0, answered.output
        searched.append(json.loads(answered.stdout)["lineage"]["collection"])
    assert len(searched) <= 3, f"the switch took {len(searched)} questions: {searched}"


def _metric_total(text: str, name: str) -> float:
    """Sum of every sample of a Prometheus metric in text exposition format."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith((name + "{", name + " ")))


def test_every_service_serves_health_readiness_and_real_metrics(platform: EmbeddedPlatform) -> None:
    from ragops.platform import SERVICES

    async def dead_letters_of_broken_records() -> list[MessageDeadLettered]:
        """The workload reached every consumer but the trainer; a broken record to the trainer
        and one to the privacy service (dead-lettered: counted) reach the rest."""
        async with PlatformClient(platform.kafka_settings, name="e2e-metrics") as client:
            waiting = [client.expect(key, (MessageDeadLettered,)) for key in ("broken-training", "broken-query")]
            await produce_raw(platform.kafka_settings, Topic.RETRAINING_REQUESTED, [(b"broken-training", b"{}")])
            await produce_raw(platform.kafka_settings, Topic.QUERY_SUBMITTED, [(b"broken-query", b"{}")])
            return [await asyncio.wait_for(future, 60) for future in waiting]

    letters = asyncio.run(dead_letters_of_broken_records())
    assert [letter.consumer_group for letter in letters] == ["ragops-trainer", "ragops-privacy-queries"]
    with httpx.Client(auth=platform.auth, timeout=10) as http:
        assert (
            http.post(f"{platform.gateway_url}/v1/feedback", json={"request_id": "r", "thumb": "up"}).status_code == 202
        )
        # The monitor checks on its own schedule (every 30 s), the first time at its start.
        deadline = time.monotonic() + 120
        while (
            _metric_total(http.get(f"{platform.ops_url('monitor')}/metrics").text, "ragops_monitor_checks_total") == 0
        ):
            assert time.monotonic() < deadline, "the monitor never checked"
            time.sleep(1)
        for service in SERVICES:
            base = platform.ops_url(service)
            assert http.get(f"{base}/health").status_code == 200, service
            assert http.get(f"{base}/ready").status_code == 200, service
            metrics = http.get(f"{base}/metrics").text
            if service == "gateway":
                assert _metric_total(metrics, "faststream_published_messages_total") > 0
            elif service == "monitor":  # consumes nothing: it reads ClickHouse on a schedule
                assert _metric_total(metrics, "ragops_monitor_checks_total") > 0
            else:  # every other service consumed what the workload and the broken records sent
                assert _metric_total(metrics, "faststream_received_messages_total") > 0, service
                assert _metric_total(metrics, "ragops_batch_records_count") > 0 or service == "sink", service
        generation = http.get(f"{platform.ops_url('generation')}/metrics").text
        assert _metric_total(generation, "ragops_model_tokens_total") > 0
        assert _metric_total(generation, "ragops_model_latency_seconds_count") > 0
        privacy = http.get(f"{platform.ops_url('privacy')}/metrics").text
        assert _metric_total(privacy, "ragops_dead_letters_total") >= 1  # the broken query above


async def _producers_by_topic(kafka: KafkaSettings) -> dict[Topic, set[str]]:
    """The ``producer.name`` of every event on every platform topic, from its start to its
    current end (records without one, such as the tests' raw broken records, are left out)."""
    consumer = AIOKafkaConsumer(
        **aiokafka_options(kafka),
        group_id=None,
        enable_auto_commit=False,
        max_partition_fetch_bytes=kafka.max_message_bytes,
    )
    await consumer.start()
    found: dict[Topic, set[str]] = defaultdict(set)
    try:
        await consumer.topics()
        partitions = [TopicPartition(t.value, p) for t in Topic for p in consumer.partitions_for_topic(t.value) or ()]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        remaining = {partition for partition in partitions if ends[partition] > 0}
        async with asyncio.timeout(120):
            while remaining:
                for partition, records in (await consumer.getmany(timeout_ms=1000)).items():
                    for record in records:
                        try:
                            found[Topic(partition.topic)].add(json.loads(record.value)["producer"]["name"])
                        except (ValueError, TypeError, KeyError):
                            continue
                remaining = {
                    partition for partition in remaining if await consumer.position(partition) < ends[partition]
                }
    finally:
        await consumer.stop()
    return found


def test_every_event_comes_from_a_declared_writer_of_its_topic(platform: EmbeddedPlatform) -> None:
    """The writes each service declares (``ServiceSpec.writes``, which its generated KafkaUser
    grants, k8s/dependencies/kafka-users.yaml) and the clients' (``ragops.client.PUBLISHES``,
    the user ragops-operator), held to real traffic: every event the run produced so far names
    a producer that declares its topic."""
    producers = asyncio.run(_producers_by_topic(platform.kafka_settings))
    services = {spec.name: set(spec.writes) for spec in SERVICE_SPECS}
    clients = {event.TOPIC for event in PUBLISHES}
    assert {"ingestion", "embedding", "retrieval", "generation"} <= set().union(*producers.values()), "traffic seen"
    undeclared = {
        (name, topic.value)
        for topic, names in producers.items()
        for name in names
        if topic not in services.get(name, clients)
    }
    assert not undeclared, f"(producer, topic) outside the declared writes: {sorted(undeclared)}"


def test_a_dead_service_is_restarted_and_nothing_is_lost(platform: EmbeddedPlatform) -> None:
    """Runs last in this module: kills the feedback service while feedback waits on Kafka."""
    platform.processes["feedback"].kill()
    platform.processes["feedback"].wait()

    async def scenario() -> FeedbackRecorded:
        async with PlatformClient(platform.kafka_settings, name="e2e-restart") as client:
            [trace] = await client.ask([client.question("Who was the duke in the battle of Hastings?")])
            waiting = client.expect(trace.answer.request_id, (FeedbackRecorded, MessageDeadLettered))
            await client.publish(
                FeedbackSubmitted(producer=client.producer, request_id=trace.answer.request_id, thumb="up")
            )
            # Sent while the service was down; the supervisor starts it after its backoff.
            while not platform.restarts.get("feedback"):
                await asyncio.to_thread(platform.supervise)
                await asyncio.sleep(platform.supervisor.poll_interval_s)
            return await asyncio.wait_for(waiting, 120)

    recorded = asyncio.run(scenario())
    assert isinstance(recorded, FeedbackRecorded) and recorded.sentiment == "positive"
    assert platform.restarts == {"feedback": 1}
    platform.check()
