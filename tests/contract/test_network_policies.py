"""The NetworkPolicies of k8s/base/network-policies.yaml: the namespace denies everything in and
out, then every workload gets exactly the flows it needs, derived from what it is configured to
reach (its Kafka user, its ClickHouse or Qdrant settings, its ports), and no rule opens to all.
The prod overlay reaches ClickHouse and Qdrant over TLS only, every client with the CA."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from ragops.specs import SERVICE_SPECS
from ragops_shared.spec import OPS_PORT, ServiceSpec
from tests.contract.test_deployment import K8S, base_resources

SPECS = {spec.name: spec for spec in SERVICE_SPECS}
PROD = K8S / "overlays" / "prod"


def policies() -> dict[str, dict[str, Any]]:
    return {name: doc["spec"] for (kind, name), doc in base_resources().items() if kind == "NetworkPolicy"}


def workloads() -> dict[str, dict[str, Any]]:
    """Pod templates of every Deployment and Job of the base, by their pods' name label."""
    templates = [
        doc["spec"]["template"] for (kind, _), doc in base_resources().items() if kind in {"Deployment", "Job"}
    ]
    return {template["metadata"]["labels"]["app.kubernetes.io/name"]: template for template in templates}


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if not selector:
        return True
    matched = all(labels.get(key) == value for key, value in selector.get("matchLabels", {}).items())
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In", "only In expressions are read here"
        matched &= labels.get(expression["key"]) in expression["values"]
    return matched


def selected_by(policy: str) -> set[str]:
    selector = policies()[policy]["podSelector"]
    return {name for name, pod in workloads().items() if selects(selector, pod["metadata"]["labels"])}


def env_names(pod: dict[str, Any]) -> set[str]:
    return {item["name"] for container in pod["spec"]["containers"] for item in container.get("env", [])}


def test_the_namespace_denies_all_ingress_and_egress_by_default() -> None:
    deny = policies()["ragops-default-deny"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny and "egress" not in deny


def test_no_rule_allows_all_peers_or_all_ports() -> None:
    for name, policy in policies().items():
        for rule in policy.get("ingress", []) + policy.get("egress", []):
            peers = rule.get("from", []) + rule.get("to", [])
            assert peers and rule.get("ports"), f"{name}: a rule without peers or ports allows all"
            for peer in peers:
                assert "ipBlock" not in peer, name
                namespace = peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                assert namespace != "ragops" or peer.get("podSelector"), name
                assert peer.get("podSelector", {}).get("matchLabels"), f"{name}: every pod of {namespace}"


def test_every_workload_is_covered_by_the_default_deny_and_resolves_names() -> None:
    assert selected_by("ragops-default-deny") == set(workloads()) == selected_by("ragops-dns")


def test_exactly_the_kafka_clients_reach_kafka() -> None:
    clients = {name for name, pod in workloads().items() if "KAFKA_SASL_USERNAME" in env_names(pod)}
    assert clients == {f"ragops-{name}" for name in SPECS}
    assert selected_by("ragops-kafka") == clients


def test_exactly_the_clickhouse_and_qdrant_clients_reach_them() -> None:
    clickhouse = {name for name, pod in workloads().items() if any("CLICKHOUSE_URL" in n for n in env_names(pod))}
    assert clickhouse == {
        "ragops-sink",
        "ragops-sink-migrate",
        "ragops-monitor",
        "ragops-trainer",
        "ragops-gateway",
        "ragops-generation",
    }
    assert selected_by("ragops-clickhouse") == clickhouse
    qdrant = {name for name, pod in workloads().items() if any("QDRANT" in n for n in env_names(pod))}
    assert selected_by("ragops-qdrant") == qdrant == {"ragops-retrieval"}


@pytest.mark.parametrize("spec", SERVICE_SPECS, ids=lambda spec: spec.name)
def test_each_service_takes_traffic_on_its_port_only(spec: ServiceSpec) -> None:
    """Prometheus on the ops port of every service; the gateway's API from the ingress controller."""
    allowing = [
        policy
        for name, policy in policies().items()
        if "ingress" in policy and f"ragops-{spec.name}" in selected_by(name)
    ]
    ports = {port["port"] for policy in allowing for rule in policy["ingress"] for port in rule["ports"]}
    assert ports == {spec.port}
    assert spec.port == OPS_PORT or spec.name == "gateway"
    sources = {
        peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for policy in allowing
        for rule in policy["ingress"]
        for peer in rule["from"]
    }
    assert sources == ({"monitoring", "ingress-nginx"} if spec.name == "gateway" else {"monitoring"})


# ---- production: ClickHouse and Qdrant over TLS ---------------------------------------------------


def prod_patches() -> list[tuple[dict[str, Any], Any]]:
    """The prod overlay's patches: (its kustomization entry, the patch document)."""
    kustomization = yaml.safe_load((PROD / "kustomization.yaml").read_text())
    return [
        (entry, yaml.safe_load((PROD / entry["path"]).read_text() if "path" in entry else entry["patch"]))
        for entry in kustomization["patches"]
    ]


def test_the_prod_overlay_reaches_clickhouse_and_qdrant_over_tls_only() -> None:
    [configmap] = [doc for _, doc in prod_patches() if isinstance(doc, dict) and doc["kind"] == "ConfigMap"]
    base = base_resources()[("ConfigMap", "ragops-config")]["data"]
    urls = {key for key, value in base.items() if str(value).startswith("http://")}
    assert urls, "the base names the Qdrant server by URL"
    assert all(configmap["data"][key].startswith("https://") for key in urls), "every server URL is https"
    [ports] = [
        doc[0]["value"] for entry, doc in prod_patches() if entry.get("target", {}).get("name") == "ragops-clickhouse"
    ]
    assert ports == [{"protocol": "TCP", "port": 8443}], "ClickHouse over HTTPS only"


def test_every_clickhouse_and_qdrant_client_mounts_the_ca_in_prod() -> None:
    patched: set[str] = set()
    for entry, doc in prod_patches():
        if entry.get("path") == "tls-ca.yaml":
            target = entry["target"]
            patched |= {
                name
                for (kind, name) in base_resources()
                if kind == target["kind"] and re.fullmatch(target["name"], name)
            }
            [mount] = [op["value"] for op in doc if op["path"].endswith("volumeMounts/-")]
            [volume] = [op["value"] for op in doc if op["path"].endswith("volumes/-")]
            ca = f"{mount['mountPath']}/{volume['secret']['items'][0]['path']}"
    clients = selected_by("ragops-clickhouse") | selected_by("ragops-qdrant")
    assert patched == clients
    assert f"?ca_cert={ca}" in (PROD / "tls.yaml").read_text(), "the ClickHouse URL the README asks for"
    [retrieval] = [
        doc for _, doc in prod_patches() if isinstance(doc, dict) and doc["metadata"]["name"] == "ragops-retrieval"
    ]
    [env] = retrieval["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env == {"name": "SSL_CERT_FILE", "value": ca}, "qdrant-client (httpx) verifies the server with the CA"
