DROP VIEW IF EXISTS quality_by_day;
DROP VIEW IF EXISTS quality_by_prompt_version;
DROP VIEW IF EXISTS latency_by_stage;
DROP VIEW IF EXISTS feedback_rates;
-- cost_per_day reads cost_per_request: drop the dependent view first.
DROP VIEW IF EXISTS cost_per_day;
DROP VIEW IF EXISTS cost_per_request;
DROP VIEW IF EXISTS dead_letters_by_reason;
