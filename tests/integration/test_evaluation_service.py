"""The evaluation service on a real broker with the real embedding model: every answer gets
its reference-free scores, answers with a reference also get the reference-based ones, and a
sample rate of 0 skips production answers but never offline-run answers."""

import pytest

from ragops_evaluation.app import create_app, sampled
from ragops_evaluation.settings import EvaluationSettings
from ragops_schemas import AnswerEvaluated, AnswerGenerated, EvaluationContext, Topic
from ragops_schemas.ids import derived_event_id, new_event_id
from tests.helpers import example
from tests.integration.services import produce_raw, running, wait_for, watching

pytestmark = [pytest.mark.kafka, pytest.mark.model]


async def test_answers_are_scored(kafka) -> None:
    answer = example(AnswerGenerated)
    production = answer.model_copy(update={"event_id": new_event_id(), "request_id": "prod-1"})
    offline = answer.model_copy(
        update={
            "event_id": new_event_id(),
            "request_id": "eval-1",
            "evaluation": EvaluationContext(
                run_id="run-1", example_id="q1", reference_answers=["France"], reference_context_ids=["Normans-p000"]
            ),
        }
    )
    async with watching(kafka, [AnswerEvaluated]) as seen:
        await produce_raw(
            kafka, Topic.ANSWER_GENERATED, [(e.key, e.model_dump_json().encode()) for e in (production, offline)]
        )
        async with running(create_app(EvaluationSettings(kafka=kafka))):
            await wait_for(seen, lambda events: len(events) >= 2)

    by_request = {e.request_id: e for e in seen}
    free = {s.name for s in by_request["prod-1"].scores}
    assert free == {"faithfulness", "answer_relevancy", "context_relevance"}
    assert all(0.0 <= s.value <= 1.0 and s.method and not s.reference_based for s in by_request["prod-1"].scores)
    scored = {s.name: s for s in by_request["eval-1"].scores}
    assert scored["exact_match"].value == 1.0 and scored["f1"].value == 1.0 and scored["hit@1"].value == 1.0
    assert scored["f1"].reference_based and scored["f1"].method == "squad_v1.1"
    assert by_request["eval-1"].run_id == "run-1" and by_request["eval-1"].prompt == answer.lineage.prompt


async def test_sampling_skips_production_answers_only(kafka) -> None:
    answer = example(AnswerGenerated)
    production = answer.model_copy(update={"event_id": new_event_id(), "request_id": "prod-2"})
    offline = answer.model_copy(
        update={"event_id": new_event_id(), "request_id": "eval-2", "evaluation": EvaluationContext(run_id="run-2")}
    )
    async with watching(kafka, [AnswerEvaluated]) as seen:
        await produce_raw(
            kafka, Topic.ANSWER_GENERATED, [(e.key, e.model_dump_json().encode()) for e in (production, offline)]
        )
        async with running(create_app(EvaluationSettings(kafka=kafka, sample_rate=0.0))):
            await wait_for(seen, lambda events: len(events) >= 1)
    assert [e.request_id for e in seen] == ["eval-2"]


async def test_an_answer_delivered_twice_is_scored_once(kafka) -> None:
    # The generation service published it, was killed before committing, and published it
    # again under the same (derived) id: once in the same fetch, once in a later one.
    answer = example(AnswerGenerated).model_copy(update={"request_id": "twice"})
    sentinel = answer.model_copy(update={"event_id": new_event_id(), "request_id": "sentinel"})
    record = (answer.key, answer.model_dump_json().encode())
    async with watching(kafka, [AnswerEvaluated]) as seen:
        await produce_raw(kafka, Topic.ANSWER_GENERATED, [record, record])
        async with running(create_app(EvaluationSettings(kafka=kafka))):
            await wait_for(seen, lambda events: len(events) >= 1)
            # Same key, so the same partition: once the sentinel is scored, the copy behind
            # the first has been handled too.
            await produce_raw(
                kafka, Topic.ANSWER_GENERATED, [record, (answer.key, sentinel.model_dump_json().encode())]
            )
            await wait_for(seen, lambda events: any(e.request_id == "sentinel" for e in events))
    [evaluated] = [e for e in seen if e.request_id == "twice"]
    assert evaluated.event_id == derived_event_id("AnswerEvaluated", answer.event_id)


def test_sampling_is_deterministic_per_request() -> None:
    picked = [sampled(f"r{i}", 0.3) for i in range(2000)]
    assert picked == [sampled(f"r{i}", 0.3) for i in range(2000)]
    assert 0.25 < sum(picked) / len(picked) < 0.35
