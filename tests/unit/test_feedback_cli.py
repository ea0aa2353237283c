"""`ragops feedback` posts what it is given to POST /v1/feedback with the CLI's credential."""

import json

import httpx
import pytest
from typer.testing import CliRunner

from ragops import cli


def test_feedback_posts_thumb_rating_and_correction(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[httpx.Request] = []

    def gateway(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(202, json={"request_id": "r-1", "event_id": "e-1"})

    monkeypatch.setattr(
        cli, "_gateway", lambda data_dir: httpx.Client(base_url="http://gw", transport=httpx.MockTransport(gateway))
    )
    result = CliRunner().invoke(
        cli.app, ["feedback", "r-1", "--thumb", "down", "--rating", "2", "--correction", "Paris"]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "e-1"
    [request] = sent
    assert (request.method, request.url.path) == ("POST", "/v1/feedback")
    assert json.loads(request.content) == {
        "request_id": "r-1",
        "thumb": "down",
        "rating": 2,
        "corrected_answer": "Paris",
    }


def test_feedback_needs_something_to_say() -> None:
    assert CliRunner().invoke(cli.app, ["feedback", "r-1"]).exit_code == 2
