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
  ragops.dead-letter.v1
)

for topic in "${TOPICS[@]}"; do
  retention="$TOPIC_RETENTION_MS"
  if [[ "$topic" == ragops.dead-letter.* ]]; then retention="$DEAD_LETTER_RETENTION_MS"; fi
  "$KAFKA_BIN/kafka-topics.sh" "${CLIENT[@]}" --create --if-not-exists --topic "$topic" \
    --partitions "$TOPIC_PARTITIONS" --replication-factor "$TOPIC_REPLICATION_FACTOR" \
    --config "retention.ms=$retention" --config "max.message.bytes=$TOPIC_MAX_MESSAGE_BYTES"
  # Converge an existing topic's settings (create --if-not-exists leaves them as they were).
  "$KAFKA_BIN/kafka-configs.sh" "${CLIENT[@]}" --alter --entity-type topics --entity-name "$topic" \
    --add-config "retention.ms=$retention,max.message.bytes=$TOPIC_MAX_MESSAGE_BYTES"
done
echo "created or updated ${#TOPICS[@]} topics"
