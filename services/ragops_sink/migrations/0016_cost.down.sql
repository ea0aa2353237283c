DROP VIEW IF EXISTS storage_per_day;
DROP VIEW IF EXISTS stage_cost_per_day;
DROP VIEW IF EXISTS cost_per_day;
DROP VIEW IF EXISTS cost_per_request;
DROP VIEW IF EXISTS stage_costs;
DROP VIEW IF EXISTS price_lists;
DROP VIEW IF EXISTS prices;

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
