"""Qdrant server adapter, through ``qdrant-client``.

This is the production store (``QDRANT_URL``). Tests run it on qdrant-client's local
mode (``path=`` or ``location=":memory:"``), which is maintained to behave like the
server but ignores payload indexes and is far slower: it stands in for the server, it is
not a store to deploy.

BM25 vectors are computed client-side by :mod:`ragops_retrieval.sparse` rather than by
the server's inference or fastembed, so this adapter and Qdrant Edge write identical
sparse vectors and no model is downloaded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse

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

# Points per upsert request: keeps a request of 384-d vectors and ~2 KB texts near 1.5 MB,
# far below the server's 32 MB default limit.
_UPSERT_BATCH = 256
_HTTP_CONFLICT = 409
_SCROLL_PAGE = 1024  # points per scroll call when listing a document version's chunks


class QdrantClientStore(PlannedStore):
    """:class:`~ragops_retrieval.store.VectorStore` on a Qdrant server or qdrant-client local mode.

    Give exactly one of ``url`` (a server, with ``api_key`` if it requires one), ``path``
    (local mode on disk) or ``location`` (``":memory:"``); anything else raises
    ``ValueError``. ``metadata_index_keys`` are the metadata keys to index for filtering.
    ``timeout`` is the per-request timeout in seconds for a server.

    Every write waits for the server to apply it (``wait=True``), so searches see it when
    the call returns. The deletes count the matching points, then delete them: with
    concurrent writers to the same document the count can be off, never the deletion.
    Thread safety is qdrant-client's: its HTTP client may be shared between threads.
    """

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        path: str | Path | None = None,
        location: str | None = None,
        *,
        metadata_index_keys: Sequence[str] = (),
        timeout: int | None = None,
    ) -> None:
        if sum(target is not None for target in (url, path, location)) != 1:
            raise ValueError("give exactly one of url, path or location")
        self._client = QdrantClient(
            url=url,
            api_key=api_key,
            path=None if path is None else str(path),
            location=location,
            timeout=timeout,
        )
        self._index_fields = index_fields(metadata_index_keys)
        # Dimensions of collections seen so far, to validate vectors without a round trip.
        self._dimensions: dict[str, int] = {}

    def ensure_collection(self, collection: str, dimension: int) -> None:
        """See :meth:`VectorStore.ensure_collection`."""
        validate_collection_name(collection)
        validate_dimension(dimension)
        if not self._client.collection_exists(collection):
            try:
                self._client.create_collection(
                    collection,
                    vectors_config={DENSE_VECTOR: models.VectorParams(size=dimension, distance=models.Distance.COSINE)},
                    sparse_vectors_config={SPARSE_VECTOR: models.SparseVectorParams(modifier=models.Modifier.IDF)},
                )
            except UnexpectedResponse as error:
                # Another replica created it between the check and the create: fine, the
                # layout check below still applies.
                if error.status_code != _HTTP_CONFLICT:
                    raise
        info = self._client.get_collection(collection)
        existing = _dense_dimension(collection, info)
        if existing != dimension:
            raise ValueError(f"collection {collection!r} exists with dimension {existing}, not {dimension}")
        for name in self._index_fields:
            if name not in info.payload_schema:
                self._client.create_payload_index(collection, name, models.PayloadSchemaType.KEYWORD, wait=True)
        untenanted = models.Filter(must=[models.IsEmptyCondition(is_empty=models.PayloadField(key=TENANT_FIELD))])
        if self._client.count(collection, count_filter=untenanted, exact=True).count:
            self._client.set_payload(collection, {TENANT_FIELD: DEFAULT_TENANT}, untenanted, wait=True)
        self._dimensions[collection] = dimension

    def upsert(self, collection: str, points: Sequence[ChunkPoint], model_version: str) -> int:
        """See :meth:`VectorStore.upsert`."""
        prepared = prepare_points(points, model_version, self._dimension(collection))
        structs = [
            models.PointStruct(
                id=p.id,
                vector={DENSE_VECTOR: p.dense, SPARSE_VECTOR: _sparse(p.sparse)},
                payload=p.payload,
            )
            for p in prepared
        ]
        for start in range(0, len(structs), _UPSERT_BATCH):
            self._client.upsert(collection, structs[start : start + _UPSERT_BATCH], wait=True)
        return len(structs)

    def relabel(self, collection: str, points: Sequence[ChunkPoint], model_version: str) -> list[str]:
        """See :meth:`VectorStore.relabel`."""
        self._dimension(collection)  # raises UnknownCollectionError
        wanted = payloads_by_point_id(points, model_version)
        records = self._client.retrieve(collection, list(wanted), with_payload=False, with_vectors=False)
        found = {str(record.id) for record in records}
        missing = [chunk for point, (chunk, _) in wanted.items() if point not in found]
        if not missing and wanted:
            operations: list[models.UpdateOperation] = [
                models.SetPayloadOperation(set_payload=models.SetPayload(payload=payload, points=[point]))
                for point, (_, payload) in wanted.items()
            ]
            self._client.batch_update_points(collection, operations, wait=True)
        return missing

    def _query(self, collection: str, plan: SearchPlan) -> list[tuple[Mapping[str, Any], float]]:
        return [(point.payload or {}, point.score) for point in _run_query(self._client, collection, plan)]

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
        self._dimension(collection)  # raises UnknownCollectionError
        query_filter = (
            None
            if document_id is None
            else _filter(
                document_conditions(document_id, tenant=tenant, version=document_version, embedded_for=embedded_for)
            )
        )
        return self._client.count(collection, count_filter=query_filter, exact=True).count

    def chunk_ids(
        self, collection: str, document_id: str, document_version: str, *, tenant: str = DEFAULT_TENANT
    ) -> list[str]:
        """See :meth:`VectorStore.chunk_ids`."""
        self._dimension(collection)  # raises UnknownCollectionError
        query_filter = _filter(document_conditions(document_id, tenant=tenant, version=document_version))
        payloads: list[Mapping[str, Any]] = []
        offset: models.ExtendedPointId | None = None
        while True:
            records, offset = self._client.scroll(
                collection,
                scroll_filter=query_filter,
                limit=_SCROLL_PAGE,
                offset=offset,
                with_payload=["chunk_id", "chunk_index"],
                with_vectors=False,
            )
            payloads += [record.payload or {} for record in records]
            if offset is None:
                return ordered_chunk_ids(payloads)

    def collections(self) -> list[str]:
        """See :meth:`VectorStore.collections`."""
        return sorted(found.name for found in self._client.get_collections().collections)

    def close(self) -> None:
        """Close the client's connections (local mode: release its files)."""
        self._client.close()

    def _count(self, collection: str, conditions: Conditions) -> int:
        self._dimension(collection)  # raises UnknownCollectionError
        return self._client.count(collection, count_filter=_filter(conditions), exact=True).count

    def _delete(self, collection: str, conditions: Conditions) -> int:
        self._dimension(collection)  # raises UnknownCollectionError
        points = _filter(conditions)
        matched = self._client.count(collection, count_filter=points, exact=True).count
        if matched:
            self._client.delete(collection, models.FilterSelector(filter=points), wait=True)
        return matched

    def _dimension(self, collection: str) -> int:
        """Dense dimension of ``collection``; raises :class:`UnknownCollectionError`."""
        dimension = self._dimensions.get(validate_collection_name(collection))
        if dimension is None:
            if not self._client.collection_exists(collection):
                raise UnknownCollectionError(f"collection {collection!r} does not exist")
            dimension = _dense_dimension(collection, self._client.get_collection(collection))
            self._dimensions[collection] = dimension
        return dimension


