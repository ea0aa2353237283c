"""The four-eyes rules without Kafka: who may decide a change (not who requested it, only an
allowed role, only in its tenant), that it is decided once and not after it expired, that the
first decision counts whatever order the book reads them in, and what an approval publishes."""

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
RETIRE = RetireChange(version=VersionRef(kind="prompt", name="rag-answer", version="1"))


def person(name: str, *roles: Role, tenant: str = "acme") -> Principal:
    return Principal(subject=f"person:{name}", tenant=tenant, roles=frozenset(roles), kind="person", name=name)


ALICE = person("alice", Role.OPERATOR, Role.APPROVER)
BOB = person("bob", Role.APPROVER)


def booked(
    change: Change = RETIRE, by: Principal = ALICE, ttl: timedelta | None = timedelta(days=1)
) -> tuple[ChangeBook, str]:
    book = ChangeBook()
    requested = request_change(by, change, "leaks the context", PRODUCER, ttl=ttl, now=NOW)
    assert book.apply(requested)
    return book, requested.change_id


def decision(
    book: ChangeBook, change: str, who: Principal, *, approve: bool = True, now: datetime = NOW
) -> ChangeApproved | ChangeRejected:
    return decide(book, change, who, approve=approve, reason="ok", approver_roles=ROLES, producer=PRODUCER, now=now)


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


def test_a_decider_needs_a_role_allowed_for_the_kind() -> None:
    book, change = booked()
    assert refused(book, change, person("carol", Role.OPERATOR, Role.ADMIN))[0] == 403
    retrain_book, retrain = booked(RetrainChange(action="reindex"))
    assert refused(retrain_book, retrain, BOB)[0] == 403, "retraining is the admins' to approve here"
    assert isinstance(decision(retrain_book, retrain, person("dana", Role.ADMIN)), ChangeApproved)


def test_another_tenants_change_is_unknown() -> None:
    book, change = booked()
    other_tenant = refused(book, change, person("bob", Role.APPROVER, tenant="globex"))
    unknown = refused(book, "chg-00000000000000000000", BOB)
    assert other_tenant == (404, f"no change {change}")
    assert unknown[0] == 404
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
