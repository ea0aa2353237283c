"""Who may read and write which topic: each service's declared ``reads``/``writes``/``consumer_groups``
(``ragops_<service>/spec.py``) agree with what its code does, and the generated Strimzi
``KafkaUser``s grant exactly those, to a credential of its own.

How a declaration is held to the code (offline, no broker):

- writes: a service publishes only through its ``EventPublisher``, which registers every event
  type it may publish as an AsyncAPI channel (and refuses any other type with ``KeyError``), so
  the AsyncAPI ``send`` channels are exactly the topics it can write; no service package opens
  a producer of its own;
- group reads: every ``EventSubscriber`` is an AsyncAPI ``receive`` channel named after its group;
- reads without a group (the watchers and views that fold a topic): the event classes named in
  the arguments of its reading calls (``EventWatcher``, ``read_topics``, ``ctx.read``,
  ``EventSubscriber``) and the topics of the shared views it uses (``RegistryView``,
  ``IndexedDocuments``, ``ExperimentView``) are declared reads; every other event class its code names is a
  declared read or write; a declared read its code never makes is an error too.

The end-to-end run checks the same over real traffic (``tests/e2e/test_platform.py``: every
event's ``producer`` is a declared writer of its topic).
"""

from __future__ import annotations

import ast
import json
from functools import cache
from pathlib import Path

import pytest

from ragops import kafka_users
from ragops.client import PUBLISHES, WATCHES
from ragops.specs import SERVICE_SPECS
from ragops_schemas import EVENT_TYPES
from ragops_schemas.topics import Topic
from ragops_shared.spec import EXPERIMENT_TOPICS, REGISTRY_TOPICS, Scaling, ServiceSpec
from tests.contract.test_deployment import BASE, K8S, base_resources, container, k8s_documents

ROOT = Path(__file__).resolve().parents[2]
ASYNCAPI = ROOT / "schemas" / "asyncapi"
EVENTS_BY_NAME = {event.__name__: event for event in EVENT_TYPES}
# The shared readers a service may use, and the topics each one reads.
SHARED_VIEWS = {
    "RegistryView": ("registry_view", frozenset(REGISTRY_TOPICS)),
    "ExperimentView": ("registry_view", frozenset(EXPERIMENT_TOPICS)),
    "IndexedDocuments": ("indexed_view", frozenset({Topic.DOCUMENT_INDEXED, Topic.DOCUMENT_REMOVED})),
}
# The calls that read topics, whose event-class arguments are reads.
READERS = {"EventWatcher", "EventSubscriber", "ControlView", "read_topics", "read"}
# The control topics and who may write each: the trainer (its fine-tunes, re-indexes and
# prompt rollbacks, or their requests when promotions need approval), the embedding service
# (it registers its packaged default model at start) and the gateway's four-eyes control
# plane (people's requests, the decisions, and the effects of approved changes). The CLI's
# operator user registers dataset versions (ragops dataset push, signed by the operator key); its
# other commands go through the gateway.
REGISTRY_WRITERS = {
    Topic.VERSION_REGISTERED: {"ragops-trainer", "ragops-embedding", "ragops-gateway", "ragops-operator"},
    Topic.VERSION_PROMOTED: {"ragops-trainer", "ragops-gateway"},
    Topic.VERSION_REJECTED: {"ragops-trainer"},
    Topic.VERSION_RETIRED: {"ragops-gateway"},
    Topic.CHANGE_REQUESTED: {"ragops-trainer", "ragops-gateway"},
    Topic.CHANGE_APPROVED: {"ragops-gateway"},
    Topic.CHANGE_REJECTED: {"ragops-gateway"},
    # Operators start and stop experiments at the gateway.
    Topic.EXPERIMENT_STARTED: {"ragops-gateway"},
    Topic.EXPERIMENT_STOPPED: {"ragops-gateway"},
    # The monitor's sequential test concludes them.
    Topic.EXPERIMENT_CONCLUDED: {"ragops-monitor"},
}


@cache
def channels(service: str) -> dict[str, set[tuple[Topic, str]]]:
    """The Kafka channels of a service's AsyncAPI document by action (``send``/``receive``):
    (topic, channel name) pairs."""
    document = json.loads((ASYNCAPI / f"{service}.json").read_text())
    found: dict[str, set[tuple[Topic, str]]] = {"send": set(), "receive": set()}
    for operation in document["operations"].values():
        name = operation["channel"]["$ref"].rsplit("/", 1)[1]
        channel = document["channels"][name]
        if "kafka" in channel.get("bindings", {}):
            found[operation["action"]].add((Topic(channel["address"]), name))
    return found


def groups_of(service: str) -> set[str]:
    """The consumer groups of a service's subscribers, from their channel names
    (``<topic>:<group>``, the sink's ``all-topics:<group>:<topic>``)."""
    return {
        part
        for topic, name in channels(service)["receive"]
        for part in name.replace(topic.value, "").split(":")
        if part and part != "all-topics"
    }


def _trees(package: Path) -> list[ast.AST]:
    return [ast.parse(path.read_text()) for path in package.rglob("*.py") if "tests" not in path.parts]


