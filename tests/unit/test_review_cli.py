"""``ragops review``: the queue and agreement tables (values printed literally), and a label
whose answer id, stratum and token come from the queue, against a stand-in gateway."""

import json
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from ragops import cli

ITEM = {
    "request_id": "r-1",
    "answer_event_id": "a-1",
    "occurred_at": "2026-12-05T10:00:00Z",
    "question": "Where is [red]Normandy[/red]?",
    "answer": "France",
    "contexts": [],
    "scores": {"faithfulness": 0.25},
    "thumb": "down",
    "sampled_as": "negative_feedback",
    "token": "0" * 64,
}
AGREEMENT = {
    "metric": "faithfulness",
    "label": "grounded",
    "n": 12,
    "spearman_rho": 0.5,
    "spearman_p": 0.1,
    "threshold": 0.4,
    "cohen_kappa": 0.25,
    "n_random": 1,
    "kappa_random": None,
}


@pytest.fixture
def posted(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, object]]:
    bodies: list[dict[str, object]] = []

    def gateway(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/reviews/queue":
            return httpx.Response(200, json=[ITEM])
        if request.url.path == "/v1/reviews/agreement":
            return httpx.Response(200, json=[AGREEMENT])
        bodies.append(json.loads(request.content))
        return httpx.Response(202, json={"request_id": "r-1", "event_id": "00000000-0000-4000-8000-000000000001"})

    monkeypatch.setattr(
        cli, "_gateway", lambda _: httpx.Client(base_url="http://gateway", transport=httpx.MockTransport(gateway))
    )
    return bodies


def _run(*args: str) -> str:
    # Wide enough that no cell wraps.
    result = CliRunner().invoke(
        cli.app, ["review", *args, "--data-dir", str(Path("/nonexistent"))], env={"COLUMNS": "300"}
    )
    assert result.exit_code == 0, result.output
    return result.output


def test_the_queue_and_the_agreement_print_as_tables(posted: list[dict[str, object]]) -> None:
    queue = _run("queue")
    assert "[red]Normandy[/red]" in queue and "negative_feedback" in queue and "faithfulness=0.25" in queue
    agreement = _run("agreement")
    assert "faithfulness" in agreement and "+0.500" in agreement and "0.400" in agreement and "-" in agreement


def test_a_label_takes_the_answer_the_stratum_and_the_token_from_the_queue(posted: list[dict[str, object]]) -> None:
    _run("label", "r-1", "--incorrect", "--grounded", "--correction", "France", "--comment", "wrong")
    assert posted == [
        {
            "request_id": "r-1",
            "answer_event_id": "a-1",
            "correct": False,
            "grounded": True,
            "sampled_as": "negative_feedback",
            "token": "0" * 64,
            "corrected_answer": "France",
            "comment": "wrong",
        }
    ]
