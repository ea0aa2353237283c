-- Redaction before anything is kept: producers' questions, documents and feedback reach the
-- sink only as the privacy service's `*.redacted` events (the `*.submitted` intake topics are
-- not sunk any more). `queries` now takes `query.redacted` (the question with its personal
-- data replaced), and the counts of what was replaced, per entity type, are kept:
--   * `queries.redactions`: entity type -> count, per question;
--   * `pii_redactions`: one row per (redacted event, entity type) for the three kinds
--     (document, query, feedback): what analysts group by. Never the values.
-- Rows stored before this migration keep what they hold (a `query.submitted` question stays
-- in `queries` until its retention or an erasure removes it).

ALTER TABLE queries ADD COLUMN IF NOT EXISTS redactions Map(String, UInt32);

DROP VIEW IF EXISTS queries_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS queries_mv TO queries AS
SELECT
    event_id, occurred_at, received_at, tenant, request_id,
    JSONExtractString(payload, 'question') AS question,
    JSONExtractUInt(payload, 'top_k') AS top_k,
    JSONExtractString(payload, 'prompt_name') AS prompt_name,
    JSONExtractUInt(payload, 'prompt_version') AS prompt_version,
    JSONExtractString(payload, 'evaluation', 'run_id') AS run_id,
    JSONExtract(payload, 'redactions', 'Map(String, UInt32)') AS redactions
FROM events
WHERE event_type = 'query.redacted';

-- Keyed on the event and the entity type (the rows of one event differ only by it), no time
-- partition: copies of one event id collapse (as 0005 keys every typed table).
CREATE TABLE IF NOT EXISTS pii_redactions
(
    event_id UUID,
    occurred_at DateTime64(3, 'UTC'),
    received_at DateTime64(3, 'UTC'),
    tenant LowCardinality(String),
    kind LowCardinality(String),
    request_id String,
    document_id String,
    entity_type LowCardinality(String),
    count UInt32
)
ENGINE = ReplacingMergeTree(received_at)
PARTITION BY tuple()
ORDER BY (kind, entity_type, event_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS pii_redactions_mv TO pii_redactions AS
SELECT
    event_id, occurred_at, received_at, tenant,
    -- document, query or feedback
    splitByChar('.', event_type)[1] AS kind,
    request_id, document_id,
    entity.1 AS entity_type,
    entity.2 AS count
FROM events
ARRAY JOIN JSONExtractKeysAndValues(payload, 'redactions', 'UInt32') AS entity
WHERE event_type IN ('document.redacted', 'query.redacted', 'feedback.redacted');

-- The first stage starts at the question as redacted: its occurred_at is the submission's
-- (the privacy service keeps it), so the stages measure what they did before.
DROP VIEW IF EXISTS latency_by_stage;

CREATE VIEW IF NOT EXISTS latency_by_stage AS
WITH per_request AS
(
    SELECT
        request_id,
        minOrNullIf(occurred_at, event_type = 'query.redacted') AS submitted,
        minOrNullIf(occurred_at, event_type = 'query.embedded') AS embedded,
        minOrNullIf(occurred_at, event_type = 'query.context_retrieved') AS retrieved,
        minOrNullIf(occurred_at, event_type = 'query.answer_generated') AS generated
    FROM events
    WHERE request_id != ''
      AND event_type IN ('query.redacted', 'query.embedded', 'query.context_retrieved', 'query.answer_generated')
    GROUP BY request_id
)
SELECT
    toDate(ifNull(submitted, generated)) AS day,
    stage_ms.1 AS stage,
    count() AS n,
    quantile(0.5)(assumeNotNull(stage_ms.2)) AS p50_ms,
    quantile(0.95)(assumeNotNull(stage_ms.2)) AS p95_ms
FROM per_request
ARRAY JOIN [
    ('embedding', dateDiff('millisecond', submitted, embedded)),
    ('retrieval', dateDiff('millisecond', embedded, retrieved)),
    ('generation', dateDiff('millisecond', retrieved, generated)),
    ('end_to_end', dateDiff('millisecond', submitted, generated))
] AS stage_ms
WHERE stage_ms.2 IS NOT NULL
GROUP BY day, stage;
