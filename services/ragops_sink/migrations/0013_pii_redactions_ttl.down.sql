-- Back to no TTL. REMOVE TTL fails on a table with none (an operator may have set its retention
-- to null), so it first gets one that deletes nothing (fifty years, as 0009's down), then loses it.
ALTER TABLE pii_redactions MODIFY TTL toDateTime(occurred_at) + toIntervalDay(18250);
ALTER TABLE pii_redactions REMOVE TTL;
