"""What the audit log records (ragops_sink.audit.audit_entry) and the AuditRecorded of a refused
call (ragops_shared.audit.refused_call): plain functions, no Kafka, no ClickHouse."""

import json
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from ragops_schemas import AnswerGenerated, QuerySubmitted, RetrainingRequested, Signature, Topic, VersionPromoted
from ragops_schemas.audit import MAX_STATE_BYTES, AuditRecorded
from ragops_schemas.changes import ChangeApproved, ChangeRejected, ChangeRequested
from ragops_shared.access import Refusal
from ragops_shared.audit import refused_call
from ragops_shared.identity import Principal, Role
from ragops_shared.signing import DEFAULT_ALLOWED, Signer, TrustedKey, TrustStore, Verifier
from ragops_sink.audit import AUDITED_TOPICS, audit_entry
from tests.helpers import PRODUCER, example

SIGNERS = {owner: Signer(Ed25519PrivateKey.generate()) for owner in ("trainer", "embedding", "gateway")}
VERIFIER = Verifier(
    TrustStore({s.key_id: TrustedKey(owner, s.public_key) for owner, s in SIGNERS.items()}, DEFAULT_ALLOWED),
    max_clock_skew_s=60,
    model_dirs=[],
)
KEY = Principal(
    subject="key:3f9a0c1b2d4e5f60",
    tenant="acme",
    roles=frozenset({Role.PRODUCER}),
    kind="api_key",
    name="bot",
    owner="key:3f9a0c1b2d4e5f60",
)


