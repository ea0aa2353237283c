-- Named views for analysts. Each reads its ReplacingMergeTree tables with FINAL so a
-- replayed event counts once even before background merges have collapsed the copies
-- (FINAL merges at read time; it costs CPU on large ranges, so filter on time first).

-- Mean score per day and metric.
CREATE VIEW IF NOT EXISTS quality_by_day AS
SELECT
    toDate(occurred_at) AS day,
    metric,
    count() AS n,
    avg(value) AS mean_value
FROM evaluations FINAL
GROUP BY day, metric;

-- Mean score per prompt version and metric: the table to compare prompt versions on.
CREATE VIEW IF NOT EXISTS quality_by_prompt_version AS
SELECT
    prompt_name,
    prompt_version,
    metric,
    count() AS n,
    avg(value) AS mean_value
FROM evaluations FINAL
GROUP BY prompt_name, prompt_version, metric;

-- Per-stage latency (ms) of the query pipeline, from the times each stage's event was
-- produced: embedding = submitted -> embedded, retrieval = embedded -> context_retrieved,
-- generation = context_retrieved -> answer_generated, end_to_end = submitted ->
-- answer_generated. Each stage uses the earliest event of its type per request, so
-- replays and retries (which only add later copies) change nothing and FINAL is not
-- needed. A request that has not reached a stage does not count in it. Quantiles are
-- ClickHouse's approximate `quantile` (exact below 8192 values per group).
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

-- User feedback per day and prompt version. Rates are shares of all feedback rows;
-- mean_rating ignores feedback without a rating (NULL when none had one).
CREATE VIEW IF NOT EXISTS feedback_rates AS
SELECT
    toDate(occurred_at) AS day,
    prompt_name,
    prompt_version,
    count() AS n,
    avg(thumb = 'up') AS thumbs_up_rate,
    avg(thumb = 'down') AS thumbs_down_rate,
    avg(rating) AS mean_rating,
    avg(has_correction) AS correction_rate
FROM feedback FINAL
GROUP BY day, prompt_name, prompt_version;

-- Cost of each generation in USD: tokens x price per million tokens / 1e6. A model with
-- no row in model_prices costs 0 (ifNull also covers servers running join_use_nulls=1).
CREATE VIEW IF NOT EXISTS cost_per_request AS
SELECT
    g.request_id AS request_id,
    g.occurred_at AS occurred_at,
    g.model AS model,
    g.input_tokens AS input_tokens,
    g.output_tokens AS output_tokens,
    (g.input_tokens * ifNull(p.input_usd_per_million, 0)
     + g.output_tokens * ifNull(p.output_usd_per_million, 0)) / 1e6 AS cost_usd
FROM generations AS g FINAL
LEFT JOIN
(
    SELECT model, input_usd_per_million, output_usd_per_million
    FROM model_prices FINAL
) AS p ON g.model = p.model;

CREATE VIEW IF NOT EXISTS cost_per_day AS
SELECT
    toDate(occurred_at) AS day,
    model,
    count() AS requests,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(cost_usd) AS cost_usd
FROM cost_per_request
GROUP BY day, model;

CREATE VIEW IF NOT EXISTS dead_letters_by_reason AS
SELECT
    toDate(occurred_at) AS day,
    original_topic,
    error_type,
    reason,
    count() AS n
FROM dead_letters FINAL
GROUP BY day, original_topic, error_type, reason;
