"""Ingestion's data-quality checks (``ragops_ingestion.quality``) on its plain functions with
the real tokenizer and language model: near-empty, exact and near duplicates, language,
encoding damage, PII counts, the policy per check, the documents seen rebuilt from the
``DocumentChunked`` parts, and the ``document_quality`` view over what the sink stores."""

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime

import pytest

from ragops_analytics import queries
from ragops_analytics.chdb_store import ChdbStore
from ragops_ingestion.app import ingest
from ragops_ingestion.quality import QualityGate, QualityRules, SeenDocuments, encoding_damage
from ragops_ingestion.settings import DEFAULT_QUALITY_POLICY, IngestionSettings, QualityAction
from ragops_schemas import (
    ChunkerInfo,
    DocumentChunked,
    DocumentRedacted,
    DocumentRejected,
    Event,
    QualityCheck,
    Topic,
)
from ragops_shared.settings import KafkaSettings
from ragops_sink.rows import events_to_arrow, to_row
from tests.helpers import PRODUCER, record_of
from tests.integration.services import produce_raw

pytestmark = pytest.mark.model
INFO = ChunkerInfo(tokenizer="minilm", chunk_size=200, overlap=32)
GERMAN = (
    "Die Normandie ist eine Region im Nordwesten Frankreichs. Sie ist bekannt für ihre Küste, "
    "ihre Äpfel und die Landung der Alliierten im Juni 1944, die den Verlauf des Krieges veränderte."
)
FRENCH = (
    "La Normandie est une région du nord-ouest de la France. Elle est connue pour ses côtes, "
    "ses pommes et le débarquement allié de juin 1944, qui a changé le cours de la guerre."
)
# python-3.11/faq/index of the large development corpus, as its plain-text conversion has it.
FAQ_INDEX = (
    ".. _faq-index:\n\n###################################\n  Python Frequently Asked Questions\n"
    "###################################\n\n.. toctree::\n   :maxdepth: 1\n\n   general.rst\n   programming.rst\n"
    "   design.rst\n   library.rst\n   extending.rst\n   windows.rst\n   gui.rst\n   installed.rst"
)


def gate(
    policy: Mapping[QualityCheck, QualityAction] | None = None, languages: tuple[str, ...] = ("en",)
) -> QualityGate:
    rules = QualityRules({**DEFAULT_QUALITY_POLICY, **(policy or {})}, min_word_chars=20, languages=languages)
    return QualityGate(rules, SeenDocuments(KafkaSettings(), "test", threshold=0.8))


def submit(chunker, quality: QualityGate, document_id: str, content: str, **options) -> list[Event]:
    submitted = DocumentRedacted(producer=PRODUCER, document_id=document_id, content=content)
    return ingest(chunker, INFO, PRODUCER, submitted, quality=quality, **options)


def chunked(events: list[Event]) -> DocumentChunked:
    [event] = events
    assert isinstance(event, DocumentChunked), event
    assert event.quality is not None
    return event


def rejected(events: list[Event]) -> DocumentRejected:
    [event] = events
    assert isinstance(event, DocumentRejected), event
    return event


@pytest.fixture(scope="module")
def words_300(corpus_rows: list[dict]) -> str:
    """The first 300 words of the article on the Normans, in sentences."""
    words = " ".join(row["text"] for row in corpus_rows if row["title"] == "Normans").split()
    return " ".join(words[:300])


@pytest.fixture(scope="module")
def unrelated(corpus_rows: list[dict]) -> str:
    return " ".join(row["text"] for row in corpus_rows if row["title"] != "Normans")[:2500]


def test_a_near_empty_document_is_rejected_naming_the_check(chunker) -> None:
    refusal = rejected(submit(chunker, gate(), "dots", "... !!! --- ok ?? 42"))
    assert refusal.check == "near_empty" and refusal.stage == "ingestion"
    assert "4 word characters, fewer than 20" in refusal.reason
    assert chunked(submit(chunker, gate(), "short", "A short but real sentence about Rouen.")).quality.warnings == []


