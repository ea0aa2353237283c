"""What the platform declares about each service, once: :class:`ServiceSpec`.

Every service package has a ``spec.py`` exporting ``SPEC`` (importable without the app, its
models or torch). The platform supervisor, schema generation and the deployment contract
tests read these specs instead of keeping their own lists of names, groups, images, ports
and replica policies.
"""

from dataclasses import dataclass
from enum import StrEnum

from ragops_schemas.experiments import EXPERIMENT_EVENT_TYPES
from ragops_schemas.lifecycle import REGISTRY_EVENT_TYPES
from ragops_schemas.topics import Topic

OPS_PORT = 8000
"""Port of the ``/health``, ``/ready`` and ``/metrics`` server in containers."""
OPS_PORT_SETTING = "RAGOPS_OPS_PORT"
"""The environment variable that sets it (:class:`ragops_shared.settings.PlatformSettings` ``ops_port``)."""


REGISTRY_TOPICS: tuple[Topic, ...] = tuple(event.TOPIC for event in REGISTRY_EVENT_TYPES)
"""The version registry's topics, which every :class:`~ragops_shared.registry_view.RegistryView` reads."""
EXPERIMENT_TOPICS: tuple[Topic, ...] = tuple(event.TOPIC for event in EXPERIMENT_EVENT_TYPES)
"""The experiments' topics, which every :class:`~ragops_shared.registry_view.ExperimentView` reads."""


class Image(StrEnum):
    """The container image (Dockerfile target) a service runs on."""

    LIGHT = "light"
    """No torch, no model weights: the service imports without them."""
    MODEL = "model"
    """torch, transformers and the default model weights."""


class Scaling(StrEnum):
    """How Kubernetes sets a service's replica count."""

    LAG = "lag"
    """A KEDA ScaledObject with one Kafka lag trigger per consumer group."""
    CPU = "cpu"
    """A HorizontalPodAutoscaler on CPU: stateless HTTP, no consumer group."""
    SINGLE = "single"
    """Exactly one replica, ``Recreate`` rollouts (never two at once), never autoscaled."""


@dataclass(frozen=True)
class ServiceSpec:
    """The deployment facts of one service.

    Args:
        name: short name (``ingestion``): the package is ``ragops_<name>``, its Kafka client
            id, AsyncAPI title and Kubernetes resources ``ragops-<name>``.
        image: the image it runs on.
        scaling: its replica policy.
        consumer_groups: the Kafka consumer groups it joins; the embedded platform takes
            traffic once each has a member, and every group of a ``LAG`` service has a KEDA trigger.
        reads: every topic it reads, with a consumer group or without one (the views that
            fold a topic from its start, the watchers that wait for replies).
        writes: every topic it publishes to, the dead-letter topic included where it
            dead-letters what it cannot process (every consumer but the sink); the audit topic
            is always added (every service audits the calls its HTTP port refuses,
            :func:`ragops_shared.service.service_app`). Its Kafka user may read and write exactly
            these topics and join exactly ``consumer_groups`` (the generated Strimzi
            ``KafkaUser`` ``ragops-<name>``); the contract tests check both lists against its
            AsyncAPI document and its code.
        port: container port of its HTTP server, which serves ``/health``, ``/ready`` and
            ``/metrics`` (and its API, if it has one).
        port_setting: the environment variable that sets ``port``.
        exposed: a Kubernetes Service (and a compose host port) leads to ``port``: an API for
            clients, not only probes and scrapes.
    """

    name: str
    image: Image
    scaling: Scaling
    consumer_groups: tuple[str, ...] = ()
    reads: tuple[Topic, ...] = ()
    writes: tuple[Topic, ...] = ()
    port: int = OPS_PORT
    port_setting: str = OPS_PORT_SETTING
    exposed: bool = False

    def __post_init__(self) -> None:
        if Topic.AUDIT_RECORDED not in self.writes:
            object.__setattr__(self, "writes", (*self.writes, Topic.AUDIT_RECORDED))

    @property
    def module(self) -> str:
        """The package run by ``python -m``: ``ragops_<name>``."""
        return f"ragops_{self.name}"

    @property
    def group(self) -> str:
        """The consumer group of a service that joins exactly one.

        Raises:
            ValueError: it joins none or several (name them in its ``spec.py`` instead).
        """
        if len(self.consumer_groups) != 1:
            raise ValueError(f"{self.name} joins {len(self.consumer_groups)} consumer groups, not one")
        return self.consumer_groups[0]
