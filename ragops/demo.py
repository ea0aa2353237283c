"""The demo: the whole embedded platform on real data (``../shared/data``, SQuAD v1.1 dev).

It ingests the corpus through Kafka, asks a seeded sample of questions through Kafka as a
producer service would (tagged as an evaluation run, with their reference answers and gold
passages), sends simulated user feedback, and then prints a report computed by SQL in
ClickHouse from the events the sink stored, after checking that ClickHouse holds exactly
as many events per topic as Kafka received.

Synthetic personal data is planted in 50 documents, a share of the questions and of the
feedback comments (:mod:`ragops.pii_plant`); after the run every store is searched for it
(:mod:`ragops.pii_scan`: the topics while the broker runs, ClickHouse, Qdrant, the logs and
every other file once the platform has stopped). A planted value found in any of them is a
leak: the report lists where, and the demo fails.

It ends with a shadow replay (:mod:`ragops.shadow`): the same questions asked again as
production traffic (untagged, as the gateway's users would), then replayed from what
ClickHouse retained through a clearly worse prompt version the demo pushes through the gateway, beside
production; the paired comparison must block it (``report["shadow"]``)."""

import asyncio
import json
import random
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ragops.client import PlatformClient, QueryTrace
from ragops.demo_abstain import abstain_rows, abstention_round
from ragops.demo_cite import cite_report, cite_rows
from ragops.demo_console import console_tour, publish_prices, review_round, tco_and_report
from ragops.demo_retr import retr_rows, retrieval_figures
from ragops.evaluate import file_sha256, run_evaluation
from ragops.gate import Side
from ragops.pii_plant import PiiPlanter, PlantedValue
from ragops.pii_scan import APART, KEPT_STORES, Finder, Finding, scan_data_dir, scan_topics, summary
from ragops.platform import EmbeddedPlatform
from ragops.shadow import print_result, replay_retained
from ragops_analytics import queries
from ragops_analytics.store import Reader, open_store
from ragops_evaluation.metrics import contains_answer
from ragops_schemas import DocumentSubmitted, FeedbackSubmitted, PromptBody
from ragops_schemas.ids import DEFAULT_TENANT, evaluation_run_id
from ragops_schemas.topics import TOPICS
from ragops_shared.citations import strip_markers
from ragops_shared.datasets import Question, load_corpus, load_questions
from ragops_shared.prompts import prompt_body
from ragops_shared.settings import KafkaSettings, aiokafka_options
from ragops_shared.watch import end_offsets

CORRECTION_SHARE = 0.3  # of thumbs-down, how many also send the right answer


def corpus_submissions(path: Path, client: PlatformClient) -> list[DocumentSubmitted]:
    """One ``DocumentSubmitted`` per JSONL line ``{"id", "text", "title"?, "source"?}``, to submit.

    Raises ``ValueError`` naming the line of a malformed row."""
    return [row.submitted(client.producer) for row in load_corpus(path)]


def progress_bar(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    )


def simulated_feedback(
    client: PlatformClient, questions: Sequence[Question], traces: Sequence[QueryTrace], seed: int = 0
) -> list[FeedbackSubmitted]:
    """A user who gives thumbs-up when the answer contains a gold answer and thumbs-down
    otherwise; ``CORRECTION_SHARE`` of the thumbs-down also send the first gold answer."""
    rng = random.Random(seed)
    feedback = []
    for question, trace in zip(questions, traces, strict=True):
        answer = trace.answer
        if answer is None:
            continue
        good = contains_answer(strip_markers(answer.answer), question.answers) == 1.0
        correction = question.answers[0] if not good and rng.random() < CORRECTION_SHARE else None
        feedback.append(
            FeedbackSubmitted(
                producer=client.producer,
                request_id=answer.request_id,
                thumb="up" if good else "down",
                corrected_answer=correction,
                user_id=f"demo-user-{rng.randrange(20)}",
            )
        )
    return feedback


# The topics the sink keeps: not the intake topics (raw text, redacted into others).
_SUNK = [spec.topic for spec in TOPICS if spec.sink]