def test_an_exact_duplicate_names_the_first_document(chunker, words_300) -> None:
    quality = gate()
    first = chunked(submit(chunker, quality, "first", words_300))
    assert first.quality.duplicate_of is None and first.quality.warnings == []
    # The same parsed text under two more ids: each names the first one seen.
    for other in ("second", "third"):
        copy = chunked(submit(chunker, quality, other, words_300))
        assert copy.quality.duplicate_of == "first"
        assert copy.quality.warnings == ["duplicate"], "an exact duplicate is not reported as a near one"
    # A re-submission under its own id is not a duplicate of itself.
    assert chunked(submit(chunker, quality, "first", words_300)).quality.duplicate_of == "second"
    assert chunked(submit(chunker, gate(), "first", words_300)).quality.duplicate_of is None


def test_one_changed_sentence_is_a_near_duplicate_and_another_text_is_not(chunker, words_300, unrelated) -> None:
    quality = gate()
    chunked(submit(chunker, quality, "original", words_300))
    sentences = re.split(r"(?<=\.) ", words_300)
    sentences[3] = "In the tenth century the dukes of Normandy built abbeys and castles along the river."
    edited = " ".join(sentences)
    assert edited != words_300

    near = chunked(submit(chunker, quality, "edited", edited)).quality
    assert near.near_duplicate_of == "original" and near.duplicate_of is None
    assert near.near_duplicate_similarity is not None and 0.8 <= near.near_duplicate_similarity < 1
    assert near.warnings == ["near_duplicate"]

    other = chunked(submit(chunker, quality, "other", unrelated)).quality
    assert other.near_duplicate_of is None and other.near_duplicate_similarity is None and other.warnings == []


def test_german_and_french_are_detected(chunker, words_300) -> None:
    quality = gate()
    english = chunked(submit(chunker, quality, "en", words_300)).quality
    german = chunked(submit(chunker, quality, "de", GERMAN)).quality
    french = chunked(submit(chunker, quality, "fr", FRENCH)).quality
    assert (english.language, german.language, french.language) == ("en", "de", "fr")
    assert min(english.language_score or 0, german.language_score or 0, french.language_score or 0) > 0.8
    assert (english.warnings, german.warnings, french.warnings) == ([], ["language"], ["language"])
    # An allowed language does not fire.
    assert chunked(submit(chunker, gate(languages=("en", "de")), "de", GERMAN)).quality.warnings == []
    # Markup with few words is detected at random, with a low probability: no alarm.
    index = chunked(submit(chunker, quality, "faq", FAQ_INDEX)).quality
    assert index.language == "de" and (index.language_score or 1) < 0.9 and index.warnings == []


def test_mojibake_is_flagged_and_clean_text_is_not(chunker, corpus_rows) -> None:
    # UTF-8 read as Windows-1252: "é" becomes "Ã©", the commonest damage.
    damaged = FRENCH.encode("utf-8").decode("cp1252")
    assert "Ã©" in damaged
    quality = gate(languages=())
    found = chunked(submit(chunker, quality, "damaged", damaged)).quality
    assert found.encoding_damage >= 3 and found.warnings == ["encoding"]
    assert encoding_damage("Un caf\ufffd cr\ufffdme") == 2
    clean = [row["text"] for row in corpus_rows[:300]]
    assert [text for text in clean if encoding_damage(text)] == [], "no false alarm on 300 real passages"


@pytest.mark.parametrize("action", ["reject", "warn", "accept"])
def test_the_policy_decides_per_check(chunker, words_300, action: QualityAction) -> None:
    quality = gate({"duplicate": action})
    chunked(submit(chunker, quality, "first", words_300))
    outcome = submit(chunker, quality, "copy", words_300)
    if action == "reject":
        refusal = rejected(outcome)
        assert (
            refusal.check == "duplicate"
            and refusal.reason == "quality check duplicate: the same text as document 'first'"
        )
        # A rejected document is not seen: a third copy still names the first.
        assert chunked(submit(chunker, gate(), "third", words_300)).quality.duplicate_of is None
        assert rejected(submit(chunker, quality, "third", words_300)).reason.endswith("'first'")
    else:
        found = chunked(outcome).quality
        assert found.duplicate_of == "first", "accepted or warned, the finding is recorded"
        assert found.warnings == (["duplicate"] if action == "warn" else [])


