"""The tamper-evident audit log: how entries are chained and appended (the sink) and how the
chains are checked (``ragops audit verify``): one implementation for the writer and the verifier.

Chains. An entry belongs to the chain of the Kafka record it came from,
``<tenant>/<topic>/<partition>`` (:func:`ragops_schemas.ids.audit_chain`). Kafka gives a
partition to one consumer of a group at a time, so every chain has one writer however many
sink replicas run. The rows of a chain have ``seq`` 1, 2, 3... and each carries the hash of
the row before it (``prev_hash``; :data:`~ragops_schemas.ids.AUDIT_GENESIS` for seq 1).

Hash. ``hash`` = :func:`ragops_schemas.ids.audit_hash` of ``prev_hash`` and the row's content
(:func:`content`): a JSON object of every column but ``prev_hash`` and ``hash``, keys sorted,
no whitespace, non-ASCII as is; ``audit_id`` as UUID text, ``occurred_at``/``recorded_at`` as
integer milliseconds since the epoch, ``before``/``after`` as their stored JSON text ('' for
none), the other columns as their values. For example::

    {"action":"auth.refused","actor_id":"anonymous","actor_kind":"anonymous",...,"tenant":"acme"}

What is detected. An edited row (its hash no longer matches), a deleted row (a gap in
``seq``, or a ``prev_hash`` that is not the hash before it), an inserted row (a ``seq`` seen
twice, or a hash or link that does not match) and rows swapped (their links break). What is
not: the newest rows of a chain deleted together, or a chain recomputed end to end by someone
who can write the table: compare the chain heads (``Verification.heads``) with a copy kept
elsewhere for that.

Appending (:func:`append`) reads each chain's head from the table before every batch (no
state in memory that a rebalance could make stale) and skips entries whose ``audit_id`` (the
source event's id) the chain already holds, so a redelivered event is appended once.
"""

import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa

from ragops_analytics import queries
from ragops_analytics.store import AnalyticsStore, Reader
from ragops_schemas.ids import AUDIT_GENESIS, audit_chain, audit_hash

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def millis(moment: datetime) -> int:
    """``moment`` as whole milliseconds since the epoch (a naive datetime is UTC), exactly:
    integer arithmetic, no float rounding."""
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(milliseconds=1)


@dataclass(frozen=True)
class AuditEntry:
    """What is audited, before it is chained: who (``actor_*``) did ``action`` on ``target``
    in ``tenant`` with ``outcome``; ``before``/``after`` are canonical JSON text ('' for none);
    ``source_*`` is the Kafka record it came from. ``audit_id`` is the source event's id."""

    audit_id: uuid.UUID
    tenant: str
    occurred_at_ms: int
    actor_kind: str
    actor_id: str
    actor_name: str
    action: str
    target: str
    outcome: str
    before: str
    after: str
    reason: str
    source_topic: str
    source_partition: int
    source_offset: int

    @property
    def chain(self) -> str:
        return audit_chain(self.tenant, self.source_topic, self.source_partition)


@dataclass(frozen=True)
class AuditRow:
    """One row of ``audit_log`` (columns :data:`ragops_analytics.queries.AUDIT_COLUMNS`;
    times in ms since the epoch)."""

    tenant: str
    chain: str
    seq: int
    audit_id: str
    occurred_at: int
    recorded_at: int
    actor_kind: str
    actor_id: str
    actor_name: str
    action: str
    target: str
    outcome: str
    before: str
    after: str
    reason: str
    source_topic: str
    source_partition: int
    source_offset: int
    prev_hash: str
    hash: str

    @classmethod
    def from_values(cls, values: Sequence[Any]) -> "AuditRow":
        """A row from the values a reader returns in :data:`~ragops_analytics.queries.AUDIT_COLUMNS` order."""
        typed: dict[str, Any] = {
            field.name: int(value) if field.type is int else str(value)
            for field, value in zip(fields(cls), values, strict=True)
        }
        return cls(**typed)

    @property
    def occurred(self) -> datetime:
        return _EPOCH + timedelta(milliseconds=self.occurred_at)


if [field.name for field in fields(AuditRow)] != list(queries.AUDIT_COLUMNS):
    raise RuntimeError("AuditRow and queries.AUDIT_COLUMNS list the audit_log columns differently")


def content(row: AuditRow) -> dict[str, Any]:
    """What a row's hash covers: every column but ``prev_hash`` and ``hash``."""
    values = asdict(row)
    del values["prev_hash"], values["hash"]
    return values


def chained(entries: Sequence[AuditEntry], heads: dict[str, tuple[int, str]], recorded_at: datetime) -> list[AuditRow]:
    """``entries`` as rows appended to their chains, in the order given within each chain.

    Args:
        heads: chain -> (last seq, its hash) of the chains that hold rows already.
        recorded_at: when they are appended (stored to the millisecond).
    """
    tips = dict(heads)
    rows = []
    for entry in entries:
        seq, prev_hash = tips.get(entry.chain, (0, AUDIT_GENESIS))
        values = asdict(entry)
        unsealed = AuditRow(
            **{name: values[name] for name in _ENTRY_COLUMNS},
            chain=entry.chain,
            seq=seq + 1,
            audit_id=str(entry.audit_id),
            occurred_at=entry.occurred_at_ms,
            recorded_at=millis(recorded_at),
            prev_hash=prev_hash,
            hash="",
        )
        row = replace(unsealed, hash=audit_hash(prev_hash, content(unsealed)))
        tips[entry.chain] = (row.seq, row.hash)
        rows.append(row)
    return rows


