"""The generation service's batch function with the real model: a request without any
retrieved context is answered with nothing (finish reason ``no_context``, no model call),
the others in the same batch normally; a redelivered batch gets the same answer ids."""

import pytest

from ragops_generation.app import Answerer
from ragops_generation.settings import GenerationSettings
from ragops_schemas import ContextRetrieved
from ragops_schemas.ids import derived_event_id, new_event_id
from tests.helpers import PRODUCER, example

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def answerer() -> Answerer:
    settings = GenerationSettings()
    generator = settings.generator()
    generator.warm_up()
    return Answerer(settings, generator, PRODUCER)


def test_no_context_means_no_answer(answerer: Answerer) -> None:
    with_context = example(ContextRetrieved)
    without = with_context.model_copy(update={"event_id": new_event_id(), "request_id": "empty", "contexts": []})
    answered, unanswered = answerer.answer([with_context, without])
    assert unanswered.answer == "" and unanswered.generation.finish_reasons == ["no_context"]
    assert unanswered.generation.usage.input_tokens == 0 and unanswered.lineage.chunk_ids == []
    assert answered.generation.usage.input_tokens > 0 and answered.generation.finish_reasons[0] in {"stop", "length"}


def test_a_redelivered_batch_gets_the_same_answer_ids(answerer: Answerer) -> None:
    # Killed after publishing its answers and before committing: the batch comes again.
    batch = [example(ContextRetrieved), example(ContextRetrieved).model_copy(update={"event_id": new_event_id()})]
    first, again = answerer.answer(batch), answerer.answer(batch)
    assert [a.event_id for a in first] == [a.event_id for a in again]
    assert [a.event_id for a in first] == [derived_event_id("AnswerGenerated", c.event_id) for c in batch]
