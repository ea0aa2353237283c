DROP VIEW IF EXISTS documents_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS documents_mv TO documents AS
SELECT
    event_id, occurred_at, received_at, tenant, document_id,
    JSONExtractString(payload, 'document_version') AS document_version,
    if(event_type = 'document.indexed', 'indexed', 'rejected') AS status,
    JSONExtractUInt(payload, 'chunk_count') AS chunk_count,
    JSONExtractUInt(payload, 'superseded_chunks') AS superseded_chunks,
    JSONExtractString(payload, 'collection') AS collection,
    JSONExtractString(payload, 'stage') AS stage,
    JSONExtractString(payload, 'reason') AS reason
FROM events
WHERE event_type IN ('document.indexed', 'document.rejected');

ALTER TABLE documents DROP COLUMN IF EXISTS reused_chunks;
