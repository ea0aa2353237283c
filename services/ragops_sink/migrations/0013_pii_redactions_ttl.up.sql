-- Retention for `pii_redactions` (0008 created it without a TTL): its rows carry no text, but
-- each is keyed by a request id or document id and says what kinds of personal data that
-- request or document held (that a person's question contained a card number, an IBAN): data
-- about the person, read with the question it describes. It keeps the default of `queries`,
-- ragops_analytics.queries.DEFAULT_RETENTION_DAYS, 90 days; the sink applies
-- RAGOPS_SINK_RETENTION_DAYS over it at start, as for the tables of 0009.
ALTER TABLE pii_redactions MODIFY TTL toDateTime(occurred_at) + toIntervalDay(90);
