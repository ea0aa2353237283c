-- One row per event id in `events` and in every typed table, whatever its occurred_at.
--
-- Until now the sorting keys held occurred_at and the tables were partitioned by its month,
-- so one event id delivered twice with two occurred_at values (a service that publishes
-- again after a restart, with a new time) gave two rows that neither merges nor FINAL could
-- collapse. Each key now ends with the event id and holds nothing else but columns the
-- event id determines (its type, request, document...; evaluations add the metric, one row
-- per score of an event), and the tables have no time partition, so every copy of one event id meets in one part range and the latest
-- delivery (the version column, received_at) is the one kept. Time filters scan more; at
-- this platform's volumes FINAL on the whole table is still cheap.
--
-- ClickHouse cannot change the leading columns of a sorting key in place: each table is
-- rebuilt (create a table of the same columns under the new key, copy the rows, EXCHANGE
-- the two names, drop the old one), and the materialized views, which belong to the tables
-- they read and write, are dropped first and created again last. The statements can run
-- again from the first after an interruption: `<table>` holds every row at every step
-- (the copy `<table>_rekeyed` is dropped before it is rebuilt, and after the swap it is
-- the old table), and copying rows twice into a ReplacingMergeTree adds nothing.
--
-- Operators of a ClickHouse server: run one sink during this migration; rows another
-- sink inserts meanwhile reach neither the copies nor the typed tables. The retention TTL
-- of `events` is not copied: the sink sets it again right after migrating.

-- Views first: nothing may write into a table while it is copied and swapped.
DROP VIEW IF EXISTS queries_mv;
DROP VIEW IF EXISTS retrievals_mv;
DROP VIEW IF EXISTS generations_mv;
DROP VIEW IF EXISTS evaluations_mv;
DROP VIEW IF EXISTS feedback_mv;
DROP VIEW IF EXISTS documents_mv;
DROP VIEW IF EXISTS dead_letters_mv;
DROP VIEW IF EXISTS evaluation_runs_mv;
DROP VIEW IF EXISTS dataset_examples_mv;
DROP VIEW IF EXISTS query_vectors_mv;
DROP VIEW IF EXISTS drift_mv;
DROP VIEW IF EXISTS training_steps_mv;
DROP VIEW IF EXISTS versions_mv;

DROP TABLE IF EXISTS events_rekeyed;
CREATE TABLE events_rekeyed AS events
ENGINE = ReplacingMergeTree(received_at) PARTITION BY tuple() ORDER BY (event_type, event_id);
INSERT INTO events_rekeyed SELECT * FROM events;
EXCHANGE TABLES events AND events_rekeyed;
DROP TABLE events_rekeyed;

DROP TABLE IF EXISTS queries_rekeyed;
CREATE TABLE queries_rekeyed AS queries
ENGINE = ReplacingMergeTree(received_at) PARTITION BY tuple() ORDER BY (request_id, event_id);
INSERT INTO queries_rekeyed SELECT * FROM queries;
EXCHANGE TABLES queries AND queries_rekeyed;
DROP TABLE queries_rekeyed;

DROP TABLE IF EXISTS retrievals_rekeyed;
CREATE TABLE retrievals_rekeyed AS retrievals
ENGINE = ReplacingMergeTree(received_at) PARTITION BY tuple() ORDER BY (request_id, event_id);
INSERT INTO retrievals_rekeyed SELECT * FROM retrievals;
EXCHANGE TABLES retrievals AND retrievals_rekeyed;
DROP TABLE retrievals_rekeyed;

DROP TABLE IF EXISTS generations_rekeyed;
CREATE TABLE generations_rekeyed AS generations
ENGINE = ReplacingMergeTree(received_at) PARTITION BY tuple() ORDER BY (request_id, event_id);
INSERT INTO generations_rekeyed SELECT * FROM generations;
EXCHANGE TABLES generations AND generations_rekeyed;
DROP TABLE generations_rekeyed;

