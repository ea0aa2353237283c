"""The proof that planted personal data was not kept: a search for every planted value
(:mod:`ragops.pii_plant`) in every store the platform keeps data in.

Stores searched (:data:`KEPT_STORES`): every ClickHouse table with rows (every column that can
hold text), every Qdrant payload of every collection, every Kafka topic but the intake topics,
the service logs, and every other file under the data directory. Apart from those, and never
counted as a leak (:data:`APART`): the intake topics, which hold what producers sent for a
short time by design (finding the planted values there shows they reached the platform), and
the dead-letter topic, which keeps records that could not be processed for a replay.

A value is found in any of these forms, ASCII case-blind (:func:`search_forms`): as planted,
URL-encoded, digits only (phone and card numbers), without spaces (IBANs), and base64-encoded at any byte
alignment (a dead letter carries its record in base64). Matching is Aho-Corasick over all
forms at once (``ahocorasick-rs``); ClickHouse searches its own columns
(``multiSearchAnyCaseInsensitive``) and hands back only the rows to confirm.

Reports name a value by its ident (``email-3``) and where it was found, never the value.
"""

import base64
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import ahocorasick_rs
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from qdrant_edge import EdgeShard, ScrollRequest

from ragops.pii_plant import PlantedValue
from ragops_analytics import queries
from ragops_analytics.store import AnalyticsStore
from ragops_schemas.topics import TOPICS, Retention, Topic, TopicSpec
from ragops_shared.settings import KafkaSettings, aiokafka_options
from ragops_shared.watch import end_offsets

__all__ = [
    "APART",
    "KEPT_STORES",
    "Finder",
    "Finding",
    "holds_text",
    "scan_clickhouse",
    "scan_files",
    "scan_qdrant",
    "scan_topics",
    "search_forms",
    "summary",
    "topic_store",
]

Store = Literal["clickhouse", "qdrant", "topics", "logs", "files", "intake_topics", "dead_letter_topic"]
KEPT_STORES: tuple[Store, ...] = ("clickhouse", "qdrant", "topics", "logs", "files")
"""Where a planted value found is a leak."""
APART: tuple[Store, ...] = ("intake_topics", "dead_letter_topic")
"""Searched and reported, but not a leak: see the module's docstring."""

_MIN_FORM = 7
"""Shortest form searched: a shorter one (a digits-only fragment) would match by chance."""
_SCROLL_PAGE = 1024
_MAX_FILE_BYTES = 64 * 1024 * 1024
"""Files above this size (model weights) are not read; :func:`scan_files` says how many."""
# Under the data directory: searched as stores of their own (ClickHouse, Qdrant, logs), or the
# broker's log, which the topics scan reads through Kafka (compressed on disk).
_NOT_FILES = ("clickhouse", "qdrant", "logs", "broker")


@dataclass(frozen=True)
class Finding:
    """Planted values (their idents) found in one place: ``store`` and ``location`` (a table and
    column, a collection, a topic, a file relative to its store's root)."""

    store: Store
    location: str
    idents: frozenset[str]


def _base64_forms(form: bytes) -> set[str]:
    """What ``form`` looks like inside any base64 text: encoded after 0, 1 or 2 other bytes,
    less the characters that also depend on the bytes around it."""
    forms = set()
    for before, skip in ((0, 0), (1, 2), (2, 3)):
        whole = (before + len(form)) // 3 * 4  # characters of complete 3-byte groups
        encoded = base64.b64encode(b"\0" * before + form).decode()[skip:whole]
        if len(encoded) >= _MIN_FORM:
            forms.add(encoded)
    return forms


def search_forms(planted: PlantedValue) -> set[str]:
    """The texts searched for ``planted`` (matched case-blind): the value, URL-encoded (a logged
    query string), digits only for phone and card numbers, without spaces for IBANs, and each
    of those base64-encoded."""
    value = planted.value
    plain = {value, quote(value, safe="")}
    if planted.kind in ("phone", "card"):
        plain.add("".join(char for char in value if char.isdigit()))
    elif planted.kind == "iban":
        plain.add(value.replace(" ", ""))
    plain = {form for form in plain if len(form) >= _MIN_FORM}
    encoded = set()
    for form in plain | {form.lower() for form in plain}:
        encoded |= _base64_forms(form.encode())
    return plain | encoded


