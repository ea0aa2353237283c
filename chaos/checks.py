"""The invariants of a chaos run, as plain functions of what was observed (HTTP calls, the
records read back from Kafka from offset 0, the rows of ClickHouse, committed offsets), so
each is tested on hand-made inputs without a platform.

Keys of the comparison of ClickHouse with Kafka (:func:`store_key`): a valid event of its
topic is stored once under its event id, whatever number of times it was delivered; anything
else is stored as ``unparsable`` under its own (partition, offset)."""

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

StoreKey = tuple[str, ...]
"""``("event", <event id>)`` or ``("unparsable", <partition>, <offset>)`` (as text)."""
TopicPartition = tuple[str, int]


@dataclass(frozen=True)
class Call:
    """One HTTP question of the load: ``tag`` (in its text, to find it in Kafka), when it
    started and finished (seconds, monotonic), the last HTTP status (``None``: no response),
    the answer's ``request_id`` when the gateway answered, and how many times it was sent
    (the same ``Idempotency-Key`` each time)."""

    tag: str
    started: float
    finished: float
    status: int | None
    request_id: str | None = None
    error: str = ""
    attempts: int = 1


@dataclass(frozen=True)
class Seen:
    """One Kafka record read back: where it is, and what it holds when it is a valid event of
    its topic (``event_id`` is ``None`` otherwise). ``tag``: the chaos tag in a question's
    text; ``letter``: a dead letter's (original topic, partition, offset, reason)."""

    topic: str
    partition: int
    offset: int
    event_id: str | None = None
    event_type: str = ""
    request_id: str = ""
    tag: str = ""
    letter: tuple[str, int, int, str] | None = None


def store_key(record: Seen) -> StoreKey:
    """Under which key the sink must store ``record`` (see the module docstring)."""
    if record.event_id is not None:
        return ("event", record.event_id)
    return ("unparsable", str(record.partition), str(record.offset))


def row_key(event_type: str, event_id: str, partition: int, offset: int) -> StoreKey:
    """The key of one ``events`` row, comparable with :func:`store_key`."""
    if event_type == "unparsable":
        return ("unparsable", str(partition), str(offset))
    return ("event", event_id)


@dataclass
class StoreComparison:
    """Per topic: keys expected from Kafka, keys stored, and the differences (a few shown)."""

    kafka: dict[str, int] = field(default_factory=dict)
    clickhouse: dict[str, int] = field(default_factory=dict)
    unparsable: dict[str, int] = field(default_factory=dict)
    missing: dict[str, list[StoreKey]] = field(default_factory=dict)
    extra: dict[str, list[StoreKey]] = field(default_factory=dict)

    @property
    def equal(self) -> bool:
        return not self.missing and not self.extra


def compare_store(
    records: Iterable[Seen], rows: Iterable[tuple[str, StoreKey]], topics: Iterable[str]
) -> StoreComparison:
    """Compare, for each of ``topics`` (those the sink keeps), the keys Kafka's ``records``
    call for with the ``rows`` of ClickHouse (``(topic, row key)``, read with FINAL)."""
    wanted = set(topics)
    expected: dict[str, set[StoreKey]] = {topic: set() for topic in wanted}
    stored: dict[str, set[StoreKey]] = {topic: set() for topic in wanted}
    for record in records:
        if record.topic in wanted:
            expected[record.topic].add(store_key(record))
    for topic, key in rows:
        stored.setdefault(topic, set()).add(key)
    result = StoreComparison()
    for topic in sorted(set(expected) | set(stored)):
        kafka, clickhouse = expected.get(topic, set()), stored[topic]
        result.kafka[topic] = len(kafka)
        result.clickhouse[topic] = len(clickhouse)
        result.unparsable[topic] = sum(1 for key in clickhouse if key[0] == "unparsable")
        if missing := sorted(kafka - clickhouse):
            result.missing[topic] = missing
        if extra := sorted(clickhouse - kafka):
            result.extra[topic] = extra
    return result


@dataclass
class RequestFigures:
    """The fate of every request the load made (a request: a request id of the run's
    ``QuerySubmitted`` records in Kafka; a retry republishes its request, same id): answered,
    dead-lettered (and why), lost (neither), duplicated (two answer event ids in Kafka, or two
    answer rows in ClickHouse); and the tags asked that never reached Kafka (``unpublished``)
    or became more than one request (``split``: a retry taken for a new request)."""

    requests: int
    answered: int
    dead_lettered: int
    lost: list[str]
    duplicated: list[str]
    reasons: dict[str, int]
    unpublished: list[str] = field(default_factory=list)
    split: list[str] = field(default_factory=list)


