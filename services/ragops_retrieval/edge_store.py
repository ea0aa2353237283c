"""Qdrant Edge adapter: Qdrant's engine in-process, one shard per collection on disk.

Facts about Qdrant Edge (``qdrant-edge-py`` 0.9) this adapter relies on:

* Writes are visible to queries as soon as ``update`` returns; no flush is needed for
  that. Updates go to a write-ahead log, so they survive a crash; ``flush`` writes the
  segments themselves and is done on :meth:`EdgeStore.close`.
* There is no background optimiser. New points land in an appendable segment searched
  by brute force; an HNSW index is built only by an explicit, blocking ``optimize()``
  (:meth:`EdgeStore.optimize`). At 2k 384-d points brute force takes well under a
  millisecond; at 30k about 2 ms, against 0.6 ms after a ~10 s optimisation on 2 cores.
* A shard directory can be open once per process: a second ``EdgeShard.load`` of the
  same path fails on the WAL lock. Hence one :class:`EdgeStore` per data directory.
* The engine raises plain ``Exception`` for everything, so this adapter validates
  dimensions and names itself to raise ``ValueError`` with clear messages.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qdrant_edge import (
    CountRequest,
    Distance,
    EdgeConfig,
    EdgeShard,
    EdgeSparseVectorParams,
    EdgeVectorParams,
    FieldCondition,
    Filter,
    IsEmptyCondition,
    MatchAny,
    MatchValue,
    Modifier,
    PayloadSchemaType,
    Point,
    Query,
    QueryRequest,
    ScrollRequest,
    SparseVector,
    UpdateOperation,
)

from ragops_retrieval.sparse import SparseTerms
from ragops_retrieval.store import (
    DENSE_VECTOR,
    SPARSE_VECTOR,
    TENANT_FIELD,
    ChunkPoint,
    Conditions,
    FieldMatch,
    PlannedStore,
    SearchPlan,
    UnknownCollectionError,
    document_conditions,
    index_fields,
    ordered_chunk_ids,
    payloads_by_point_id,
    prepare_points,
    validate_collection_name,
    validate_dimension,
)
from ragops_schemas.ids import DEFAULT_TENANT

# Written by Edge into every shard directory: the shard's vector configuration.
_EDGE_CONFIG_FILE = "edge_config.json"
_SCROLL_PAGE = 1024  # points per scroll call when listing a document version's chunks


@dataclass(frozen=True)
class _Collection:
    shard: EdgeShard
    dimension: int


class EdgeStore(PlannedStore):
    """:class:`~ragops_retrieval.store.VectorStore` on Qdrant Edge, under ``path/<collection>``.

    ``path`` is created if missing. Collections created by an earlier process are opened
    on first use. ``metadata_index_keys`` are the metadata keys to index for filtering.

    Thread safety: one lock serialises every call (Edge itself is safe to call from any
    thread; the lock makes count-then-delete exact and guards opening and closing shards),
    so the store can be shared by an event loop and worker threads. :meth:`optimize` holds
    it for as long as the optimisation runs.
    """

    def __init__(self, path: str | Path, *, metadata_index_keys: Sequence[str] = ()) -> None:
        self._root = Path(path)
        self._root.mkdir(parents=True, exist_ok=True)
        self._index_fields = index_fields(metadata_index_keys)
        self._lock = threading.Lock()
        self._collections: dict[str, _Collection] = {}
        self._closed = False

    def ensure_collection(self, collection: str, dimension: int) -> None:
        """See :meth:`VectorStore.ensure_collection`."""
        validate_collection_name(collection)
        validate_dimension(dimension)
        with self._lock:
            if self._exists(collection):
                opened = self._open(collection)
                if opened.dimension != dimension:
                    raise ValueError(
                        f"collection {collection!r} exists with dimension {opened.dimension}, not {dimension}"
                    )
            else:
                opened = self._create(collection, dimension)
            indexed = opened.shard.info().payload_schema
            for name in self._index_fields:
                if name not in indexed:
                    opened.shard.update(UpdateOperation.create_field_index(name, PayloadSchemaType.Keyword))
            untenanted = Filter(must=[IsEmptyCondition(key=TENANT_FIELD)])
            if opened.shard.count(CountRequest(exact=True, filter=untenanted)):
                opened.shard.update(UpdateOperation.set_payload_by_filter(untenanted, {TENANT_FIELD: DEFAULT_TENANT}))

    def upsert(self, collection: str, points: Sequence[ChunkPoint], model_version: str) -> int:
        """See :meth:`VectorStore.upsert`."""
        with self._lock:
            dimension = self._open(collection).dimension
        # BM25 and validation run outside the lock so concurrent searches are not held up.
        prepared = prepare_points(points, model_version, dimension)
        if prepared:
            operation = UpdateOperation.upsert_points(
                [Point(p.id, {DENSE_VECTOR: p.dense, SPARSE_VECTOR: _sparse(p.sparse)}, p.payload) for p in prepared]
            )
            with self._lock:
                self._open(collection).shard.update(operation)
        return len(prepared)

    def relabel(self, collection: str, points: Sequence[ChunkPoint], model_version: str) -> list[str]:
        """See :meth:`VectorStore.relabel`."""
        wanted = payloads_by_point_id(points, model_version)
        with self._lock:
            shard = self._open(collection).shard
            found = {str(record.id) for record in shard.retrieve(list(wanted), with_payload=False, with_vector=False)}
            missing = [chunk for point, (chunk, _) in wanted.items() if point not in found]
            if not missing:
                for point, (_, payload) in wanted.items():
                    shard.update(UpdateOperation.set_payload([point], payload))
        return missing

    def _dimension(self, collection: str) -> int:
        with self._lock:
            return self._open(collection).dimension

    def _query(self, collection: str, plan: SearchPlan) -> list[tuple[Mapping[str, Any], float]]:
        request = _query_request(plan)
        with self._lock:
            scored = self._open(collection).shard.query(request)
        return [(point.payload or {}, point.score) for point in scored]

    def count(
        self,
        collection: str,
        document_id: str | None = None,
        *,
        document_version: str | None = None,
        embedded_for: str | None = None,
        tenant: str = DEFAULT_TENANT,
    ) -> int:
        """See :meth:`VectorStore.count`."""
        query_filter = (
            None
            if document_id is None
            else _filter(
                document_conditions(document_id, tenant=tenant, version=document_version, embedded_for=embedded_for)
            )
        )
        with self._lock:
            return self._open(collection).shard.count(CountRequest(exact=True, filter=query_filter))

    def chunk_ids(
        self, collection: str, document_id: str, document_version: str, *, tenant: str = DEFAULT_TENANT
    ) -> list[str]:
        """See :meth:`VectorStore.chunk_ids`."""
        query_filter = _filter(document_conditions(document_id, tenant=tenant, version=document_version))
        payloads: list[Mapping[str, Any]] = []
        offset = None
        with self._lock:
            shard = self._open(collection).shard
            while True:
                request = ScrollRequest(
                    offset=offset,
                    limit=_SCROLL_PAGE,
                    filter=query_filter,
                    with_payload=["chunk_id", "chunk_index"],
                    with_vector=False,
                )
                records, offset = shard.scroll(request)
                payloads += [record.payload or {} for record in records]
                if offset is None:
                    return ordered_chunk_ids(payloads)

    def collections(self) -> list[str]:
        """See :meth:`VectorStore.collections`: the shard directories under ``path`` (and any
        opened in this process)."""
        with self._lock:
            on_disk = {entry.parent.name for entry in self._root.glob(f"*/{_EDGE_CONFIG_FILE}")}
            return sorted(on_disk | self._collections.keys())

    def optimize(self, collection: str) -> bool:
        """Build HNSW indexes and merge segments of ``collection``; blocks until done.

        Edge never optimises on its own, so call this after bulk indexing or when idle;
        searches stay correct without it, only slower (brute force) on large collections.
        Every other call on this store waits meanwhile. Returns whether anything changed.
        Raises :class:`UnknownCollectionError` for an unknown collection.
        """
        with self._lock:
            return self._open(collection).shard.optimize()

    def close(self) -> None:
        """Flush every open shard to disk and close it. Idempotent; later calls raise
        ``RuntimeError``."""
        with self._lock:
            for opened in self._collections.values():
                opened.shard.flush()
                opened.shard.close()
            self._collections.clear()
            self._closed = True

    def _count(self, collection: str, conditions: Conditions) -> int:
        with self._lock:
            return self._open(collection).shard.count(CountRequest(exact=True, filter=_filter(conditions)))

    def _delete(self, collection: str, conditions: Conditions) -> int:
        points = _filter(conditions)
        with self._lock:
            shard = self._open(collection).shard
            matched = shard.count(CountRequest(exact=True, filter=points))
            if matched:
                shard.update(UpdateOperation.delete_points_by_filter(points))
        return matched

    # The helpers below expect the lock to be held.

    def _exists(self, collection: str) -> bool:
        return collection in self._collections or (self._root / collection / _EDGE_CONFIG_FILE).is_file()

    def _open(self, collection: str) -> _Collection:
        if self._closed:
            raise RuntimeError("the store is closed")
        opened = self._collections.get(validate_collection_name(collection))
        if opened is None:
            if not self._exists(collection):
                raise UnknownCollectionError(f"collection {collection!r} does not exist under {self._root}")
            directory = self._root / collection
            dimension = _stored_dimension(directory)  # before load, so a refusal leaks no shard
            opened = _Collection(EdgeShard.load(str(directory)), dimension)
            self._collections[collection] = opened
        return opened

    def _create(self, collection: str, dimension: int) -> _Collection:
        if self._closed:
            raise RuntimeError("the store is closed")
        config = EdgeConfig(
            vectors={DENSE_VECTOR: EdgeVectorParams(size=dimension, distance=Distance.Cosine)},
            sparse_vectors={SPARSE_VECTOR: EdgeSparseVectorParams(modifier=Modifier.Idf)},
        )
        opened = _Collection(EdgeShard.create(str(self._root / collection), config), dimension)
        self._collections[collection] = opened
        return opened


def _stored_dimension(directory: Path) -> int:
    """Dense dimension of the shard in ``directory``, from the config Edge persisted there.

    Raises ``ValueError`` if the shard lacks the ``dense`` or ``bm25`` vector, i.e. was
    not created by :class:`EdgeStore`.
    """
    config = json.loads((directory / _EDGE_CONFIG_FILE).read_text())
    dense = config.get("vectors", {}).get(DENSE_VECTOR)
    if dense is None or SPARSE_VECTOR not in config.get("sparse_vectors", {}):
        raise ValueError(
            f"shard {directory} lacks the {DENSE_VECTOR!r} or {SPARSE_VECTOR!r} vector: it was not created by EdgeStore"
        )
    return int(dense["size"])


def _sparse(terms: SparseTerms) -> SparseVector:
    return SparseVector(list(terms.indices), list(terms.values))


def _match(match: FieldMatch) -> FieldCondition:
    if len(match.values) == 1:
        return FieldCondition(key=match.key, match=MatchValue(match.values[0]))
    return FieldCondition(key=match.key, match=MatchAny(list(match.values)))


def _filter(conditions: Conditions) -> Filter:
    return Filter(
        must=[_match(m) for m in conditions.must] or None,
        must_not=[_match(m) for m in conditions.must_not] or None,
    )


def _query_request(plan: SearchPlan) -> QueryRequest:
    """The request of a one-retriever plan (dense or sparse: hybrid is fused by the store)."""
    query = (
        Query.Nearest(plan.dense, using=DENSE_VECTOR)
        if plan.dense is not None
        else Query.Nearest(_sparse(plan.sparse), using=SPARSE_VECTOR)  # type: ignore[arg-type]
    )
    return QueryRequest(
        limit=plan.limit,
        query=query,
        filter=_filter(plan.conditions),
        score_threshold=plan.score_threshold,
        with_payload=True,
    )
