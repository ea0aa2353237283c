"""The demo: the whole embedded platform on real data (``../shared/data``, SQuAD v1.1 dev).

Ingests the corpus through Kafka, asks a seeded sample of questions through Kafka as a
producer service would, and computes every figure from the events that flowed through
the topics: retrieval hit@k against the gold passage, SQuAD exact match / token F1 /
contains-answer, and per-stage latencies from the events' own ``occurred_at``."""

import asyncio
import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ragops.client import PlatformClient, QueryTrace
from ragops.platform import EmbeddedPlatform
from ragops.scoring import contains_answer, exact_match, hit_at_k, token_f1
from ragops_schemas import AnswerGenerated, ContextRetrieved, DocumentIndexed, DocumentSubmitted, QueryEmbedded
from ragops_shared.settings import KafkaSettings

STAGES = {"embedding": (None, QueryEmbedded), "retrieval": (QueryEmbedded, ContextRetrieved), "generation": (ContextRetrieved, AnswerGenerated), "end_to_end": (None, AnswerGenerated)}


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    answers: list[str]
    context_ids: list[str]


def load_corpus(path: Path, client: PlatformClient, limit: int | None = None) -> list[DocumentSubmitted]:
    """One ``DocumentSubmitted`` per JSONL line ``{"id", "text", "title"?, "source"?}``."""
    documents = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if limit is not None and len(documents) >= limit:
                break
            row = json.loads(line)
            try:
                documents.append(client.document(
                    row["id"], row["text"], title=row.get("title"), source=row.get("source"),
                    metadata={"title": row["title"]} if row.get("title") else {},
                ))
            except KeyError as missing:
                raise ValueError(f"{path}:{number}: a corpus line needs {missing}") from None
    return documents


def load_questions(path: Path, count: int, seed: int = 0) -> list[Question]:
    """A seeded random sample of ``count`` questions (all of them when ``count`` is larger)."""
    with path.open(encoding="utf-8") as lines:
        rows = [Question(**{k: row[k] for k in ("id", "question", "answers", "context_ids")}) for row in map(json.loads, lines)]
    return random.Random(seed).sample(rows, min(count, len(rows)))


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console)


def percentiles(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "n": 0}
    return {"p50": round(float(np.percentile(values, 50)), 1), "p95": round(float(np.percentile(values, 95)), 1), "n": len(values)}


def stage_latencies_ms(traces: Sequence[QueryTrace]) -> dict[str, dict[str, float | None]]:
    """p50/p95 (ms) per stage, from the ``occurred_at`` of consecutive events of each request."""
    samples: dict[str, list[float]] = {stage: [] for stage in STAGES}
    for trace in traces:
        for stage, (start_type, end_type) in STAGES.items():
            start = trace.submitted if start_type is None else trace.first(start_type)
            end = trace.first(end_type)
            if start is not None and end is not None:
                samples[stage].append((end.occurred_at - start.occurred_at).total_seconds() * 1000)
    return {stage: percentiles(values) for stage, values in samples.items()}


def score(questions: Sequence[Question], traces: Sequence[QueryTrace]) -> dict[str, float]:
    """Mean retrieval and answer scores over the answered questions."""
    rows = []
    for question, trace in zip(questions, traces, strict=True):
        retrieved = trace.first(ContextRetrieved)
        if not isinstance(trace.outcome, AnswerGenerated) or retrieved is None:
            continue
        ids = [context.document_id for context in retrieved.contexts]
        answer = trace.outcome.answer
        rows.append((
            hit_at_k(ids, question.context_ids, 1), hit_at_k(ids, question.context_ids, 5),
            exact_match(answer, question.answers), token_f1(answer, question.answers),
            contains_answer(answer, question.answers), float(not answer.strip()),
        ))
    names = ("hit@1", "hit@5", "exact_match", "f1", "contains_answer", "empty_answer_rate")
    means = np.mean(rows, axis=0) if rows else [float("nan")] * len(names)
    return {name: round(float(value), 4) for name, value in zip(names, means, strict=True)}