async def produced_per_topic(kafka: KafkaSettings) -> dict[str, int]:
    """Records in each topic the sink keeps: each partition's high watermark (from a fetch, see
    :func:`end_offsets`: Tansu's latest offsets are short) less its log start offset. Not by
    reading the topics: a read ended by the first empty fetch came back empty on a loaded
    machine with the durable broker, whose first fetch of a long log takes longer."""
    consumer = AIOKafkaConsumer(**aiokafka_options(kafka), group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()
        partitions = [TopicPartition(topic, p) for topic in _SUNK for p in consumer.partitions_for_topic(topic) or ()]
        starts = await consumer.beginning_offsets(partitions)
    finally:
        await consumer.stop()
    ends = await end_offsets(kafka, partitions)
    counts = {topic.value: 0 for topic in _SUNK}
    for partition in partitions:
        counts[partition.topic] += ends[partition] - starts[partition]
    return counts


async def wait_for_sink(
    kafka: KafkaSettings, analytics: Reader, timeout_s: float = 120.0
) -> tuple[dict[str, int], dict[str, int]]:
    """Wait until ClickHouse holds as many events per topic as Kafka received; return both."""
    deadline = time.monotonic() + timeout_s
    while True:
        produced = await produced_per_topic(kafka)
        stored = await asyncio.to_thread(queries.events_per_topic, analytics)
        if all(stored.get(topic, 0) == n for topic, n in produced.items()) or time.monotonic() > deadline:
            return produced, stored
        await asyncio.sleep(1)


def clickhouse_report(analytics: Reader, run_id: str) -> dict[str, Any]:
    """Every figure of the report, by SQL over what the sink stored."""
    indexed, rejected, chunks = queries.document_outcomes(analytics)
    ingest_s = queries.ingest_seconds(analytics)
    scores = {metric: round(mean, 4) for metric, mean in queries.run_scores(analytics, run_id).items()}
    latency = {
        stage: {"p50": round(p50, 1), "p95": round(p95, 1), "n": n}
        for stage, p50, p95, n in queries.run_latency(analytics, run_id)
    }
    n, up, down, corrections = queries.feedback_counts(analytics)
    tokens_in, tokens_out, cost = queries.run_generation_usage(analytics, run_id)
    return {
        "passages_indexed": indexed,
        "passages_rejected": rejected,
        "chunks_indexed": chunks,
        "ingest_seconds": round(float(ingest_s or 0), 2),
        "ingest_chunks_per_s": round(chunks / ingest_s, 2) if ingest_s else None,
        "scores": scores,
        "latency_ms": latency,
        "feedback": {
            "n": n,
            "thumbs_up_rate": round(up / n, 4) if n else None,
            "thumbs_down_rate": round(down / n, 4) if n else None,
            "corrections": corrections,
        },
        "generation": {
            "input_tokens_mean": round(float(tokens_in or 0), 1),
            "output_tokens_mean": round(float(tokens_out or 0), 1),
            "cost_usd": float(cost or 0),
        },
        "dataset_examples": queries.row_count(analytics, "dataset_examples"),
        "dead_letters": queries.row_count(analytics, "dead_letters"),
    }


async def run_workload(
    kafka: KafkaSettings,
    analytics: Reader,
    corpus: Path,
    questions: Sequence[Question],
    *,
    concurrency: int,
    console: Console,
    dataset: Path | None = None,
    planter: PiiPlanter | None = None,
) -> dict[str, Any]:
    """Ingest ``corpus``, run the questions as an evaluation run, send feedback, and report.
    With a ``planter``, its personal data goes into documents, questions and feedback comments
    (``planter.planted`` lists it afterwards)."""
    run_id = evaluation_run_id("demo", datetime.now(UTC))
    async with PlatformClient(kafka, name="demo") as client:
        documents = corpus_submissions(corpus, client)
        if planter is not None:
            documents = planter.documents(documents)
            questions = planter.questions(questions)
        with progress_bar(console) as progress:
            task = progress.add_task("ingesting passages", total=len(documents))
            await client.ingest(documents, on_done=lambda _: progress.advance(task))
        with progress_bar(console) as progress:
            task = progress.add_task("asking questions", total=len(questions))
            started = time.perf_counter()
            traces, summary = await run_evaluation(
                client,
                questions,
                run_id=run_id,
                dataset=dataset.name if dataset else "inline",
                dataset_sha256=file_sha256(dataset) if dataset else "",
                concurrency=concurrency,
                on_done=lambda _: progress.advance(task),
            )
            wall_s = time.perf_counter() - started
        feedback = simulated_feedback(client, questions, traces)
        recorded = await client.send_feedback(planter.feedback(feedback) if planter is not None else feedback)
    with console.status("waiting for the sink to store every event..."):
        produced, stored = await wait_for_sink(kafka, analytics)
    report = await asyncio.to_thread(clickhouse_report, analytics, run_id)
    return {
        "run_id": run_id,
        "passages_submitted": len(documents),
        **report,
        "questions_asked": len(questions),
        "questions_answered": summary.answered,
        "query_concurrency": concurrency,
        "questions_per_s": round(len(questions) / wall_s, 3),
        "feedback_sent": len(recorded),
        "spearman_vs_f1": summary.spearman_vs_f1,
        "events_per_topic": {
            topic: {"produced": n, "in_clickhouse": stored.get(topic, 0)} for topic, n in produced.items()
        },
        "events_match": all(stored.get(topic, 0) == n for topic, n in produced.items()),
        "lineage_example": traces[0].answer.lineage.model_dump(mode="json") if traces and traces[0].answer else None,
        "examples": [
            {
                "question": q.question,
                "gold": q.answers,
                "answer": t.answer.answer,
                "retrieved": [c.document_id for c in t.answer.contexts],
            }
            for q, t in list(zip(questions, traces, strict=True))[:5]
            if t.answer is not None
        ],
    }


SHADOW_PROMPT = "rag-answer"
"""The prompt the demo pushes a version of and replays: one no one should promote."""
MIN_SHADOW_QUESTIONS = 100
SHADOW_ALPHA = 0.05


def fixed_word_prompt() -> PromptBody:
    """A prompt that ignores the passages and replies with one fixed word: clearly worse than
    production on every answer metric, and valid (it renders)."""
    return prompt_body(
        description="Shadow-replay demo candidate: replies 'banana' whatever the question. Never promote.",
        system="Whatever you are asked, reply with exactly one word: banana.",
        user="{{ question }} ({{ contexts | length }} passages ignored)\nReply with the word banana:",
    )


async def register_prompt(gateway_url: str, auth: httpx.Auth, name: str, body: PromptBody) -> int:
    """Push ``body`` as a version of prompt ``name`` through the gateway (``POST /v1/prompts``
    with ``auth``, an operator of the platform's tenant: the embedded platform's admin key,
    :attr:`EmbeddedPlatform.auth`), which numbers it, signs its ``VersionRegistered`` and
    answers once its registry has it. Returns the version number the gateway answered.
    Raises ``httpx.HTTPStatusError`` on a refusal (422: the body does not render)."""
    async with httpx.AsyncClient(base_url=gateway_url, auth=auth, timeout=60) as http:
        response = await http.post(
            "/v1/prompts",
            json={"name": name, "description": body.description, "system": body.system, "user": body.user},
        )
    response.raise_for_status()
    version: int = response.json()["version"]
    return version


async def run_shadow_replay(
    kafka: KafkaSettings,
    analytics: Reader,
    gateway_url: str,
    auth: httpx.Auth,
    questions: Sequence[Question],
    *,
    since: datetime,
    concurrency: int,
    console: Console,
) -> dict[str, Any]:
    """Push :func:`fixed_word_prompt` as a version of :data:`SHADOW_PROMPT` through the gateway
    (:func:`register_prompt`, with ``auth``), ask ``questions`` as production traffic (no
    evaluation run), wait until ClickHouse retains them, and replay the retained questions of
    the default tenant asked since ``since`` through the candidate and production. Returns the
    comparison's summary with its timings (s)."""
    started = time.perf_counter()
    candidate = Side.prompt(SHADOW_PROMPT, await register_prompt(gateway_url, auth, SHADOW_PROMPT, fixed_word_prompt()))
    async with PlatformClient(kafka, name="demo-users") as client:
        asked = [client.question(q.question, user_id=f"demo-user-{i % 20}") for i, q in enumerate(questions)]
        with progress_bar(console) as progress:
            task = progress.add_task("production questions", total=len(asked))
            await client.ask(asked, concurrency=concurrency, on_done=lambda _: progress.advance(task))
    production_s = time.perf_counter() - started
    with console.status("waiting for the sink to store every event..."):
        await wait_for_sink(kafka, analytics)
    replay_started = time.perf_counter()
    baseline = Side.parse("production")
    with progress_bar(console) as progress:
        task = progress.add_task("shadow replay (both sides)", total=None)
        result = await replay_retained(
            kafka,
            analytics,
            run_id=evaluation_run_id("shadow", datetime.now(UTC)),
            tenant=DEFAULT_TENANT,
            baseline=baseline,
            candidate=candidate,
            alpha=SHADOW_ALPHA,
            min_questions=min(MIN_SHADOW_QUESTIONS, len(questions)),
            since=since,
            concurrency=concurrency,
            on_questions=lambda n: progress.update(task, total=2 * n),
            on_done=lambda _: progress.advance(task),
        )
    print_result(result, console, baseline=baseline, candidate=candidate)
    return {
        "baseline": baseline.label,
        "candidate": candidate.label,
        **result.summary(),
        "blocked": not result.passed,
        "seconds": {
            "production_questions": round(production_s, 1),
            "replay": round(time.perf_counter() - replay_started, 1),
            "total": round(time.perf_counter() - started, 1),
        },
    }


def print_report(report: dict[str, Any], console: Console) -> None:
    table = Table(title="RAGOps demo (computed in ClickHouse from the events the sink stored)")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key in (
        "passages_submitted",
        "passages_indexed",
        "chunks_indexed",
        "ingest_seconds",
        "ingest_chunks_per_s",
        "questions_asked",
        "questions_answered",
        "questions_per_s",
        "feedback_sent",
        "dataset_examples",
        "dead_letters",
    ):
        table.add_row(key, str(report[key]))
    for key, value in report["scores"].items():
        rho = report["spearman_vs_f1"].get(key)
        table.add_row(key, f"{value:.3f}" + (f"  (Spearman vs f1 {rho:+.2f})" if rho is not None else ""))
    for stage, figures in report["latency_ms"].items():
        table.add_row(f"latency {stage} p50 / p95 (ms)", f"{figures['p50']} / {figures['p95']}")
    for key, value in report["feedback"].items():
        table.add_row(f"feedback {key}", str(value))
    table.add_row("events in ClickHouse = events produced", "yes" if report["events_match"] else "NO")
    if "shadow" in report:
        shadow = report["shadow"]
        table.add_row(
            f"shadow replay of {shadow['candidate']} ({shadow['pairs']} questions)",
            "blocked" if shadow["blocked"] else "[red]NOT blocked",
        )
    _review_rows(report.get("review"), table)
    cite_rows(report.get("cite"), table)
    abstain_rows(report.get("abstain"), table)
    retr_rows(report.get("retr"), table)
    for scenario in report.get("tco", {}).get("scenarios", []):
        table.add_row(
            f"TCO {scenario['name']} (USD per answer / per month)",
            f"{scenario['usd_per_answer']:.6f} / {scenario['usd_per_month']:.2f}",
        )
    if "console" in report:
        shown = report["console"]
        table.add_row(
            "console pages checked in Chromium",
            shown["skipped"]
            if "skipped" in shown
            else f"{len(shown['pages'])} pages, " + ("all checks passed" if shown["ok"] else "[red]checks FAILED"),
        )
    console.print(table)
    if not report["events_match"]:
        console.print(f"[red]events per topic differ: {report['events_per_topic']}")


def _review_rows(review: dict[str, Any] | None, table: Table) -> None:
    """The human review round's rows: labels, and each metric's agreement with its label."""
    if review is None:
        return
    table.add_row(
        "review labels (stand-in reviewer)", f"{review['labelled']} of {review['queued']} queued {review['strata']}"
    )
    for row in review["agreement"]:
        rho, kappa = row.get("spearman_rho"), row.get("cohen_kappa")
        table.add_row(
            f"agreement {row['metric']} vs {row['label']} (n={row['n']})",
            f"Spearman {'-' if rho is None else f'{rho:+.2f}'}, kappa {'-' if kappa is None else f'{kappa:+.2f}'}",
        )


def planted_data_report(
    data_dir: Path, planted: Sequence[PlantedValue], finder: Finder, in_topics: Sequence[Finding], topics_s: float
) -> dict[str, Any]:
    """:func:`ragops.pii_scan.summary` of ``in_topics`` (what the scan of the topics found while
    the broker ran, in ``topics_s`` seconds) and of the stores of the stopped platform in
    ``data_dir`` (its embedded ClickHouse, Qdrant, logs and other files).

    Raises:
        StoreUnavailable: the embedded ClickHouse cannot be opened (a process still owns it).
    """
    started = time.perf_counter()
    store = open_store(url=None, path=data_dir / "clickhouse")  # where the embedded sink keeps it
    try:
        stored, not_read = scan_data_dir(data_dir, finder, store)
    finally:
        store.close()
    seconds = {"topics": round(topics_s, 1), "stores": round(time.perf_counter() - started, 1)}
    return summary(planted, [*in_topics, *stored], files_not_read=not_read, scan_seconds=seconds)


def print_planted_data_report(pii: dict[str, Any], console: Console) -> None:
    table = Table(title="Planted personal data found after the run (0 expected in every kept store)")
    table.add_column("store")
    table.add_column("planted values found", justify="right")
    carriers = pii["planted"]["carriers"]
    table.add_row(
        "planted",
        f"{pii['planted']['values']} in {carriers.get('document', 0)} documents, "
        f"{carriers.get('question', 0)} questions, {carriers.get('feedback', 0)} feedback comments",
    )
    for store in KEPT_STORES:
        found = pii["found"][store]
        table.add_row(store, f"[red]{found}" if found else "0")
    for store, why in zip(APART, ("short-lived, read by the redaction step", "kept for replay"), strict=True):
        table.add_row(f"{store} (apart: {why})", str(pii["found_apart"][store]))
    console.print(table)
    for leak in pii["leaks"]:
        console.print(f"[red]leak: {leak['store']} {leak['location']}: {leak['values']} planted values")
    if pii["reached"] < pii["planted"]["values"]:
        console.print(
            f"[yellow]only {pii['reached']} of {pii['planted']['values']} planted values were found anywhere, "
            "intake topics included: the others never reached a store the scan reads"
        )


def run_demo(
    *,
    data_dir: Path,
    corpus: Path,
    questions_file: Path,
    questions: int,
    concurrency: int,
    report_path: Path,
    console: Console,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Start the embedded platform, run the workload with planted personal data, search every
    store for it, print and write the report (``report["pii"]["clean"]``: none was found)."""
    sample = load_questions(questions_file, questions)
    planter = PiiPlanter()
    started_at = datetime.now(UTC)
    with EmbeddedPlatform(data_dir=data_dir, env=env or {}) as platform:
        with console.status("starting the platform (Kafka and 10 services, models)..."):
            started = time.perf_counter()
            platform.wait_ready()
        console.print(
            f"platform ready in {time.perf_counter() - started:.1f} s "
            f"(broker {platform.kafka_settings.bootstrap_servers}, gateway {platform.gateway_url})"
        )
        analytics = platform.analytics()
        try:
            price_list_id = asyncio.run(publish_prices(platform.gateway_url, platform.auth))
            report = asyncio.run(
                run_workload(
                    platform.kafka_settings,
                    analytics,
                    corpus,
                    sample,
                    concurrency=concurrency,
                    console=console,
                    dataset=questions_file,
                    planter=planter,
                )
            )
            # The production questions carry the planted personal data too: the replay reads
            # them back redacted, and the scan below covers its traffic.
            report["shadow"] = asyncio.run(
                run_shadow_replay(
                    platform.kafka_settings,
                    analytics,
                    platform.gateway_url,
                    platform.auth,
                    planter.questions(sample),
                    since=started_at,
                    concurrency=concurrency,
                    console=console,
                )
            )
            report["abstain"] = asyncio.run(abstention_round(platform.kafka_settings, questions_file.parent))
            report["prices"] = {"price_list_id": price_list_id}
            report["cite"] = cite_report(analytics, report["run_id"])
            with console.status("a round of human review (the stand-in reviewer)..."):
                gold = {question.question: question.answers for question in sample}
                report["review"] = asyncio.run(review_round(platform.gateway_url, platform.auth, gold))
            report |= tco_and_report(analytics, started_at, report_path.parent)
            assert platform.keys is not None  # started
            with console.status("opening every console page in Chromium..."):
                [latest] = queries.console_requests(
                    analytics, DEFAULT_TENANT, since=started_at, until=datetime.now(UTC), limit=1
                )
                report["console"] = asyncio.run(
                    console_tour(
                        platform.gateway_url,
                        platform.keys.admin,
                        report_path.parent / "demo-console",
                        request_id=latest.request_id,
                        question=latest.question,
                    )
                )
        finally:
            analytics.close()
        finder = Finder(planter.planted)
        with console.status("searching every topic for the planted personal data..."):
            started = time.perf_counter()
            in_topics = asyncio.run(scan_topics(platform.kafka_settings, finder))
            topics_s = time.perf_counter() - started
        platform.check()
    # The platform has stopped: its ClickHouse and Qdrant can be opened by this process.
    with console.status("searching ClickHouse, Qdrant, the logs and files for the planted personal data..."):
        report["pii"] = planted_data_report(data_dir, planter.planted, finder, in_topics, topics_s)
    with console.status("retrieval figures: dense, sparse and hybrid on the held-out questions..."):
        report["retr"] = retrieval_figures(data_dir, questions_file, corpus, env or {})
    report_path.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    print_report(report, console)
    print_planted_data_report(report["pii"], console)
    console.print(f"report written to {report_path}")
    return report
