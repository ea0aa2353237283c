"""The four-eyes rules without Kafka: who may decide a change (not who requested it, nor another
credential of the same owner, only an allowed role, only in the platform's tenant), that it is
decided once and not after it expired, that the first decision counts whatever order the book
reads them in, and what an approval publishes."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ragops_gateway.changes import (
    ChangeBook,
    ChangeRefused,
    decide,
    effect_of,
    request_change,
)
from ragops_schemas import RetrainingRequested, VersionPromoted, VersionRetired
from ragops_schemas.changes import (
    Change,
    ChangeApproved,
    ChangeKind,
    ChangeRejected,
    ChangeRequested,
    PromoteChange,
    RetireChange,
    RetrainChange,
)
from ragops_schemas.ids import change_id
from ragops_schemas.lifecycle import VersionRef
from ragops_shared.identity import Principal, Role
from tests.helpers import PRODUCER

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
ROLES: dict[ChangeKind, frozenset[Role]] = {
    "promote": frozenset({Role.APPROVER}),
    "retire": frozenset({Role.APPROVER}),
    "retrain": frozenset({Role.ADMIN}),
}
PLATFORM = "acme"  # the platform's tenant in these tests (RAGOPS_TENANT)
RETIRE = RetireChange(version=VersionRef(kind="prompt", name="rag-answer", version="1"))


def person(name: str, *roles: Role, tenant: str = PLATFORM) -> Principal:
    return Principal(
        subject=f"person:{name}",
        tenant=tenant,
        roles=frozenset(roles),
        kind="person",
        name=name,
        owner=f"person:{name}",
    )


def key(key_id: str, owner: str, *roles: Role) -> Principal:
    subject = f"key:{key_id:0>16}"
    return Principal(subject=subject, tenant=PLATFORM, roles=frozenset(roles), kind="api_key", name=key_id, owner=owner)


ALICE = person("alice", Role.OPERATOR, Role.APPROVER)
BOB = person("bob", Role.APPROVER)


def booked(
    change: Change = RETIRE, by: Principal = ALICE, ttl: timedelta | None = timedelta(days=1)
) -> tuple[ChangeBook, str]:
    book = ChangeBook()
    requested = request_change(by, change, "leaks the context", PRODUCER, platform_tenant=PLATFORM, ttl=ttl, now=NOW)
    assert book.apply(requested)
    return book, requested.change_id


def decision(
    book: ChangeBook, change: str, who: Principal, *, approve: bool = True, now: datetime = NOW
) -> ChangeApproved | ChangeRejected:
    return decide(
        book,
        change,
        who,
        approve=approve,
        reason="ok",
        approver_roles=ROLES,
        platform_tenant=PLATFORM,
        producer=PRODUCER,
        now=now,
    )


def approval(book: ChangeBook, change: str, who: Principal) -> ChangeApproved:
    approved = decision(book, change, who)
    assert isinstance(approved, ChangeApproved)
    return approved


def refused(book: ChangeBook, change: str, who: Principal, **options: Any) -> tuple[int, str]:
    with pytest.raises(ChangeRefused) as caught:
        decision(book, change, who, **options)
    return caught.value.status_code, str(caught.value)


def test_a_request_records_who_asked_in_their_tenant() -> None:
    book, change = booked()
    record = book.get(change, "acme")
    assert record is not None and record.status(NOW) == "pending"
    requested = record.requested
    assert change == change_id(requested.event_id)
    assert (requested.tenant, requested.requested_by.subject, requested.requested_by.kind) == (
        "acme",
        "person:alice",
        "person",
    )
    assert requested.expires_at == NOW + timedelta(days=1)


def test_the_requester_cannot_decide_their_own_change() -> None:
    book, change = booked()
    assert refused(book, change, ALICE) == (403, "a change is decided by someone other than who requested it")
    assert refused(book, change, ALICE, approve=False)[0] == 403
    # Same subject, another key name or role set: still the same principal.
    assert refused(book, change, person("alice", Role.APPROVER))[0] == 403


def test_one_owner_with_two_credentials_is_one_pair_of_eyes() -> None:
    forbidden = (403, "a change is decided by someone other than who requested it")
    book, change = booked()
    assert refused(book, change, key("a11ce", "person:alice", Role.APPROVER)) == forbidden, "alice's key"
    # An admin's key asks; a key the admin minted over HTTP (owned by the admin key) decides.
    admin = key("ad", "key:00000000000000ad", Role.OPERATOR, Role.ADMIN)
    minted = key("b0b", admin.owner, Role.APPROVER)
    book, change = booked(by=admin)
    record = book.get(change, PLATFORM)
    assert record is not None and record.requested.requested_by.owner == admin.owner
    assert refused(book, change, minted) == forbidden
    assert isinstance(decision(book, change, key("ca1", "person:carol", Role.APPROVER)), ChangeApproved)


def test_a_request_recorded_before_owners_answers_to_its_subject() -> None:
    book, change = booked()
    record = book.get(change, PLATFORM)
    assert record is not None
    written = record.requested.model_dump(mode="json")
    del written["requested_by"]["owner"]  # as the gateway wrote it before owners
    old = ChangeRequested.model_validate(written)
    assert old.model_dump(mode="json") == written, "its signed bytes are unchanged: the signature still holds"
    assert old.requested_by.accountable == "person:alice"
    before_owners = ChangeBook()
    before_owners.apply(old)
    assert refused(before_owners, change, key("a11ce", "person:alice", Role.APPROVER))[0] == 403


def test_only_the_platforms_tenant_requests_or_decides_changes() -> None:
    book, change = booked()
    globex = person("carol", Role.OPERATOR, Role.APPROVER, tenant="globex")
    with pytest.raises(ChangeRefused) as caught:
        request_change(globex, RETIRE, "x", PRODUCER, platform_tenant=PLATFORM, ttl=None, now=NOW)
    assert caught.value.status_code == 403 and PLATFORM in str(caught.value)
    assert refused(book, change, globex)[0] == 403
    assert refused(book, "chg-00000000000000000000", globex)[0] == 403, "alike: nothing reveals it exists"


def test_a_decider_needs_a_role_allowed_for_the_kind() -> None:
    book, change = booked()
    assert refused(book, change, person("carol", Role.OPERATOR, Role.ADMIN))[0] == 403
    retrain_book, retrain = booked(RetrainChange(action="reindex"))
    assert refused(retrain_book, retrain, BOB)[0] == 403, "retraining is the admins' to approve here"
    assert isinstance(decision(retrain_book, retrain, person("dana", Role.ADMIN)), ChangeApproved)


def test_an_unknown_change_is_not_found_and_the_book_keeps_tenants_apart() -> None:
    book, change = booked()
    assert refused(book, "chg-00000000000000000000", BOB) == (404, "no change chg-00000000000000000000")
    assert book.get(change, "globex") is None and book.of_tenant("globex") == []


def test_a_change_is_decided_once() -> None:
    book, change = booked()
    approved = decision(book, change, BOB)
    assert book.apply(approved)
    assert refused(book, change, person("erin", Role.APPROVER)) == (409, f"change {change} is approved")
    assert refused(book, change, BOB, approve=False) == (409, f"change {change} is approved")


def test_an_expired_change_cannot_be_decided() -> None:
    book, change = booked(ttl=timedelta(hours=1))
    assert refused(book, change, BOB, now=NOW + timedelta(hours=1)) == (409, f"change {change} is expired")
    never, forever = booked(ttl=None)
    assert isinstance(decision(never, forever, BOB, now=NOW + timedelta(days=3650)), ChangeApproved)


def test_the_first_decision_counts_in_any_reading_order() -> None:
    book, change = booked()
    requested = book.get(change, "acme")
    assert requested is not None
    rejected = decision(book, change, person("erin", Role.APPROVER), approve=False)
    approved = decision(book, change, BOB, now=NOW + timedelta(seconds=1)).model_copy(
        update={"occurred_at": rejected.occurred_at + timedelta(milliseconds=5)}
    )
    assert isinstance(rejected, ChangeRejected) and rejected.event_id != approved.event_id
    for order in ([requested.requested, approved, rejected], [rejected, approved, requested.requested]):
        fresh = ChangeBook()
        for event in order:
            fresh.apply(event)
        record = fresh.get(change, "acme")
        assert record is not None and record.decision == rejected and record.status(NOW) == "rejected"
        assert not fresh.apply(approved), "a later decision changes nothing"


def test_an_approval_publishes_the_exact_effect_requested() -> None:
    book, change = booked()
    record = book.get(change, "acme")
    assert record is not None
    approved = approval(book, change, BOB)
    retired = effect_of(record.requested, approved, PRODUCER)
    assert isinstance(retired, VersionRetired)
    assert (retired.kind, retired.name, retired.version, retired.tenant) == ("prompt", "rag-answer", "1", "acme")
    assert retired.event_id == effect_of(record.requested, approved, PRODUCER).event_id, "derived from the approval"
    assert "approved by bob" in retired.reason and change in retired.reason

    model = VersionRef(kind="embedding_model", name="m", version="v2")
    promote = PromoteChange(version=model, uri="/models/v2", previous_version="v1", metrics={"hit": 0.5})
    book, change = booked(promote)
    record = book.get(change, "acme")
    assert record is not None
    promoted = effect_of(record.requested, approval(book, change, BOB), PRODUCER)
    assert isinstance(promoted, VersionPromoted)
    assert (promoted.ref, promoted.alias, promoted.uri, promoted.previous_version, promoted.metrics) == (
        model,
        "production",
        "/models/v2",
        "v1",
        {"hit": 0.5},
    )

    book, change = booked(RetrainChange(action="reindex", target=model))
    record = book.get(change, "acme")
    assert record is not None
    retrain = effect_of(record.requested, approval(book, change, person("dana", Role.ADMIN)), PRODUCER)
    assert isinstance(retrain, RetrainingRequested)
    assert (retrain.action, retrain.target, retrain.requested_by) == ("reindex", model, "person:alice")


def test_an_erasure_change_stays_in_its_tenant_and_approved_becomes_an_erasure_request() -> None:
    from ragops_schemas.changes import EraseSubjectChange
    from ragops_schemas.erasure import ErasureRequested
    from ragops_schemas.ids import erasure_id

    roles = {**ROLES, "erase_subject": frozenset({Role.APPROVER})}
    change = EraseSubjectChange(subject="user-1", erasure_id=erasure_id("globex", "user-1", "t"))
    admin, approver = person("gina", Role.ADMIN, tenant="globex"), person("gus", Role.APPROVER, tenant="globex")
    book = ChangeBook()
    requested = request_change(admin, change, "user asked", PRODUCER, platform_tenant=PLATFORM, ttl=None, now=NOW)
    assert requested.tenant == "globex"  # not the platform's: an erasure is its tenant's own
    book.apply(requested)
    # The platform's approver does not see it; the requester may not approve it.
    with pytest.raises(ChangeRefused, match="no change"):
        decide(book, requested.change_id, BOB, approve=True, reason="ok", approver_roles=roles,
               platform_tenant=PLATFORM, producer=PRODUCER, now=NOW)  # fmt: skip
    with pytest.raises(ChangeRefused, match="holds no role"):
        decide(book, requested.change_id, admin, approve=True, reason="ok", approver_roles=roles,
               platform_tenant=PLATFORM, producer=PRODUCER, now=NOW)  # fmt: skip
    approved = decide(book, requested.change_id, approver, approve=True, reason="ok", approver_roles=roles,
                      platform_tenant=PLATFORM, producer=PRODUCER, now=NOW)  # fmt: skip
    assert isinstance(approved, ChangeApproved)
    effect = effect_of(requested, approved, PRODUCER)
    assert isinstance(effect, ErasureRequested)
    assert (effect.tenant, effect.subject, effect.erasure_id) == ("globex", "user-1", change.erasure_id)
    assert effect.requested_by.subject == "person:gina"
