DROP VIEW IF EXISTS prices;

CREATE VIEW IF NOT EXISTS prices AS
SELECT
    price_list_id, effective_from, published_at, published_by, reason, event_id,
    JSONExtractString(item, 'unit') AS unit,
    JSONExtractString(item, 'resource') AS resource,
    JSONExtractFloat(item, 'usd') AS usd
FROM
(
    SELECT
        JSONExtractString(payload, 'price_list_id') AS price_list_id,
        parseDateTime64BestEffort(JSONExtractString(payload, 'effective_from'), 3, 'UTC') AS effective_from,
        occurred_at AS published_at,
        JSONExtractString(payload, 'published_by', 'name') AS published_by,
        JSONExtractString(payload, 'reason') AS reason,
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

DROP TABLE IF EXISTS signed_price_lists;