DROP TABLE IF EXISTS evaluations_rekeyed;
CREATE TABLE evaluations_rekeyed AS evaluations
ENGINE = ReplacingMergeTree(received_at) PARTITION BY tuple() ORDER BY (metric, event_id);
INSERT INTO evaluations_rekeyed SELECT * FROM evaluations;
EXCHANGE TABLES evaluations AND evaluations_rekeyed;
DROP TABLE evaluations_rekeyed;

DROP TABLE IF EXISTS feedback_rekeyed;
CREATE TABLE feedback_rekeyed AS feedback
ENGINE = ReplacingMergeTree(received_at) PARTITION BY tuple() ORDER BY (request_id, event_id);
INSERT INTO feedback_rekeyed SELECT * FROM feedback;
EXCHANGE TABLES feedback AND feedback_rekeyed;
DROP TABLE feedback_rekeyed;

DROP TABLE IF EXISTS documents_rekeyed;
CREATE TABLE documents_rekeyed AS documents
ENGINE = ReplacingMergeTree(received_at) PARTITION BY tuple() ORDER BY (document_id, event_id);
INSERT INTO documents_rekeyed SELECT * FROM documents;
EXCHANGE TABLES documents AND documents_rekeyed;
DROP TABLE documents_rekeyed;

DROP TABLE IF EXISTS dead_letters_rekeyed;
CREATE TABLE dead_letters_rekeyed AS dead_letters
ENGINE = ReplacingMergeTree(received_at) PARTITION BY tuple() ORDER BY (original_topic, event_id);
INSERT INTO dead_letters_rekeyed SELECT * FROM dead_letters;
EXCHANGE TABLES dead_letters AND dead_letters_rekeyed;
DROP TABLE dead_letters_rekeyed;

DROP TABLE IF EXISTS evaluation_runs_rekeyed;
CREATE TABLE evaluation_runs_rekeyed AS evaluation_runs
ENGINE = ReplacingMergeTree(received_at) PARTITION BY tuple() ORDER BY (run_id, event_id);
INSERT INTO evaluation_runs_rekeyed SELECT * FROM evaluation_runs;
EXCHANGE TABLES evaluation_runs AND evaluation_runs_rekeyed;
DROP TABLE evaluation_runs_rekeyed;

DROP TABLE IF EXISTS dataset_examples_rekeyed;
CREATE TABLE dataset_examples_rekeyed AS dataset_examples
ENGINE = ReplacingMergeTree(received_at) PARTITION BY tuple() ORDER BY (dataset, event_id);
INSERT INTO dataset_examples_rekeyed SELECT * FROM dataset_examples;
EXCHANGE TABLES dataset_examples AND dataset_examples_rekeyed;
DROP TABLE dataset_examples_rekeyed;

DROP TABLE IF EXISTS query_vectors_rekeyed;
CREATE TABLE query_vectors_rekeyed AS query_vectors
ENGINE = ReplacingMergeTree(received_at) PARTITION BY tuple() ORDER BY (request_id, event_id);
INSERT INTO query_vectors_rekeyed SELECT * FROM query_vectors;
EXCHANGE TABLES query_vectors AND query_vectors_rekeyed;
DROP TABLE query_vectors_rekeyed;

DROP TABLE IF EXISTS drift_rekeyed;
CREATE TABLE drift_rekeyed AS drift
ENGINE = ReplacingMergeTree(received_at) PARTITION BY tuple() ORDER BY (signal, event_id);
INSERT INTO drift_rekeyed SELECT * FROM drift;
EXCHANGE TABLES drift AND drift_rekeyed;
DROP TABLE drift_rekeyed;

DROP TABLE IF EXISTS training_steps_rekeyed;
CREATE TABLE training_steps_rekeyed AS training_steps
ENGINE = ReplacingMergeTree(received_at) PARTITION BY tuple() ORDER BY (request_event_id, event_id);
INSERT INTO training_steps_rekeyed SELECT * FROM training_steps;
EXCHANGE TABLES training_steps AND training_steps_rekeyed;
DROP TABLE training_steps_rekeyed;

