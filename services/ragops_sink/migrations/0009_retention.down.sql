-- Back to no TTL on the tables 0009 gave one (events keeps whatever the sink sets). REMOVE TTL
-- fails on a table with none (an operator may have set a table's retention to null), so each
-- table first gets a TTL that deletes nothing (fifty years: a
-- century would pass DateTime's end in 2106 and wrap round), then loses it.
ALTER TABLE queries MODIFY TTL toDateTime(occurred_at) + toIntervalDay(18250);
ALTER TABLE queries REMOVE TTL;
ALTER TABLE generations MODIFY TTL toDateTime(occurred_at) + toIntervalDay(18250);
ALTER TABLE generations REMOVE TTL;
ALTER TABLE query_vectors MODIFY TTL toDateTime(occurred_at) + toIntervalDay(18250);
ALTER TABLE query_vectors REMOVE TTL;
ALTER TABLE feedback MODIFY TTL toDateTime(occurred_at) + toIntervalDay(18250);
ALTER TABLE feedback REMOVE TTL;
ALTER TABLE dataset_examples MODIFY TTL toDateTime(occurred_at) + toIntervalDay(18250);
ALTER TABLE dataset_examples REMOVE TTL;
ALTER TABLE dead_letters MODIFY TTL toDateTime(occurred_at) + toIntervalDay(18250);
ALTER TABLE dead_letters REMOVE TTL;
ALTER TABLE audit_log MODIFY TTL toDateTime(occurred_at) + toIntervalDay(18250);
ALTER TABLE audit_log REMOVE TTL;
