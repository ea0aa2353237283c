"""The ``ragops`` commands against a real broker with no service behind it: what they publish
(read back from the topics) and how they end when nothing answers."""

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragops.cli import app
from ragops_schemas import DocumentSubmitted, Topic
from ragops_shared.embedded import EmbeddedKafka, create_topics
from ragops_shared.settings import KafkaSettings
from tests.integration.services import read_records

pytestmark = pytest.mark.kafka


@pytest.fixture
def broker(tansu: EmbeddedKafka) -> KafkaSettings:
    """A broker with every platform topic and no service: nothing answers."""
    kafka = KafkaSettings(bootstrap_servers=tansu.bootstrap_servers)
    asyncio.run(create_topics(kafka, list(Topic)))
    return kafka


def ragops(kafka: KafkaSettings, *args: str):
    return CliRunner().invoke(app, list(args), env={"KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers})


def test_a_question_nobody_answers_ends_with_exit_code_2(broker: KafkaSettings) -> None:
    asked = ragops(broker, "ask", "Is anyone there?", "--timeout", "1")
    assert asked.exit_code == 2, asked.output
    assert "no outcome for query.submitted" in asked.output and "within 1 s" in asked.output


def test_ingest_of_a_folder_submits_each_supported_file_by_its_path(broker: KafkaSettings, tmp_path: Path) -> None:
    files = {
        tmp_path / "guide.md": ("# Guide\n\nRead me.", "text/markdown"),
        tmp_path / "nested" / "notes.txt": ("Plain notes.", "text/plain"),
        tmp_path / "nested" / "deeper" / "page.html": ("<html><title>Page</title><p>Hi</p></html>", "text/html"),
        tmp_path / "nested" / "manual.rst": ("Manual\n======\n\nText.", "text/x-rst"),
    }
    for path, (content, _) in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        # The Markdown file as some editors save it, with a byte order mark: not content.
        path.write_text(content, encoding="utf-8-sig" if path.suffix == ".md" else "utf-8")
    (tmp_path / "scan.pdf").write_bytes(b"%PDF-1.7")  # no parser: skipped with a note

    ingested = ragops(broker, "ingest", str(tmp_path), "--timeout", "2")
    assert ingested.exit_code == 2, ingested.output  # submitted, but no service indexes them
    assert "skipping" in ingested.output and "scan.pdf" in ingested.output

    submitted = {
        event.document_id: event for event, _ in asyncio.run(read_records(broker, DocumentSubmitted, len(files)))
    }
    assert submitted.keys() == {str(path.resolve()) for path in files}
    for path, (content, content_type) in files.items():
        event = submitted[str(path.resolve())]
        assert (event.content, event.content_type, event.source) == (content, content_type, str(path.resolve()))


def test_ingest_of_a_jsonl_corpus_submits_one_document_per_row(broker: KafkaSettings, tmp_path: Path) -> None:
    rows = [
        {"id": "Oxygen-p0001", "text": "Oxygen is a chemical element.", "title": "Oxygen", "source": "squad"},
        {"id": "Normans-p0000", "text": "The Normans gave their name to Normandy.", "title": "Normans"},
        {"id": "untitled", "text": "No title here."},
    ]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(row) + "\n" for row in rows))

    ingested = ragops(broker, "ingest", str(corpus), "--timeout", "2")
    assert ingested.exit_code == 2, ingested.output

    submitted = {
        event.document_id: event for event, _ in asyncio.run(read_records(broker, DocumentSubmitted, len(rows)))
    }
    assert submitted.keys() == {row["id"] for row in rows}
    for row in rows:
        event = submitted[row["id"]]
        assert (event.content, event.title, event.content_type) == (row["text"], row.get("title"), "text/plain")
    assert submitted["Oxygen-p0001"].source == "squad"
