-- Human review: `reviews` keeps the privacy service's review.answer_reviewed events (a
-- reviewer's label of one answer, its correction and comment redacted; the raw
-- review.submitted intake topic is not sunk), one row per event. A reviewer who labels the
-- same answer again adds a row; the queries read the latest per (request, reviewer)
-- (ragops_analytics.queries.review_labels). Keyed on the request and the event, no time
-- partition, as 0005 keys every typed table. The corrected answer and comment are a person's
-- free text (redacted, but still content): a retention TTL like `dataset_examples`, which the
-- labels become (ragops_analytics.queries.DEFAULT_RETENTION_DAYS; the sink applies
-- RAGOPS_SINK_RETENTION_DAYS over it at start, as for the tables of 0009).
CREATE TABLE IF NOT EXISTS reviews
(
    event_id UUID,
    occurred_at DateTime64(3, 'UTC'),
    received_at DateTime64(3, 'UTC'),
    tenant LowCardinality(String),
    request_id String,
    answer_event_id String,
    reviewer String,
    correct Bool,
    grounded Bool,
    -- random, low_score or negative_feedback (ragops_schemas.review.SampledAs)
    sampled_as LowCardinality(String),
    corrected_answer String,
    comment String,
    redactions Map(String, UInt32)
)
ENGINE = ReplacingMergeTree(received_at)
PARTITION BY tuple()
ORDER BY (request_id, event_id)
TTL toDateTime(occurred_at) + toIntervalDay(365);

CREATE MATERIALIZED VIEW IF NOT EXISTS reviews_mv TO reviews AS
SELECT
    event_id, occurred_at, received_at, tenant, request_id,
    JSONExtractString(payload, 'answer_event_id') AS answer_event_id,
    JSONExtractString(payload, 'reviewer') AS reviewer,
    JSONExtractBool(payload, 'correct') AS correct,
    JSONExtractBool(payload, 'grounded') AS grounded,
    JSONExtractString(payload, 'sampled_as') AS sampled_as,
    -- '' for null (no correction, no comment) as for a missing field.
    JSONExtractString(payload, 'corrected_answer') AS corrected_answer,
    JSONExtractString(payload, 'comment') AS comment,
    JSONExtract(payload, 'redactions', 'Map(String, UInt32)') AS redactions
FROM events
WHERE event_type = 'review.answer_reviewed';

-- Reviews already in `events` (a sink upgraded late), keyed on their event id: written twice is one row.
INSERT INTO reviews
SELECT
    event_id, occurred_at, received_at, tenant, request_id,
    JSONExtractString(payload, 'answer_event_id'),
    JSONExtractString(payload, 'reviewer'),
    JSONExtractBool(payload, 'correct'),
    JSONExtractBool(payload, 'grounded'),
    JSONExtractString(payload, 'sampled_as'),
    JSONExtractString(payload, 'corrected_answer'),
    JSONExtractString(payload, 'comment'),
    JSONExtract(payload, 'redactions', 'Map(String, UInt32)')
FROM events
WHERE event_type = 'review.answer_reviewed';
