"""The privacy service's redaction of intake records, without Kafka: what each ``*Redacted``
event keeps of its submission (ids, trace, tenant, time), what it replaces (the texts, the
subject ids) and what a document sent by claim check leaves in the blob store."""

import os
import stat
from pathlib import Path

import pytest

from ragops_privacy.intake import IntakeRedactor
from ragops_privacy.keys import pseudonym_key
from ragops_privacy.redaction import RedactionPolicy, Redactor
from ragops_privacy.settings import PrivacySettings
from ragops_schemas import DocumentSubmitted, FeedbackSubmitted, QueryRedacted, QuerySubmitted
from ragops_schemas.events import EvaluationContext
from ragops_schemas.ids import content_hash, derived_event_id
from ragops_schemas.review import ReviewSubmitted
from ragops_shared.blobs import DirectoryBlobStore, check_in
from ragops_shared.broker import EventRejected
from ragops_shared.pseudonyms import KEY_BYTES
from ragops_shared.settings import PlatformSettings
from ragops_shared.text import normalise
from tests.helpers import PRODUCER

ADDRESS = "jane.doe@example.com"
KEY = b"k" * 32
PRIVACY = PRODUCER.model_copy(update={"name": "privacy"})


def intake(policy: RedactionPolicy | None = None) -> IntakeRedactor:
    policy = policy or RedactionPolicy()
    return IntakeRedactor(Redactor(policy, KEY), policy, PRIVACY)


def test_a_redacted_question_keeps_its_identity_and_loses_the_address() -> None:
    submitted = QuerySubmitted(
        producer=PRODUCER,
        tenant="acme",
        request_id="r-1",
        question=f"Can {ADDRESS} get a refund?",
        top_k=3,
        user_id="jane",
    )
    redacted = intake().query(submitted)
    assert isinstance(redacted, QueryRedacted)
    assert redacted.question == "Can <EMAIL_ADDRESS> get a refund?" and ADDRESS not in redacted.model_dump_json()
    assert redacted.redactions == {"EMAIL_ADDRESS": 1}
    assert redacted.event_id == derived_event_id("QueryRedacted", submitted.event_id, "")
    assert (redacted.request_id, redacted.tenant, redacted.trace_id, redacted.top_k) == (
        "r-1",
        "acme",
        submitted.trace_id,
        3,
    )
    assert redacted.occurred_at == submitted.occurred_at and redacted.producer.name == "privacy"
    assert redacted.user_id not in {None, "jane"}
    again = intake().query(submitted)
    assert (again.event_id, again.question, again.user_id) == (
        redacted.event_id,
        redacted.question,
        redacted.user_id,
    ), "a redelivery yields the same event"


def test_user_ids_become_one_pseudonym_per_tenant_unless_the_policy_keeps_them() -> None:
    def user_of(tenant: str, policy: RedactionPolicy | None = None) -> str | None:
        asked = QuerySubmitted(producer=PRODUCER, tenant=tenant, request_id="r", question="Hello?", user_id="jane")
        return intake(policy).query(asked).user_id

    assert user_of("acme") == user_of("acme") != user_of("globex")
    assert user_of("acme", RedactionPolicy(pseudonymize_user_ids=False)) == "jane"
    in_session = QuerySubmitted(producer=PRODUCER, tenant="acme", request_id="r", question="Hi?", session_id="jane")
    assert intake().query(in_session).session_id == user_of("acme"), "a session id is pseudonymized like a user id"
    kept = intake(RedactionPolicy(pseudonymize_user_ids=False)).query(in_session)
    assert kept.session_id == "jane"
    rated = FeedbackSubmitted(producer=PRODUCER, tenant="acme", request_id="r", thumb="up", user_id="jane")
    assert intake().feedback(rated).user_id == user_of("acme"), "the same subject, the same pseudonym"


def test_feedback_comment_and_correction_are_redacted_and_counted() -> None:
    submitted = FeedbackSubmitted(
        producer=PRODUCER, request_id="r", thumb="down", comment=f"Mail {ADDRESS}", corrected_answer=f"Ask {ADDRESS}"
    )
    redacted = intake().feedback(submitted)
    assert (redacted.comment, redacted.corrected_answer) == ("Mail <EMAIL_ADDRESS>", "Ask <EMAIL_ADDRESS>")
    assert redacted.redactions == {"EMAIL_ADDRESS": 2} and redacted.thumb == "down"


