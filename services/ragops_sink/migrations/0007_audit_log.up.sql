-- The audit log: who did what, in which tenant, with what outcome; hash-chained per chain
-- (<tenant>/<source topic>/<partition>, ragops_schemas.ids.audit_chain) so an edited, deleted
-- or inserted row is found by `ragops audit verify` (ragops_analytics.audit). Append-only: a
-- plain MergeTree (no merge ever replaces or drops a row), written only by the sink's audit
-- subscriber, never by a materialized view; before/after hold canonical JSON text ('' for none).
CREATE TABLE IF NOT EXISTS audit_log
(
    tenant LowCardinality(String),
    chain String,
    seq UInt64,
    audit_id UUID,
    occurred_at DateTime64(3, 'UTC'),
    recorded_at DateTime64(3, 'UTC'),
    actor_kind LowCardinality(String),
    actor_id String,
    actor_name String,
    action LowCardinality(String),
    target String,
    outcome LowCardinality(String),
    before String,
    after String,
    reason String,
    source_topic LowCardinality(String),
    source_partition UInt32,
    source_offset UInt64,
    prev_hash String,
    hash String
)
ENGINE = MergeTree
ORDER BY (tenant, chain, seq);
