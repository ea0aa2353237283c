DROP VIEW IF EXISTS experiment_observations;

DROP VIEW IF EXISTS generations_mv;

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

DROP VIEW IF EXISTS feedback_mv;

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

ALTER TABLE feedback DROP COLUMN IF EXISTS variant;
ALTER TABLE feedback DROP COLUMN IF EXISTS experiment_id;
ALTER TABLE generations DROP COLUMN IF EXISTS variant;
ALTER TABLE generations DROP COLUMN IF EXISTS experiment_id;