DROP TABLE IF EXISTS versions_rekeyed;
CREATE TABLE versions_rekeyed AS versions
ENGINE = ReplacingMergeTree(received_at) PARTITION BY tuple() ORDER BY (kind, name, event_id);
INSERT INTO versions_rekeyed SELECT * FROM versions;
EXCHANGE TABLES versions AND versions_rekeyed;
DROP TABLE versions_rekeyed;

-- The materialized views again, on the swapped tables, as 0002 and 0004 left them but for
-- drift_mv.
CREATE MATERIALIZED VIEW IF NOT EXISTS queries_mv TO queries AS
SELECT
    event_id, occurred_at, received_at, tenant, request_id,
    JSONExtractString(payload, 'question') AS question,
    JSONExtractUInt(payload, 'top_k') AS top_k,
    JSONExtractString(payload, 'prompt_name') AS prompt_name,
    JSONExtractUInt(payload, 'prompt_version') AS prompt_version,
    JSONExtractString(payload, 'evaluation', 'run_id') AS run_id
FROM events
WHERE event_type = 'query.submitted';

CREATE MATERIALIZED VIEW IF NOT EXISTS retrievals_mv TO retrievals AS
WITH JSONExtractArrayRaw(payload, 'contexts') AS contexts
SELECT
    event_id, occurred_at, received_at, tenant, request_id,
    JSONExtractString(payload, 'retrieval', 'collection') AS collection,
    JSONExtractString(payload, 'retrieval', 'mode') AS mode,
    JSONExtractUInt(payload, 'retrieval', 'top_k') AS top_k,
    length(contexts) AS n_contexts,
    -- Contexts arrive ranked, so the first one carries the best score (0 when none).
    JSONExtractFloat(payload, 'contexts', 1, 'score') AS top_score,
    arrayMap(c -> JSONExtractString(c, 'document_id'), contexts) AS document_ids,
    arrayMap(c -> JSONExtractString(c, 'chunk_id'), contexts) AS chunk_ids,
    JSONExtractString(payload, 'retrieval', 'embedding', 'name') AS embedding_model,
    JSONExtractString(payload, 'retrieval', 'embedding', 'version') AS embedding_version,
    JSONExtract(payload, 'retrieval', 'top_similarity', 'Nullable(Float64)') AS top_similarity
FROM events
WHERE event_type = 'query.context_retrieved';

CREATE MATERIALIZED VIEW IF NOT EXISTS generations_mv TO generations AS
SELECT
    event_id, occurred_at, received_at, tenant, request_id,
    JSONExtractString(payload, 'answer') AS answer,
    JSONExtractString(payload, 'generation', 'gen_ai.request.model') AS model,
    JSONExtractString(payload, 'generation', 'model_version') AS model_version,
    JSONExtractString(payload, 'lineage', 'prompt', 'name') AS prompt_name,
    JSONExtractUInt(payload, 'lineage', 'prompt', 'version') AS prompt_version,
    JSONExtractString(payload, 'lineage', 'prompt', 'sha256') AS prompt_sha256,
    JSONExtractUInt(payload, 'generation', 'usage', 'gen_ai.usage.input_tokens') AS input_tokens,
    JSONExtractUInt(payload, 'generation', 'usage', 'gen_ai.usage.output_tokens') AS output_tokens,
    JSONExtractString(payload, 'generation', 'gen_ai.response.finish_reasons', 1) AS finish_reason,
    JSONExtractFloat(payload, 'generation', 'latency_ms') AS latency_ms,
    JSONExtractString(payload, 'lineage', 'collection') AS collection,
    JSONExtractString(payload, 'evaluation', 'run_id') AS run_id
FROM events
WHERE event_type = 'query.answer_generated';

CREATE MATERIALIZED VIEW IF NOT EXISTS evaluations_mv TO evaluations AS
SELECT
    event_id, occurred_at, received_at, tenant, request_id,
    JSONExtractString(score, 'gen_ai.evaluation.name') AS metric,
    JSONExtractFloat(score, 'gen_ai.evaluation.score.value') AS value,
    JSONExtractString(score, 'method') AS method,
    JSONExtractBool(score, 'reference_based') AS reference_based,
    JSONExtractString(payload, 'run_id') AS run_id,
    JSONExtractString(payload, 'example_id') AS example_id,
    JSONExtractString(payload, 'prompt', 'name') AS prompt_name,
    JSONExtractUInt(payload, 'prompt', 'version') AS prompt_version,
    JSONExtractString(payload, 'generation_model') AS generation_model
