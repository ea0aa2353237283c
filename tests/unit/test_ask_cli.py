"""`ragops ask` prints the answer, then its sources once per document: title or file name,
section and the supporting snippet (not the retrieved chunks with their fused scores)."""

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ragops import cli
from ragops.client import QueryTrace
from ragops_schemas import AnswerGenerated, QuerySubmitted
from ragops_schemas.events import Citation
from tests.helpers import PRODUCER, example

CHUNK = example(AnswerGenerated).contexts[0]


def citation(marker: int, **fields: Any) -> Citation:
    return Citation(
        marker=marker,
        chunk_id=f"c{marker}",
        document_id=fields.pop("document_id", "guide"),
        document_version="v1",
        snippet=f"snippet {marker}",
        support=1.0,
        **fields,
    )


class Platform:
    """Stands in for :class:`ragops.client.PlatformClient`: every question gets ``answer``."""

    answer: AnswerGenerated

    def __init__(self, kafka: object) -> None:
        pass

    async def __aenter__(self) -> "Platform":
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass

    def question(self, text: str, **fields: object) -> QuerySubmitted:
        return QuerySubmitted(producer=PRODUCER, request_id="r-1", question=text)

    async def ask(self, questions: list[QuerySubmitted], timeout_s: float) -> list[QueryTrace]:
        return [QueryTrace(questions[0], [self.answer], self.answer)]


def ask(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, answer: AnswerGenerated, *options: str) -> Any:
    Platform.answer = answer
    monkeypatch.setattr(cli, "PlatformClient", Platform)
    monkeypatch.setattr(cli, "_kafka", lambda data_dir: None)
    result = CliRunner().invoke(cli.app, ["ask", "Where is Normandy?", "--data-dir", str(tmp_path), *options])
    assert result.exit_code == 0, result.output
    return result


def test_ask_prints_the_answer_then_one_source_per_document(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Three chunks of one document retrieved, as before: the output named its path three times.
    contexts = [CHUNK.model_copy(update={"chunk_id": f"c{n}", "score": 0.03 / n}) for n in (1, 2, 3)]
    answer = example(AnswerGenerated).model_copy(
        update={
            "answer": "France [3][1]",
            "contexts": contexts,
            "citations": [
                citation(3, title="Normans", section="Origins"),
                citation(1, document_id="docs", source="https://example.org/guide/install.html?x=1"),
            ],
        }
    )

    result = ask(monkeypatch, tmp_path, answer)

    assert result.stdout.splitlines()[0] == "France [3][1]"
    assert result.stderr.splitlines()[1:] == [
        "Sources",
        "[1] install.html",
        "    snippet 1",
        "[3] Normans — Origins",
        "    snippet 3",
    ]
    assert CHUNK.document_id not in result.stderr and "0.0" not in result.stderr


def test_ask_json_keeps_the_whole_event(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    answer = example(AnswerGenerated)

    result = ask(monkeypatch, tmp_path, answer, "--json")

    assert AnswerGenerated.model_validate_json(result.stdout) == answer
