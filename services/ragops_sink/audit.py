"""Audit entries from Kafka records: the sink's audit subscriber (its own consumer group)
reads :data:`AUDITED_TOPICS` and appends one entry per audited event to the hash-chained
``audit_log`` (:mod:`ragops_analytics.audit`).

What is audited (:func:`audit_entry`): every ``AuditRecorded`` as it says (refused calls,
admin actions); every ``AnswerGenerated`` (``answer.generated`` by the generation service,
target the request id, ``after`` the model, prompt and retrieval it used: the full lineage is
the source event, ``events`` row ``event_id = audit_id``); every version registry event
(``registry.version_*``) and change (``change.*``), its signature checked against the
platform's trust list as every reader does (:meth:`ragops_shared.signing.Verifier.signer`):
the outcome of a version event is ``signed`` only when it verifies, else the refusal's code
(``unsigned``, ``unknown_key``, ``bad_signature``, ``signer_not_allowed``, ``future_dated``),
and so is that of a change that does not verify (readers dead-letter those, and apply nothing);
``after`` names the key it claims (``signed_by``) and the owner whose trusted key made it
(``signer``, None when it does not verify): who vouched for a change a service asked for in a
person's name; every ``RetrainingRequested``; every price list (``cost.prices_published``, target
its ``price_list_id``, outcome ``signed`` or the refusal's code: the cost views price with signed
lists only). A record that is not a valid event is not audited here: the sink's
main subscriber stores it as ``unparsable`` (and this one logs it).
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pyarrow as pa
import structlog
from aiokafka import ConsumerRecord

from ragops_analytics import audit, queries
from ragops_analytics.audit import AuditEntry, millis
from ragops_analytics.store import AnalyticsStore
from ragops_schemas import AnswerGenerated, Event, RetrainingRequested, SignedEvent
from ragops_schemas.audit import MAX_STATE_BYTES, MAX_TARGET_CHARS, AuditRecorded
from ragops_schemas.changes import ChangeApproved, ChangeRejected, ChangeRequested
from ragops_schemas.cost import PricesPublished
from ragops_schemas.ids import canonical_json, refused_audit_id
from ragops_schemas.lifecycle import VersionPromoted, VersionRegistered, VersionRejected, VersionRetired
from ragops_schemas.topics import Topic
from ragops_shared.logs import error_summary
from ragops_shared.signing import ControlEventRefused, Verifier
from ragops_sink.rows import event_of

log = structlog.get_logger(__name__)

AUDITED_TOPICS: tuple[Topic, ...] = (
    Topic.AUDIT_RECORDED,
    Topic.ANSWER_GENERATED,
    Topic.VERSION_REGISTERED,
    Topic.VERSION_PROMOTED,
    Topic.VERSION_REJECTED,
    Topic.VERSION_RETIRED,
    Topic.RETRAINING_REQUESTED,
    Topic.CHANGE_REQUESTED,
    Topic.CHANGE_APPROVED,
    Topic.CHANGE_REJECTED,
    Topic.PRICES_PUBLISHED,
)
"""The topics whose events the audit log records."""


def _state(value: dict[str, Any] | None) -> str:
    """A state as stored: canonical JSON text, '' for none; one too large for an entry is
    replaced by a note (its source event keeps it whole)."""
    if value is None:
        return ""
    text = canonical_json(value)
    if len(text.encode()) > MAX_STATE_BYTES:
        return canonical_json({"omitted": f"more than {MAX_STATE_BYTES} bytes: see the source event"})
    return text


def _signature(event: SignedEvent, verifier: Verifier) -> tuple[str | None, dict[str, Any]]:
    """(the code of the verifier's refusal, None when the signature verifies; the signature's
    part of ``after``: the key id it claims and the owner who made it, None unless verified)."""
    claimed = event.signature.key_id if event.signature else None
    try:
        owner = verifier.signer(event)
    except ControlEventRefused as refused:
        return refused.code, {"signed_by": claimed, "signer": None}
    return None, {"signed_by": claimed, "signer": owner}


def _what(
    event: Event, verifier: Verifier
) -> tuple[str, str, str, dict[str, Any] | None, dict[str, Any] | None, str] | None:
    """(action, target, outcome, before, after, reason) of an audited event; None otherwise."""
    if isinstance(event, AnswerGenerated):
        lineage, generation = event.lineage, event.generation
        after: dict[str, Any] = {
            "model": lineage.generation_model,
            "model_version": lineage.generation_model_version,
            "prompt": {"name": lineage.prompt.name, "version": lineage.prompt.version, "sha256": lineage.prompt.sha256},
            "embedding": {"name": lineage.embedding.name, "version": lineage.embedding.version},
            "collection": lineage.collection,
            "retrieval_mode": lineage.retrieval_mode,
            "variant": lineage.variant,
            "chunks": len(lineage.chunk_ids),
            "documents": len(lineage.document_versions),
            "input_tokens": generation.usage.input_tokens,
            "output_tokens": generation.usage.output_tokens,
        }
        outcome = "answered" if event.answer else "no_answer"
        return "answer.generated", event.request_id, outcome, None, after, ",".join(generation.finish_reasons)
    if isinstance(event, (VersionRegistered, VersionPromoted, VersionRejected, VersionRetired)):
        target = f"{event.kind}/{event.name}@{event.version}"
        refusal, signed = _signature(event, verifier)
        outcome = refusal or "signed"
        action = event.event_type  # registry.version_<verb>
        if isinstance(event, VersionRegistered):
            after = {"uri": event.uri, "parent_version": event.parent_version, "training_data": event.training_data}
            return action, target, outcome, None, {**after, **signed}, ""
        if isinstance(event, VersionPromoted):
            before = {"alias": event.alias, "version": event.previous_version}
            after = {"alias": event.alias, "version": event.version, "uri": event.uri, "metrics": event.metrics}
            return action, target, outcome, before, {**after, **signed}, event.reason
        if isinstance(event, VersionRejected):
            return action, target, outcome, None, {"metrics": event.metrics, **signed}, event.reason
        return action, target, outcome, None, signed, event.reason
    if isinstance(event, RetrainingRequested):
        target = event.action if event.target is None else f"{event.action} {event.target.kind}/{event.target.name}"
        after = {
            "action": event.action,
            "rule": event.rule,
            "evidence": len(event.evidence),
            "requested_by": event.requested_by,
        }
        return "retraining.requested", target, "requested", None, after, event.reason
    if isinstance(event, ChangeRequested):
        refusal, signed = _signature(event, verifier)
        after = {"change": event.change.model_dump(mode="json"), "owner": event.requested_by.accountable, **signed}
        return event.event_type, event.change_id, refusal or "requested", None, after, event.reason
    if isinstance(event, (ChangeApproved, ChangeRejected)):
        refusal, signed = _signature(event, verifier)
        outcome = refusal or ("approved" if isinstance(event, ChangeApproved) else "rejected")
        after = {"owner": event.decided_by.accountable, **signed}
        return event.event_type, event.change_id, outcome, None, after, event.reason
    if isinstance(event, PricesPublished):
        # Only a list whose outcome is 'signed' prices anything (the cost views read this log).
        refusal, signed = _signature(event, verifier)
        after = {"effective_from": event.effective_from.isoformat(), "prices": len(event.prices), **signed}
        return event.event_type, event.price_list_id, refusal or "signed", None, after, event.reason
    return None


def audit_entry(event: Event, topic: str, partition: int, offset: int, verifier: Verifier) -> AuditEntry | None:
    """The audit entry of ``event``, read at ``offset`` of ``topic``'s ``partition``; None
    for an event that is not audited. Its ``audit_id`` is the event's id (so a redelivery is
    recognised; a signed event that does not verify: :func:`~ragops_schemas.ids.refused_audit_id`),
    its tenant the envelope's, its time ``occurred_at``; ``verifier`` checks
    the signature of a signed event (see the module's docstring)."""
    if isinstance(event, AuditRecorded):
        actor = event.actor
        what: tuple[str, str, str, dict[str, Any] | None, dict[str, Any] | None, str] | None = (
            event.action, event.target, event.outcome, event.before, event.after, event.reason,
        )  # fmt: skip
        kind, actor_id, name = actor.kind, actor.id, actor.name
    elif isinstance(event, (ChangeRequested, ChangeApproved, ChangeRejected)):
        # A change's actor is who asked for or decided it, as the gateway authenticated them.
        who = event.requested_by if isinstance(event, ChangeRequested) else event.decided_by
        what, (kind, actor_id, name) = _what(event, verifier), (who.kind, who.subject, who.name)
    elif isinstance(event, PricesPublished):
        who = event.published_by
        what, (kind, actor_id, name) = _what(event, verifier), (who.kind, who.subject, who.name)
    else:
        what = _what(event, verifier)
        # A platform event's actor is the service that produced it.
        kind, actor_id, name = "service", event.producer.name, f"{event.producer.name} {event.producer.version}"
    if what is None:
        return None
    action, target, outcome, before, after, reason = what
    audit_id = event.event_id
    # ``signer`` is None exactly when a signed event's signature did not verify (_signature).
    if isinstance(event, SignedEvent) and after is not None and after.get("signer", "") is None:
        audit_id = refused_audit_id(event.event_id, event.signed_bytes())
    return AuditEntry(
        audit_id=audit_id,
        tenant=event.tenant,
        occurred_at_ms=millis(event.occurred_at),
        actor_kind=kind,
        actor_id=actor_id,
        actor_name=name,
        action=action,
        target=target[:MAX_TARGET_CHARS],
        outcome=outcome,
        before=_state(before),
        after=_state(after),
        reason=reason,
        source_topic=topic,
        source_partition=partition,
        source_offset=offset,
    )


def audit_entries(records: Sequence[ConsumerRecord], verifier: Verifier) -> list[AuditEntry]:
    """The entries of a batch of records, in (chain, offset) order; ``verifier`` checks the
    signed events'. A record that is not a valid event of its topic is logged and left out
    (the main subscriber stores it as ``unparsable``)."""
    found = []
    for record in records:
        try:
            event = event_of(record.topic, record.value or b"")
        except (ValueError, TypeError) as error:
            log.warning(
                "audit_record_unparsable", topic=record.topic, partition=record.partition, offset=record.offset,
                error=error_summary(error),
            )  # fmt: skip
            continue
        entry = audit_entry(event, record.topic, record.partition, record.offset, verifier)
        if entry is not None:
            found.append(entry)
    return sorted(found, key=lambda entry: (entry.chain, entry.source_offset))


def signed_price_lists(records: Sequence[ConsumerRecord], verifier: Verifier) -> list[tuple[PricesPublished, str]]:
    """(list, its record's value as text) of each price list among ``records`` whose signature
    ``verifier`` verifies. The others are left out: :func:`audit_entries` audits them as refused
    (or logs a record that is not a valid event)."""
    found = []
    for record in records:
        if record.topic != Topic.PRICES_PUBLISHED.value:
            continue
        try:
            event = event_of(record.topic, record.value or b"")
            if isinstance(event, PricesPublished):
                verifier.signer(event)
                found.append((event, (record.value or b"").decode()))
        except (ValueError, TypeError, ControlEventRefused):
            continue
    return found


def store_audited(
    store: AnalyticsStore,
    entries: Sequence[AuditEntry],
    price_lists: Sequence[tuple[PricesPublished, str]],
    recorded_at: datetime,
) -> None:
    """Write what the audit subscriber found in a batch: the signed ``price_lists``
    (:func:`signed_price_lists`) to ``signed_price_lists``, then ``entries`` to the audit log
    (:func:`ragops_analytics.audit.append`). Lists first: if the append fails, the same call
    again writes the same rows (keyed on the event id) and appends what is missing.

    Raises:
        StoreUnavailable, DataRejected: from the store.
    """
    rows = {
        "event_id": [str(event.event_id) for event, _ in price_lists],
        "occurred_at": [event.occurred_at for event, _ in price_lists],
        "payload": [payload for _, payload in price_lists],
        "recorded_at": [recorded_at] * len(price_lists),
    }
    queries.insert_signed_price_lists(store, pa.table(rows, schema=queries.SIGNED_PRICE_LISTS_SCHEMA))
    audit.append(store, entries, recorded_at)
