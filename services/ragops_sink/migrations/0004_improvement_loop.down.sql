DROP VIEW IF EXISTS version_decisions;
DROP VIEW IF EXISTS versions_mv;
DROP TABLE IF EXISTS versions;
DROP VIEW IF EXISTS training_steps_mv;
DROP TABLE IF EXISTS training_steps;
DROP VIEW IF EXISTS drift_mv;
DROP TABLE IF EXISTS drift;
DROP VIEW IF EXISTS query_vectors_mv;
DROP TABLE IF EXISTS query_vectors;
DROP VIEW IF EXISTS retrievals_mv;
ALTER TABLE retrievals DROP COLUMN IF EXISTS top_similarity;
CREATE MATERIALIZED VIEW IF NOT EXISTS retrievals_mv TO retrievals AS
WITH JSONExtractArrayRaw(payload, 'contexts') AS contexts
SELECT
    event_id, occurred_at, received_at, tenant, request_id,
    JSONExtractString(payload, 'retrieval', 'collection') AS collection,
    JSONExtractString(payload, 'retrieval', 'mode') AS mode,
    JSONExtractUInt(payload, 'retrieval', 'top_k') AS top_k,
    length(contexts) AS n_contexts,
    JSONExtractFloat(payload, 'contexts', 1, 'score') AS top_score,
    arrayMap(c -> JSONExtractString(c, 'document_id'), contexts) AS document_ids,
    arrayMap(c -> JSONExtractString(c, 'chunk_id'), contexts) AS chunk_ids,
    JSONExtractString(payload, 'retrieval', 'embedding', 'name') AS embedding_model,
    JSONExtractString(payload, 'retrieval', 'embedding', 'version') AS embedding_version
FROM events
WHERE event_type = 'query.context_retrieved';
