-- Typed tables, one per analyst domain, filled by materialized views from `events`.
--
-- A materialized view here is an insert trigger: every block inserted into `events` is
-- also filtered and reshaped into the typed table, so the typed tables cost nothing at
-- query time and the JSON is parsed once. Consequences worth knowing:
--   * Only rows inserted after this migration flow into the typed tables; events stored
--     before it are not back-filled (re-insert them, or INSERT ... SELECT by hand).
--   * A replayed event is inserted again into the typed table as well. Each typed table is
--     a ReplacingMergeTree(received_at) whose sorting key contains event_id (and the
--     occurred_at that decides its monthly partition), so the copies collapse exactly as
--     they do in `events`; read with FINAL for exact counts before merges ran.
--   * Fields absent from a payload become the type's default ('' or 0); Nullable columns
--     are used only where "absent" means something different from 0.
--   * prompt_version 0 means "not pinned" (the service's latest); real versions start at 1.

-- query.submitted: the questions asked.
CREATE TABLE IF NOT EXISTS queries
(
    event_id UUID,
    occurred_at DateTime64(3, 'UTC'),
    received_at DateTime64(3, 'UTC'),
    tenant LowCardinality(String),
    request_id String,
    question String,
    top_k UInt16,
    prompt_name LowCardinality(String),
    prompt_version UInt32,
    run_id String
)
ENGINE = ReplacingMergeTree(received_at)
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (occurred_at, request_id, event_id);

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

-- query.context_retrieved: what retrieval returned, in rank order.
CREATE TABLE IF NOT EXISTS retrievals
(
    event_id UUID,
    occurred_at DateTime64(3, 'UTC'),
    received_at DateTime64(3, 'UTC'),
    tenant LowCardinality(String),
    request_id String,
    collection LowCardinality(String),
    mode LowCardinality(String),
    top_k UInt16,
    n_contexts UInt16,
    top_score Float64,
    document_ids Array(String),
    chunk_ids Array(String),
    embedding_model LowCardinality(String),
    embedding_version LowCardinality(String)
)
ENGINE = ReplacingMergeTree(received_at)
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (occurred_at, request_id, event_id);

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
    JSONExtractString(payload, 'retrieval', 'embedding', 'version') AS embedding_version
FROM events
WHERE event_type = 'query.context_retrieved';

-- query.answer_generated: answers, the model call and its token usage.
CREATE TABLE IF NOT EXISTS generations
(
    event_id UUID,
    occurred_at DateTime64(3, 'UTC'),
    received_at DateTime64(3, 'UTC'),
    tenant LowCardinality(String),
    request_id String,
    answer String,
    model LowCardinality(String),
    model_version LowCardinality(String),
    prompt_name LowCardinality(String),
    prompt_version UInt32,
    prompt_sha256 String,
    input_tokens UInt32,
    output_tokens UInt32,
    finish_reason LowCardinality(String),
    latency_ms Float64,
    collection LowCardinality(String),
    run_id String
)
ENGINE = ReplacingMergeTree(received_at)
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (occurred_at, request_id, event_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS generations_mv TO generations AS
SELECT
    event_id, occurred_at, received_at, tenant, request_id,
    JSONExtractString(payload, 'answer') AS answer,
    JSONExtractString(payload, 'generation', 'gen_ai.request.model') AS model,
    JSONExtractString(payload, 'generation', 'model_version') AS model_version,
    JSONExtractString(payload, 'lineage', 'prompt', 'name') AS prompt_name,
    JSONExtractUInt(payload, 'lineage', 'prompt', 'version') AS prompt_version,
    JSONExtractString(payload, 'lineage', 'prompt', 'sha256') AS prompt_sha256,
    JSONExtractUInt(payload, 'generation', 'usage', 'gen_ai.usage.input_tokens') AS input_tokens,
    JSONExtractUInt(payload, 'generation', 'usage', 'gen_ai.usage.output_tokens') AS output_tokens,
    JSONExtractString(payload, 'generation', 'gen_ai.response.finish_reasons', 1) AS finish_reason,
    JSONExtractFloat(payload, 'generation', 'latency_ms') AS latency_ms,
    JSONExtractString(payload, 'lineage', 'collection') AS collection,
    JSONExtractString(payload, 'evaluation', 'run_id') AS run_id
FROM events
WHERE event_type = 'query.answer_generated';

-- query.answer_evaluated: one row per (answer, metric), so quality is a plain GROUP BY.
CREATE TABLE IF NOT EXISTS evaluations
(
    event_id UUID,
    occurred_at DateTime64(3, 'UTC'),
    received_at DateTime64(3, 'UTC'),
    tenant LowCardinality(String),
    request_id String,
    metric LowCardinality(String),
    value Float64,
    method LowCardinality(String),
    reference_based Bool,
    run_id String,
    example_id String,
    prompt_name LowCardinality(String),
    prompt_version UInt32,
    generation_model LowCardinality(String)
)
ENGINE = ReplacingMergeTree(received_at)
PARTITION BY toYYYYMM(occurred_at)
-- metric is part of the key: the rows of one event differ only by metric and must not
-- collapse into one.
ORDER BY (metric, occurred_at, event_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS evaluations_mv TO evaluations AS
SELECT
    event_id, occurred_at, received_at, tenant, request_id,
    JSONExtractString(score, 'gen_ai.evaluation.name') AS metric,
    JSONExtractFloat(score, 'gen_ai.evaluation.score.value') AS value,
    JSONExtractString(score, 'method') AS method,
    JSONExtractBool(score, 'reference_based') AS reference_based,
    JSONExtractString(payload, 'run_id') AS run_id,
    JSONExtractString(payload, 'example_id') AS example_id,
    JSONExtractString(payload, 'prompt', 'name') AS prompt_name,
    JSONExtractUInt(payload, 'prompt', 'version') AS prompt_version,
    JSONExtractString(payload, 'generation_model') AS generation_model
FROM events
ARRAY JOIN JSONExtractArrayRaw(payload, 'scores') AS score
WHERE event_type = 'query.answer_evaluated';

-- feedback.recorded: user feedback joined (by the feedback service) with what it rates.
CREATE TABLE IF NOT EXISTS feedback
(
    event_id UUID,
    occurred_at DateTime64(3, 'UTC'),
    received_at DateTime64(3, 'UTC'),
    tenant LowCardinality(String),
    request_id String,
    thumb LowCardinality(String),
    rating Nullable(UInt8),
    comment String,
    has_correction Bool,
    sentiment LowCardinality(String),
    prompt_name LowCardinality(String),
    prompt_version UInt32,
    generation_model LowCardinality(String),
    user_id String
)
ENGINE = ReplacingMergeTree(received_at)
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (occurred_at, request_id, event_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS feedback_mv TO feedback AS
SELECT
    event_id, occurred_at, received_at, tenant, request_id,
    JSONExtractString(payload, 'thumb') AS thumb,
    -- Nullable: "no rating given" must not count as a rating of 0 in averages.
    JSONExtract(payload, 'rating', 'Nullable(UInt8)') AS rating,
    JSONExtractString(payload, 'comment') AS comment,
    JSONExtractString(payload, 'corrected_answer') != '' AS has_correction,
    JSONExtractString(payload, 'sentiment') AS sentiment,
    JSONExtractString(payload, 'lineage', 'prompt', 'name') AS prompt_name,
    JSONExtractUInt(payload, 'lineage', 'prompt', 'version') AS prompt_version,
    JSONExtractString(payload, 'lineage', 'generation_model') AS generation_model,
    JSONExtractString(payload, 'user_id') AS user_id
FROM events
WHERE event_type = 'feedback.recorded';

-- document.indexed / document.rejected: the fate of each document version.
CREATE TABLE IF NOT EXISTS documents
(
    event_id UUID,
    occurred_at DateTime64(3, 'UTC'),
    received_at DateTime64(3, 'UTC'),
    tenant LowCardinality(String),
    document_id String,
    document_version String,
    status LowCardinality(String),
    chunk_count UInt32,
    superseded_chunks UInt32,
    collection LowCardinality(String),
    stage LowCardinality(String),
    reason String
)
ENGINE = ReplacingMergeTree(received_at)
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (document_id, occurred_at, event_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS documents_mv TO documents AS
SELECT
    event_id, occurred_at, received_at, tenant, document_id,
    JSONExtractString(payload, 'document_version') AS document_version,
    if(event_type = 'document.indexed', 'indexed', 'rejected') AS status,
    JSONExtractUInt(payload, 'chunk_count') AS chunk_count,
    JSONExtractUInt(payload, 'superseded_chunks') AS superseded_chunks,
    JSONExtractString(payload, 'collection') AS collection,
    JSONExtractString(payload, 'stage') AS stage,
    JSONExtractString(payload, 'reason') AS reason
FROM events
WHERE event_type IN ('document.indexed', 'document.rejected');

-- message.dead_lettered: records a consumer gave up on, and why.
CREATE TABLE IF NOT EXISTS dead_letters
(
    event_id UUID,
    occurred_at DateTime64(3, 'UTC'),
    received_at DateTime64(3, 'UTC'),
    tenant LowCardinality(String),
    original_topic LowCardinality(String),
    `partition` UInt32,
    `offset` UInt64,
    consumer_group LowCardinality(String),
    error_type LowCardinality(String),
    reason String,
    producer LowCardinality(String)
)
ENGINE = ReplacingMergeTree(received_at)
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (occurred_at, original_topic, event_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS dead_letters_mv TO dead_letters AS
SELECT
    event_id, occurred_at, received_at, tenant,
    JSONExtractString(payload, 'original_topic') AS original_topic,
    -- partition/offset of the dead record, not of the dead-letter message itself.
    JSONExtractUInt(payload, 'partition') AS `partition`,
    JSONExtractUInt(payload, 'offset') AS `offset`,
    JSONExtractString(payload, 'consumer_group') AS consumer_group,
    JSONExtractString(payload, 'error_type') AS error_type,
    JSONExtractString(payload, 'reason') AS reason,
    producer
FROM events
WHERE event_type = 'message.dead_lettered';

-- evaluation.run_completed: one row per offline evaluation run.
CREATE TABLE IF NOT EXISTS evaluation_runs
(
    event_id UUID,
    occurred_at DateTime64(3, 'UTC'),
    received_at DateTime64(3, 'UTC'),
    tenant LowCardinality(String),
    run_id String,
    dataset String,
    questions UInt32,
    answered UInt32,
    prompt_name LowCardinality(String),
    prompt_version UInt32,
    generation_model LowCardinality(String),
    collection LowCardinality(String),
    mean_scores Map(String, Float64),
    -- NULL where the correlation is undefined (constant scores), not 0.
    spearman_vs_f1 Map(String, Nullable(Float64))
)
ENGINE = ReplacingMergeTree(received_at)
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (occurred_at, run_id, event_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS evaluation_runs_mv TO evaluation_runs AS
SELECT
    event_id, occurred_at, received_at, tenant,
    JSONExtractString(payload, 'run_id') AS run_id,
    JSONExtractString(payload, 'dataset') AS dataset,
    JSONExtractUInt(payload, 'questions') AS questions,
    JSONExtractUInt(payload, 'answered') AS answered,
    JSONExtractString(payload, 'prompt', 'name') AS prompt_name,
    JSONExtractUInt(payload, 'prompt', 'version') AS prompt_version,
    JSONExtractString(payload, 'generation_model') AS generation_model,
    JSONExtractString(payload, 'collection') AS collection,
    JSONExtract(payload, 'mean_scores', 'Map(String, Float64)') AS mean_scores,
    JSONExtract(payload, 'spearman_vs_f1', 'Map(String, Nullable(Float64))') AS spearman_vs_f1
FROM events
WHERE event_type = 'evaluation.run_completed';

-- dataset.example_added: questions promoted into evaluation datasets (e.g. corrections).
CREATE TABLE IF NOT EXISTS dataset_examples
(
    event_id UUID,
    occurred_at DateTime64(3, 'UTC'),
    received_at DateTime64(3, 'UTC'),
    tenant LowCardinality(String),
    dataset LowCardinality(String),
    example_id String,
    question String,
    reference_answer String,
    source LowCardinality(String),
    request_id String
)
ENGINE = ReplacingMergeTree(received_at)
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (dataset, occurred_at, event_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS dataset_examples_mv TO dataset_examples AS
SELECT
    event_id, occurred_at, received_at, tenant, request_id,
    JSONExtractString(payload, 'dataset') AS dataset,
    JSONExtractString(payload, 'example_id') AS example_id,
    JSONExtractString(payload, 'question') AS question,
    JSONExtractString(payload, 'reference_answer') AS reference_answer,
    JSONExtractString(payload, 'source') AS source
FROM events
WHERE event_type = 'dataset.example_added';

-- USD per million tokens, set by operators (AnalyticsStore.set_prices); the latest
-- updated_at per model wins.
CREATE TABLE IF NOT EXISTS model_prices
(
    model String,
    input_usd_per_million Float64,
    output_usd_per_million Float64,
    updated_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY model;
