"""Reading the platform's JSON Lines inputs: corpora (``{"id", "text", "title"?,
"source"?}``) and SQuAD-style question sets (``{"id", "question", "answers", "context_ids"}``),
with errors that name the file and line. Used by the CLI and by the trainer."""

import json
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ragops_schemas import DocumentSubmitted, Producer

T = TypeVar("T")


@dataclass(frozen=True)
class Question:
    """One line of a SQuAD-style JSONL dataset."""

    id: str
    question: str
    answers: list[str]
    context_ids: list[str]


def read_jsonl(path: Path, build: Callable[[dict[str, Any]], T], kind: str) -> list[T]:
    """``build(row)`` for every line of a JSON Lines file.

    Raises ``ValueError`` naming the file, the line and ``kind`` for a line that is not JSON
    or lacks what ``build`` reads (``KeyError``/``TypeError``)."""
    # utf-8-sig: a file saved with a byte order mark would fail its first line as JSON.
    with path.open(encoding="utf-8-sig") as lines:
        return parse_jsonl(lines, str(path), build, kind)


def parse_jsonl(lines: Iterable[str], source: str, build: Callable[[dict[str, Any]], T], kind: str) -> list[T]:
    """``build(row)`` for every line of ``lines``; as :func:`read_jsonl`, with ``source``
    naming where they came from in the errors."""
    built = []
    for number, line in enumerate(lines, 1):
        try:
            built.append(build(json.loads(line)))
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise ValueError(f"{source}:{number}: not a {kind} row ({error})") from None
    return built


def _question(row: dict[str, Any]) -> Question:
    return Question(
        id=str(row["id"]),
        question=row["question"],
        answers=list(row.get("answers", [])),
        context_ids=list(row.get("context_ids", [])),
    )


def load_questions(path: Path, count: int | None = None, seed: int = 0) -> list[Question]:
    """A seeded random sample of ``count`` questions (all when ``count`` is None or larger).

    Raises ``ValueError`` naming the line of a malformed row."""
    return _sample(read_jsonl(path, _question, "question"), count, seed)


def parse_questions(data: bytes, source: str, count: int | None = None, seed: int = 0) -> list[Question]:
    """As :func:`load_questions`, from the bytes of a question file (a dataset snapshot read
    from the blob store); ``source`` names it in errors. ``ValueError`` also when the bytes
    are not UTF-8."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValueError(f"{source}: not UTF-8 ({error.reason} at byte {error.start})") from None
    return _sample(parse_jsonl(text.splitlines(), source, _question, "question"), count, seed)


def _sample(rows: list[Question], count: int | None, seed: int) -> list[Question]:
    """A seeded random sample of ``count`` of ``rows`` (all when ``count`` is None or larger)."""
    if count is None or count >= len(rows):
        return rows
    return random.Random(seed).sample(rows, count)


@dataclass(frozen=True)
class CorpusDocument:
    """One line of a corpus file."""

    id: str
    text: str
    title: str | None = None
    source: str | None = None

    def submitted(self, producer: Producer, tenant: str = "default") -> DocumentSubmitted:
        """The ``DocumentSubmitted`` that ingests it (its title also as a filterable metadata key)."""
        return DocumentSubmitted(
            producer=producer,
            tenant=tenant,
            document_id=self.id,
            content=self.text,
            title=self.title,
            source=self.source,
            metadata={"title": self.title} if self.title else {},
        )


def load_corpus(path: Path) -> list[CorpusDocument]:
    """Every document of a corpus JSONL file. Raises ``ValueError`` naming a malformed line."""
    return read_jsonl(
        path,
        lambda row: CorpusDocument(
            id=str(row["id"]),
            text=row["text"],
            title=row.get("title"),
            source=row.get("source"),
        ),
        "corpus",
    )