def _names(package: Path) -> set[str]:
    """Every name a package's code uses (variables, attributes, imports)."""
    names: set[str] = set()
    for tree in _trees(package):
        for node in ast.walk(tree):
            if isinstance(node, ast.Name):
                names.add(node.id)
            elif isinstance(node, ast.Attribute):
                names.add(node.attr)
            elif isinstance(node, ast.alias):
                names.add(node.asname or node.name.rsplit(".", 1)[-1])
    return names


def _read_names(package: Path) -> set[str]:
    """The names in the arguments of every call that reads topics: the watchers, the trainer's
    ``read_topics``/``ctx.read`` and the subscribers."""
    names: set[str] = set()
    for tree in _trees(package):
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                called = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
                if called in READERS:
                    for argument in [*node.args, *(keyword.value for keyword in node.keywords)]:
                        names |= {n.id for n in ast.walk(argument) if isinstance(n, ast.Name)}
    return names


def _topics(names: set[str]) -> set[Topic]:
    topics = {EVENTS_BY_NAME[name].TOPIC for name in names & EVENTS_BY_NAME.keys()}
    for view, (_, read) in SHARED_VIEWS.items():
        topics |= read if view in names else set()
    return topics


def code_topics(spec: ServiceSpec) -> set[Topic]:
    """The topics a service's code names: its event classes and the shared views it uses."""
    return _topics(_names(ROOT / "services" / spec.module))


def code_reads(spec: ServiceSpec) -> set[Topic]:
    """The topics a service's code reads: the event classes its reading calls name, and the shared views."""
    package = ROOT / "services" / spec.module
    return _topics(_read_names(package) | (_names(package) & SHARED_VIEWS.keys()))


@pytest.mark.parametrize("spec", SERVICE_SPECS, ids=lambda spec: spec.name)
def test_a_service_writes_exactly_the_topics_of_its_asyncapi_publishers(spec: ServiceSpec) -> None:
    published = {topic for topic, _ in channels(spec.name)["send"]}
    assert set(spec.writes) == published, f"{spec.name}: declared writes differ from its publishers"


@pytest.mark.parametrize("spec", SERVICE_SPECS, ids=lambda spec: spec.name)
def test_a_service_declares_every_topic_and_group_it_subscribes_to(spec: ServiceSpec) -> None:
    subscribed = {topic for topic, _ in channels(spec.name)["receive"]}
    assert subscribed <= set(spec.reads), f"{spec.name} subscribes to undeclared {subscribed - set(spec.reads)}"
    assert groups_of(spec.name) == set(spec.consumer_groups), spec.name


@pytest.mark.parametrize("spec", SERVICE_SPECS, ids=lambda spec: spec.name)
def test_a_service_declares_every_topic_its_code_names_and_nothing_else(spec: ServiceSpec) -> None:
    named = code_topics(spec)
    declared = set(spec.reads) | set(spec.writes)
    assert named <= declared, f"{spec.name}'s code reads or writes undeclared {sorted(named - declared)}"
    read = code_reads(spec)
    assert read <= set(spec.reads), f"{spec.name}'s code reads undeclared {sorted(read - set(spec.reads))}"
    subscribed = {topic for topic, _ in channels(spec.name)["receive"]}
    unused = set(spec.reads) - read - subscribed
    assert not unused, f"{spec.name} declares reads its code never makes: {sorted(unused)}"


def test_no_service_reads_or_writes_kafka_around_its_declared_publishers_and_readers() -> None:
    """The checks above see every access only if services reach Kafka through EventPublisher,
    EventSubscriber and the shared views: no raw clients, and no other shared reader."""
    for spec in SERVICE_SPECS:
        names = _names(ROOT / "services" / spec.module)
        raw = names & {"AIOKafkaProducer", "AIOKafkaConsumer", "KafkaProducer", "KafkaConsumer"}
        assert not raw, f"{spec.name} opens its own Kafka client: {raw}"
    readers = {
        path.stem
        for path in (ROOT / "shared" / "ragops_shared").glob("*.py")
        if path.stem != "watch" and "EventWatcher(" in path.read_text()
    }
    assert readers == {module for module, _ in SHARED_VIEWS.values()}, "a new shared reader: add it to SHARED_VIEWS"


# ---- the generated KafkaUsers -------------------------------------------------------------------


def users() -> dict[str, dict]:
    documents = [doc for _, doc in k8s_documents(K8S / "dependencies") if doc["kind"] == "KafkaUser"]
    return {doc["metadata"]["name"]: doc for doc in documents}


def grants(user: dict) -> dict[tuple[str, str | None], set[str]]:
    return {
        (acl["resource"]["type"], acl["resource"].get("name")): set(acl["operations"])
        for acl in user["spec"]["authorization"]["acls"]
    }


