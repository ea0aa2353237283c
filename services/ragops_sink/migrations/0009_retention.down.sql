-- Back to no TTL on the tables 0009 gave one (events keeps whatever the sink sets).
ALTER TABLE queries REMOVE TTL;
ALTER TABLE generations REMOVE TTL;
ALTER TABLE query_vectors REMOVE TTL;
ALTER TABLE feedback REMOVE TTL;
ALTER TABLE dataset_examples REMOVE TTL;
ALTER TABLE dead_letters REMOVE TTL;
ALTER TABLE audit_log REMOVE TTL;