def request_figures(
    records: Sequence[Seen],
    tags: Iterable[str],
    answer_rows: Mapping[str, int],
    ignore: Iterable[tuple[str, int, int]] = (),
) -> RequestFigures:
    """Classify every request whose question carries one of ``tags``.

    Args:
        records: every record read back from Kafka.
        tags: the tags of the load's questions.
        answer_rows: request id -> answer rows in ClickHouse (``generations FINAL``).
        ignore: (topic, partition, offset) of injected poison: their dead letters are not a
            request's.
    """
    wanted, skipped = set(tags), set(ignore)
    asked: dict[str, set[str]] = {tag: set() for tag in wanted}
    for record in records:
        if record.tag in wanted and record.event_type == "query.submitted":
            asked[record.tag].add(record.request_id)
    requests = set().union(*asked.values())
    # Where each record is, so a dead letter (which names its original's place) finds its request.
    request_at = {(record.topic, record.partition, record.offset): record.request_id for record in records}
    answers: dict[str, set[str]] = {}
    letters: dict[str, list[str]] = {}
    for record in records:
        if record.event_type == "query.answer_generated" and record.request_id in requests:
            answers.setdefault(record.request_id, set()).add(str(record.event_id))
        elif (
            record.letter is not None
            and record.letter[:3] not in skipped
            and (request := request_at.get(record.letter[:3], "")) in requests
        ):
            letters.setdefault(request, []).append(record.letter[3])
    dead = {request for request in requests if request not in answers and request in letters}
    reasons = Counter(_reason(reason) for request in dead for reason in letters[request][:1])
    duplicated = sorted(
        request for request in requests if len(answers.get(request, ())) > 1 or answer_rows.get(request, 0) > 1
    )
    return RequestFigures(
        requests=len(requests),
        answered=sum(1 for request in requests if request in answers),
        dead_lettered=len(dead),
        lost=sorted(requests - set(answers) - dead),
        duplicated=duplicated,
        reasons=dict(reasons),
        unpublished=sorted(tag for tag, ids in asked.items() if not ids),
        split=sorted(tag for tag, ids in asked.items() if len(ids) > 1),
    )


def _reason(reason: str) -> str:
    """A dead letter's reason without its record-specific tail (for counting)."""
    return reason.split(":", 1)[0][:80]


@dataclass(frozen=True)
class Poison:
    """One poison record injected: its kind and where it landed."""

    kind: str
    topic: str
    partition: int
    offset: int
    request_id: str = ""


def poison_outcomes(poison: Sequence[Poison], records: Sequence[Seen]) -> dict[str, dict[str, int]]:
    """Per kind: injected, dead-lettered (a dead letter names its place), processed (no dead
    letter but an answer for its request id: a valid question whose envelope only ClickHouse
    refuses), and lost (neither)."""
    lettered = {record.letter[:3] for record in records if record.letter is not None}
    answered = {record.request_id for record in records if record.event_type == "query.answer_generated"}
    figures: dict[str, dict[str, int]] = {}
    for item in poison:
        counts = figures.setdefault(item.kind, {"injected": 0, "dead_lettered": 0, "processed": 0, "lost": 0})
        counts["injected"] += 1
        if (item.topic, item.partition, item.offset) in lettered:
            counts["dead_lettered"] += 1
        elif item.request_id and item.request_id in answered:
            counts["processed"] += 1
        else:
            counts["lost"] += 1
    return figures


def longest_stall(calls: Sequence[Call]) -> float:
    """The longest time (s) during which at least one call was outstanding and none finished."""
    longest, last = 0.0, None
    for call in sorted(calls, key=lambda c: c.finished):
        waiting_since = min(c.started for c in calls if c.started <= call.finished and c.finished >= call.finished)
        since = waiting_since if last is None else max(last, waiting_since)
        longest = max(longest, call.finished - since)
        last = call.finished
    return longest


def lag(committed: Mapping[TopicPartition, int], ends: Mapping[TopicPartition, int]) -> int:
    """Records not yet committed by a group: over the partitions it has committed on, the end
    offset (last offset read + 1) minus its committed offset."""
    return sum(max(0, ends.get(tp, 0) - offset) for tp, offset in committed.items())


def failures(report: Mapping[str, Any]) -> list[str]:
    """Why a run failed (empty: it passed): lost or duplicated requests, calls that ended with
    neither an answer nor a dead letter, lost poison, ClickHouse unequal to Kafka, a consumer
    with lag, a service not ready."""
    found = []
    requests = report["requests"]
    if unanswered := report["http"]["unanswered"]:
        found.append(f"{len(unanswered)} calls got neither an answer nor a dead letter: {unanswered[:5]}")
    if requests["lost"]:
        found.append(f"{len(requests['lost'])} requests lost: {requests['lost'][:5]}")
    if requests["duplicated"]:
        found.append(f"{len(requests['duplicated'])} requests answered twice: {requests['duplicated'][:5]}")
    if requests["unpublished"]:
        found.append(f"{len(requests['unpublished'])} questions never reached Kafka: {requests['unpublished'][:5]}")
    if requests["split"]:
        found.append(f"{len(requests['split'])} questions became several requests: {requests['split'][:5]}")
    if lost := sum(kind["lost"] for kind in report["poison"].values()):
        found.append(f"{lost} poison records neither dead-lettered nor processed")
    store = report["clickhouse_vs_kafka"]
    if store["missing"] or store["extra"]:
        found.append(f"ClickHouse differs from Kafka: missing {store['missing']}, extra {store['extra']}")
    if stuck := {group: n for group, n in report["lag"].items() if n}:
        found.append(f"consumer groups with lag: {stuck}")
    if unready := [service for service, code in report["ready"].items() if code != 200]:
        found.append(f"services not ready: {unready}")
    return found
