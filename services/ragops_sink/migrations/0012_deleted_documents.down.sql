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

DELETE FROM documents WHERE status = 'deleted';
