"""Generate the committed contract files from code (``make schemas``):

- ``schemas/jsonschema/<Event>.json``: JSON Schema of every event (pydantic),
- ``schemas/asyncapi/<service>.json``: AsyncAPI 3.0 of every service (FastStream),
- ``schemas/openapi/gateway.json``: OpenAPI of the HTTP gateway (FastAPI),
- the topic lists of ``deploy/kafka/create-topics.sh`` and ``k8s/dependencies/kafka-topics.yaml``
  (:mod:`ragops.kafka_topics`);
- the Strimzi ``KafkaUser`` of every service, the CLI and KEDA, ``k8s/dependencies/kafka-users.yaml``
  (:mod:`ragops.kafka_users`).

``python -m ragops.schemagen --check`` exits 1 and names the stale files instead of
writing them (the contract tests run the same comparison)."""

import importlib
import json
import sys
from pathlib import Path

from ragops import kafka_topics, kafka_users
from ragops.specs import SERVICE_SPECS
from ragops_schemas import EVENT_TYPES

ROOT = Path(__file__).resolve().parents[1] / "schemas"


def _without_servers(document: object) -> object:
    """Drop AsyncAPI ``servers``: they come from the environment of whoever generates, and a
    contract must not change with it (deployments document their brokers themselves)."""
    if isinstance(document, dict):
        return {key: _without_servers(value) for key, value in document.items() if key != "servers"}
    if isinstance(document, list):
        return [_without_servers(value) for value in document]
    return document


def _dump(document: object) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _spec_settings(service: str) -> object:
    """Settings to build a service's app for its AsyncAPI document only (None = its defaults).
    The monitor refuses to start without a ClickHouse to read; its channels do not depend on it."""
    if service == "monitor":
        from ragops_analytics.client import AnalyticsSettings
        from ragops_monitor.settings import MonitorSettings

        return MonitorSettings(analytics=AnalyticsSettings(sql_url="http://127.0.0.1/sql"))
    return None


def render() -> dict[Path, str]:
    """Every generated file, by path, as it should be on disk."""
    files: dict[Path, str] = {}
    for event in EVENT_TYPES:
        schema = event.model_json_schema(by_alias=True)
        schema["x-topic"] = event.TOPIC.value
        files[ROOT / "jsonschema" / f"{event.__name__}.json"] = _dump(schema)
    for service in SERVICE_SPECS:
        module = importlib.import_module(f"{service.module}.app")
        app = module.create_app(_spec_settings(service.name))
        spec = app.state.asyncapi if service.name == "gateway" else app.schema
        files[ROOT / "asyncapi" / f"{service.name}.json"] = _dump(
            _without_servers(json.loads(spec.to_specification().to_json()))
        )
        if service.name == "gateway":
            files[ROOT / "openapi" / "gateway.json"] = _dump(app.openapi())
    return files | kafka_topics.render() | kafka_users.render()


def stale() -> list[Path]:
    """Generated files that are missing or differ from what the code generates now."""
    return [path for path, text in render().items() if not path.is_file() or path.read_text() != text]


def main() -> int:
    if "--check" in sys.argv:
        outdated = stale()
        for path in outdated:
            print(f"stale: {path.relative_to(ROOT.parent)} (run `make schemas`)")
        return 1 if outdated else 0
    for path, text in render().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
