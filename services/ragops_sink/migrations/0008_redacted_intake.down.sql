DROP VIEW IF EXISTS latency_by_stage;

CREATE VIEW IF NOT EXISTS latency_by_stage AS
WITH per_request AS
(
    SELECT
        request_id,
        minOrNullIf(occurred_at, event_type = 'query.submitted') AS submitted,
        minOrNullIf(occurred_at, event_type = 'query.embedded') AS embedded,
        minOrNullIf(occurred_at, event_type = 'query.context_retrieved') AS retrieved,
        minOrNullIf(occurred_at, event_type = 'query.answer_generated') AS generated
    FROM events
    WHERE request_id != ''
      AND event_type IN ('query.submitted', 'query.embedded', 'query.context_retrieved', 'query.answer_generated')
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

DROP VIEW IF EXISTS pii_redactions_mv;
DROP TABLE IF EXISTS pii_redactions;

DROP VIEW IF EXISTS queries_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS queries_mv TO queries AS
SELECT
    event_id, occurred_at, received_at, tenant, request_id,
    JSONExtractString(payload, 'question') AS question,
    JSONExtractUInt(payload, 'top_k') AS top_k,
    JSONExtractString(payload, 'prompt_name') AS prompt_name,
    JSONExtractUInt(payload, 'prompt_version') AS prompt_version,
    JSONExtractString(payload, 'evaluation', 'run_id') AS run_id
FROM events
WHERE event_type = 'query.submitted';

ALTER TABLE queries DROP COLUMN IF EXISTS redactions;
