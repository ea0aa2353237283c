-- The improvement loop: query vectors and retrieval similarity for the monitor, drift
-- alerts, retraining requests and training runs, and the version registry. Same rules as
-- 0002 (materialized views from `events`, ReplacingMergeTree on event_id, read with FINAL).

-- The dense similarity of each query's nearest chunk, whatever the retrieval mode (the
-- fused RRF score in top_score is rank-based and says little about how good the match
-- is). NULL for retrievals stored before this migration.
ALTER TABLE retrievals ADD COLUMN IF NOT EXISTS top_similarity Nullable(Float64);

DROP VIEW IF EXISTS retrievals_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS retrievals_mv TO retrievals AS
WITH JSONExtractArrayRaw(payload, 'contexts') AS contexts
SELECT
    event_id, occurred_at, received_at, tenant, request_id,
    JSONExtractString(payload, 'retrieval', 'collection') AS collection,
    JSONExtractString(payload, 'retrieval', 'mode') AS mode,
    JSONExtractUInt(payload, 'retrieval', 'top_k') AS top_k,
    length(contexts) AS n_contexts,
    -- Contexts arrive ranked, so the first one carries the best score (0 when none).
    JSONExtractFloat(payload, 'contexts', 1, 'score') AS top_score,
    arrayMap(c -> JSONExtractString(c, 'document_id'), contexts) AS document_ids,
    arrayMap(c -> JSONExtractString(c, 'chunk_id'), contexts) AS chunk_ids,
    JSONExtractString(payload, 'retrieval', 'embedding', 'name') AS embedding_model,
    JSONExtractString(payload, 'retrieval', 'embedding', 'version') AS embedding_version,
    JSONExtract(payload, 'retrieval', 'top_similarity', 'Nullable(Float64)') AS top_similarity
FROM events
WHERE event_type = 'query.context_retrieved';

