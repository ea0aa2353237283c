-- The cost of every stage (issue 16): price lists as events, the compute each stored event
-- reports, the token bill, and the bytes stored per day.
--
-- prices: one row per (list, price) of every price list (cost.prices_published) whose signature
--   verified. A view, not a table filled by a materialized view, because a materialized view
--   cannot check a signature: the sink's audit subscriber does (audit_log outcome 'signed',
--   the same check as registry events), and only those lists price anything. A list published
--   twice (same price_list_id: same content and effective_from) is one list.
-- price_lists: one row per list with its prices as a map 'unit|resource' -> usd. The list in
--   effect at a moment is the latest one whose effective_from is at or before it (ASOF JOIN):
--   a later list never re-prices the past, and a unit a list does not name costs 0 under it.
-- stage_costs: one row per stored event whose payload carries `compute` (ComputeUsage: wall
--   seconds of the stage's work x the CPU cores or GPUs held): stage = the producing service,
--   usd = seconds x units / 3600 x the list's cpu_core_hour (device 'cpu') or gpu_hour
--   (device 'cuda'; the envelope does not say which GPU kind, so the '*' entry) price.
-- cost_per_request: the columns it had (request_id, occurred_at, model, input_tokens,
--   output_tokens, cost_usd), now with tenant, token_usd (tokens x the list's price for the
--   model; the legacy model_prices table, set by RAGOPS_SINK_PRICES, is the fallback for a
--   model no list in effect names), compute_usd (every stage's stage_costs of the request)
--   and cost_usd = token_usd + compute_usd.
-- stage_cost_per_day: usd, seconds and events per day, tenant and stage (the compute side;
--   cost_per_day keeps its per-model token totals, now counting compute too via cost_usd).
-- storage_per_day: per day (received_at), tenant and topic, the bytes of the events' JSON
--   payloads stored that day (uncompressed length(payload), replays counted once): what the
--   platform's own log grows by; ClickHouse's compressed size is smaller (ZSTD, ~5-10x).

CREATE VIEW IF NOT EXISTS prices AS
SELECT
    price_list_id, effective_from, published_at, event_id,
    JSONExtractString(item, 'unit') AS unit,
    JSONExtractString(item, 'resource') AS resource,
    JSONExtractFloat(item, 'usd') AS usd
FROM
(
    SELECT
        JSONExtractString(payload, 'price_list_id') AS price_list_id,
        parseDateTime64BestEffort(JSONExtractString(payload, 'effective_from'), 3, 'UTC') AS effective_from,
        occurred_at AS published_at,
        event_id,
        JSONExtractArrayRaw(payload, 'prices') AS items
    FROM events FINAL
    WHERE event_type = 'cost.prices_published'
      AND event_id IN
      (
          SELECT audit_id FROM audit_log WHERE action = 'cost.prices_published' AND outcome = 'signed'
      )
    ORDER BY published_at, event_id
    LIMIT 1 BY price_list_id
)
ARRAY JOIN items AS item;

CREATE VIEW IF NOT EXISTS price_lists AS
SELECT
    price_list_id,
    effective_from,
    mapFromArrays(groupArray(concat(unit, '|', resource)), groupArray(usd)) AS usd_by_key,
    toUInt8(1) AS anchor
FROM prices
GROUP BY price_list_id, effective_from;

CREATE VIEW IF NOT EXISTS stage_costs AS
SELECT
    e.event_id AS event_id,
    e.event_type AS event_type,
    e.occurred_at AS occurred_at,
    e.tenant AS tenant,
    e.request_id AS request_id,
    e.document_id AS document_id,
    e.producer AS stage,
    e.device AS device,
    e.seconds AS seconds,
    e.units AS units,
    l.price_list_id AS price_list_id,
    e.seconds * e.units / 3600
        * if(e.device = 'cuda', l.usd_by_key['gpu_hour|*'], l.usd_by_key['cpu_core_hour|*']) AS usd
FROM
(
    SELECT
        event_id, event_type, occurred_at, tenant, request_id, document_id, producer,
        JSONExtractString(payload, 'compute', 'device') AS device,
        JSONExtractFloat(payload, 'compute', 'seconds') AS seconds,
        JSONExtractUInt(payload, 'compute', 'units') AS units,
        toUInt8(1) AS anchor
    FROM events FINAL
    WHERE JSONType(payload, 'compute') = 'Object'
) AS e
ASOF LEFT JOIN price_lists AS l ON e.anchor = l.anchor AND e.occurred_at >= l.effective_from;

DROP VIEW IF EXISTS cost_per_day;
DROP VIEW IF EXISTS cost_per_request;

CREATE VIEW IF NOT EXISTS cost_per_request AS
SELECT
    t.request_id AS request_id,
    t.occurred_at AS occurred_at,
    t.tenant AS tenant,
    t.model AS model,
    t.input_tokens AS input_tokens,
    t.output_tokens AS output_tokens,
    t.price_list_id AS price_list_id,
    t.token_usd AS token_usd,
    ifNull(c.compute_usd, 0) AS compute_usd,
    t.token_usd + ifNull(c.compute_usd, 0) AS cost_usd
FROM
(
    SELECT
        g.request_id AS request_id, g.occurred_at AS occurred_at, g.tenant AS tenant, g.model AS model,
        g.input_tokens AS input_tokens, g.output_tokens AS output_tokens, l.price_list_id AS price_list_id,
        (g.input_tokens * if(mapContains(l.usd_by_key, concat('input_tokens_million|', g.model)),
                             l.usd_by_key[concat('input_tokens_million|', g.model)],
                             ifNull(p.input_usd_per_million, 0))
         + g.output_tokens * if(mapContains(l.usd_by_key, concat('output_tokens_million|', g.model)),
                                l.usd_by_key[concat('output_tokens_million|', g.model)],
                                ifNull(p.output_usd_per_million, 0))) / 1e6 AS token_usd
    FROM (SELECT *, toUInt8(1) AS anchor FROM generations FINAL) AS g
    ASOF LEFT JOIN price_lists AS l ON g.anchor = l.anchor AND g.occurred_at >= l.effective_from
    LEFT JOIN
    (
        SELECT model, input_usd_per_million, output_usd_per_million FROM model_prices FINAL
    ) AS p ON g.model = p.model
) AS t
LEFT JOIN
(
    SELECT request_id, sum(usd) AS compute_usd FROM stage_costs WHERE request_id != '' GROUP BY request_id
) AS c ON t.request_id = c.request_id;

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

CREATE VIEW IF NOT EXISTS stage_cost_per_day AS
SELECT
    toDate(occurred_at) AS day,
    tenant,
    stage,
    count() AS events,
    sum(seconds * units) AS unit_seconds,
    sum(usd) AS usd
FROM stage_costs
GROUP BY day, tenant, stage;

CREATE VIEW IF NOT EXISTS storage_per_day AS
SELECT
    toDate(received_at) AS day,
    tenant,
    topic,
    count() AS events,
    sum(length(payload)) AS payload_bytes
FROM events FINAL
GROUP BY day, tenant, topic;
