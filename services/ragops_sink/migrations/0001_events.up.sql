-- The raw log: one row per record the sink consumed, whatever its topic, so analysts
-- can answer questions no typed table anticipated and typed tables can be rebuilt.
--
-- ReplacingMergeTree(received_at) with event_id in the sorting key: Kafka delivers at
-- least once and operators replay topics, so the same event can arrive many times. All
-- copies share (event_type, occurred_at, event_id), hence the same sorting key and the
-- same monthly partition, and background merges keep one of them (the latest
-- received_at). Merges are eventual: read with FINAL (the analyst views do) to see
-- exactly one row per event before they have run.
--
-- The sorting key leads with event_type and occurred_at because almost every question
-- filters on a type and a time range. Records that are not valid events are kept with
-- event_type 'unparsable', the raw text in payload and the reason in parse_error; their
-- event_id is derived by the sink from (topic, partition, offset), so replays of a broken
-- record de-duplicate too.
CREATE TABLE IF NOT EXISTS events
(
    event_id UUID,
    event_type LowCardinality(String),
    schema_version UInt16,
    topic LowCardinality(String),
    `partition` UInt32,
    `offset` UInt64,
    message_key String,
    occurred_at DateTime64(3, 'UTC'),
    received_at DateTime64(3, 'UTC'),
    producer LowCardinality(String),
    producer_version LowCardinality(String),
    tenant LowCardinality(String),
    trace_id String,
    request_id String,
    document_id String,
    -- The event's JSON as produced: ZSTD(3) compresses repetitive JSON 5-10x at a small
    -- CPU cost on insert.
    payload String CODEC(ZSTD(3)),
    parse_error String
)
ENGINE = ReplacingMergeTree(received_at)
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (event_type, occurred_at, event_id);
