"""The generation service's batch function with the real model: a request without any
retrieved context is answered with nothing (finish reason ``no_context``, no model call),
the others in the same batch normally."""

import pytest

from ragops_generation.app import Answerer
from ragops_generation.settings import GenerationSettings
from ragops_schemas import ContextRetrieved
from tests.helpers import PRODUCER, example

pytestmark = pytest.mark.model


def test_no_context_means_no_answer() -> None:
    settings = GenerationSettings()
    generator = settings.generator()
    generator.warm_up()
    answerer = Answerer(settings, generator, PRODUCER)
    with_context = example(ContextRetrieved)
    without = with_context.model_copy(update={"request_id": "empty", "contexts": []})
    answered, unanswered = answerer.answer([with_context, without])
    assert unanswered.answer == "" and unanswered.generation.finish_reasons == ["no_context"]
    assert unanswered.generation.usage.input_tokens == 0 and unanswered.lineage.chunk_ids == []
    assert answered.generation.usage.input_tokens > 0 and answered.generation.finish_reasons[0] in {"stop", "length"}