class Finder:
    """Which planted values a text holds, in any of their :func:`search_forms`. A form two
    values share (the same number planted in two formats) names both."""

    def __init__(self, planted: Sequence[PlantedValue]) -> None:
        owners: dict[str, set[str]] = {}
        for value in planted:
            for form in search_forms(value):
                owners.setdefault(form.lower(), set()).add(value.ident)
        self._owners = list(owners.values())
        self.needles: tuple[str, ...] = tuple(owners)
        """Every form, lower-cased: for a store that searches itself."""
        self._automaton = ahocorasick_rs.AhoCorasick(self.needles) if self.needles else None

    def find(self, text: str) -> set[str]:
        """The idents of the planted values ``text`` holds."""
        if self._automaton is None:
            return set()
        found: set[str] = set()
        for needle, _, _ in self._automaton.find_matches_as_indexes(text.lower(), overlapping=True):
            found |= self._owners[needle]
        return found


def holds_text(column_type: str) -> bool:
    """Whether a ClickHouse column of ``column_type`` can hold text: anything but numbers, dates,
    booleans, UUIDs and enums, alone or in arrays (``Array(Float32)`` vectors are skipped;
    ``Map``, ``Tuple``, ``String``, ``IPv4`` are searched)."""
    inner = column_type
    for wrapper in ("Array(", "Nullable(", "LowCardinality("):
        while inner.startswith(wrapper):
            inner = inner.removeprefix(wrapper)
    return not inner.startswith(("Int", "UInt", "Float", "BFloat", "Decimal", "Bool", "Date", "UUID", "Enum"))


def scan_clickhouse(store: AnalyticsStore, finder: Finder) -> list[Finding]:
    """Every table with rows, every column that :func:`holds_text`: one finding per column
    holding a planted value (location ``table.column``). Raises what the store raises."""
    findings = []
    for table, columns in queries.stored_columns(store).items():
        names = [name for name, column_type in columns if holds_text(column_type)]
        found: dict[str, set[str]] = {}
        for row in queries.rows_containing(store, table, names, finder.needles):
            for name, text in zip(names, row, strict=True):
                if text is not None and (idents := finder.find(text)):
                    found.setdefault(name, set()).update(idents)
        findings += [Finding("clickhouse", f"{table}.{name}", frozenset(idents)) for name, idents in found.items()]
    return findings


def scan_qdrant(root: Path, finder: Finder) -> list[Finding]:
    """Every point's payload (as JSON) of every Qdrant Edge shard under ``root`` (each index
    build's collection): one finding per collection holding a planted value, located by its
    folder under ``root``. Opens each shard itself: call it once the services that own them
    have stopped (a shard is open in one process at a time)."""
    findings = []
    for config in sorted(root.rglob("edge_config.json")):
        found: set[str] = set()
        shard = EdgeShard.load(str(config.parent))
        try:
            offset = None
            while True:
                records, offset = shard.scroll(
                    ScrollRequest(offset=offset, limit=_SCROLL_PAGE, with_payload=True, with_vector=False)
                )
                for record in records:
                    found |= finder.find(json.dumps(record.payload or {}, ensure_ascii=False, default=str))
                if offset is None:
                    break
        finally:
            shard.close()
        if found:
            findings.append(Finding("qdrant", str(config.parent.relative_to(root)), frozenset(found)))
    return findings


def topic_store(topic: str, specs: Sequence[TopicSpec] = TOPICS) -> Store:
    """Which store a topic's records count in: ``dead_letter_topic``; ``intake_topics``, those
    declared intake (``Retention.INTAKE``: what producers send, raw, that the privacy step reads
    and redacts); ``topics``, every other (one ``specs`` does not declare included)."""
    if topic == Topic.DEAD_LETTER:
        return "dead_letter_topic"
    spec = next((spec for spec in specs if spec.topic == topic), None)
    return "intake_topics" if spec is not None and spec.retention is Retention.INTAKE else "topics"


def _record_text(record: ConsumerRecord[bytes, bytes]) -> str:
    parts = [record.key or b"", record.value or b""] + [value or b"" for _, value in record.headers]
    return "\n".join(part.decode("utf-8", errors="replace") for part in parts)