def test_an_answer_is_audited_with_its_model_prompt_and_retrieval() -> None:
    answer = example(AnswerGenerated)
    entry = audit_entry(answer, Topic.ANSWER_GENERATED, 2, 41, VERIFIER)
    assert entry is not None
    assert (entry.audit_id, entry.tenant, entry.chain) == (
        answer.event_id,
        "default",
        "default/ragops.query.answer-generated.v1/2",
    )
    assert (entry.actor_kind, entry.actor_id) == ("service", "generation")
    assert (entry.action, entry.target, entry.outcome, entry.before) == (
        "answer.generated",
        answer.request_id,
        "answered",
        "",
    )
    after = json.loads(entry.after)
    assert after["model"] == answer.lineage.generation_model
    assert after["prompt"]["sha256"] == answer.lineage.prompt.sha256
    assert after["embedding"]["version"] == answer.lineage.embedding.version
    assert entry.after == json.dumps(after, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert "question" not in after  # the question and answer stay in the event, not in the audit trail


def test_a_promotion_is_audited_with_the_alias_before_and_after_and_its_signer() -> None:
    promotion = example(VersionPromoted)
    entry = audit_entry(promotion, Topic.VERSION_PROMOTED, 0, 7, VERIFIER)
    assert entry is not None and entry.action == "registry.version_promoted"
    assert entry.target == f"embedding_model/{promotion.name}@{promotion.version}"
    assert (entry.outcome, entry.reason) == ("unsigned", promotion.reason)
    assert json.loads(entry.before) == {"alias": "production", "version": promotion.previous_version}
    assert json.loads(entry.after)["version"] == promotion.version

    gateway = SIGNERS["gateway"]
    signed = audit_entry(gateway.sign(promotion), Topic.VERSION_PROMOTED, 0, 7, VERIFIER)
    assert signed is not None and signed.outcome == "signed"
    after = json.loads(signed.after)
    assert (after["signed_by"], after["signer"]) == (gateway.key_id, "gateway")


def _outcome_and_signer(event: VersionPromoted | ChangeRequested) -> tuple[str, str | None, str | None]:
    entry = audit_entry(event, event.TOPIC, 0, 0, VERIFIER)
    assert entry is not None
    after = json.loads(entry.after)
    return entry.outcome, after["signed_by"], after["signer"]


def test_a_signature_is_audited_as_signed_only_when_the_trust_list_verifies_it() -> None:
    """A key id in a signature is a claim: the entry records the verifier's refusal instead."""
    promotion = example(VersionPromoted)
    stranger = Signer(Ed25519PrivateKey.generate())
    stolen_id = Signature(
        key_id=SIGNERS["gateway"].key_id, value=Signer(Ed25519PrivateKey.generate()).sign(promotion).signature.value
    )  # type: ignore[union-attr]
    forged = promotion.model_copy(update={"signature": stolen_id})
    tampered = SIGNERS["gateway"].sign(promotion).model_copy(update={"version": "v999"})
    future = promotion.model_copy(update={"occurred_at": promotion.occurred_at + timedelta(days=365 * 100)})
    gateway = SIGNERS["gateway"].key_id
    assert _outcome_and_signer(promotion) == ("unsigned", None, None)
    assert _outcome_and_signer(stranger.sign(promotion)) == ("unknown_key", stranger.key_id, None)
    assert _outcome_and_signer(forged) == ("bad_signature", gateway, None)
    assert _outcome_and_signer(tampered) == ("bad_signature", gateway, None)
    embedding = SIGNERS["embedding"]
    assert _outcome_and_signer(embedding.sign(promotion)) == ("signer_not_allowed", embedding.key_id, None)
    assert _outcome_and_signer(SIGNERS["gateway"].sign(future)) == ("future_dated", gateway, None)
    assert _outcome_and_signer(SIGNERS["gateway"].sign(promotion)) == ("signed", gateway, "gateway")


def test_a_change_names_who_vouched_for_it_and_one_that_does_not_verify_is_not_requested() -> None:
    """The trainer may sign change.requested: an entry naming a person as the requester also
    names the trainer's key as the one that vouched for it."""
    change = example(ChangeRequested)
    assert change.requested_by.kind == "person"
    trainer = SIGNERS["trainer"]
    assert _outcome_and_signer(trainer.sign(change)) == ("requested", trainer.key_id, "trainer")
    assert _outcome_and_signer(change.model_copy(update={"signature": None})) == ("unsigned", None, None)
    decision = example(ChangeApproved)
    entry = audit_entry(trainer.sign(decision), decision.TOPIC, 0, 0, VERIFIER)
    assert entry is not None and entry.outcome == "signer_not_allowed"  # only the gateway decides


def test_a_retraining_request_is_audited() -> None:
    request = example(RetrainingRequested)
    entry = audit_entry(request, Topic.RETRAINING_REQUESTED, 1, 0, VERIFIER)
    assert entry is not None
    assert (entry.action, entry.actor_id, entry.outcome, entry.reason) == (
        "retraining.requested",
        "monitor",
        "requested",
        request.reason,
    )


@pytest.mark.parametrize("kind", [ChangeRequested, ChangeApproved, ChangeRejected])
def test_a_change_is_audited_with_the_person_who_asked_for_or_decided_it(kind: type) -> None:
    change = SIGNERS["gateway"].sign(example(kind))
    who = change.requested_by if kind is ChangeRequested else change.decided_by
    entry = audit_entry(change, kind.TOPIC, 0, 7, VERIFIER)
    assert entry is not None
    assert (entry.action, entry.target, entry.reason) == (change.event_type, change.change_id, change.reason)
    assert (entry.actor_kind, entry.actor_id, entry.actor_name) == (who.kind, who.subject, who.name)
    assert entry.outcome == {ChangeRequested: "requested", ChangeApproved: "approved", ChangeRejected: "rejected"}[kind]
    assert json.loads(entry.after)["owner"] == who.accountable, "four eyes are two owners: the record shows them"
    if kind is ChangeRequested:
        assert json.loads(entry.after)["change"] == change.change.model_dump(mode="json")


def test_an_audit_event_is_recorded_as_it_says() -> None:
    recorded = example(AuditRecorded)
    entry = audit_entry(recorded, Topic.AUDIT_RECORDED, 0, 3, VERIFIER)
    assert entry is not None
    assert (entry.tenant, entry.actor_kind, entry.actor_id, entry.actor_name) == (
        "acme",
        "api_key",
        "key:3f9a0c1b2d4e5f60",
        "support-bot",
    )
    assert (entry.action, entry.target, entry.outcome, entry.reason) == (
        recorded.action,
        recorded.target,
        recorded.outcome,
        recorded.reason,
    )


def test_other_events_are_not_audited_and_audited_topics_are_read() -> None:
    assert audit_entry(example(QuerySubmitted), Topic.QUERY_SUBMITTED, 0, 0, VERIFIER) is None
    assert {AnswerGenerated.TOPIC, AuditRecorded.TOPIC, VersionPromoted.TOPIC} <= set(AUDITED_TOPICS)


def test_a_refused_call_names_the_principal_and_its_tenant() -> None:
    refused = refused_call(
        Refusal(403, "POST", "/v1/retrain", "key:3f9a0c1b2d4e5f60 lacks a role", KEY), PRODUCER, tenant="default"
    )
    assert (refused.tenant, refused.key) == ("acme", b"acme")
    assert (refused.actor.kind, refused.actor.id, refused.actor.name) == ("api_key", KEY.subject, "bot")
    assert (refused.action, refused.target, refused.outcome) == ("auth.refused", "POST /v1/retrain", "refused")
    assert refused.reason == "403: key:3f9a0c1b2d4e5f60 lacks a role"


def test_an_anonymous_refusal_is_in_the_services_tenant() -> None:
    refused = refused_call(Refusal(401, "GET", "/v1/documents", "no credential", None), PRODUCER, tenant="default")
    assert (refused.tenant, refused.actor.kind, refused.actor.id) == ("default", "anonymous", "anonymous")
    assert refused.reason.startswith("401: ")
    assert AuditRecorded.model_validate_json(refused.model_dump_json()) == refused


def test_audit_events_are_bounded() -> None:
    fields = {"producer": PRODUCER, "actor": {"kind": "service", "id": "gateway"}, "outcome": "applied"}
    with pytest.raises(ValidationError):
        AuditRecorded(**fields, target="t", action="Key Created")  # dotted lowercase only
    with pytest.raises(ValidationError):
        AuditRecorded(**fields, target="t", action="key.created", after={"blob": "x" * MAX_STATE_BYTES})
    with pytest.raises(ValidationError):
        AuditRecorded(**fields, action="key.created", target="t" * 2000)
    assert AuditRecorded(**fields, target="t", action="key.created", after={"roles": ["producer"]}).after == {
        "roles": ["producer"]
    }


def test_a_state_too_large_for_an_entry_is_replaced_by_a_note() -> None:
    promotion = example(VersionPromoted).model_copy(update={"metrics": {f"m{i}": float(i) for i in range(2000)}})
    entry = audit_entry(promotion, Topic.VERSION_PROMOTED, 0, 0, VERIFIER)
    assert entry is not None and "omitted" in json.loads(entry.after)
