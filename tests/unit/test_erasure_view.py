"""The gateway's view of erasures: in progress with each store's last report, then the latest
conclusion; another tenant's erasure is unknown; the subject is never in an answer."""

from ragops_gateway.erasures import ErasureView
from ragops_schemas import Producer
from ragops_schemas.changes import ChangeActor
from ragops_schemas.erasure import ErasureRequested, StoreErasure, SubjectErased, SubjectErasureApplied
from ragops_schemas.ids import erasure_id

PRODUCER = Producer(name="test", version="0")
REQUEST = ErasureRequested(
    producer=PRODUCER,
    tenant="acme",
    erasure_id=erasure_id("acme", "user-1", "k"),
    subject="user-1",
    requested_by=ChangeActor(subject="person:a", name="a", kind="person"),
)


def _report(store: str, complete: bool) -> SubjectErasureApplied:
    return REQUEST.caused(
        SubjectErasureApplied,
        PRODUCER,
        scope=store,
        erasure_id=REQUEST.erasure_id,
        request_event_id=str(REQUEST.event_id),
        store=store,
        deleted={"t": 2},
        remaining={"t": 0 if complete else 1},
        complete=complete,
    )


def test_an_erasure_in_progress_then_concluded() -> None:
    view = ErasureView()
    view.apply(REQUEST)
    assert view.status(REQUEST.erasure_id, "acme").model_dump() == {
        "erasure_id": REQUEST.erasure_id,
        "state": "in_progress",
        "change_id": None,
        "stores": {},
    }
    view.apply(_report("keys", complete=False))
    status = view.status(REQUEST.erasure_id, "acme")
    assert status.state == "in_progress" and status.stores["keys"].complete is False
    concluded = REQUEST.caused(
        SubjectErased,
        PRODUCER,
        erasure_id=REQUEST.erasure_id,
        stores={"keys": StoreErasure(deleted={"t": 2}, complete=False, reason="down")},
        complete=False,
    )
    view.apply(concluded)
    assert view.status(REQUEST.erasure_id, "acme").state == "incomplete"
    assert "user-1" not in view.status(REQUEST.erasure_id, "acme").model_dump_json()
    assert view.status(REQUEST.erasure_id, "globex") is None
    assert view.status("era-00000000000000000000", "acme") is None