async def scan_topics(
    kafka: KafkaSettings, finder: Finder, *, specs: Sequence[TopicSpec] = TOPICS, timeout_s: float = 600.0
) -> list[Finding]:
    """Every record (key, value, headers) of every topic on the cluster but Kafka's own
    (``__*``), from each partition's start to its end offset when the scan began: one finding
    per topic holding a planted value, in the store :func:`topic_store` names.

    Raises:
        KafkaError: the cluster did not answer (aiokafka's errors).
        TimeoutError: the topics were not read within ``timeout_s``.
    """
    consumer = AIOKafkaConsumer(**aiokafka_options(kafka), group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        topics = sorted(topic for topic in await consumer.topics() if not topic.startswith("__"))
        partitions = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        starts = await consumer.beginning_offsets(partitions)
        # From a fetch, not ListOffsets (see end_offsets: Tansu's latest offsets are short).
        ends = await end_offsets(kafka, partitions)
        left = {partition for partition in partitions if ends[partition] > starts[partition]}
        consumer.assign(list(left))
        if left:
            await consumer.seek_to_beginning(*left)
        found: dict[str, set[str]] = {}
        deadline = time.monotonic() + timeout_s
        while left:
            if time.monotonic() > deadline:
                raise TimeoutError(f"topics not read within {timeout_s:g} s: {sorted({p.topic for p in left})}")
            batches = await consumer.getmany(*left, timeout_ms=1000)
            for partition, records in batches.items():
                for record in records:
                    if idents := finder.find(_record_text(record)):
                        found.setdefault(partition.topic, set()).update(idents)
            for partition in list(left):
                if await consumer.position(partition) >= ends[partition]:
                    left.discard(partition)
    finally:
        await consumer.stop()
    return [Finding(topic_store(topic, specs), topic, frozenset(idents)) for topic, idents in sorted(found.items())]


def _files(root: Path, skip: Iterable[str]) -> Iterable[Path]:
    skipped = {root / name for name in skip}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not any(path.is_relative_to(folder) for folder in skipped):
            yield path


def scan_files(root: Path, finder: Finder, store: Store, *, skip: Iterable[str] = ()) -> tuple[list[Finding], int]:
    """Every file under ``root`` (but those under the folders ``skip`` names) read as UTF-8 text
    (undecodable bytes replaced): one finding per file holding a planted value, located by its
    path under ``root``; and how many files were not read for their size (model weights, over
    64 MiB). A missing ``root`` holds nothing."""
    findings: list[Finding] = []
    too_large = 0
    if not root.is_dir():
        return findings, too_large
    for path in _files(root, skip):
        if path.stat().st_size > _MAX_FILE_BYTES:
            too_large += 1
            continue
        if idents := finder.find(path.read_bytes().decode("utf-8", errors="replace")):
            findings.append(Finding(store, str(path.relative_to(root)), frozenset(idents)))
    return findings, too_large


def scan_data_dir(data_dir: Path, finder: Finder, store: AnalyticsStore) -> tuple[list[Finding], int]:
    """What :func:`scan_clickhouse`, :func:`scan_qdrant` (``<data_dir>/qdrant``) and
    :func:`scan_files` (``<data_dir>/logs`` as ``logs``, every other file as ``files``) find in
    a stopped platform's data directory; and the files not read for their size."""
    logs, large_logs = scan_files(data_dir / "logs", finder, "logs")
    files, large_files = scan_files(data_dir, finder, "files", skip=_NOT_FILES)
    findings = scan_clickhouse(store, finder) + scan_qdrant(data_dir / "qdrant", finder) + logs + files
    return findings, large_logs + large_files


def summary(planted: Sequence[PlantedValue], findings: Sequence[Finding], **extra: Any) -> dict[str, Any]:
    """The report: what was planted (counts by kind and carrier), the distinct planted values
    found per store (:data:`KEPT_STORES`, then :data:`APART`), every finding of a kept store
    (``leaks``) and of the stores apart, ``clean``: no planted value in a kept store, and
    ``reached``: how many planted values were found in some store, those apart included (fewer
    than planted: some never reached the platform, or the scan missed where they went).
    ``extra`` is added as it is (timings, files not read)."""
    found = {store: set[str]() for store in (*KEPT_STORES, *APART)}
    for finding in findings:
        found[finding.store] |= finding.idents

    def listed(stores: Sequence[Store]) -> list[dict[str, Any]]:
        return [
            {"store": f.store, "location": f.location, "values": len(f.idents), "idents": sorted(f.idents)}
            for f in findings
            if f.store in stores
        ]

    def counted(key: str) -> dict[str, int]:
        counts: dict[str, int] = {}
        for value in planted:
            counts[getattr(value, key)] = counts.get(getattr(value, key), 0) + 1
        return counts

    leaks = listed(KEPT_STORES)
    reached = set().union(*found.values())
    return {
        "planted": {
            "values": len(planted),
            "by_kind": counted("kind"),
            "by_carrier": counted("carrier"),
            "carriers": {
                carrier: len({v.target for v in planted if v.carrier == carrier}) for carrier in counted("carrier")
            },
        },
        "found": {store: len(found[store]) for store in KEPT_STORES},
        "found_apart": {store: len(found[store]) for store in APART},
        "leaks": leaks,
        "apart": listed(APART),
        "clean": not leaks,
        # Planted values found anywhere, intake included: all of them, or the scan proved little.
        "reached": len(reached & {value.ident for value in planted}),
        **extra,
    }
