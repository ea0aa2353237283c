"""``reindex``: rebuild the index by replay. The latest retained ``DocumentChunked`` of every
document neither deleted nor erased (its subject) since (each of its parts, when it came in
parts) is published again with an ``index_build`` target, so the embedding service embeds it
(with the build's model version) and the indexer writes a new collection beside the live one;
when every document is indexed, the build is promoted (the retrieval service switches to it in
one step). The fine-tune runs it too, for its candidate model."""

from ragops_schemas import (
    DocumentChunked,
    DocumentDeleted,
    ErasureRequested,
    RetrainingRequested,
    VersionPromoted,
    VersionRegistered,
)
from ragops_schemas.events import IndexBuild
from ragops_schemas.ids import index_build_collection, index_build_id, index_name
from ragops_trainer.context import ActionRejected, Arrivals, TrainerContext
from ragops_trainer.pairs import latest_parts


async def run(
    ctx: TrainerContext, request: RetrainingRequested, *, embedding_version: str | None = None
) -> VersionPromoted:
    """Rebuild the index of ``embedding_version`` (default: the request's target, else the
    live model) by replay and promote it. Returns the promotion."""
    name = ctx.settings.embedding_model_name
    target = request.target
    if embedding_version is None and target is not None:
        if target.kind != "embedding_model" or ctx.registry.get("embedding_model", target.name, target.version) is None:
            raise ActionRejected(f"unknown version {target.kind}/{target.name}@{target.version}")
        embedding_version = target.version
    version = embedding_version or ctx.live_model().ref.version
    model = ctx.registry.get("embedding_model", name, version)
    documents = latest_parts(
        await ctx.read([DocumentChunked, DocumentDeleted, ErasureRequested], "chunks"), ctx.verifier
    )
    if not documents:
        raise ActionRejected("nothing to re-index: no retained DocumentChunked events")
    alias = index_name(ctx.settings.corpus, name, version)
    build_id = index_build_id(request.event_id)
    # The files travel with the replay: the embedding service need not have read the
    # registration yet (it checks that the files are that version).
    build = IndexBuild(
        build_id=build_id,
        collection=index_build_collection(alias, build_id),
        embedding_version=version,
        embedding_uri=model.uri if model else None,
    )
    if request.action == "reindex":
        await ctx.started(request, embedding_version=version, documents=len(documents), build=build_id)
    await ctx.publish(
        request.caused(
            VersionRegistered,
            ctx.producer,
            scope=f"index:{build_id}",
            kind="index",
            name=alias,
            version=build_id,
            uri=build.collection,
            parent_version=version,
            request_event_id=str(request.event_id),
            metadata={"embedding_version": version, "documents": str(len(documents))},
        )
    )
    replayed: dict[tuple[str, str], str] = {}  # (tenant, document id) -> version replayed
    async with Arrivals(ctx.settings.kafka, build_id) as arrivals:
        # Two passes at most: documents that changed while the first one ran are replayed again.
        for _ in range(2):
            pending = [key for key, parts in documents.items() if replayed.get(key) != parts[0].document_version]
            if not pending:
                break
            for key in pending:
                for part in documents[key]:
                    await ctx.publisher.publish(
                        part.caused(
                            DocumentChunked,
                            ctx.producer,
                            scope=build_id,
                            index_build=build,
                            **part.model_dump(
                                include={
                                    "document_id",
                                    "document_version",
                                    "title",
                                    "source",
                                    "metadata",
                                    "subject_id",
                                    "content_type",
                                    "chunker",
                                    "chunks",
                                    "part",
                                    "parts",
                                    "chunk_total",
                                }
                            ),
                        )
                    )
                replayed[key] = documents[key][0].document_version
                arrivals.done.pop(key, None)
            await arrivals.wait(set(pending), ctx.settings.build_timeout_s)
            documents = latest_parts(
                await ctx.read([DocumentChunked, DocumentDeleted, ErasureRequested], "chunks"), ctx.verifier
            )
    previous = ctx.registry.alias("index", alias)
    promotion = request.caused(
        VersionPromoted,
        ctx.producer,
        scope=f"index:{build_id}",
        kind="index",
        name=alias,
        version=build_id,
        uri=build.collection,
        previous_version=previous.ref.version if previous else None,
        reason=f"re-indexed {len(replayed)} documents by replay ({request.reason})",
        request_event_id=str(request.event_id),
        metrics={"documents": float(len(replayed))},
    )
    await ctx.publish(promotion)
    return promotion
