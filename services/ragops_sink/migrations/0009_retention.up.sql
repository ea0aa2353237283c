-- Retention everywhere: a TTL on every table that holds content (questions, answers,
-- feedback comments, corrections, raw payloads, question vectors, error texts) or user ids,
-- counted from occurred_at so a replay of old events does not revive them. The values are
-- the defaults of ragops_analytics.queries.DEFAULT_RETENTION_DAYS (README, "Retention", says
-- why each); the sink sets each table's TTL from RAGOPS_SINK_RETENTION_DAYS right after
-- migrating, so an operator's value replaces these. A TTL deletes rows when ClickHouse merges
-- parts (and on OPTIMIZE ... FINAL), not at the second it expires.
--
-- The tables of ids, scores and lineage (retrievals, evaluations, documents, evaluation_runs,
-- drift, training_steps, versions) get none: they hold nothing personal and the monitor's
-- reference windows and the version history read them from far back.
ALTER TABLE events MODIFY TTL toDateTime(occurred_at) + toIntervalDay(90);
ALTER TABLE queries MODIFY TTL toDateTime(occurred_at) + toIntervalDay(90);
ALTER TABLE generations MODIFY TTL toDateTime(occurred_at) + toIntervalDay(90);
ALTER TABLE query_vectors MODIFY TTL toDateTime(occurred_at) + toIntervalDay(90);
ALTER TABLE feedback MODIFY TTL toDateTime(occurred_at) + toIntervalDay(180);
ALTER TABLE dataset_examples MODIFY TTL toDateTime(occurred_at) + toIntervalDay(365);
ALTER TABLE dead_letters MODIFY TTL toDateTime(occurred_at) + toIntervalDay(30);
-- The audit log is evidence of what staff did: seven years, the usual period for records
-- that must prove an action. Once its first rows expire, `ragops audit verify` reports them
-- as missing at the start of each chain (it cannot tell expiry from deletion).
ALTER TABLE audit_log MODIFY TTL toDateTime(occurred_at) + toIntervalDay(2557);
