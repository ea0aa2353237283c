"""The sink's part of an erasure: delete a data subject's rows from every ClickHouse table that
holds them, count what is left, and report (``SubjectErasureApplied``, store ``clickhouse``).

The subject's requests are those whose events or ``feedback`` rows carry its ``user_id``
(questions, feedback; ``feedback`` outlives ``events``), its documents those whose events carry
its ``subject_id``; every row of those requests and documents goes (questions, retrievals,
answers, scores, feedback, dataset examples, query vectors, the document rows, the redaction
counts and the raw events, dead letters of their records included;
:data:`ragops_analytics.queries.ERASABLE_TABLES`). The raw events go last, so a retry after a
partial attempt still finds the subject's requests; so does ``feedback``, deleted just before.

Not erased here: the hash-chained ``audit_log`` (its entries name actors and targets, and
deleting one would break its chain) and rows that reach the sink after the count (an event in
flight when the erasure ran): the count then finds them, the report is not complete, and the
erasure is requested again.
"""

from ragops_analytics import queries
from ragops_analytics.store import AnalyticsStore, DataRejected, StoreUnavailable, public_error
from ragops_schemas import Producer
from ragops_schemas.erasure import ErasureRequested, SubjectErasureApplied

STORE = "clickhouse"


def erase_subject(store: AnalyticsStore, request: ErasureRequested, producer: Producer) -> SubjectErasureApplied:
    """Delete the request's subject's rows and verify by counting (blocking: run it in a
    thread). Deleted counts are rows per table (every stored copy of an event); ``complete``
    when the count after finds none. A store that fails gives a report that is not complete,
    with the reason, never an exception: the erasure concludes, as not complete."""
    tenant, subject = request.tenant, request.subject
    try:
        requests, documents = queries.subject_keys(store, tenant, subject)
        before = queries.subject_rows(store, tenant, requests, documents)
        queries.delete_subject_rows(store, tenant, requests, documents)
        after = queries.subject_rows(store, tenant, requests, documents)
    except (StoreUnavailable, DataRejected) as error:
        reason = f"ClickHouse: {public_error(str(error))}"
        return request.applied(producer, STORE, deleted={}, remaining={}, complete=False, reason=reason)
    left = sum(after.values())
    return request.applied(
        producer,
        STORE,
        deleted={table: max(before[table] - after[table], 0) for table in before},
        remaining=after,
        complete=left == 0,
        reason="" if left == 0 else f"{left} rows of the subject were found after deleting (arrived meanwhile)",
    )