# Values hidden from the recognizers by invisible or compatibility characters, which
# ingestion's normalisation (format characters removed, NFKC) turns back into plain values;
# each is what ``ragops_shared.text.normalise`` makes of it.
DISGUISED = {
    "ann\u200b@example.com": "ann@example.com",
    "4111\u200b1111\u200b1111\u200b1111": "4111111111111111",
    " ".join(["\uff14\uff11\uff11\uff11"] + ["\uff11" * 4] * 3): "4111 1111 1111 1111",
    "DE89\u00a03704\u00a00044\u00a00532\u00a00130\u00a000": "DE89 3704 0044 0532 0130 00",
    "+44\u00a020\u00a07946\u00a00000": "+44 20 7946 0000",
}


@pytest.mark.parametrize("disguised", DISGUISED)
def test_values_disguised_by_unicode_are_redacted_in_every_text(disguised: str) -> None:
    plain = DISGUISED[disguised]
    text = f"Reach me at {disguised} today"
    asked = intake().query(QuerySubmitted(producer=PRODUCER, request_id="r", question=text))
    rated = intake().feedback(FeedbackSubmitted(producer=PRODUCER, request_id="r", comment=text, corrected_answer=text))
    document = intake().document(
        DocumentSubmitted(producer=PRODUCER, document_id="d", content=text, title=text), None, 10**6
    )
    published = [asked.question, rated.comment, rated.corrected_answer, document.event.content, document.event.title]
    for value in published:
        assert value is not None and normalise(value) == value, "what is published is normalised"
        assert disguised not in value and plain not in value and plain.replace(" ", "") not in value.replace(" ", "")
    assert sum(asked.redactions.values()) == 1 and sum(document.event.redactions.values()) == 2


def test_document_source_and_metadata_values_are_redacted() -> None:
    submitted = DocumentSubmitted(
        producer=PRODUCER,
        document_id="d",
        content="Plain.",
        source="mailto:ann\u200b@example.com",
        metadata={"customer": "ann@example.com", "lang": "en", "document_id": "doc-1"},
    )
    event = intake().document(submitted, None, 10**6).event
    assert "ann@example.com" not in event.model_dump_json()
    assert event.source == "mailto:<EMAIL_ADDRESS>"
    assert event.metadata == {"customer": "<EMAIL_ADDRESS>", "lang": "en", "document_id": "doc-1"}
    assert event.redactions == {"EMAIL_ADDRESS": 2}
    plain = DocumentSubmitted(producer=PRODUCER, document_id="d", content="Plain.", metadata={"lang": "en"})
    assert intake().document(plain, None, 10**6).event.metadata == {"lang": "en"}


def test_query_filters_and_reference_answers_are_redacted() -> None:
    submitted = QuerySubmitted(
        producer=PRODUCER,
        request_id="r",
        question="Who?",
        filters={"email": "ann@example.com", "owners": ["bob@example.com", "team"], "document_id": "doc-1"},
        evaluation=EvaluationContext(run_id="run", reference_answers=["Mail ann@example.com", "Nobody"]),
    )
    redacted = intake().query(submitted)
    assert "@example.com" not in redacted.model_dump_json()
    assert redacted.filters == {
        "email": "<EMAIL_ADDRESS>",
        "owners": ["<EMAIL_ADDRESS>", "team"],
        "document_id": "doc-1",
    }
    assert redacted.evaluation is not None and redacted.evaluation.run_id == "run"
    assert redacted.evaluation.reference_answers == ["Mail <EMAIL_ADDRESS>", "Nobody"]
    assert redacted.redactions == {"EMAIL_ADDRESS": 3}
    plain = QuerySubmitted(producer=PRODUCER, request_id="r", question="Who?", filters={"lang": "en"})
    unchanged = intake().query(plain)
    assert unchanged.filters == {"lang": "en"} and unchanged.evaluation is None


def test_a_question_that_redaction_makes_too_long_is_rejected_with_the_reason() -> None:
    long = QuerySubmitted(producer=PRODUCER, request_id="r", question="x" * 3990 + " a@b.co")
    with pytest.raises(EventRejected, match="question"):
        intake().query(long)


