"""The audit log's hash chains (ragops_analytics.audit): rows chained by the writer check out,
and an edited, deleted, inserted or moved row is found, with its chain and seq."""

import dataclasses
import uuid
from datetime import UTC, datetime

import pytest

from ragops_analytics.audit import AuditEntry, AuditRow, chained, check, content
from ragops_schemas.ids import AUDIT_GENESIS, audit_hash

RECORDED = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _entry(n: int, tenant: str = "acme", partition: int = 0) -> AuditEntry:
    return AuditEntry(
        audit_id=uuid.UUID(int=n),
        tenant=tenant,
        occurred_at_ms=1_764_579_600_000 + n,
        actor_kind="api_key",
        actor_id="key:3f9a0c1b2d4e5f60",
        actor_name="support-bot",
        action="auth.refused",
        target=f"POST /v1/things/{n}",
        outcome="refused",
        before="",
        after='{"n":' + str(n) + "}",
        reason="403: lacks a role",
        source_topic="ragops.audit.recorded.v1",
        source_partition=partition,
        source_offset=n,
    )


def _log() -> list[AuditRow]:
    """Two chains of four rows, in (chain, seq) order as the verifier reads them."""
    rows = chained([_entry(n, partition=n % 2) for n in range(8)], {}, RECORDED)
    return sorted(rows, key=lambda row: (row.chain, row.seq))


def test_chained_rows_check_out_and_continue_from_the_heads() -> None:
    rows = _log()
    assert [(row.chain, row.seq) for row in rows][:4] == [
        ("acme/ragops.audit.recorded.v1/0", seq) for seq in (1, 2, 3, 4)
    ]
    first = rows[0]
    assert first.prev_hash == AUDIT_GENESIS and first.hash == audit_hash(AUDIT_GENESIS, content(first))
    assert rows[1].prev_hash == first.hash
    verification = check(rows)
    assert verification.intact and (verification.chains, verification.rows) == (2, 8)

    # The next batch starts from the heads read back from the table.
    [more] = chained([_entry(100)], verification.heads, RECORDED)
    assert (more.seq, more.prev_hash) == (5, verification.heads[more.chain][1])
    assert check(sorted([*rows, more], key=lambda row: (row.chain, row.seq))).intact


def test_the_hash_covers_every_column_but_the_hashes() -> None:
    row = _log()[0]
    assert set(content(row)) == {field.name for field in dataclasses.fields(AuditRow)} - {"prev_hash", "hash"}


@pytest.mark.parametrize("column", ["target", "actor_id", "outcome", "after", "occurred_at", "tenant", "audit_id"])
def test_an_edited_row_is_found(column: str) -> None:
    rows = _log()
    value = getattr(rows[2], column)
    rows[2] = dataclasses.replace(rows[2], **{column: value + 1 if isinstance(value, int) else value + "x"})
    broken = check(rows).broken
    assert broken is not None and (broken.chain, broken.seq) == (rows[2].chain, 3)
    assert "edited" in broken.problem


def test_a_deleted_row_is_found() -> None:
    rows = _log()
    del rows[1]
    broken = check(rows).broken
    assert broken is not None and (broken.chain, broken.seq) == (rows[0].chain, 2)
    assert "missing" in broken.problem


def test_a_deleted_first_row_is_found() -> None:
    broken = check(_log()[1:]).broken
    assert broken is not None and broken.seq == 1 and "missing" in broken.problem


def test_a_deleted_row_renumbered_over_is_found() -> None:
    """Deleting seq 2 and renumbering the rows after it closes the gap, not the link."""
    rows = _log()
    rows = [rows[0], *(dataclasses.replace(row, seq=row.seq - 1) for row in rows[2:4])]
    broken = check(rows).broken
    assert broken is not None and broken.seq == 2


def test_reordered_rows_are_found() -> None:
    rows = _log()
    rows[1], rows[2] = dataclasses.replace(rows[2], seq=2), dataclasses.replace(rows[1], seq=3)
    broken = check(rows).broken
    assert broken is not None and (broken.chain, broken.seq) == (rows[0].chain, 2)


def test_an_inserted_row_is_found_even_with_a_valid_hash() -> None:
    """A forged row with its own hash computed right, put in as seq 2 (the real seq 2 still there)."""
    rows = _log()
    forged = dataclasses.replace(rows[1], audit_id=str(uuid.UUID(int=999)), target="DELETE /v1/everything")
    forged = dataclasses.replace(forged, hash=audit_hash(forged.prev_hash, content(forged)))
    broken = check([rows[0], forged, *rows[1:]]).broken
    assert broken is not None and (broken.chain, broken.seq) == (rows[0].chain, 3)
    assert "again" in broken.problem


def test_an_inserted_row_with_the_later_rows_renumbered_is_found() -> None:
    rows = _log()
    forged = dataclasses.replace(rows[1], audit_id=str(uuid.UUID(int=999)), target="DELETE /v1/everything")
    forged = dataclasses.replace(forged, hash=audit_hash(forged.prev_hash, content(forged)))
    shifted = [dataclasses.replace(row, seq=row.seq + 1) for row in rows[1:4]]
    broken = check([rows[0], forged, *shifted]).broken
    assert broken is not None and (broken.chain, broken.seq) == (rows[0].chain, 3)


def test_rows_read_back_as_values_are_the_same_rows() -> None:
    row = _log()[0]
    assert (
        AuditRow.from_values([str(value) if isinstance(value, int) else value for value in dataclasses.astuple(row)])
        == row
    )
