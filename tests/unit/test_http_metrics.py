"""The gateway's HTTP server metrics (OpenTelemetry HTTP semantic conventions, Prometheus form)."""

from fastapi import FastAPI, HTTPException
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from ragops_gateway.http_metrics import HttpMetrics

DURATION = "http_server_request_duration_seconds"


def count(method: str, route: str, code: str) -> float:
    labels = {"http_request_method": method, "http_route": route, "http_response_status_code": code}
    return REGISTRY.get_sample_value(f"{DURATION}_count", labels) or 0.0


def active() -> float:
    return REGISTRY.get_sample_value("http_server_active_requests", {"http_request_method": "GET"}) or 0.0


def test_requests_are_counted_by_method_route_template_and_status() -> None:
    app = FastAPI()
    app.add_middleware(HttpMetrics)
    seen_active: list[float] = []

    @app.get("/t/items/{item_id}")
    async def item(item_id: str) -> dict[str, str]:
        seen_active.append(active())
        if item_id == "missing":
            raise HTTPException(404, "no such item")
        return {"id": item_id}

    before = {code: count("GET", "/t/items/{item_id}", code) for code in ("200", "404")}
    unmatched = count("GET", "", "404")
    other = count("_OTHER", "", "404")
    client = TestClient(app)
    assert client.get("/t/items/a").status_code == 200
    assert client.get("/t/items/b").status_code == 200
    assert client.get("/t/items/missing").status_code == 404
    assert client.get("/nowhere/secret-path").status_code == 404
    assert client.request("BREW", "/nowhere").status_code in (404, 405)

    assert count("GET", "/t/items/{item_id}", "200") - before["200"] == 2
    assert count("GET", "/t/items/{item_id}", "404") - before["404"] == 1
    assert count("GET", "", "404") - unmatched == 1
    assert count("_OTHER", "", "404") - other == 1
    assert seen_active and min(seen_active) >= 1
    assert active() == 0
    exposed = str([s for m in REGISTRY.collect() if m.name.startswith("http_server") for s in m.samples])
    assert "secret-path" not in exposed and "/t/items/a" not in exposed