def test_a_document_by_claim_check_gets_a_redacted_blob_and_names_its_raw_one(tmp_path: Path) -> None:
    blobs = DirectoryBlobStore(tmp_path)
    content = f"Contact {ADDRESS} for refunds. " * 100
    submitted = check_in(
        DocumentSubmitted(
            producer=PRODUCER, document_id="d", content=content, title=f"By {ADDRESS}", subject_id="jane"
        ),
        blobs,
        1024,
    )
    assert submitted.content_ref is not None
    result = intake().document(submitted, blobs, 1024)
    event = result.event
    assert event.content_ref is not None and event.content_ref != submitted.content_ref
    assert ADDRESS not in blobs.get(event.content_ref).decode() and ADDRESS not in event.model_dump_json()
    assert event.title == "By <EMAIL_ADDRESS>" and event.redactions == {"EMAIL_ADDRESS": 101}
    assert result.raw_blob == submitted.content_ref, "the raw blob is deleted once the event is out"
    assert event.submitted_content_hash == content_hash(content) != event.content_hash
    assert event.subject_id not in {None, "jane"}


def test_a_document_without_personal_data_keeps_its_blob_and_its_hash(tmp_path: Path) -> None:
    blobs = DirectoryBlobStore(tmp_path)
    submitted = check_in(DocumentSubmitted(producer=PRODUCER, document_id="d", content="Plain. " * 500), blobs, 1024)
    result = intake().document(submitted, blobs, 1024)
    assert result.event.content_ref == submitted.content_ref and result.raw_blob is None
    assert result.event.submitted_hash is None and result.event.submitted_content_hash == submitted.content_hash


def test_a_missing_raw_blob_is_rejected_with_the_reason(tmp_path: Path) -> None:
    blobs = DirectoryBlobStore(tmp_path)
    submitted = check_in(DocumentSubmitted(producer=PRODUCER, document_id="d", content="x" * 2000), blobs, 1024)
    assert submitted.content_ref is not None
    blobs.delete(submitted.content_ref)
    blobs.delete(submitted.content_ref)  # idempotent
    with pytest.raises(EventRejected, match="is not in"):
        intake().document(submitted, blobs, 1024)


def test_the_embedded_pseudonym_key_is_created_once_and_private(tmp_path: Path) -> None:
    settings = PrivacySettings(platform=PlatformSettings(data_dir=tmp_path))
    key = pseudonym_key(settings)
    path = tmp_path / "keys" / "pseudonym.key"
    assert len(key) == KEY_BYTES and pseudonym_key(settings) == key
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    short = tmp_path / "short.key"
    short.write_bytes(b"too short")
    with pytest.raises(ValueError, match="at least"):
        pseudonym_key(PrivacySettings(pseudonym_key_file=short))


def test_production_needs_a_pseudonym_key_file() -> None:
    with pytest.raises(ValueError, match="RAGOPS_PRIVACY_PSEUDONYM_KEY_FILE"):
        PrivacySettings(platform=PlatformSettings(environment="production"))


def test_a_reviewers_correction_and_comment_are_redacted_and_counted() -> None:
    submitted = ReviewSubmitted(
        producer=PRODUCER,
        tenant="acme",
        request_id="r",
        answer_event_id="a",
        reviewer="person:rita",
        correct=False,
        grounded=True,
        sampled_as="random",
        corrected_answer=f"Ask {ADDRESS}",
        comment=f"Mail {ADDRESS}",
    )
    reviewed = intake(RedactionPolicy(pseudonymize_user_ids=True)).review(submitted)
    assert (reviewed.corrected_answer, reviewed.comment) == ("Ask <EMAIL_ADDRESS>", "Mail <EMAIL_ADDRESS>")
    assert reviewed.redactions == {"EMAIL_ADDRESS": 2}
    # The label as given; the reviewer (staff) as named; the id derived from the submission's.
    assert (reviewed.reviewer, reviewed.correct, reviewed.grounded, reviewed.sampled_as) == (
        "person:rita",
        False,
        True,
        "random",
    )
    assert reviewed.event_id == derived_event_id("AnswerReviewed", submitted.event_id)
    assert (reviewed.occurred_at, reviewed.tenant, reviewed.trace_id) == (
        submitted.occurred_at,
        "acme",
        submitted.trace_id,
    )
