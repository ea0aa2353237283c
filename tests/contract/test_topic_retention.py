"""Kafka retention per topic from one declaration (``TopicSpec.retention``): the compose script's
generated block gives every topic its spec's ``retention.ms``, for every :class:`Retention`
(a new one included, without an edit of the generator). The Strimzi resources are checked in
test_deployment; the embedded broker in tests/integration/test_topic_retention.py."""

import subprocess

from ragops import kafka_topics
from ragops_schemas.topics import TOPICS, Retention, TopicSpec


def script_retention(block: str, topics: list[str]) -> dict[str, int]:
    """``retention_of`` of each topic, as bash evaluates the generated block with its defaults."""
    program = block + '\nfor topic in "$@"; do echo "$topic $(retention_of "$topic")"; done\n'
    out = subprocess.run(["bash", "-c", program, "bash", *topics], capture_output=True, text=True, check=True).stdout
    return {topic: int(value) for topic, value in (line.split() for line in out.splitlines())}


def test_the_script_gives_each_platform_topic_its_declared_retention() -> None:
    rendered = kafka_topics.render()[kafka_topics.SCRIPT]
    block = rendered.partition(kafka_topics.BEGIN)[2].partition(kafka_topics.END)[0]
    expected = {spec.topic.value: spec.retention.value for spec in TOPICS}
    assert script_retention(block, list(expected)) == expected


def test_every_retention_reaches_the_script() -> None:
    specs = tuple(
        TopicSpec(topic=f"ragops.test.{r.name.lower()}.v1", key=("request_id",), retention=r)  # type: ignore[arg-type]
        for r in Retention
    )
    block = kafka_topics._script_block(specs)
    assert script_retention(block, [str(spec.topic) for spec in specs]) == {
        str(spec.topic): spec.retention.value for spec in specs
    }
