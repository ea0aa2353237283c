-- Price lists bound to the content whose signature verified (issue 16 security review).
--
-- signed_price_lists: one row per price list (cost.prices_published) whose signature verified,
--   written by the sink's audit subscriber (the path that verifies) with the record's value as
--   it verified. Keyed on event_id: a redelivery of the list writes the same row again.
-- prices: as in 0016, but read from signed_price_lists instead of `events` rows whose event_id
--   the audit log says is 'signed'. `events` keeps the latest record of an event id
--   (ReplacingMergeTree), and the audit log skips a second entry for an id as a redelivery, so a
--   record that reused a signed list's event_id (and occurred_at) with other prices replaced the
--   signed list in `events` and priced with the signed list's entry. A record whose content is not
--   what was signed never verifies, so it never reaches this table, whatever id it claims; and
--   the signed list stays in effect (the forged record cannot displace it).

CREATE TABLE IF NOT EXISTS signed_price_lists
(
    event_id UUID,
    occurred_at DateTime64(3, 'UTC'),
    payload String CODEC(ZSTD(3)),
    recorded_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(recorded_at)
PARTITION BY tuple()
ORDER BY event_id
-- It names each list's publisher: kept as long as the audit log (RAGOPS_SINK_RETENTION_DAYS).
TTL toDateTime(occurred_at) + toIntervalDay(2557);

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
    FROM signed_price_lists FINAL
    ORDER BY published_at, event_id
    LIMIT 1 BY price_list_id
)
ARRAY JOIN items AS item;
