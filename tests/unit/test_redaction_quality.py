"""Precision and recall of the redaction engine per entity type on the labelled set
(tests/data/pii_set.jsonl, built by tests/data/pii_set.py), and the negatives it must leave
alone. Run with ``-s`` to see the table."""

import json
from collections import Counter
from dataclasses import dataclass

import pytest

from ragops_privacy.redaction import BUILT_IN_ENTITIES, RedactionPolicy, Redactor
from tests.data import pii_set

RECALL_FLOORS = {"CREDIT_CARD": 0.95, "IBAN_CODE": 0.95, "EMAIL_ADDRESS": 0.95, "PHONE_NUMBER": 0.9, "IP_ADDRESS": 0.9}
PRECISION_FLOOR = 0.95


@dataclass
class Tally:
    labelled: int = 0
    found: int = 0  # labelled spans wholly covered by detections of their type
    detected: int = 0
    correct: int = 0  # detections overlapping a labelled span of their type

    @property
    def recall(self) -> float:
        return self.found / self.labelled if self.labelled else 1.0

    @property
    def precision(self) -> float:
        return self.correct / self.detected if self.detected else 1.0


def _overlaps(a_start: int, a_end: int, b_start: int, b_end: int) -> bool:
    return a_start < b_end and b_start < a_end


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return [json.loads(line) for line in pii_set.PATH.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def redactor() -> Redactor:
    return Redactor(RedactionPolicy(), b"quality-test-key-0123456789abcdef")


def test_the_committed_set_is_what_the_generator_builds(records: list[dict]) -> None:
    assert records == pii_set.build()


def test_precision_and_recall_per_entity_type(records: list[dict], redactor: Redactor) -> None:
    tallies = {entity: Tally() for entity in BUILT_IN_ENTITIES}
    missed: list[str] = []
    wrong: list[str] = []
    for record in records:
        text, spans = record["text"], [span for span in record["spans"] if span["type"] != "NEGATIVE"]
        detections = redactor.detect(text)
        for span in spans:
            tally = tallies[span["type"]]
            tally.labelled += 1
            covered = set()
            for detection in detections:
                if detection.entity == span["type"]:
                    covered.update(range(max(detection.start, span["start"]), min(detection.end, span["end"])))
            if covered >= set(range(span["start"], span["end"])):
                tally.found += 1
            else:
                missed.append(f"{span['type']} {span['kind']}: {text[span['start'] : span['end']]!r}")
        for detection in detections:
            tally = tallies[detection.entity]
            tally.detected += 1
            if any(
                span["type"] == detection.entity
                and _overlaps(span["start"], span["end"], detection.start, detection.end)
                for span in spans
            ):
                tally.correct += 1
            else:
                wrong.append(f"{detection.entity}: {text[detection.start : detection.end]!r} in {text!r}")
    print("\nentity type     labelled  recall  detected  precision")
    for entity, tally in tallies.items():
        print(f"{entity:15} {tally.labelled:8}  {tally.recall:6.3f}  {tally.detected:8}  {tally.precision:9.3f}")
    print("missed:", *missed, sep="\n  ")
    print("wrong:", *wrong, sep="\n  ")
    for entity, floor in RECALL_FLOORS.items():
        assert tallies[entity].recall >= floor, (entity, missed)
        assert tallies[entity].precision >= PRECISION_FLOOR, (entity, wrong)


def test_no_negative_is_touched(records: list[dict], redactor: Redactor) -> None:
    """Years, prices, dates, order numbers, versions, ids, ISBNs, Luhn-failing cards and IBANs
    failing mod 97: no detection overlaps one, and each is still in the redacted text."""
    touched: list[str] = []
    kinds: Counter[str] = Counter()
    for record in records:
        text = record["text"]
        negatives = [span for span in record["spans"] if span["type"] == "NEGATIVE"]
        if not negatives:
            continue
        detections = redactor.detect(text)
        redacted = redactor.redact(text, tenant="t").text
        for span in negatives:
            kinds[span["kind"]] += 1
            value = text[span["start"] : span["end"]]
            hits = [d for d in detections if _overlaps(d.start, d.end, span["start"], span["end"])]
            if hits or value not in redacted:
                touched.append(f"{span['kind']}: {value!r} as {[d.entity for d in hits]} in {text!r}")
    print("\nnegatives per kind:", dict(kinds))
    assert len(kinds) >= 10
    assert touched == []
