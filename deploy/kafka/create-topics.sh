#!/usr/bin/env bash
# Create (or converge) every RAGOps topic on an Apache Kafka cluster. Run once before the
# services start: the `kafka-topics` one-shot service of docker-compose.yml does. In
# Kubernetes the same topics are Strimzi KafkaTopic resources (k8s/dependencies/kafka-topics.yaml).
#
# The list must equal schemas/ragops_schemas/topics.py (`Topic`); tests/contract/test_deployment.py
# checks it. Settings (environment):
#   BOOTSTRAP_SERVER          kafka:9092
#   TOPIC_PARTITIONS          3      the unit of parallelism: replicas of a service beyond it idle
#   TOPIC_REPLICATION_FACTOR  1      3 on a real cluster
#   TOPIC_RETENTION_MS        604800000 (7 days); the feedback service links feedback to answers
#                                    it reads from the start of the answer topic, so feedback on
#                                    an answer older than this is refused
#   DEAD_LETTER_RETENTION_MS  2592000000 (30 days)
#   (not settable) retention.ms=-1, kept forever: the histories that services rebuild their
#                  state from by reading a topic from its start (HISTORY_TOPICS below)
#   TOPIC_MAX_MESSAGE_BYTES   16777216 (16 MiB: chunk batches of long documents)
#   KAFKA_BIN                 /opt/kafka/bin
#   COMMAND_CONFIG            optional client properties file (SASL/TLS) for the admin tools
set -euo pipefail

BOOTSTRAP_SERVER="${BOOTSTRAP_SERVER:-kafka:9092}"
TOPIC_PARTITIONS="${TOPIC_PARTITIONS:-3}"
TOPIC_REPLICATION_FACTOR="${TOPIC_REPLICATION_FACTOR:-1}"
TOPIC_RETENTION_MS="${TOPIC_RETENTION_MS:-604800000}"
DEAD_LETTER_RETENTION_MS="${DEAD_LETTER_RETENTION_MS:-2592000000}"
TOPIC_MAX_MESSAGE_BYTES="${TOPIC_MAX_MESSAGE_BYTES:-16777216}"
KAFKA_BIN="${KAFKA_BIN:-/opt/kafka/bin}"
CLIENT=(--bootstrap-server "$BOOTSTRAP_SERVER")
if [[ -n "${COMMAND_CONFIG:-}" ]]; then CLIENT+=(--command-config "$COMMAND_CONFIG"); fi

TOPICS=(
  ragops.document.submitted.v1
  ragops.document.chunked.v1
  ragops.document.chunks-embedded.v1
  ragops.document.indexed.v1
  ragops.document.rejected.v1
  ragops.query.submitted.v1
  ragops.query.embedded.v1
  ragops.query.context-retrieved.v1
  ragops.query.answer-generated.v1
  ragops.query.answer-evaluated.v1
  ragops.feedback.submitted.v1
  ragops.feedback.recorded.v1
  ragops.dataset.example-added.v1
  ragops.evaluation.run-completed.v1
  ragops.monitor.drift-detected.v1
  ragops.monitor.drift-recovered.v1
  ragops.training.retraining-requested.v1
  ragops.training.retraining-rejected.v1
  ragops.training.started.v1
  ragops.training.failed.v1
  ragops.training.candidate-evaluated.v1
  ragops.registry.version-registered.v1
  ragops.registry.version-promoted.v1
  ragops.registry.version-rejected.v1
  ragops.registry.version-retired.v1
  ragops.dead-letter.v1
)

# Kept forever (retention.ms=-1; delete policy, not compaction: every event stays, as the
# readers expect). Their readers replay them from the beginning, so a deleted segment is lost
# state, not just old data:
# - ragops.registry.*: the version registry (every service folds it in at start; the live
#   embedding model, index and prompt versions are whatever it says);
# - ragops.document.submitted.v1: the trainer's refresh_corpus compares the sources with every
#   document submitted so far, so only new or changed ones are sent again;
# - ragops.document.chunked.v1: the trainer's reindex (and the index build after a fine-tune)
#   re-publishes the latest chunks of every document: a document whose chunks expired would
#   silently drop out of every rebuilt index;
# - ragops.dataset.example-added.v1: the trainer's fine-tuning data (the feedback dataset);
#   with 7 days it would only ever train on last week's feedback, and the registered
#   training-data snapshot could not be read back.
# They grow with the corpus (each re-index adds one copy of the chunks): size the brokers'
# disks (or tiered storage) for it.
HISTORY_TOPICS=(
  "ragops.registry.*"
  ragops.document.submitted.v1
  ragops.document.chunked.v1
  ragops.dataset.example-added.v1
)

retention_of() {
  local topic="$1" pattern
  for pattern in "${HISTORY_TOPICS[@]}"; do
    # shellcheck disable=SC2053  # the pattern is a glob on purpose
    if [[ "$topic" == $pattern ]]; then echo -1; return; fi
  done
  if [[ "$topic" == ragops.dead-letter.* ]]; then echo "$DEAD_LETTER_RETENTION_MS"; return; fi
  echo "$TOPIC_RETENTION_MS"
}

for topic in "${TOPICS[@]}"; do
  retention="$(retention_of "$topic")"
  "$KAFKA_BIN/kafka-topics.sh" "${CLIENT[@]}" --create --if-not-exists --topic "$topic" \
    --partitions "$TOPIC_PARTITIONS" --replication-factor "$TOPIC_REPLICATION_FACTOR" \
    --config "retention.ms=$retention" --config "max.message.bytes=$TOPIC_MAX_MESSAGE_BYTES"
  # Converge an existing topic's settings (create --if-not-exists leaves them as they were).
  "$KAFKA_BIN/kafka-configs.sh" "${CLIENT[@]}" --alter --entity-type topics --entity-name "$topic" \
    --add-config "retention.ms=$retention,max.message.bytes=$TOPIC_MAX_MESSAGE_BYTES"
done
echo "created or updated ${#TOPICS[@]} topics"