-- query.embedded: the question vectors (the monitor's embedding-drift input).
CREATE TABLE IF NOT EXISTS query_vectors
(
    event_id UUID,
    occurred_at DateTime64(3, 'UTC'),
    received_at DateTime64(3, 'UTC'),
    tenant LowCardinality(String),
    request_id String,
    embedding_model LowCardinality(String),
    embedding_version LowCardinality(String),
    vector Array(Float32) CODEC(ZSTD(1))
)
ENGINE = ReplacingMergeTree(received_at)
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (occurred_at, request_id, event_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS query_vectors_mv TO query_vectors AS
SELECT
    event_id, occurred_at, received_at, tenant, request_id,
    JSONExtractString(payload, 'embedding', 'name') AS embedding_model,
    JSONExtractString(payload, 'embedding', 'version') AS embedding_version,
    JSONExtract(payload, 'vector', 'Array(Float32)') AS vector
FROM events
WHERE event_type = 'query.embedded';

-- drift.detected / drift.recovered: every alert with its test and both windows.
CREATE TABLE IF NOT EXISTS drift
(
    event_id UUID,
    event_type LowCardinality(String),
    occurred_at DateTime64(3, 'UTC'),
    received_at DateTime64(3, 'UTC'),
    tenant LowCardinality(String),
    alert_id String,
    signal LowCardinality(String),
    test LowCardinality(String),
    statistic Float64,
    threshold Float64,
    threshold_on LowCardinality(String),
    p_value Nullable(Float64),
    reference_start DateTime64(3, 'UTC'),
    reference_end DateTime64(3, 'UTC'),
    reference_size UInt32,
    current_start DateTime64(3, 'UTC'),
    current_end DateTime64(3, 'UTC'),
    current_size UInt32
)
ENGINE = ReplacingMergeTree(received_at)
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (signal, occurred_at, event_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS drift_mv TO drift AS
SELECT
    event_id, event_type, occurred_at, received_at, tenant,
    JSONExtractString(payload, 'alert_id') AS alert_id,
    JSONExtractString(payload, 'signal') AS signal,
    JSONExtractString(payload, 'test') AS test,
    JSONExtractFloat(payload, 'statistic') AS statistic,
    JSONExtractFloat(payload, 'threshold') AS threshold,
    JSONExtractString(payload, 'threshold_on') AS threshold_on,
    JSONExtract(payload, 'p_value', 'Nullable(Float64)') AS p_value,
    parseDateTime64BestEffort(JSONExtractString(payload, 'reference', 'start'), 3, 'UTC') AS reference_start,
    parseDateTime64BestEffort(JSONExtractString(payload, 'reference', 'end'), 3, 'UTC') AS reference_end,
    JSONExtractUInt(payload, 'reference', 'size') AS reference_size,
    parseDateTime64BestEffort(JSONExtractString(payload, 'current', 'start'), 3, 'UTC') AS current_start,
    parseDateTime64BestEffort(JSONExtractString(payload, 'current', 'end'), 3, 'UTC') AS current_end,
    JSONExtractUInt(payload, 'current', 'size') AS current_size
FROM events
WHERE event_type IN ('drift.detected', 'drift.recovered');

-- retraining.* and training.*: one row per step of a request, joined by request_event_id
-- (a request's own row carries its event_id there).
CREATE TABLE IF NOT EXISTS training_steps
(
    event_id UUID,
    event_type LowCardinality(String),
    occurred_at DateTime64(3, 'UTC'),
    received_at DateTime64(3, 'UTC'),
    tenant LowCardinality(String),
    request_event_id String,
    action LowCardinality(String),
    reason String,
    rule String,
    evidence Array(String),
    candidate_version String,
    live_version String,
    metric LowCardinality(String),
    candidate_value Nullable(Float64),
    live_value Nullable(Float64),
    questions UInt32,
    decision LowCardinality(String),
    timed_out Bool
)
ENGINE = ReplacingMergeTree(received_at)
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (occurred_at, request_event_id, event_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS training_steps_mv TO training_steps AS
SELECT
    event_id, event_type, occurred_at, received_at, tenant,
    if(event_type = 'retraining.requested', toString(event_id), JSONExtractString(payload, 'request_event_id'))
        AS request_event_id,
    JSONExtractString(payload, 'action') AS action,
    JSONExtractString(payload, 'reason') AS reason,
    JSONExtractString(payload, 'rule') AS rule,
    JSONExtract(payload, 'evidence', 'Array(String)') AS evidence,
    JSONExtractString(payload, 'candidate', 'version') AS candidate_version,
    JSONExtractString(payload, 'live', 'version') AS live_version,
    JSONExtractString(payload, 'metric') AS metric,
    JSONExtract(payload, 'candidate_value', 'Nullable(Float64)') AS candidate_value,
    JSONExtract(payload, 'live_value', 'Nullable(Float64)') AS live_value,
    JSONExtractUInt(payload, 'questions') AS questions,
    JSONExtractString(payload, 'decision') AS decision,
    JSONExtractBool(payload, 'timed_out') AS timed_out
FROM events
WHERE event_type IN ('retraining.requested', 'retraining.rejected', 'training.started', 'training.failed',
                     'training.candidate_evaluated');

-- registry.*: the history of every version and alias.
CREATE TABLE IF NOT EXISTS versions
(
    event_id UUID,
    event_type LowCardinality(String),
    occurred_at DateTime64(3, 'UTC'),
    received_at DateTime64(3, 'UTC'),
    tenant LowCardinality(String),
    kind LowCardinality(String),
    name String,
    version String,
    alias LowCardinality(String),
    previous_version String,
    uri String,
    parent_version String,
    training_data String,
    reason String,
    request_event_id String,
    metrics Map(String, Float64)
)
ENGINE = ReplacingMergeTree(received_at)
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (kind, name, occurred_at, event_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS versions_mv TO versions AS
SELECT
    event_id, event_type, occurred_at, received_at, tenant,
    JSONExtractString(payload, 'kind') AS kind,
    JSONExtractString(payload, 'name') AS name,
    JSONExtractString(payload, 'version') AS version,
    JSONExtractString(payload, 'alias') AS alias,
    JSONExtractString(payload, 'previous_version') AS previous_version,
    JSONExtractString(payload, 'uri') AS uri,
    JSONExtractString(payload, 'parent_version') AS parent_version,
    JSONExtractString(payload, 'training_data') AS training_data,
    JSONExtractString(payload, 'reason') AS reason,
    JSONExtractString(payload, 'request_event_id') AS request_event_id,
    JSONExtract(payload, 'metrics', 'Map(String, Float64)') AS metrics
FROM events
WHERE event_type LIKE 'registry.%';

-- Why each version went live (or did not): production promotions and rejections: every promotion and rejection with the request
-- that caused it, the evaluation that decided it, and the drift evidence behind the request.
CREATE VIEW IF NOT EXISTS version_decisions AS
SELECT
    v.occurred_at AS decided_at,
    v.kind AS kind,
    v.name AS name,
    v.version AS version,
    if(v.event_type = 'registry.version_promoted', 'promoted', 'rejected') AS decision,
    v.alias AS alias,
    v.previous_version AS previous_version,
    v.reason AS reason,
    v.metrics AS metrics,
    r.action AS action,
    r.rule AS rule,
    r.reason AS request_reason,
    r.evidence AS drift_evidence
FROM (
    SELECT * FROM versions FINAL
    WHERE (event_type = 'registry.version_promoted' AND alias = 'production') OR event_type = 'registry.version_rejected'
) AS v
LEFT JOIN (SELECT * FROM training_steps FINAL WHERE event_type = 'retraining.requested') AS r
    ON v.request_event_id = r.request_event_id
ORDER BY decided_at;
