-- A deleted document: the indexer's document.removed (the deletion carried out) gets status
-- 'deleted' in `documents`, with the points it removed over every collection in
-- superseded_chunks, so a document's latest row says whether it is live. The deletion itself
-- (document.deleted) stays in `events`. Rows stored before this migration keep their status.
DROP VIEW IF EXISTS documents_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS documents_mv TO documents AS
SELECT
    event_id, occurred_at, received_at, tenant, document_id,
    JSONExtractString(payload, 'document_version') AS document_version,
    multiIf(
        event_type = 'document.rejected', 'rejected',
        event_type = 'document.removed', 'deleted',
        JSONExtractBool(payload, 'unchanged'), 'unchanged',
        'indexed'
    ) AS status,
    JSONExtractUInt(payload, 'chunk_count') AS chunk_count,
    if(
        event_type = 'document.removed',
        arraySum(mapValues(JSONExtract(payload, 'removed_points', 'Map(String, UInt64)'))),
        JSONExtractUInt(payload, 'superseded_chunks')
    ) AS superseded_chunks,
    JSONExtractString(payload, 'collection') AS collection,
    JSONExtractString(payload, 'stage') AS stage,
    JSONExtractString(payload, 'reason') AS reason,
    JSONExtractUInt(payload, 'reused_chunks') AS reused_chunks
FROM events
WHERE event_type IN ('document.indexed', 'document.rejected', 'document.removed');

-- Removals stored in `events` before the view knew them (a replay, a sink upgraded late):
-- keyed on event_id, so a row written twice is one row.
INSERT INTO documents
SELECT
    event_id, occurred_at, received_at, tenant, document_id, '' AS document_version, 'deleted' AS status,
    0 AS chunk_count,
    arraySum(mapValues(JSONExtract(payload, 'removed_points', 'Map(String, UInt64)'))) AS superseded_chunks,
    '' AS collection, '' AS stage, '' AS reason, 0 AS reused_chunks
FROM events
WHERE event_type = 'document.removed';
