-- Ingestion's data-quality findings (ragops_ingestion.quality): one row per document version
-- that passed the checks (its document.chunked event; every part carries the same findings,
-- so only part 1 is read, or 0 where a producer left the default out; re-index replays are
-- left out) and one per document refused by a check under a 'reject' policy (its
-- document.rejected event naming the check). Read from the raw log with FINAL so a replayed
-- event counts once; events from before the checks have no `quality` and no `check` and are
-- left out. Columns a row of the other outcome does not have are empty ('' or NULL, an
-- empty map or array). The tenant column lets a tenant's analyst read its own rows.
CREATE VIEW IF NOT EXISTS document_quality AS
SELECT
    occurred_at,
    tenant,
    document_id,
    JSONExtractString(payload, 'document_version') AS document_version,
    if(event_type = 'document.rejected', 'rejected', 'accepted') AS outcome,
    JSONExtractString(payload, 'check') AS rejected_by,
    if(event_type = 'document.rejected', JSONExtractString(payload, 'reason'), '') AS reason,
    JSONExtractString(payload, 'quality', 'language') AS language,
    JSONExtract(payload, 'quality', 'language_score', 'Nullable(Float64)') AS language_score,
    JSONExtractString(payload, 'quality', 'duplicate_of') AS duplicate_of,
    JSONExtractString(payload, 'quality', 'near_duplicate_of') AS near_duplicate_of,
    JSONExtract(payload, 'quality', 'near_duplicate_similarity', 'Nullable(Float64)') AS near_duplicate_similarity,
    JSONExtractUInt(payload, 'quality', 'encoding_damage') AS encoding_damage,
    JSONExtract(payload, 'quality', 'pii', 'Map(String, UInt32)') AS pii,
    JSONExtract(payload, 'quality', 'warnings', 'Array(String)') AS warnings
FROM events FINAL
WHERE (
        event_type = 'document.chunked'
        AND JSONType(payload, 'quality') = 'Object'
        AND JSONExtractUInt(payload, 'part') <= 1
        AND JSONType(payload, 'index_build') != 'Object'
    )
   OR (event_type = 'document.rejected' AND JSONExtractString(payload, 'check') != '');
