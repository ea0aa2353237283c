"""The chaos harness's invariants on hand-made observations: a lost request, a duplicate, a
ClickHouse/Kafka mismatch, lost poison and a stall are each detected."""

from chaos.checks import (
    Call,
    Poison,
    Seen,
    compare_store,
    failures,
    lag,
    longest_stall,
    poison_outcomes,
    request_figures,
    row_key,
    store_key,
)

Q, A, D = "ragops.query.submitted.v1", "ragops.query.answer-generated.v1", "ragops.dead-letter.v1"


def _asked(offset: int, request_id: str, tag: str) -> Seen:
    return Seen(Q, 0, offset, f"q-{request_id}", "query.submitted", request_id, tag)


def _answer(offset: int, request_id: str, event_id: str) -> Seen:
    return Seen(A, 0, offset, event_id, "query.answer_generated", request_id)


def _letter(offset: int, place: tuple[str, int, int], reason: str) -> Seen:
    return Seen(D, 0, offset, f"d-{offset}", "message.dead_lettered", letter=(*place, reason))


def test_requests_answered_dead_lettered_and_lost_are_told_apart() -> None:
    records = [
        _asked(0, "r1", "t1"),
        _asked(1, "r2", "t2"),
        _asked(2, "r3", "t3"),
        _asked(3, "other", "not-ours"),
        _answer(0, "r1", "a1"),
        _answer(1, "r1", "a1"),  # the same answer redelivered: one answer
        _letter(0, (Q, 0, 1), "schema_validation: broken"),
    ]
    figures = request_figures(records, ["t1", "t2", "t3"], {"r1": 1})
    assert (figures.requests, figures.answered, figures.dead_lettered) == (3, 1, 1)
    assert figures.lost == ["r3"]
    assert figures.duplicated == []
    assert figures.reasons == {"schema_validation": 1}
    assert figures.unpublished == figures.split == []


def test_a_question_that_never_reached_kafka_or_became_two_requests_is_named() -> None:
    records = [_asked(0, "r1", "t1"), _asked(1, "r1", "t1"), _asked(2, "r2", "t2"), _asked(3, "r3", "t2")]
    records += [_answer(0, "r1", "a1"), _answer(1, "r2", "a2"), _answer(2, "r3", "a3")]
    figures = request_figures(records, ["t1", "t2", "t3"], {})
    # t1 sent twice as one request (a retry with its key); t2 as two; t3 never.
    assert (figures.requests, figures.unpublished, figures.split, figures.lost) == (3, ["t3"], ["t2"], [])


def test_a_request_answered_under_two_event_ids_or_stored_twice_is_a_duplicate() -> None:
    records = [_asked(0, "r1", "t1"), _asked(1, "r2", "t2"), _answer(0, "r1", "a1"), _answer(1, "r1", "a2")]
    records.append(_answer(2, "r2", "a3"))
    figures = request_figures(records, ["t1", "t2"], {"r1": 1, "r2": 2})
    assert figures.duplicated == ["r1", "r2"]
    assert figures.lost == []


def test_the_dead_letter_of_injected_poison_does_not_account_for_a_request() -> None:
    records = [_asked(0, "r1", "t1"), Seen(Q, 0, 1, request_id="r1"), _letter(0, (Q, 0, 1), "colliding")]
    figures = request_figures(records, ["t1"], {}, ignore=[(Q, 0, 1)])
    assert figures.lost == ["r1"]


def test_clickhouse_equal_to_kafka_keys_events_by_id_and_the_rest_by_place() -> None:
    records = [
        Seen(Q, 0, 0, "e1", "query.submitted"),
        Seen(Q, 0, 1, "e1", "query.submitted"),  # redelivered: one row
        Seen(Q, 1, 0),  # not a valid event: unparsable at (1, 0)
    ]
    rows = [(Q, row_key("query.submitted", "e1", 0, 0)), (Q, row_key("unparsable", "x", 1, 0))]
    same = compare_store(records, rows, [Q, A])
    assert same.equal
    assert (same.kafka[Q], same.clickhouse[Q], same.unparsable[Q]) == (2, 2, 1)
    assert same.kafka[A] == same.clickhouse[A] == 0


def test_a_missing_row_and_an_extra_row_are_each_reported() -> None:
    records = [Seen(Q, 0, 0, "e1", "query.submitted"), Seen(Q, 0, 1)]
    # A malformed record stored under the valid event's id (it replaced its row): the
    # unparsable row is missing, and nothing else shows it.
    replaced = compare_store(records, [(Q, row_key("query.submitted", "e1", 0, 1))], [Q])
    assert not replaced.equal
    assert replaced.missing == {Q: [store_key(records[1])]}
    extra = compare_store(records[:1], [(Q, ("event", "e1")), (Q, ("event", "ghost"))], [Q])
    assert extra.extra == {Q: [("event", "ghost")]} and not extra.missing


def test_poison_is_dead_lettered_processed_or_lost() -> None:
    poison = [Poison("oversized", Q, 0, 5), Poison("schema_version", Q, 0, 6, "p"), Poison("tombstone", Q, 0, 7)]
    records = [_letter(0, (Q, 0, 5), "too big"), _answer(0, "p", "a")]
    assert poison_outcomes(poison, records) == {
        "oversized": {"injected": 1, "dead_lettered": 1, "processed": 0, "lost": 0},
        "schema_version": {"injected": 1, "dead_lettered": 0, "processed": 1, "lost": 0},
        "tombstone": {"injected": 1, "dead_lettered": 0, "processed": 0, "lost": 1},
    }


def test_the_longest_stall_is_the_longest_wait_with_no_call_finishing() -> None:
    calls = [Call("a", 0, 2, 200), Call("b", 1, 12, 200), Call("c", 3, 13, 200), Call("d", 20, 21, 200)]
    # b waits from 2 (a finished) to 12; nothing is outstanding from 13 to 20.
    assert longest_stall(calls) == 10
    assert longest_stall([]) == 0


def test_lag_counts_records_past_the_committed_offset() -> None:
    assert lag({(Q, 0): 5, (Q, 1): 3}, {(Q, 0): 5, (Q, 1): 7}) == 4
    assert lag({(Q, 0): 5}, {(Q, 0): 5}) == 0


def test_failures_name_every_broken_invariant() -> None:
    report = {
        "requests": {"lost": ["r3"], "duplicated": ["r1"], "unpublished": ["q0002"], "split": ["q0003"]},
        "http": {"unanswered": ["q0007"]},
        "poison": {"tombstone": {"injected": 1, "dead_lettered": 0, "processed": 0, "lost": 1}},
        "clickhouse_vs_kafka": {"missing": {Q: [["event", "e1"]]}, "extra": {}},
        "lag": {"ragops-sink": 3, "ragops-generation": 0},
        "ready": {"sink": 503, "gateway": 200},
    }
    found = failures(report)
    assert len(found) == 9, found
    assert "1 calls got neither an answer nor a dead letter: ['q0007']" in found
    clean = {
        "requests": {"lost": [], "duplicated": [], "unpublished": [], "split": []},
        "http": {"unanswered": []},
        "poison": {"tombstone": {"injected": 1, "dead_lettered": 1, "processed": 0, "lost": 0}},
        "clickhouse_vs_kafka": {"missing": {}, "extra": {}},
        "lag": {"ragops-sink": 0},
        "ready": {"sink": 200},
    }
    assert failures(clean) == []