def _dense_dimension(collection: str, info: models.CollectionInfo) -> int:
    """Dense size of an existing collection; ``ValueError`` unless it has our two vectors."""
    params = info.config.params
    vectors = params.vectors if isinstance(params.vectors, dict) else {}
    if DENSE_VECTOR not in vectors or SPARSE_VECTOR not in (params.sparse_vectors or {}):
        raise ValueError(
            f"collection {collection!r} lacks the {DENSE_VECTOR!r} or {SPARSE_VECTOR!r} vector:"
            " it was not created by this store"
        )
    return vectors[DENSE_VECTOR].size


def _sparse(terms: SparseTerms) -> models.SparseVector:
    return models.SparseVector(indices=list(terms.indices), values=list(terms.values))


def _match(match: FieldMatch) -> models.FieldCondition:
    if len(match.values) == 1:
        return models.FieldCondition(key=match.key, match=models.MatchValue(value=match.values[0]))
    return models.FieldCondition(key=match.key, match=models.MatchAny(any=list(match.values)))


def _filter(conditions: Conditions) -> models.Filter:
    return models.Filter(
        must=[_match(m) for m in conditions.must] or None,
        must_not=[_match(m) for m in conditions.must_not] or None,
    )


def _run_query(client: QdrantClient, collection: str, plan: SearchPlan) -> list[models.ScoredPoint]:
    points = _filter(plan.conditions)
    sparse = None if plan.sparse is None else _sparse(plan.sparse)
    return client.query_points(
        collection,
        query=plan.dense if plan.dense is not None else sparse,
        using=DENSE_VECTOR if plan.dense is not None else SPARSE_VECTOR,
        query_filter=points,
        score_threshold=plan.score_threshold,
        limit=plan.limit,
        with_payload=True,
    ).points
