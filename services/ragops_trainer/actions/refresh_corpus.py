"""``refresh_corpus``: submit the documents of the configured sources (JSONL corpora) that are
new or changed since they were last submitted (never one deleted since), wait until each is
indexed (or rejected), then register and promote the corpus version."""

from collections.abc import Sequence

from ragops_schemas import (
    DocumentDeleted,
    DocumentRedacted,
    DocumentRejected,
    Event,
    RetrainingRequested,
    VersionPromoted,
    VersionRegistered,
)
from ragops_schemas.ids import content_hash, corpus_version, resubmission_event_id
from ragops_shared.datasets import CorpusDocument, load_corpus
from ragops_shared.deletions import deleted_documents
from ragops_trainer.context import ActionRejected, Arrivals, TrainerContext


def to_submit(
    documents: Sequence[CorpusDocument], history: Sequence[Event], tenant: str
) -> tuple[list[CorpusDocument], dict[str, str]]:
    """The source ``documents`` to submit for ``tenant`` (new, or changed since their last
    submission; never one whose latest fact in ``history`` is a deletion: the sources do not
    bring a deleted document back), and the corpus so far (document id -> content hash of its
    latest submission, deleted documents left out). ``history``: the retained submissions and
    deletions, any tenant's (another tenant's document of the same id is another document)."""
    facts = [e for e in history if isinstance(e, DocumentRedacted | DocumentDeleted) and e.tenant == tenant]
    deleted = {document_id for _, document_id in deleted_documents(facts)}
    submitted = {
        e.document_id: e.submitted_content_hash
        for e in facts
        if isinstance(e, DocumentRedacted) and e.document_id not in deleted
    }
    new = [doc for doc in documents if doc.id not in deleted and submitted.get(doc.id) != content_hash(doc.text)]
    return new, submitted


async def run(ctx: TrainerContext, request: RetrainingRequested) -> None:
    if not ctx.settings.sources:
        raise ActionRejected("no corpus sources configured (RAGOPS_TRAINER_SOURCES)")
    documents = [document for source in ctx.settings.sources for document in load_corpus(source)]
    tenant = ctx.settings.platform.tenant  # the sources' documents are this tenant's
    # The redacted history (the intake topic keeps a day), by the hash of each content as it was
    # submitted: what the sources hold.
    new, submitted = to_submit(documents, await ctx.read([DocumentRedacted, DocumentDeleted], "submitted"), tenant)
    if not new:
        raise ActionRejected(
            f"the sources hold nothing new ({len(documents)} documents: submitted already or deleted since)"
        )
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