def test_pii_counts_are_recorded_and_the_policy_applies() -> None:
    text = "The customer wrote from <EMAIL_ADDRESS> and called <PHONE_NUMBER> about the order."
    args = {"tenant": "default", "version": "v", "text": text, "chunks": [text]}
    accepted = gate().assess(
        document_id="a", redactions={"EMAIL_ADDRESS": 1, "PHONE_NUMBER": 1, "IBAN_CODE": 0}, **args
    )
    assert accepted.quality.pii == {"EMAIL_ADDRESS": 1, "PHONE_NUMBER": 1} and accepted.quality.warnings == []
    assert gate({"pii": "warn"}).assess(document_id="a", redactions={"EMAIL_ADDRESS": 2}, **args).quality.warnings == [
        "pii"
    ]
    assert gate({"pii": "reject"}).assess(document_id="a", **args).rejected is None, "no counts: nothing found"


def test_the_documents_seen_are_rebuilt_from_the_chunked_parts(chunker, words_300, unrelated) -> None:
    """What a restarted replica reads from the DocumentChunked topic gives the same answers as
    what the replica that ingested the documents knew, parts of one version included."""
    long = f"{unrelated}\n\n{words_300}"
    ingested = gate()
    parts = submit(chunker, ingested, "long", long, part_bytes=2000)
    assert len(parts) > 1 and all(isinstance(part, DocumentChunked) for part in parts)
    first = chunked(submit(chunker, ingested, "normans", words_300))

    restarted = gate()
    for event in [*parts, first, *parts]:  # redelivered parts change nothing
        restarted.seen.apply(event)
    edited = long.replace("Normandy", "Normandie", 1)
    for quality in (ingested, restarted):
        assert chunked(submit(chunker, quality, "copy", words_300)).quality.duplicate_of == "normans"
        near = chunked(submit(chunker, quality, "edited", edited, part_bytes=1_000_000)).quality
        assert near.near_duplicate_of == "long"


@pytest.mark.kafka
async def test_a_starting_replica_reads_the_documents_seen_from_the_topic(kafka, chunker, words_300) -> None:
    events = submit(chunker, gate(), "first", words_300, part_bytes=2000)
    assert len(events) > 1
    await produce_raw(
        kafka, Topic.DOCUMENT_CHUNKED, [(event.key, event.model_dump_json().encode()) for event in events]
    )
    seen = SeenDocuments(kafka, "test-seen", threshold=0.8)
    await seen.start()
    try:
        restarted = QualityGate(gate().rules, seen)
        copy = chunked(submit(chunker, restarted, "copy", words_300, part_bytes=1_000_000)).quality
        assert copy.duplicate_of == "first"
        edited = chunked(submit(chunker, restarted, "edited", words_300.replace("Normandy", "Normandie", 1))).quality
        assert edited.near_duplicate_of == "first"
    finally:
        await seen.stop()


def test_the_policy_setting_merges_over_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGOPS_INGESTION_QUALITY_POLICY", json.dumps({"duplicate": "reject"}))
    monkeypatch.setenv("RAGOPS_INGESTION_QUALITY_LANGUAGES", json.dumps(["en", "de"]))
    settings = IngestionSettings()
    assert settings.quality_policy == {**DEFAULT_QUALITY_POLICY, "duplicate": "reject"}
    assert settings.quality_languages == ["en", "de"]


@pytest.mark.clickhouse
def test_the_view_shows_what_the_sink_stored(chunker, chdb_store: ChdbStore, words_300) -> None:
    quality = gate({"near_empty": "reject"})
    events = [
        *submit(chunker, quality, "first", words_300),
        *submit(chunker, quality, "copy", words_300),
        *submit(chunker, quality, "de", GERMAN),
        *submit(chunker, quality, "empty", "Hi there."),
    ]
    # What the sink does with the records of a batch.
    rows = [to_row(record_of(event, offset), datetime.now(UTC)) for offset, event in enumerate(events)]
    queries.insert_events(chdb_store, events_to_arrow(rows))
    found = chdb_store.query(
        f"SELECT document_id, outcome, rejected_by, language, duplicate_of, warnings FROM {queries.DOCUMENT_QUALITY} "
        "ORDER BY document_id"
    ).rows
    assert [tuple(row) for row in found] == [
        ("copy", "accepted", "", "en", "first", ["duplicate"]),
        ("de", "accepted", "", "de", "", ["language"]),
        ("empty", "rejected", "near_empty", "", "", []),
        ("first", "accepted", "", "en", "", []),
    ]