# The columns an entry gives a row as they are (the others are computed or converted).
_ENTRY_COLUMNS = tuple(field.name for field in fields(AuditEntry) if field.name not in {"audit_id", "occurred_at_ms"})
_ARROW_TYPES: dict[str, pa.DataType] = {
    "seq": pa.uint64(),
    "occurred_at": pa.timestamp("ms", tz="UTC"),
    "recorded_at": pa.timestamp("ms", tz="UTC"),
    "source_partition": pa.uint32(),
    "source_offset": pa.uint64(),
}
AUDIT_SCHEMA = pa.schema([(name, _ARROW_TYPES.get(name, pa.string())) for name in queries.AUDIT_COLUMNS])
"""The Arrow columns of a batch of ``audit_log`` rows (UUIDs as text, times as ms)."""


def to_arrow(rows: Sequence[AuditRow]) -> pa.Table:
    """``rows`` as an Arrow table with the columns of ``audit_log``."""
    return pa.table({name: [getattr(row, name) for row in rows] for name in AUDIT_SCHEMA.names}, schema=AUDIT_SCHEMA)


def append(store: AnalyticsStore, entries: Sequence[AuditEntry], recorded_at: datetime) -> list[AuditRow]:
    """Append ``entries`` to their chains, each chain's in the order given, and return the
    rows written; an entry whose ``audit_id`` its chain holds already (or that came earlier
    in ``entries``) is skipped: a redelivery appends nothing.

    One writer per chain (see the module's docstring). The rows go in as one insert: if it
    fails, nothing of it counts and the same call later appends them again.

    Raises:
        StoreUnavailable, DataRejected: from the store (nothing is appended).
    """
    if not entries:
        return []
    chains = sorted({entry.chain for entry in entries})
    stored = queries.audited_ids(store, chains, sorted({str(entry.audit_id) for entry in entries}))
    fresh: dict[uuid.UUID, AuditEntry] = {}
    for entry in entries:
        if str(entry.audit_id) not in stored:
            fresh.setdefault(entry.audit_id, entry)
    rows = chained(list(fresh.values()), queries.audit_heads(store, chains), recorded_at)
    queries.insert_audit(store, to_arrow(rows))
    return rows


# ------------------------------------------------------------------------- verification


@dataclass(frozen=True)
class Break:
    """The first row where a chain stops checking out: ``seq`` is the position expected."""

    chain: str
    seq: int
    problem: str


@dataclass(frozen=True)
class Verification:
    """The outcome of checking chains: ``chains`` and ``rows`` checked, each chain's head
    (chain -> (last seq, its hash)) and the first :class:`Break` (None: intact)."""

    chains: int
    rows: int
    heads: dict[str, tuple[int, str]]
    broken: Break | None

    @property
    def intact(self) -> bool:
        return self.broken is None


def check(rows: Iterable[AuditRow]) -> Verification:
    """Check rows given in (chain, seq) order; stops at the first break."""
    heads: dict[str, tuple[int, str]] = {}
    count = 0
    for row in rows:
        seq, prev_hash = heads.get(row.chain, (0, AUDIT_GENESIS))
        expected = seq + 1
        problem = ""
        if row.seq > expected:
            problem = f"rows {expected}..{row.seq - 1} are missing (deleted)"
        elif row.seq < expected:
            problem = f"seq {row.seq} appears again (an inserted row)"
        elif row.prev_hash != prev_hash:
            problem = "prev_hash is not the hash of the row before (a row deleted, inserted or moved)"
        elif audit_hash(row.prev_hash, content(row)) != row.hash:
            problem = "its content does not match its hash (the row was edited)"
        if problem:
            return Verification(len(heads), count, heads, Break(row.chain, expected, problem))
        heads[row.chain] = (row.seq, row.hash)
        count += 1
    return Verification(len(heads), count, heads, None)


def stored_rows(reader: Reader, tenant: str | None = None, page: int = 10_000) -> Iterator[AuditRow]:
    """Every row of ``tenant``'s chains (None: every tenant's) in (chain, seq) order, read
    ``page`` rows per query (each within the analyst limits on result rows)."""
    after_chain, after_seq = "", 0
    while True:
        values = queries.audit_chain_page(
            reader, tenant=tenant, after_chain=after_chain, after_seq=after_seq, size=page
        )
        for value in values:
            yield AuditRow.from_values(value)
        if len(values) < page:
            return
        after_chain, after_seq = str(values[-1][1]), int(values[-1][2])


def verify(reader: Reader, tenant: str | None = None) -> Verification:
    """Check every chain of ``tenant`` (None: every tenant) as stored.
    Raises what the reader raises (QueryError, StoreUnavailable)."""
    return check(stored_rows(reader, tenant))


def entries(
    reader: Reader,
    *,
    since: datetime | None = None,
    actor: str | None = None,
    action: str | None = None,
    tenant: str | None = None,
    limit: int = 100,
) -> list[AuditRow]:
    """The newest ``limit`` rows matching every filter given (``actor``: an id or a name), newest first."""
    rows = queries.audit_entries(reader, since=since, actor=actor, action=action, tenant=tenant, limit=limit)
    return [AuditRow.from_values(values) for values in rows]