async def run_workload(kafka: KafkaSettings, corpus: Path, questions: Sequence[Question], *, concurrency: int, console: Console, corpus_limit: int | None = None) -> dict:
    """Ingest ``corpus`` and ask ``questions`` through Kafka; return the report dict."""
    async with PlatformClient(kafka, name="demo") as client:
        documents = load_corpus(corpus, client, corpus_limit)
        with _progress(console) as progress:
            task = progress.add_task("ingesting passages", total=len(documents))
            results = await client.ingest(documents, on_done=lambda _: progress.advance(task))
        indexed = [event for _, event in results if isinstance(event, DocumentIndexed)]
        failed = [event for _, event in results if not isinstance(event, DocumentIndexed)]
        chunks = sum(event.chunk_count for event in indexed)
        started = min(published.occurred_at for published, _ in results)
        finished = max(event.occurred_at for event in indexed) if indexed else started
        ingest_s = max((finished - started).total_seconds(), 1e-3)

        asked = [client.question(question.question) for question in questions]  # stamped when published
        with _progress(console) as progress:
            task = progress.add_task("asking questions", total=len(asked))
            wall = time.perf_counter()
            traces = await client.ask(asked, concurrency=concurrency, on_done=lambda _: progress.advance(task))
            wall = time.perf_counter() - wall
    answers = [trace.outcome for trace in traces if isinstance(trace.outcome, AnswerGenerated)]
    return {
        "passages_submitted": len(documents),
        "passages_indexed": len(indexed),
        "passages_failed": [{"document_id": event.key.decode(), "reason": getattr(event, "reason", "")} for event in failed],
        "chunks_indexed": chunks,
        "ingest_seconds": round(ingest_s, 2),
        "ingest_chunks_per_s": round(chunks / ingest_s, 2),
        "questions_asked": len(asked),
        "questions_answered": len(answers),
        "questions_failed": len(traces) - len(answers),
        "query_concurrency": concurrency,
        "questions_per_s": round(len(asked) / wall, 3),
        "scores": score(questions, traces),
        "latency_ms": stage_latencies_ms(traces),
        "generation_tokens": {
            "input_mean": round(float(np.mean([a.generation.usage.input_tokens for a in answers])), 1) if answers else None,
            "output_mean": round(float(np.mean([a.generation.usage.output_tokens for a in answers])), 1) if answers else None,
        },
        "lineage_example": answers[0].lineage.model_dump(mode="json") if answers else None,
        "examples": [
            {"question": q.question, "gold": q.answers, "answer": t.outcome.answer, "retrieved": [c.document_id for c in t.first(ContextRetrieved).contexts]}
            for q, t in list(zip(questions, traces, strict=True))[:5] if isinstance(t.outcome, AnswerGenerated) and t.first(ContextRetrieved)
        ],
    }


def print_report(report: dict, console: Console) -> None:
    table = Table(title="RAGOps demo (figures computed from the events on the topics)")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key in ("passages_submitted", "passages_indexed", "chunks_indexed", "ingest_seconds", "ingest_chunks_per_s",
                "questions_asked", "questions_answered", "questions_failed", "questions_per_s"):
        table.add_row(key, str(report[key]))
    for key, value in report["scores"].items():
        table.add_row(key, f"{value:.3f}")
    for stage, figures in report["latency_ms"].items():
        table.add_row(f"latency {stage} p50 / p95 (ms)", f"{figures['p50']} / {figures['p95']}")
    console.print(table)
    if report["passages_failed"]:
        console.print(f"[yellow]{len(report['passages_failed'])} passages not indexed, e.g. {report['passages_failed'][:3]}")


def run_demo(*, data_dir: Path, corpus: Path, questions_file: Path, questions: int, concurrency: int, report_path: Path, console: Console, corpus_limit: int | None = None, env: dict[str, str] | None = None) -> dict:
    """Start the embedded platform, run the workload, print and write the report."""
    sample = load_questions(questions_file, questions)
    with EmbeddedPlatform(data_dir=data_dir, env=env or {}) as platform:
        with console.status("starting the platform (Kafka, 5 services, models)..."):
            started = time.perf_counter()
            platform.wait_ready()
        console.print(f"platform ready in {time.perf_counter() - started:.1f} s (broker {platform.kafka_settings.bootstrap_servers}, gateway {platform.gateway_url})")
        report = asyncio.run(run_workload(platform.kafka_settings, corpus, sample, concurrency=concurrency, console=console, corpus_limit=corpus_limit))
        platform.check()
    report_path.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    print_report(report, console)
    console.print(f"report written to {report_path}")
    return report

