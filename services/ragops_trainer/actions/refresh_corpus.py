"""``refresh_corpus``: submit the documents of the configured sources (JSONL corpora) that are
new or changed since they were last submitted, wait until each is indexed (or rejected),
then register and promote the corpus version."""

from ragops_schemas import DocumentRedacted, DocumentRejected, RetrainingRequested, VersionPromoted, VersionRegistered
from ragops_schemas.ids import content_hash, corpus_version, resubmission_event_id
from ragops_shared.datasets import load_corpus
from ragops_trainer.context import ActionRejected, Arrivals, TrainerContext


async def run(ctx: TrainerContext, request: RetrainingRequested) -> None:
    if not ctx.settings.sources:
        raise ActionRejected("no corpus sources configured (RAGOPS_TRAINER_SOURCES)")
    documents = [document for source in ctx.settings.sources for document in load_corpus(source)]
    tenant = ctx.settings.platform.tenant  # the sources' documents are this tenant's
    submitted: dict[str, str] = {}
    # The redacted history (the intake topic keeps a day), by the hash of each content as it was
    # submitted: what the sources hold.
    for event in await ctx.read([DocumentRedacted], "submitted"):
        # Another tenant's document of the same id is another document.
        if isinstance(event, DocumentRedacted) and event.tenant == tenant:
            submitted[event.document_id] = event.submitted_content_hash
    new = [doc for doc in documents if submitted.get(doc.id) != content_hash(doc.text)]
    if not new:
        raise ActionRejected(f"the sources hold nothing new ({len(documents)} documents, all submitted already)")
    await ctx.started(request, sources=",".join(map(str, ctx.settings.sources)), new_documents=len(new))
    async with Arrivals(ctx.settings.kafka, None) as arrivals:
        for document in new:
            event = document.submitted(ctx.producer, tenant)
            await ctx.publisher.publish(
                event.model_copy(
                    update={
                        "event_id": resubmission_event_id(request.event_id, document.id, content_hash(document.text)),
                        "trace_id": request.trace_id,
                    }
                )
            )
        await arrivals.wait({(tenant, doc.id) for doc in new}, ctx.settings.build_timeout_s)
    rejected = sum(isinstance(arrivals.done[tenant, doc.id], DocumentRejected) for doc in new)
    submitted |= {doc.id: content_hash(doc.text) for doc in new}
    version = corpus_version(submitted)
    previous = ctx.registry.alias("corpus", ctx.settings.corpus)
    await ctx.publish(
        request.caused(
            VersionRegistered,
            ctx.producer,
            scope="corpus",
            kind="corpus",
            name=ctx.settings.corpus,
            version=version,
            request_event_id=str(request.event_id),
            metadata={"documents": str(len(submitted)), "added": str(len(new))},
        )
    )
    await ctx.publish(
        request.caused(
            VersionPromoted,
            ctx.producer,
            scope="corpus",
            kind="corpus",
            name=ctx.settings.corpus,
            version=version,
            previous_version=previous.ref.version if previous else None,
            request_event_id=str(request.event_id),
            reason=f"{len(new) - rejected} new or changed documents indexed from the sources ({request.reason})",
            metrics={
                "added": float(len(new) - rejected),
                "rejected": float(rejected),
                "documents": float(len(submitted)),
            },
        )
    )
