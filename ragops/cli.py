"""``ragops``: run the embedded platform, feed it documents and questions, run the demo."""

import asyncio
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ragops.client import PlatformClient, RequestTimeoutError
from ragops.platform import EmbeddedPlatform, PlatformError, running_platform
from ragops_ingestion.parsing import DocumentParseError, content_type_for
from ragops_schemas import AnswerGenerated, DocumentIndexed, DocumentSubmitted
from ragops_shared.settings import KafkaSettings

app = typer.Typer(help="RAGOps: an event-driven RAG platform over Kafka.", no_args_is_help=True, pretty_exceptions_enable=False)
console = Console(stderr=True)
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

DataDir = Annotated[Path, typer.Option(help="Stores, logs and the running platform's address.", envvar="RAGOPS_DATA_DIR")]


def _kafka(data_dir: Path) -> KafkaSettings:
    """The broker to talk to: ``KAFKA_BOOTSTRAP_SERVERS`` if set, else the one `ragops up` runs."""
    if "KAFKA_BOOTSTRAP_SERVERS" in os.environ:
        return KafkaSettings()
    try:
        return KafkaSettings(bootstrap_servers=running_platform(data_dir)["bootstrap_servers"])
    except PlatformError as error:
        raise typer.BadParameter(str(error)) from None


@app.command()
def up(data_dir: DataDir = Path(".ragops"), gateway_port: int = typer.Option(8080, help="HTTP gateway port.")) -> None:
    """Run the whole platform on the embedded default (Tansu, every service) until Ctrl-C."""
    with EmbeddedPlatform(data_dir=data_dir, gateway_port=gateway_port) as platform:
        with console.status("starting Kafka and the services (first start converts the generation model)..."):
            platform.wait_ready()
        console.print(f"[green]RAGOps is up.[/] Kafka: {platform.kafka_settings.bootstrap_servers}  gateway: {platform.gateway_url}  logs: {data_dir / 'logs'}")
        console.print("Kafka storage is in memory: events are gone when the platform stops. Ctrl-C to stop.")
        stop = {"requested": False}
        signal.signal(signal.SIGTERM, lambda *_: stop.update(requested=True))
        try:
            while not stop["requested"]:
                platform.check()
                time.sleep(1)
        except KeyboardInterrupt:
            pass
        console.print("stopping...")


def _documents(client: PlatformClient, path: Path) -> list[DocumentSubmitted]:
    if path.suffix == ".jsonl":
        from ragops.demo import load_corpus

        return load_corpus(path, client)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    documents = []
    for file in files:
        try:
            content_type = content_type_for(file)
        except DocumentParseError as error:
            console.print(f"[yellow]skipping {file}: {error}")
            continue
        document_id = str(file.relative_to(path)) if path.is_dir() else file.name
        documents.append(client.document(
            document_id, file.read_text(encoding="utf-8", errors="replace"), content_type=content_type, source=str(file.resolve()),
        ))
    return documents


@app.command()
def ingest(
    path: Annotated[Path, typer.Argument(exists=True, help="A file, a folder (recursive) or a JSONL corpus ({id, text, title?, source?} per line).")],
    data_dir: DataDir = Path(".ragops"),
    timeout: float = typer.Option(600.0, help="Seconds to wait for each document's outcome."),
) -> None:
    """Submit documents through Kafka and wait until each is indexed or rejected."""
    from ragops.demo import _progress

    async def run() -> int:
        async with PlatformClient(_kafka(data_dir)) as client:
            documents = _documents(client, path)
            with _progress(console) as progress:
                task = progress.add_task("ingesting", total=len(documents))
                results = await client.ingest(documents, timeout_s=timeout, on_done=lambda _: progress.advance(task))
        outcomes = [outcome for _, outcome in results]
        failed = 0
        for document, outcome in results:
            if not isinstance(outcome, DocumentIndexed):
                failed += 1
                console.print(f"[red]{document.document_id}: {outcome.event_type}: {getattr(outcome, 'reason', '')}")
        indexed = [o for o in outcomes if isinstance(o, DocumentIndexed)]
        console.print(f"{len(indexed)} documents indexed ({sum(o.chunk_count for o in indexed)} chunks), {failed} failed")
        return 1 if failed else 0

    raise typer.Exit(asyncio.run(run()))


@app.command()
def ask(
    question: str,
    data_dir: DataDir = Path(".ragops"),
    top_k: int = typer.Option(5, min=1, max=100),
    timeout: float = typer.Option(120.0, help="Seconds to wait for the answer."),
    as_json: bool = typer.Option(False, "--json", help="Print the AnswerGenerated event as JSON."),
) -> None:
    """Ask a question through Kafka and print the answer with its sources."""

    async def run() -> int:
        async with PlatformClient(_kafka(data_dir)) as client:
            try:
                [trace] = await client.ask([client.question(question, top_k=top_k)], timeout_s=timeout)
            except RequestTimeoutError as error:
                console.print(f"[red]{error}")
                return 2
        if not isinstance(trace.outcome, AnswerGenerated):
            console.print(f"[red]the request failed: {trace.outcome.reason}")
            return 1
        if as_json:
            print(trace.outcome.model_dump_json(indent=2))
        else:
            print(trace.outcome.answer or "(no answer)")
            for context in trace.outcome.contexts:
                console.print(f"  [dim]{context.document_id} ({context.score:.3f})")
        return 0

    raise typer.Exit(asyncio.run(run()))


@app.command()
def demo(
    questions: int = typer.Option(100, help="How many questions of the question file to ask (seeded sample)."),
    report: Path = typer.Option(Path("demo-report.json"), help="Where to write the JSON report."),
    corpus: Path = typer.Option(DATA / "corpus.jsonl", exists=True, help="JSONL corpus to ingest."),
    questions_file: Path = typer.Option(DATA / "questions.jsonl", exists=True, help="JSONL questions with answers and context_ids."),
    concurrency: int = typer.Option(8, min=1, help="Questions in flight at once."),
    data_dir: Path = typer.Option(Path(".ragops/demo"), help="Where the demo platform keeps its stores and logs (wiped first)."),
) -> None:
    """Run the embedded platform on real data and report retrieval, answer quality and latency."""
    from ragops.demo import run_demo  # numpy and the report code load only for the demo

    shutil.rmtree(data_dir, ignore_errors=True)  # a fresh index, so the figures are this run's
    try:
        run_demo(data_dir=data_dir, corpus=corpus, questions_file=questions_file, questions=questions,
                 concurrency=concurrency, report_path=report, console=console)
    except PlatformError as error:
        console.print(f"[red]{error}")
        raise typer.Exit(1) from None


def main() -> None:
    app()


if __name__ == "__main__":
    main()