FROM events
ARRAY JOIN JSONExtractArrayRaw(payload, 'scores') AS score
WHERE event_type = 'query.answer_evaluated';

CREATE MATERIALIZED VIEW IF NOT EXISTS feedback_mv TO feedback AS
SELECT
    event_id, occurred_at, received_at, tenant, request_id,
    JSONExtractString(payload, 'thumb') AS thumb,
    -- Nullable: "no rating given" must not count as a rating of 0 in averages.
    JSONExtract(payload, 'rating', 'Nullable(UInt8)') AS rating,
    JSONExtractString(payload, 'comment') AS comment,
    JSONExtractString(payload, 'corrected_answer') != '' AS has_correction,
    JSONExtractString(payload, 'sentiment') AS sentiment,
    JSONExtractString(payload, 'lineage', 'prompt', 'name') AS prompt_name,
    JSONExtractUInt(payload, 'lineage', 'prompt', 'version') AS prompt_version,
    JSONExtractString(payload, 'lineage', 'generation_model') AS generation_model,
    JSONExtractString(payload, 'user_id') AS user_id
FROM events
WHERE event_type = 'feedback.recorded';

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

CREATE MATERIALIZED VIEW IF NOT EXISTS dead_letters_mv TO dead_letters AS
SELECT
    event_id, occurred_at, received_at, tenant,
    JSONExtractString(payload, 'original_topic') AS original_topic,
    -- partition/offset of the dead record, not of the dead-letter message itself.
    JSONExtractUInt(payload, 'partition') AS `partition`,
    JSONExtractUInt(payload, 'offset') AS `offset`,
    JSONExtractString(payload, 'consumer_group') AS consumer_group,
    JSONExtractString(payload, 'error_type') AS error_type,
    JSONExtractString(payload, 'reason') AS reason,
    producer
FROM events
WHERE event_type = 'message.dead_lettered';

CREATE MATERIALIZED VIEW IF NOT EXISTS evaluation_runs_mv TO evaluation_runs AS
SELECT
    event_id, occurred_at, received_at, tenant,
    JSONExtractString(payload, 'run_id') AS run_id,
    JSONExtractString(payload, 'dataset') AS dataset,
    JSONExtractUInt(payload, 'questions') AS questions,
    JSONExtractUInt(payload, 'answered') AS answered,
    JSONExtractString(payload, 'prompt', 'name') AS prompt_name,
    JSONExtractUInt(payload, 'prompt', 'version') AS prompt_version,
    JSONExtractString(payload, 'generation_model') AS generation_model,
    JSONExtractString(payload, 'collection') AS collection,
    JSONExtract(payload, 'mean_scores', 'Map(String, Float64)') AS mean_scores,
    JSONExtract(payload, 'spearman_vs_f1', 'Map(String, Nullable(Float64))') AS spearman_vs_f1
FROM events
WHERE event_type = 'evaluation.run_completed';

CREATE MATERIALIZED VIEW IF NOT EXISTS dataset_examples_mv TO dataset_examples AS
SELECT
    event_id, occurred_at, received_at, tenant, request_id,
    JSONExtractString(payload, 'dataset') AS dataset,
    JSONExtractString(payload, 'example_id') AS example_id,
    JSONExtractString(payload, 'question') AS question,
    JSONExtractString(payload, 'reference_answer') AS reference_answer,
    JSONExtractString(payload, 'source') AS source
FROM events
WHERE event_type = 'dataset.example_added';

CREATE MATERIALIZED VIEW IF NOT EXISTS query_vectors_mv TO query_vectors AS
SELECT
    event_id, occurred_at, received_at, tenant, request_id,
    JSONExtractString(payload, 'embedding', 'name') AS embedding_model,
    JSONExtractString(payload, 'embedding', 'version') AS embedding_version,
    JSONExtract(payload, 'vector', 'Array(Float32)') AS vector
