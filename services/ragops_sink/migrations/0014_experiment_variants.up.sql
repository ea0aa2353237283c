-- Experiments: the arm each answer was served by, from AnswerGenerated.lineage (experiment_id,
-- variant; written by generation from the embedding service's assignment). `generations`
-- keeps them per answer and `feedback` per feedback (FeedbackRecorded carries the rated
-- answer's lineage); '' outside an experiment. `experiment_observations` puts every
-- measurement of an experiment's answers in one place, one row per (observation, metric), for
-- analysts and for the monitor's sequential test (ragops_analytics.experiments):
--   * thumbs_down_rate: 1 for a thumbs-down feedback, 0 for a thumbs-up (feedback without a
--     thumb is left out), one row per answer of the experiment with a thumb: its latest one
--     (by occurred_at, then event_id), so repeated feedback on one answer cannot swing the test;
--   * each evaluation metric by its RAGAS/SQuAD name (faithfulness, f1...): the evaluation
--     service's scores of the experiment's answers (joined on the request);
--   * latency_ms: the model call's wall time the generation service records
--     (GenerationInfo.latency_ms, batch wait excluded), one row per answer;
--   * cost_usd: the answer's tokens at the operator's prices (model_prices, as
--     cost_per_request), only for models that have a price.
-- occurred_at is the observation's own time (the feedback's, the evaluation's, the answer's);
-- the monitor reads each metric in (occurred_at, event_id) order.
-- Rows stored before this migration get '' (no experiment); answers and feedback of an
-- experiment already in `events` (a sink upgraded late) are copied in again below, keyed on
-- their event id, so a row written twice is one row.

ALTER TABLE generations ADD COLUMN IF NOT EXISTS experiment_id LowCardinality(String);
ALTER TABLE generations ADD COLUMN IF NOT EXISTS variant LowCardinality(String);
ALTER TABLE feedback ADD COLUMN IF NOT EXISTS experiment_id LowCardinality(String);
ALTER TABLE feedback ADD COLUMN IF NOT EXISTS variant LowCardinality(String);

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
    JSONExtractString(payload, 'evaluation', 'run_id') AS run_id,
    -- '' for null (no experiment) as for a missing field.
    JSONExtractString(payload, 'lineage', 'experiment_id') AS experiment_id,
    JSONExtractString(payload, 'lineage', 'variant') AS variant
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
    JSONExtractString(payload, 'user_id') AS user_id,
    JSONExtractString(payload, 'lineage', 'experiment_id') AS experiment_id,
    JSONExtractString(payload, 'lineage', 'variant') AS variant
FROM events
WHERE event_type = 'feedback.recorded';

INSERT INTO generations (
    event_id, occurred_at, received_at, tenant, request_id, answer, model, model_version, prompt_name,
    prompt_version, prompt_sha256, input_tokens, output_tokens, finish_reason, latency_ms, collection, run_id,
    experiment_id, variant
)
SELECT
    event_id, occurred_at, received_at, tenant, request_id,
    JSONExtractString(payload, 'answer'),
    JSONExtractString(payload, 'generation', 'gen_ai.request.model'),
    JSONExtractString(payload, 'generation', 'model_version'),
    JSONExtractString(payload, 'lineage', 'prompt', 'name'),
    JSONExtractUInt(payload, 'lineage', 'prompt', 'version'),
    JSONExtractString(payload, 'lineage', 'prompt', 'sha256'),
    JSONExtractUInt(payload, 'generation', 'usage', 'gen_ai.usage.input_tokens'),
    JSONExtractUInt(payload, 'generation', 'usage', 'gen_ai.usage.output_tokens'),
    JSONExtractString(payload, 'generation', 'gen_ai.response.finish_reasons', 1),
    JSONExtractFloat(payload, 'generation', 'latency_ms'),
    JSONExtractString(payload, 'lineage', 'collection'),
    JSONExtractString(payload, 'evaluation', 'run_id'),
    JSONExtractString(payload, 'lineage', 'experiment_id'),
    JSONExtractString(payload, 'lineage', 'variant')
FROM events
WHERE event_type = 'query.answer_generated' AND JSONExtractString(payload, 'lineage', 'experiment_id') != '';

INSERT INTO feedback (
    event_id, occurred_at, received_at, tenant, request_id, thumb, rating, comment, has_correction, sentiment,
    prompt_name, prompt_version, generation_model, user_id, experiment_id, variant
)
SELECT
    event_id, occurred_at, received_at, tenant, request_id,
    JSONExtractString(payload, 'thumb'),
    JSONExtract(payload, 'rating', 'Nullable(UInt8)'),
    JSONExtractString(payload, 'comment'),
    JSONExtractString(payload, 'corrected_answer') != '',
    JSONExtractString(payload, 'sentiment'),
    JSONExtractString(payload, 'lineage', 'prompt', 'name'),
    JSONExtractUInt(payload, 'lineage', 'prompt', 'version'),
    JSONExtractString(payload, 'lineage', 'generation_model'),
    JSONExtractString(payload, 'user_id'),
    JSONExtractString(payload, 'lineage', 'experiment_id'),
    JSONExtractString(payload, 'lineage', 'variant')
FROM events
WHERE event_type = 'feedback.recorded' AND JSONExtractString(payload, 'lineage', 'experiment_id') != '';

CREATE VIEW IF NOT EXISTS experiment_observations AS
SELECT
    experiment_id, tupleElement(latest, 1) AS variant, 'thumbs_down_rate' AS metric,
    toFloat64(tupleElement(latest, 2) = 'down') AS value, tupleElement(latest, 3) AS occurred_at,
    tupleElement(latest, 4) AS event_id, tenant, request_id
FROM
(
    -- The latest thumb of each answer only: one client repeating its feedback is one observation.
    SELECT
        experiment_id, tenant, request_id,
        argMax((variant, thumb, occurred_at, event_id), (occurred_at, event_id)) AS latest
    FROM feedback FINAL
    WHERE experiment_id != '' AND thumb IN ('up', 'down')
    GROUP BY experiment_id, tenant, request_id
)
UNION ALL
SELECT
    g.experiment_id AS experiment_id, g.variant AS variant, e.metric AS metric, e.value AS value,
    e.occurred_at AS occurred_at, e.event_id AS event_id, e.tenant AS tenant, e.request_id AS request_id
FROM evaluations AS e FINAL
INNER JOIN
(
    SELECT request_id, experiment_id, variant FROM generations FINAL WHERE experiment_id != ''
) AS g ON e.request_id = g.request_id
UNION ALL
SELECT
    experiment_id, variant, 'latency_ms' AS metric, latency_ms AS value, occurred_at, event_id, tenant, request_id
FROM generations FINAL
WHERE experiment_id != ''
UNION ALL
SELECT
    g.experiment_id AS experiment_id, g.variant AS variant, 'cost_usd' AS metric,
    (g.input_tokens * p.input_usd_per_million + g.output_tokens * p.output_usd_per_million) / 1e6 AS value,
    g.occurred_at AS occurred_at, g.event_id AS event_id, g.tenant AS tenant, g.request_id AS request_id
FROM generations AS g FINAL
INNER JOIN
(
    SELECT model, input_usd_per_million, output_usd_per_million FROM model_prices FINAL
) AS p ON g.model = p.model
WHERE g.experiment_id != '';
