"""``make demo``'s citation figures from the answers stored in ClickHouse (chDB, migrated)."""

from datetime import UTC, datetime
from uuid import UUID

import pytest

from ragops.demo_cite import cite_report
from ragops_schemas import AnswerGenerated
from ragops_schemas.events import EvaluationContext, GenerationInfo
from tests.helpers import VERIFIER, example, record_of, store_as_sink

pytestmark = pytest.mark.clickhouse


def test_the_demo_counts_answers_with_citations_and_cited_gold_documents(chdb_store) -> None:
    base = example(AnswerGenerated)  # answer "France [1]", one citation of document Normans-p000
    citation = base.citations[0]

    def answer(n: int, text: str, cited: list[str], finish: str = "stop", run: str = "run-1") -> AnswerGenerated:
        generation = GenerationInfo.model_validate(
            {**base.generation.model_dump(by_alias=True), "gen_ai.response.finish_reasons": [finish]}
        )
        return base.model_copy(
            update={
                "event_id": UUID(f"00000000-0000-4000-8000-00000000000{n}"),
                "request_id": f"r{n}",
                "answer": text,
                "generation": generation,
                "citations": [citation.model_copy(update={"document_id": doc}) for doc in cited],
                "evaluation": EvaluationContext(run_id=run, reference_context_ids=["Normans-p000"]),
            }
        )

    events = [
        answer(1, "France [1][2]", ["Normans-p000", "Other-p001"]),
        answer(2, "Rollo [1]", ["Normans-p000"]),
        answer(3, "a guess", []),
        answer(4, "The documents do not say.", [], finish="abstained"),
        answer(5, "", []),
        answer(6, "France [1]", ["Other-p001"], run="another-run"),
    ]
    store_as_sink(chdb_store, [record_of(e, offset) for offset, e in enumerate(events)], VERIFIER, datetime.now(UTC))

    assert cite_report(chdb_store, "run-1") == {
        "answered": 3,
        "answered_with_citation": 0.667,
        "citations_per_answer": 1.0,
        "citation_precision": 0.667,
        "citations_judged": 3,
    }