FROM events
WHERE event_type = 'query.embedded';

-- OrZero: a window bound that is not a time string (a number of seconds, which the event's
-- schema accepts) is stored as 1970-01-01 instead of failing the insert after `events` took
-- the batch, which would leave the batch half stored.
CREATE MATERIALIZED VIEW IF NOT EXISTS drift_mv TO drift AS
SELECT
    event_id, event_type, occurred_at, received_at, tenant,
    JSONExtractString(payload, 'alert_id') AS alert_id,
    JSONExtractString(payload, 'signal') AS signal,
    JSONExtractString(payload, 'test') AS test,
    JSONExtractFloat(payload, 'statistic') AS statistic,
    JSONExtractFloat(payload, 'threshold') AS threshold,
    JSONExtractString(payload, 'threshold_on') AS threshold_on,
    JSONExtract(payload, 'p_value', 'Nullable(Float64)') AS p_value,
    parseDateTime64BestEffortOrZero(JSONExtractString(payload, 'reference', 'start'), 3, 'UTC') AS reference_start,
    parseDateTime64BestEffortOrZero(JSONExtractString(payload, 'reference', 'end'), 3, 'UTC') AS reference_end,
    JSONExtractUInt(payload, 'reference', 'size') AS reference_size,
    parseDateTime64BestEffortOrZero(JSONExtractString(payload, 'current', 'start'), 3, 'UTC') AS current_start,
    parseDateTime64BestEffortOrZero(JSONExtractString(payload, 'current', 'end'), 3, 'UTC') AS current_end,
    JSONExtractUInt(payload, 'current', 'size') AS current_size
FROM events
WHERE event_type IN ('drift.detected', 'drift.recovered');

CREATE MATERIALIZED VIEW IF NOT EXISTS training_steps_mv TO training_steps AS
SELECT
    event_id, event_type, occurred_at, received_at, tenant,
    if(event_type = 'retraining.requested', toString(event_id), JSONExtractString(payload, 'request_event_id'))
        AS request_event_id,
    JSONExtractString(payload, 'action') AS action,
    JSONExtractString(payload, 'reason') AS reason,
    JSONExtractString(payload, 'rule') AS rule,
    JSONExtract(payload, 'evidence', 'Array(String)') AS evidence,
    JSONExtractString(payload, 'candidate', 'version') AS candidate_version,
    JSONExtractString(payload, 'live', 'version') AS live_version,
    JSONExtractString(payload, 'metric') AS metric,
    JSONExtract(payload, 'candidate_value', 'Nullable(Float64)') AS candidate_value,
    JSONExtract(payload, 'live_value', 'Nullable(Float64)') AS live_value,
    JSONExtractUInt(payload, 'questions') AS questions,
    JSONExtractString(payload, 'decision') AS decision,
    JSONExtractBool(payload, 'timed_out') AS timed_out
FROM events
WHERE event_type IN ('retraining.requested', 'retraining.rejected', 'training.started', 'training.failed',
                     'training.candidate_evaluated');

CREATE MATERIALIZED VIEW IF NOT EXISTS versions_mv TO versions AS
SELECT
    event_id, event_type, occurred_at, received_at, tenant,
    JSONExtractString(payload, 'kind') AS kind,
    JSONExtractString(payload, 'name') AS name,
    JSONExtractString(payload, 'version') AS version,
    JSONExtractString(payload, 'alias') AS alias,
    JSONExtractString(payload, 'previous_version') AS previous_version,
    JSONExtractString(payload, 'uri') AS uri,
    JSONExtractString(payload, 'parent_version') AS parent_version,
    JSONExtractString(payload, 'training_data') AS training_data,
    JSONExtractString(payload, 'reason') AS reason,
    JSONExtractString(payload, 'request_event_id') AS request_event_id,
    JSONExtract(payload, 'metrics', 'Map(String, Float64)') AS metrics
FROM events
WHERE event_type LIKE 'registry.%';
