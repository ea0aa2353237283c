-- An unchanged re-submission is acknowledged with a document.indexed event marked
-- `unchanged`: it gets status 'unchanged', so `documents` holds one 'indexed' row per
-- document version however often it is submitted, and `reused_chunks` counts the chunks a
-- changed version did not embed again. Rows stored before this migration keep their status.
ALTER TABLE documents ADD COLUMN IF NOT EXISTS reused_chunks UInt32;

DROP VIEW IF EXISTS documents_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS documents_mv TO documents AS
SELECT
    event_id, occurred_at, received_at, tenant, document_id,
    JSONExtractString(payload, 'document_version') AS document_version,
    multiIf(
        event_type = 'document.rejected', 'rejected',
        JSONExtractBool(payload, 'unchanged'), 'unchanged',
        'indexed'
    ) AS status,
    JSONExtractUInt(payload, 'chunk_count') AS chunk_count,
    JSONExtractUInt(payload, 'superseded_chunks') AS superseded_chunks,
    JSONExtractString(payload, 'collection') AS collection,
    JSONExtractString(payload, 'stage') AS stage,
    JSONExtractString(payload, 'reason') AS reason,
    JSONExtractUInt(payload, 'reused_chunks') AS reused_chunks
FROM events
WHERE event_type IN ('document.indexed', 'document.rejected');
