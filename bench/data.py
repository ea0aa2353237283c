"""The inputs rows share: ``../shared/data`` (SQuAD v1.1 dev passages and questions, the
large documentation corpus), RAG prompts built from them, and golden example events with
fresh ids."""

import json
import random
import uuid
from collections import defaultdict
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import TypeVar

from ragops_schemas import Event, utc_now
from ragops_shared.datasets import Question, load_questions

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
EXAMPLES = ROOT / "schemas" / "examples"
E = TypeVar("E", bound=Event)


@cache
def passages() -> tuple[dict, ...]:
    """Every row of ``corpus.jsonl`` (``id``, ``title``, ``text``, ``source``), in file order."""
    with (DATA / "corpus.jsonl").open(encoding="utf-8") as lines:
        return tuple(json.loads(line) for line in lines)


def passages_by_id() -> dict[str, dict]:
    return {row["id"]: row for row in passages()}


def passages_of_words(low: int, high: int, count: int) -> list[str]:
    """The first ``count`` passage texts of ``low`` to ``high`` whitespace words (the ~200-word
    chunks the platform's chunker makes), in file order so every run uses the same ones."""
    texts = [row["text"] for row in passages() if low <= len(row["text"].split()) <= high]
    if len(texts) < count:
        raise ValueError(f"only {len(texts)} passages of {low}-{high} words, {count} wanted")
    return texts[:count]


def questions(count: int | None = None, seed: int = 0, path: Path | None = None) -> list[Question]:
    """A seeded sample of ``questions.jsonl`` (the demo's sampler, so the same questions)."""
    return load_questions(path or DATA / "questions.jsonl", count, seed)


def rag_contexts(question: Question, k: int = 3) -> list[dict]:
    """The ``k`` passages a retriever would put into the prompt: the gold passage first, then
    passages of the same article (hard distractors), as ``{text, title, chunk_id}``."""
    by_id = passages_by_id()
    gold = by_id[question.context_ids[0]]
    same_title = [row for row in _by_title()[gold["title"]] if row["id"] != gold["id"]]
    chosen = [gold, *same_title[: k - 1]]
    return [{"text": row["text"], "title": row["title"], "chunk_id": row["id"]} for row in chosen]


@cache
def _by_title() -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = defaultdict(list)
    for row in passages():
        grouped[row["title"]].append(row)
    return grouped


def large_documents(max_chars: int, seed: int = 0) -> list[dict]:
    """A seeded random sample of ``corpus-large/documents.jsonl`` (Python and PostgreSQL
    manual pages) whose texts add up to at most ``max_chars`` characters; pages of 50,000
    characters or more are left out so one page cannot take the whole budget."""
    with (DATA / "corpus-large" / "documents.jsonl").open(encoding="utf-8") as lines:
        rows = [json.loads(line) for line in lines]
    random.Random(seed).shuffle(rows)
    chosen, total = [], 0
    for row in rows:
        size = len(row["text"])
        if size >= 50_000 or total + size > max_chars:
            continue
        chosen.append(row)
        total += size
    return chosen


def golden(event_type: type[E]) -> E:
    """The golden example of an event type (``schemas/examples/<Type>.json``), validated."""
    return event_type.model_validate_json((EXAMPLES / f"{event_type.__name__}.json").read_bytes())


def fresh(example: E, **updates: object) -> E:
    """A copy of an event with a new ``event_id`` and ``occurred_at`` (and ``updates``), as a
    producer would send it; a request event also gets a new ``request_id`` unless given."""
    fields: dict[str, object] = {"event_id": uuid.uuid4(), "occurred_at": utc_now()}
    if hasattr(example, "request_id"):
        fields["request_id"] = str(uuid.uuid4())
    return example.model_copy(update={**fields, **updates})


def encoded(events: Sequence[Event]) -> list[tuple[str, bytes, bytes]]:
    """``(topic, key, value)`` of each event, serialised as the platform's publishers do."""
    return [(event.TOPIC, event.key, event.model_dump_json().encode()) for event in events]