def test_each_service_has_its_own_user_allowed_exactly_its_topics_and_groups() -> None:
    found = users()
    assert set(found) == {f"ragops-{spec.name}" for spec in SERVICE_SPECS} | {kafka_users.OPERATOR, kafka_users.KEDA}
    for spec in SERVICE_SPECS:
        user = found[f"ragops-{spec.name}"]
        assert user["spec"]["authentication"]["type"] == "scram-sha-512"
        expected = {
            ("topic", topic.value): {"Describe"}
            | ({"Read"} if topic in spec.reads else set())
            | ({"Write"} if topic in spec.writes else set())
            for topic in {*spec.reads, *spec.writes}
        }
        expected |= {("group", group): {"Describe", "Read"} for group in spec.consumer_groups}
        if spec.writes:  # idempotent producers (KAFKA_ENABLE_IDEMPOTENCE in k8s/base/configmap.yaml)
            expected[("cluster", None)] = {"IdempotentWrite"}
        assert grants(user) == expected, spec.name


def test_no_user_gets_a_wildcard_a_prefix_or_an_admin_operation() -> None:
    for name, user in users().items():
        for acl in user["spec"]["authorization"]["acls"]:
            resource = acl["resource"]
            assert resource.get("patternType", "literal") == "literal" and resource.get("name") != "*", name
            assert set(acl["operations"]) <= {"Describe", "Read", "Write", "IdempotentWrite"}, name


def test_registry_topics_are_written_only_by_their_owners() -> None:
    for topic, owners in REGISTRY_WRITERS.items():
        writers = {name for name, user in users().items() if "Write" in grants(user).get(("topic", topic.value), ())}
        assert writers == owners, topic


INTAKE = {Topic.DOCUMENT_SUBMITTED, Topic.QUERY_SUBMITTED, Topic.FEEDBACK_SUBMITTED}
REDACTED = {Topic.DOCUMENT_REDACTED, Topic.QUERY_REDACTED, Topic.FEEDBACK_REDACTED}


def test_raw_text_is_read_by_the_privacy_service_only_and_the_redacted_topics_written_by_it_only() -> None:
    """Producers (the gateway, the CLI's operator, the trainer's corpus refresh) may write the
    intake topics and no redacted one; nobody but ``ragops-privacy`` reads the intake topics
    (the sink neither) or writes a redacted topic."""
    found = {name: grants(user) for name, user in users().items()}
    for topic in INTAKE:
        readers = {name for name, granted in found.items() if "Read" in granted.get(("topic", topic.value), ())}
        assert readers == {"ragops-privacy"}, topic
    for topic in REDACTED:
        writers = {name for name, granted in found.items() if "Write" in granted.get(("topic", topic.value), ())}
        assert writers == {"ragops-privacy"}, topic
    for producer in ("ragops-gateway", kafka_users.OPERATOR, "ragops-trainer"):
        written = {topic for topic in Topic if "Write" in found[producer].get(("topic", topic.value), ())}
        assert not written & REDACTED and written & INTAKE, producer


def test_the_operator_user_reads_and_writes_exactly_the_clients_topics() -> None:
    expected = {("topic", event.TOPIC.value): {"Describe", "Write"} for event in PUBLISHES}
    for topic in [*(event.TOPIC for event in WATCHES), *REGISTRY_TOPICS]:  # the registry: ragops dataset, eval
        expected.setdefault(("topic", topic.value), {"Describe"}).add("Read")
    expected[("cluster", None)] = {"IdempotentWrite"}
    assert grants(users()[kafka_users.OPERATOR]) == expected


def test_keda_only_describes_the_groups_and_topics_of_its_triggers() -> None:
    keda = grants(users()[kafka_users.KEDA])
    assert all(operations == {"Describe"} for operations in keda.values())
    for resource in base_resources().values():
        if resource["kind"] != "ScaledObject":
            continue
        for trigger in resource["spec"]["triggers"]:
            assert ("group", trigger["metadata"]["consumerGroup"]) in keda
            topic = trigger["metadata"].get("topic")
            assert topic is None or ("topic", topic) in keda
    lag = [spec for spec in SERVICE_SPECS if spec.scaling is Scaling.LAG]
    assert {("topic", topic.value) for spec in lag for topic in spec.reads} <= keda.keys(), "the sink's trigger"
    auth = base_resources()[("TriggerAuthentication", "ragops-kafka")]["spec"]["secretTargetRef"]
    assert {ref["name"] for ref in auth if ref["parameter"] in {"username", "password"}} == {"ragops-kafka-keda"}


@pytest.mark.parametrize("spec", SERVICE_SPECS, ids=lambda spec: spec.name)
def test_each_deployment_logs_in_to_kafka_as_its_own_user(spec: ServiceSpec) -> None:
    env = {item["name"]: item for item in container(spec.name).get("env", [])}
    for variable, key in (("KAFKA_SASL_USERNAME", "username"), ("KAFKA_SASL_PASSWORD", "password")):
        reference = env[variable]["valueFrom"]["secretKeyRef"]
        assert (reference["name"], reference["key"]) == (f"ragops-kafka-{spec.name}", key), spec.name


def test_no_base_resource_uses_a_shared_kafka_user() -> None:
    text = "".join(path.read_text() for path in BASE.glob("*.yaml"))
    assert "kafka-sasl-username" not in text and "kafka-sasl-password" not in text
