"""The console's request page shows the answer's sources: one per cited document, with its
title or file name, section and supporting snippet, escaped."""

from types import SimpleNamespace

from ragops_gateway.console.routes import _environment, _request_parts
from ragops_schemas import AnswerGenerated
from tests.helpers import example


def test_the_request_page_lists_the_answers_citations_in_marker_order() -> None:
    answer = example(AnswerGenerated)
    payload = answer.model_dump(mode="json", by_alias=True)
    first = payload["citations"][0]
    payload["citations"] = [
        {**first, "marker": 2, "title": None, "source": "docs/install.md", "snippet": "Run <b>pip</b>."},
        {**first, "section": "Origins"},
    ]
    parts = _request_parts({"query.answer_generated": payload})
    detail = SimpleNamespace(request_id="r-1", tenant="default", scores={}, latency_ms={}, feedback=[])

    page = _environment().get_template("request.html").render(detail=detail, **parts)

    assert [(citation.marker, label) for citation, label in parts["sources"]] == [(1, "Normans"), (2, "install.md")]
    assert "[1] Normans</strong> — Origins" in page
    assert "[2] install.md</strong>" in page
    assert "Run &lt;b&gt;pip&lt;/b&gt;." in page
    assert page.index("[1] Normans") < page.index("[2] install.md")
