"""The retrieval service's vector store: its interface, and what both adapters share.

A collection holds one point per (chunk, embedding model version) with two named vectors:

* ``dense``: the chunk's embedding, cosine similarity;
* ``bm25``: the chunk's BM25 term frequencies (see :mod:`ragops_retrieval.sparse`),
  declared with the IDF modifier so the engine applies inverse document frequency.

Two adapters implement :class:`VectorStore`: :class:`~ragops_retrieval.edge_store.EdgeStore`
(Qdrant Edge, in-process, the embedded default) and
:class:`~ragops_retrieval.client_store.QdrantClientStore` (a Qdrant server through
``qdrant-client``). Everything that does not depend on the engine lives here, once:
validation, payload layout, point ids, tenant isolation, and the translation of user filters and search
requests into neutral structures (:class:`Conditions`, :class:`SearchPlan`) that each
adapter maps onto its own client types.

Tenants share collections: every point carries its tenant (payload ``tenant``), and every
search and every document-scoped read or delete has a must-condition on it (in hybrid mode
on each retriever's search), so a tenant never sees, counts or deletes another's chunks. A document id
is unique per tenant only, so every document-scoped call names the tenant. Points written
before points named a tenant belong to :data:`~ragops_schemas.ids.DEFAULT_TENANT`:
:meth:`VectorStore.ensure_collection` writes it into them (once; the filter is then a plain
keyword match for every tenant).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from ragops_retrieval.sparse import SparseTerms, embed_document, embed_query
from ragops_schemas.ids import DEFAULT_TENANT, point_id

DENSE_VECTOR = "dense"
"""Name of the dense (embedding) vector in every collection."""
SPARSE_VECTOR = "bm25"
"""Name of the sparse BM25 vector in every collection."""


@dataclass(frozen=True)
class RankFusion:
    """Weighted Reciprocal Rank Fusion of the dense and the BM25 candidate lists (Cormack,
    Clarke and Buettcher, "Reciprocal Rank Fusion outperforms Condorcet and individual Rank
    Learning Methods", SIGIR 2009), computed by the store, not the engine, so that both
    adapters fuse alike.

    A chunk at 1-based rank ``r`` of a list scores ``weight / (k + r)`` from it; its fused
    score is the sum over the lists that hold it. ``k`` damps the weight of the top ranks
    (the paper uses 60; a small k, as tuned here, lets the first ranks decide); a larger
    ``dense_weight`` than ``sparse_weight`` trusts the embedding more. ``depth`` is how many
    candidates each retriever gives the fusion (at least the search's ``top_k``). Defaults:
    tuned on half of the development questions (``python -m bench.retrieval_study``).

    Raises ``ValueError`` for ``k <= 0``, a negative weight, both weights zero, or ``depth < 1``.
    """

    # Tuned on the tuning half (1,010 questions): hybrid hit@5 0.960 -> 0.969 with the title
    # header; 0.944 -> 0.954 on the 990 held-out (bench.retrieval_study, docs/retrieval-study.md).
    k: float = 1.0
    dense_weight: float = 1.0
    sparse_weight: float = 1.5
    depth: int = 50

    def __post_init__(self) -> None:
        if self.depth < 1:
            raise ValueError(f"rank fusion depth must be at least 1, got {self.depth}")
        if not self.k > 0:
            raise ValueError(f"rank fusion k must be positive, got {self.k}")
        if min(self.dense_weight, self.sparse_weight) < 0 or self.dense_weight + self.sparse_weight <= 0:
            raise ValueError(
                f"rank fusion weights must be non-negative and not both zero, got {self.dense_weight}, "
                f"{self.sparse_weight}"
            )


DEFAULT_FUSION = RankFusion()
"""The fusion a hybrid search uses unless told otherwise."""


def rank_order(scored: Iterable[tuple[Mapping[str, Any], float]]) -> list[tuple[Mapping[str, Any], float]]:
    """``(payload, score)`` pairs best first: score descending, then ``chunk_id`` ascending, so
    equal scores rank the same whatever order an engine returned them in. (Which of several
    tied chunks an engine keeps at its ``limit`` is still the engine's choice.)"""
    return sorted(scored, key=lambda pair: (-pair[1], pair[0]["chunk_id"]))


def fuse_ranked(
    dense: Sequence[tuple[Mapping[str, Any], float]],
    sparse: Sequence[tuple[Mapping[str, Any], float]],
    fusion: RankFusion,
    limit: int,
) -> list[tuple[Mapping[str, Any], float]]:
    """The best ``limit`` chunks of two ranked ``(payload, score)`` lists by weighted RRF
    (:class:`RankFusion`), as ``(payload, fused score)``: fused score descending, then
    ``chunk_id`` ascending. Each list is put in :func:`rank_order` first; a chunk is known
    by its payload's ``chunk_id``."""
    fused: dict[str, float] = {}
    payloads: dict[str, Mapping[str, Any]] = {}
    for weight, ranked in ((fusion.dense_weight, dense), (fusion.sparse_weight, sparse)):
        for rank, (payload, _) in enumerate(rank_order(ranked), start=1):
            chunk = payload["chunk_id"]
            payloads.setdefault(chunk, payload)
            fused[chunk] = fused.get(chunk, 0.0) + weight / (fusion.k + rank)
    return rank_order((payloads[chunk], score) for chunk, score in fused.items())[:limit]


def collapse_by_document(
    ranked: Iterable[tuple[Mapping[str, Any], float]], per_document: int | None, limit: int
) -> list[tuple[Mapping[str, Any], float]]:
    """The first ``limit`` of ``ranked`` (``(payload, score)`` pairs, best first) keeping at
    most ``per_document`` chunks of each document version (payload ``document_id`` and
    ``document_version``): a later chunk of a document already shown that often is dropped, so
    other documents move up; every kept chunk keeps its score and relative order. ``None``
    keeps every chunk. The per-group cap of Qdrant's search groups (``group_by`` with
    ``group_size``, https://qdrant.tech/documentation/concepts/search/#search-groups), applied
    after the fusion so that both adapters collapse alike.

    Raises ``ValueError`` for ``per_document < 1``.
    """
    if per_document is not None and per_document < 1:
        raise ValueError(f"per_document must be at least 1, got {per_document}")
    kept: list[tuple[Mapping[str, Any], float]] = []
    shown: dict[tuple[str, str], int] = {}
    for payload, score in ranked:
        if len(kept) == limit:
            break
        document = (payload["document_id"], payload.get("document_version", ""))
        if per_document is None or shown.get(document, 0) < per_document:
            shown[document] = shown.get(document, 0) + 1
            kept.append((payload, score))
    return kept


TENANT_FIELD = "tenant"
"""Payload field: the tenant the chunk belongs to."""

SUBJECT_FIELD = "subject_id"
"""Payload field: the data subject a document is about (absent when none was named)."""

INDEXED_FIELDS = ("document_id", "document_version", "chunk_id", "title", "source", TENANT_FIELD, SUBJECT_FIELD)
"""Top-level payload fields that get a keyword index: the ones deletes and filters use."""

TOP_LEVEL_FILTER_KEYS = frozenset({"document_id", "title", "source"})
"""Filter keys matched at the top level of the payload; any other key means ``metadata.<key>``."""

METADATA_FIELD = "metadata"

EMBEDDED_FOR_FIELD = "embedded_for"
"""Payload field: the document version whose upsert wrote the point's vector. A relabel (a
later version reusing the chunk) leaves it, so the points a version reused are those whose
``document_version`` differs from it."""

SearchMode = Literal["hybrid", "dense", "sparse"]

# Collection names become directory names in EdgeStore: no separators, no leading dot.
_COLLECTION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,254}")
# Metadata keys become JSON paths (``metadata.<key>``): a dot or bracket would change the path.
_METADATA_KEY = re.compile(r"[A-Za-z0-9_-]{1,128}")
_SEARCH_MODES: frozenset[str] = frozenset({"hybrid", "dense", "sparse"})


class UnknownCollectionError(ValueError):
    """The collection does not exist: :meth:`VectorStore.ensure_collection` never created it."""


@dataclass(frozen=True)
class ChunkPoint:
    """One chunk to index.

    ``vector`` is the chunk's dense embedding, L2-normalised, of the collection's
    dimension. ``payload`` holds the extra fields stored with the chunk, only those of
    :data:`EXTRA_PAYLOAD_FIELDS`: ``title``, ``source`` and ``section`` (strings), ``metadata``
    (``dict[str, str]``) and ``chunk_index`` (int). ``tenant`` is the tenant the chunk
    belongs to (its chunk id names it, :func:`ragops_schemas.ids.chunk_id`). ``indexed_text``
    is the text BM25 indexes when it differs from ``text`` (the one stored and shown): the
    chunk with its contextual header (:func:`ragops_shared.text.contextual_text`).
    """

    chunk_id: str
    document_id: str
    document_version: str
    text: str
    vector: Sequence[float]
    payload: Mapping[str, Any] = field(default_factory=dict)
    tenant: str = DEFAULT_TENANT
    indexed_text: str | None = None


@dataclass(frozen=True)
class SearchHit:
    """One search result.

    ``score`` is the cosine similarity (in ``[-1, 1]``) in dense mode, the BM25 score
    (unbounded, non-negative) in sparse mode, and the weighted Reciprocal Rank Fusion score
    (at most ``(dense_weight + sparse_weight) / (k + 1)``, :class:`RankFusion`) in hybrid
    mode. ``payload`` is the stored payload without the fields lifted into attributes:
    ``title``, ``source``, ``metadata``, ``model_version`` and ``chunk_index`` when given at
    upsert.
    """

    chunk_id: str
    document_id: str
    document_version: str
    text: str
    score: float
    payload: dict[str, Any]


class VectorStore(Protocol):
    """Where the retrieval service stores chunk vectors and searches them.

    Every method except :meth:`ensure_collection` and :meth:`close` raises
    :class:`UnknownCollectionError` (a ``ValueError``) for a collection that does not
    exist, and every method raises ``ValueError`` for an invalid collection name (letters,
    digits, ``_``, ``.``, ``-``; starting with a letter or digit). Writes are visible to
    searches as soon as the call returns. Implementations may be called from a worker
    thread.
    """

    def ensure_collection(self, collection: str, dimension: int) -> None:
        """Create ``collection`` for ``dimension``-long dense vectors unless it exists.

        Idempotent. Also creates keyword payload indexes on :data:`INDEXED_FIELDS` and on
        ``metadata.<key>`` for each metadata key the store was configured to index, and gives
        points without a :data:`TENANT_FIELD` (written before points named one)
        :data:`~ragops_schemas.ids.DEFAULT_TENANT`.
        Raises ``ValueError`` when the collection exists with another dimension or
        without the expected named vectors, or when ``dimension < 1``.
        """
        ...

    def upsert(self, collection: str, points: Sequence[ChunkPoint], model_version: str) -> int:
        """Write ``points``, embedded by ``model_version``; return how many were written.

        The point id is :func:`ragops_schemas.ids.point_id` of the chunk id and ``model_version``, so a
        redelivered chunk overwrites its earlier copy. Raises ``ValueError`` when a vector
        is not one-dimensional of the collection's dimension or holds NaN/infinity.
        """
        ...

    def relabel(self, collection: str, points: Sequence[ChunkPoint], model_version: str) -> list[str]:
        """Rewrite the payload of each point of ``points`` that ``collection`` holds for
        ``model_version``, keeping its vectors (``point.vector`` is ignored): how a chunk of
        an earlier document version joins a new version without being embedded again.

        All or nothing: returns the chunk ids that have no point there, and then writes
        nothing; ``[]`` when every payload was rewritten.
        """
        ...

    def delete_superseded(
        self, collection: str, document_id: str, keep_version: str, *, tenant: str = DEFAULT_TENANT
    ) -> int:
        """Delete the points of ``tenant``'s ``document_id`` whose ``document_version != keep_version``.

        Returns the number of points deleted.
        """
        ...

    def delete_document(self, collection: str, document_id: str, *, tenant: str = DEFAULT_TENANT) -> int:
        """Delete every point of ``tenant``'s ``document_id``; return the number deleted."""
        ...

    def collections(self) -> list[str]:
        """Names of every collection the store holds, sorted."""
        ...

    def withdraw(
        self, collection: str, document_id: str, document_version: str, *, tenant: str = DEFAULT_TENANT
    ) -> int:
        """Delete the points of ``tenant``'s ``document_id`` at ``document_version`` that were
        embedded for it (:data:`EMBEDDED_FOR_FIELD`), keeping the chunks it reused from an
        earlier version (the earlier version's own text, still served); return the number deleted."""
        ...

    def search(
        self,
        collection: str,
        *,
        vector: Sequence[float],
        text: str,
        top_k: int,
        filters: Mapping[str, str | Sequence[str]] | None = None,
        mode: SearchMode = "hybrid",
        score_threshold: float | None = None,
        tenant: str = DEFAULT_TENANT,
        fusion: RankFusion = DEFAULT_FUSION,
        per_document: int | None = None,
    ) -> list[SearchHit]:
        """Return at most ``top_k`` chunks of ``tenant``, best first (no other tenant's chunk
        is ever a candidate, whatever the filters).

        ``vector`` is the query embedding (used in dense and hybrid mode), ``text`` the
        query text (BM25, used in sparse and hybrid mode). Hybrid fuses a dense and a BM25
        candidate list of ``max(fusion.depth, top_k)`` each with ``fusion`` (weighted Reciprocal
        Rank Fusion, :func:`fuse_ranked`). Hits are ordered by score, then chunk id (ties).
        ``filters`` map a payload key to a value (exact match) or a list of values (any of
        them); ``document_id``, ``title`` and ``source`` are top-level fields, any other key
        is a metadata key. ``score_threshold`` is a minimum cosine similarity for the dense
        candidates (dense and hybrid mode; a hybrid hit may still come from BM25 alone); it
        is ignored in sparse mode, whose scores are not on a fixed scale. ``per_document``
        caps the hits of one document version (:func:`collapse_by_document`; ``None``: no cap);
        with a cap every mode reads ``max(fusion.depth, top_k)`` candidates, so that the
        chunks it drops leave room for other documents.

        Raises ``ValueError`` for ``top_k < 1``, ``per_document < 1``, an unknown mode, a
        vector of the wrong dimension, or a malformed filter.
        """
        ...

    def count(
        self,
        collection: str,
        document_id: str | None = None,
        *,
        document_version: str | None = None,
        embedded_for: str | None = None,
        tenant: str = DEFAULT_TENANT,
    ) -> int:
        """Number of points in ``collection`` (all tenants'), or of ``tenant``'s ``document_id`` only (and of its
        ``document_version`` only, and only those embedded for ``embedded_for``
        (:data:`EMBEDDED_FOR_FIELD`), when given), counted exactly."""
        ...

    def chunk_ids(
        self, collection: str, document_id: str, document_version: str, *, tenant: str = DEFAULT_TENANT
    ) -> list[str]:
        """Chunk ids of the points of ``tenant``'s ``document_id`` at ``document_version``, ordered by
        their ``chunk_index`` payload field (points without one last, by chunk id)."""
        ...

    def delete_subject(self, collection: str, subject_id: str, *, tenant: str) -> int:
        """Delete every point of ``tenant``'s documents about ``subject_id`` (payload
        :data:`SUBJECT_FIELD`); return the number deleted."""
        ...

    def count_subject(self, collection: str, subject_id: str, *, tenant: str) -> int:
        """Number of points of ``tenant``'s documents about ``subject_id``, counted exactly."""
        ...

    def close(self) -> None:
        """Flush and release the engine; the store is unusable afterwards."""
        ...


def open_store(
    *,
    url: str | None,
    api_key: str | None,
    path: str | Path,
    metadata_index_keys: Sequence[str] = (),
) -> VectorStore:
    """The store for this deployment: a Qdrant server when ``url`` is set, else Qdrant Edge.

    ``path`` is Edge's data directory (ignored with ``url``); ``api_key`` is sent to the
    server only. ``metadata_index_keys`` are the metadata keys filters use, to index.
    """
    # Imported here: both adapters import this module.
    if url:
        from ragops_retrieval.client_store import QdrantClientStore

        return QdrantClientStore(url=url, api_key=api_key, metadata_index_keys=metadata_index_keys)
    from ragops_retrieval.edge_store import EdgeStore

    return EdgeStore(path, metadata_index_keys=metadata_index_keys)


# ----------------------------------------------------------------------------------------
# Shared by the adapters: validation, payload layout, neutral filters and search plans.
# ----------------------------------------------------------------------------------------


def validate_collection_name(collection: str) -> str:
    """Return ``collection`` unchanged, or raise ``ValueError`` if it is not a safe name."""
    if not isinstance(collection, str) or not _COLLECTION_NAME.fullmatch(collection):
        raise ValueError(
            f"invalid collection name {collection!r}: use 1 to 255 letters, digits, '_', '.'"
            " or '-', starting with a letter or digit"
        )
    return collection


def validate_dimension(dimension: int) -> int:
    """Return ``dimension``, or raise ``ValueError`` unless it is a positive int."""
    if isinstance(dimension, bool) or not isinstance(dimension, int) or dimension < 1:
        raise ValueError(f"dimension must be a positive integer, got {dimension!r}")
    return dimension


def index_fields(metadata_index_keys: Sequence[str]) -> tuple[str, ...]:
    """Payload paths to index: :data:`INDEXED_FIELDS` and ``metadata.<key>`` per key.

    Raises ``ValueError`` for a metadata key that is not a plain name.
    """
    return INDEXED_FIELDS + tuple(_metadata_path(key) for key in metadata_index_keys)


def dense_vector(vector: Sequence[float], dimension: int, *, what: str) -> list[float]:
    """``vector`` as a list of floats, checked to be 1-D, ``dimension`` long and finite.

    ``what`` names the vector in the ``ValueError`` raised otherwise.
    """
    array = np.asarray(vector, dtype=np.float64)
    if array.ndim != 1 or array.shape[0] != dimension:
        raise ValueError(f"{what}: expected a vector of dimension {dimension}, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{what}: vector contains NaN or infinity")
    values: list[float] = array.tolist()
    return values


EXTRA_PAYLOAD_FIELDS = frozenset({"title", "source", "section", METADATA_FIELD, "chunk_index", SUBJECT_FIELD})
"""The fields a :class:`ChunkPoint`'s ``payload`` may carry (see :func:`build_payload`)."""


def build_payload(point: ChunkPoint, model_version: str) -> dict[str, Any]:
    """The payload stored with ``point``: only what retrieval and generation read, since a
    payload is a copy of the document that retention and erasure must reach too.

    - ``chunk_id``, ``document_id``, ``document_version``: the hit's identity (contexts,
      citations, supersede and withdraw deletes, a subject's erasure by document);
    - ``text``: the generator's context and the BM25 terms' source;
    - ``model_version``: which embedding model wrote the vector (a point id is per model);
    - ``tenant``: every search and delete is restricted to the caller's tenant;
    - ``embedded_for``: the version whose upsert wrote the vector (reused-chunk bookkeeping);
    - ``title``, ``source``: citations in the answer and top-level filters (default ``""``);
    - ``section`` (only when the chunk has one): the heading it falls under, which its
      citation shows;
    - ``metadata`` (``dict[str, str]``, default ``{}``): a query's filters may name any key
      (README, "filters"), so the document's metadata is kept whole;
    - ``chunk_index``: the chunk's position, which orders :meth:`VectorStore.chunk_ids`;
    - ``subject_id`` (only when the document names one): whom the document is about, so an
      erasure of that data subject finds its points.

    The fields computed here win over same-named ``point.payload`` fields, so a payload cannot
    disguise a chunk as another document's.

    Raises:
        ValueError: ``point.payload`` holds a field outside :data:`EXTRA_PAYLOAD_FIELDS` (no
            free copy of event data reaches the index), or ``metadata`` is not a mapping.
    """
    extra = dict(point.payload)
    unknown = sorted(set(extra) - EXTRA_PAYLOAD_FIELDS)
    if unknown:
        raise ValueError(
            f"chunk {point.chunk_id!r}: payload fields {unknown} are not stored "
            f"(only {sorted(EXTRA_PAYLOAD_FIELDS)}: what retrieval and generation read)"
        )
    metadata = extra.get(METADATA_FIELD) or {}
    if not isinstance(metadata, Mapping):
        raise ValueError(
            f"chunk {point.chunk_id!r}: payload 'metadata' must be a mapping, got {type(metadata).__name__}"
        )
    return {
        **extra,
        "title": extra.get("title") or "",
        "source": extra.get("source") or "",
        METADATA_FIELD: dict(metadata),
        "chunk_id": point.chunk_id,
        "document_id": point.document_id,
        "document_version": point.document_version,
        "text": point.text,
        "model_version": model_version,
        TENANT_FIELD: point.tenant,
        EMBEDDED_FOR_FIELD: point.document_version,
    }


_HIT_FIELDS = ("chunk_id", "document_id", "document_version", "text")


def hit_from_payload(payload: Mapping[str, Any], score: float) -> SearchHit:
    """Turn a stored payload (as written by :func:`build_payload`) and its score into a hit."""
    rest = dict(payload)
    chunk_id, document_id, document_version, text = (rest.pop(name) for name in _HIT_FIELDS)
    rest.pop(EMBEDDED_FOR_FIELD, None)  # the store's bookkeeping, not the chunk's
    rest.pop(TENANT_FIELD, None)  # always the searching tenant
    return SearchHit(
        chunk_id=chunk_id,
        document_id=document_id,
        document_version=document_version,
        text=text,
        score=float(score),
        payload=rest,
    )


@dataclass(frozen=True)
class PreparedPoint:
    """A point ready for an engine: id, dense vector, BM25 terms and payload."""

    id: str
    dense: list[float]
    sparse: SparseTerms
    payload: dict[str, Any]


def prepare_points(points: Sequence[ChunkPoint], model_version: str, dimension: int) -> list[PreparedPoint]:
    """Validate ``points`` and compute their ids, payloads and BM25 terms.

    Raises ``ValueError`` (naming the chunk) for a bad vector or metadata, before anything
    is written.
    """
    return [
        PreparedPoint(
            id=point_id(point.chunk_id, model_version),
            dense=dense_vector(point.vector, dimension, what=f"chunk {point.chunk_id!r}"),
            sparse=embed_document(point.text if point.indexed_text is None else point.indexed_text),
            payload=build_payload(point, model_version),
        )
        for point in points
    ]


def payloads_by_point_id(points: Sequence[ChunkPoint], model_version: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """Point id -> (chunk id, payload) of ``points``, for :meth:`VectorStore.relabel`: without
    :data:`EMBEDDED_FOR_FIELD`, which a relabel keeps (payloads are merged).

    Raises ``ValueError`` if a ``metadata`` payload is not a mapping."""
    return {
        point_id(p.chunk_id, model_version): (
            p.chunk_id,
            {k: v for k, v in build_payload(p, model_version).items() if k != EMBEDDED_FOR_FIELD},
        )
        for p in points
    }


@dataclass(frozen=True)
class FieldMatch:
    """Payload field ``key`` (a JSON path) equals one of ``values``.

    One value is an exact match, several mean any of them.
    """

    key: str
    values: tuple[str, ...]


def tenant_match(tenant: str) -> FieldMatch:
    """The points of ``tenant`` (:data:`TENANT_FIELD`)."""
    return FieldMatch(TENANT_FIELD, (tenant,))


@dataclass(frozen=True)
class Conditions:
    """A conjunction: every ``must`` match holds and no ``must_not`` match does."""

    must: tuple[FieldMatch, ...] = ()
    must_not: tuple[FieldMatch, ...] = ()


def document_conditions(
    document_id: str,
    *,
    tenant: str,
    version: str | None = None,
    except_version: str | None = None,
    embedded_for: str | None = None,
) -> Conditions:
    """Points of ``tenant``'s ``document_id``: of ``version`` only, without those of
    ``except_version``, and embedded for ``embedded_for`` only, when they are given."""
    must: tuple[FieldMatch, ...] = (tenant_match(tenant), FieldMatch("document_id", (document_id,)))
    if version is not None:
        must += (FieldMatch("document_version", (version,)),)
    if embedded_for is not None:
        must += (FieldMatch(EMBEDDED_FOR_FIELD, (embedded_for,)),)
    must_not = () if except_version is None else (FieldMatch("document_version", (except_version,)),)
    return Conditions(must=must, must_not=must_not)


def subject_conditions(subject_id: str, *, tenant: str) -> Conditions:
    """Points of ``tenant``'s documents about ``subject_id`` (:data:`SUBJECT_FIELD`)."""
    return Conditions(must=(tenant_match(tenant), FieldMatch(SUBJECT_FIELD, (subject_id,))))


def conditions_from_filters(filters: Mapping[str, str | Sequence[str]] | None, *, tenant: str) -> Conditions:
    """Translate user filters into :class:`Conditions`, always restricted to ``tenant``'s points.

    ``document_id``, ``title`` and ``source`` match top-level payload fields; any other key
    ``k`` matches ``metadata.k``. A string value is an exact match, a list or tuple of
    strings matches any of them. Raises ``ValueError`` for a key that is not a plain name,
    a value that is neither, or an empty list (which could only match nothing).
    """
    matches = [tenant_match(tenant)]
    for key, value in (filters or {}).items():
        path = key if key in TOP_LEVEL_FILTER_KEYS else _metadata_path(key)
        if isinstance(value, str):
            values: tuple[str, ...] = (value,)
        else:
            # Anything but a sequence (None, a number) is refused below, named in the message.
            values = tuple(value) if isinstance(value, Sequence) else ()
        if not values or not all(isinstance(item, str) for item in values):
            raise ValueError(f"filter {key!r}: expected a string or a non-empty list of strings, got {value!r}")
        matches.append(FieldMatch(path, values))
    return Conditions(must=tuple(matches))


def _metadata_path(key: str) -> str:
    if not isinstance(key, str) or not _METADATA_KEY.fullmatch(key):
        raise ValueError(f"invalid metadata key {key!r}: use 1 to 128 letters, digits, '_' or '-'")
    return f"{METADATA_FIELD}.{key}"


@dataclass(frozen=True)
class SearchPlan:
    """A validated search, independent of the engine.

    ``dense`` is set in dense and hybrid mode, ``sparse`` in sparse and hybrid mode (both
    set means hybrid, which :class:`PlannedStore` runs as one plan of each and fuses).
    ``limit`` is the number of hits to return. ``score_threshold`` applies to the
    dense candidates only.
    """

    dense: list[float] | None
    sparse: SparseTerms | None
    conditions: Conditions
    limit: int
    score_threshold: float | None


def plan_search(
    *,
    dimension: int,
    vector: Sequence[float],
    text: str,
    top_k: int,
    filters: Mapping[str, str | Sequence[str]] | None,
    mode: str,
    score_threshold: float | None,
    tenant: str,
) -> SearchPlan:
    """Validate the arguments of :meth:`VectorStore.search` and turn them into a plan.

    Raises ``ValueError`` as documented there.
    """
    if mode not in _SEARCH_MODES:
        raise ValueError(f"unknown search mode {mode!r}: use one of {sorted(_SEARCH_MODES)}")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
    return SearchPlan(
        dense=None if mode == "sparse" else dense_vector(vector, dimension, what="query"),
        sparse=None if mode == "dense" else embed_query(text),
        conditions=conditions_from_filters(filters, tenant=tenant),
        limit=top_k,
        score_threshold=None if mode == "sparse" else score_threshold,
    )


class PlannedStore:
    """What both adapters share: the deletes and the search, written once over four
    engine primitives each adapter provides: ``_dimension(collection)`` (raises
    :class:`UnknownCollectionError`), ``_delete(collection, conditions) -> int``,
    ``_count(collection, conditions) -> int`` and ``_query(collection, plan) -> [(payload,
    score)]``, best first, for a plan with one of ``dense`` or ``sparse`` (hybrid is fused
    here)."""

    def _dimension(self, collection: str) -> int:
        raise NotImplementedError

    def _delete(self, collection: str, conditions: Conditions) -> int:
        raise NotImplementedError

    def _count(self, collection: str, conditions: Conditions) -> int:
        raise NotImplementedError

    def delete_subject(self, collection: str, subject_id: str, *, tenant: str) -> int:
        """See :meth:`VectorStore.delete_subject`."""
        return self._delete(collection, subject_conditions(subject_id, tenant=tenant))

    def count_subject(self, collection: str, subject_id: str, *, tenant: str) -> int:
        """See :meth:`VectorStore.count_subject`."""
        return self._count(collection, subject_conditions(subject_id, tenant=tenant))

    def _query(self, collection: str, plan: SearchPlan) -> list[tuple[Mapping[str, Any], float]]:
        raise NotImplementedError

    def delete_superseded(
        self, collection: str, document_id: str, keep_version: str, *, tenant: str = DEFAULT_TENANT
    ) -> int:
        """See :meth:`VectorStore.delete_superseded`."""
        return self._delete(collection, document_conditions(document_id, tenant=tenant, except_version=keep_version))

    def delete_document(self, collection: str, document_id: str, *, tenant: str = DEFAULT_TENANT) -> int:
        """See :meth:`VectorStore.delete_document`."""
        return self._delete(collection, document_conditions(document_id, tenant=tenant))

    def withdraw(
        self, collection: str, document_id: str, document_version: str, *, tenant: str = DEFAULT_TENANT
    ) -> int:
        """See :meth:`VectorStore.withdraw`."""
        conditions = document_conditions(
            document_id, tenant=tenant, version=document_version, embedded_for=document_version
        )
        return self._delete(collection, conditions)

    def search(
        self,
        collection: str,
        *,
        vector: Sequence[float],
        text: str,
        top_k: int,
        filters: Mapping[str, str | Sequence[str]] | None = None,
        mode: SearchMode = "hybrid",
        score_threshold: float | None = None,
        tenant: str = DEFAULT_TENANT,
        fusion: RankFusion = DEFAULT_FUSION,
        per_document: int | None = None,
    ) -> list[SearchHit]:
        """See :meth:`VectorStore.search`."""
        plan = plan_search(
            dimension=self._dimension(collection),
            vector=vector,
            text=text,
            top_k=top_k,
            filters=filters,
            mode=mode,
            score_threshold=score_threshold,
            tenant=tenant,
        )
        # Each list deeper than top_k: a chunk ranked modestly by both retrievers should be
        # able to outrank one that only a single retriever found, and a document cap needs
        # candidates to fill the places of the chunks it drops.
        depth = max(fusion.depth, plan.limit)
        if plan.dense is None or plan.sparse is None:
            ranked = rank_order(self._query(collection, plan if per_document is None else replace(plan, limit=depth)))
        else:
            # Fused here rather than by the engine: Qdrant's Fusion.RRF has no weights, and
            # one implementation keeps both adapters' results identical.
            dense = self._query(collection, replace(plan, sparse=None, limit=depth))
            sparse = self._query(collection, replace(plan, dense=None, limit=depth, score_threshold=None))
            ranked = fuse_ranked(dense, sparse, fusion, depth)
        ranked = collapse_by_document(ranked, per_document, plan.limit)
        return [hit_from_payload(payload, score) for payload, score in ranked]


def ordered_chunk_ids(payloads: Iterable[Mapping[str, Any]]) -> list[str]:
    """The ``chunk_id`` of each payload, ordered by ``chunk_index`` (missing: last), then chunk id."""
    keyed = sorted(
        (payload.get("chunk_index") is None, payload.get("chunk_index") or 0, payload["chunk_id"])
        for payload in payloads
    )
    return [chunk for _, _, chunk in keyed]
