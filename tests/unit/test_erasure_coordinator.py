"""The erasure coordinator's plain functions: the keys store's report, and the conclusion once
every store has reported (all reported, a retry that finishes the job, an unknown subject, a
store that never reports, an unavailable key store)."""

from pathlib import Path

import pytest

from ragops_privacy.erasure import ErasureLedger, conclude, forget_subject, summarize
from ragops_schemas import Producer
from ragops_schemas.changes import ChangeActor
from ragops_schemas.erasure import ErasureRequested, SubjectErasureApplied
from ragops_schemas.ids import erasure_id
from ragops_shared.shredding import FileKeyStore, Shredder

PRODUCER = Producer(name="privacy", version="test")
STORES = ("clickhouse", "vectors", "keys")


def _request(subject: str = "user-1", key: str = "k1") -> ErasureRequested:
    return ErasureRequested(
        producer=Producer(name="gateway", version="test"),
        tenant="acme",
        erasure_id=erasure_id("acme", subject, key),
        subject=subject,
        requested_by=ChangeActor(subject="person:admin", name="admin", kind="person"),
    )


def _report(request: ErasureRequested, store: str, deleted: int, *, complete: bool = True) -> SubjectErasureApplied:
    return request.caused(
        SubjectErasureApplied,
        Producer(name=store, version="test"),
        scope=store,
        erasure_id=request.erasure_id,
        request_event_id=str(request.event_id),
        store=store,
        deleted={f"{store}-table": deleted},
        remaining={f"{store}-table": 0 if complete else 1},
        complete=complete,
        reason="" if complete else f"{store} unavailable",
    )


@pytest.fixture
def shredder(tmp_path: Path) -> Shredder:
    return Shredder(FileKeyStore.under(tmp_path))


def test_forget_subject_deletes_the_key_and_verifies(shredder: Shredder) -> None:
    token = shredder.seal("a question", "acme", "user-1")
    report = forget_subject(_request(), shredder, PRODUCER)
    assert (report.store, report.deleted, report.remaining, report.complete) == (
        "keys",
        {"subject_keys": 1},
        {"subject_keys": 0},
        True,
    )
    assert shredder.open(token) is None
    # Applied again (a retry): nothing left to delete, still complete.
    again = forget_subject(_request(key="k1"), shredder, PRODUCER)
    assert (again.deleted, again.complete) == ({"subject_keys": 0}, True)


def test_forget_subject_with_the_store_unavailable_is_not_complete(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    report = forget_subject(_request(), Shredder(FileKeyStore(tmp_path / "file" / "keys")), PRODUCER)
    assert report.complete is False
    assert "subject key store" in report.reason
    assert report.deleted == {}


def test_concludes_once_every_store_reported() -> None:
    request = _request()
    ledger = ErasureLedger(STORES)
    assert conclude(ledger, [_report(request, "clickhouse", 5), _report(request, "vectors", 3)], PRODUCER) == []
    assert ledger.missing(request.erasure_id, str(request.event_id)) == ["keys"]
    (erased,) = conclude(ledger, [_report(request, "keys", 1)], PRODUCER)
    assert erased.complete is True
    assert erased.erasure_id == request.erasure_id and erased.tenant == "acme"
    assert {store: s.deleted for store, s in erased.stores.items()} == {
        "clickhouse": {"clickhouse-table": 5},
        "keys": {"keys-table": 1},
        "vectors": {"vectors-table": 3},
    }
    # The same reports again (a redelivery, a restart): the same conclusion, same id.
    (again,) = conclude(ledger, [_report(request, "keys", 1)], PRODUCER)
    assert again.event_id == erased.event_id and again.stores == erased.stores


def test_a_missing_store_never_concludes() -> None:
    request = _request()
    ledger = ErasureLedger(STORES)
    reports = [_report(request, "clickhouse", 5), _report(request, "keys", 1)]
    assert conclude(ledger, reports, PRODUCER) == []
    assert ledger.missing(request.erasure_id, str(request.event_id)) == ["vectors"]


def test_an_unknown_subject_concludes_complete_with_zero_counts() -> None:
    request = _request(subject="nobody")
    (erased,) = conclude(ErasureLedger(STORES), [_report(request, store, 0) for store in STORES], PRODUCER)
    assert erased.complete is True
    assert all(count == 0 for s in erased.stores.values() for count in s.deleted.values())


def test_a_retried_erasure_finishes_the_job() -> None:
    first, retry = _request(key="ticket-1"), _request(key="ticket-1")
    assert first.erasure_id == retry.erasure_id and first.event_id != retry.event_id
    ledger = ErasureLedger(STORES)
    (failed,) = conclude(
        ledger,
        [_report(first, "clickhouse", 5), _report(first, "vectors", 3), _report(first, "keys", 0, complete=False)],
        PRODUCER,
    )
    assert failed.complete is False
    assert failed.stores["keys"].reason == "keys unavailable"
    (finished,) = conclude(
        ledger, [_report(retry, "clickhouse", 0), _report(retry, "vectors", 0), _report(retry, "keys", 1)], PRODUCER
    )
    assert finished.complete is True
    assert finished.event_id != failed.event_id
    # Counts sum the attempts: what the first deleted is not lost by the retry's zeros.
    assert finished.stores["clickhouse"].deleted == {"clickhouse-table": 5}
    assert finished.stores["keys"].deleted == {"keys-table": 1}


def test_summarize_takes_the_concluding_requests_report_per_store() -> None:
    first, retry = _request(), _request()
    reports = [_report(retry, "keys", 1), _report(first, "keys", 0, complete=False)]
    assert summarize(reports, str(retry.event_id))["keys"].complete is True
    assert summarize(reports, str(first.event_id))["keys"].complete is False
