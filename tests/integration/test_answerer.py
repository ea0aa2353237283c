"""The generation service's batch function with the real model: a request without any
retrieved context is answered with nothing (finish reason ``no_context``, no model call),
the others in the same batch normally."""

from pathlib import Path

import pytest

from ragops_generation.app import Answerer
from ragops_generation.settings import GenerationSettings
from ragops_schemas import ContextRetrieved, Producer

pytestmark = pytest.mark.model
EXAMPLE = Path(__file__).resolve().parents[2] / "schemas" / "examples" / "ContextRetrieved.json"


def test_no_context_means_no_answer() -> None:
    settings = GenerationSettings()
    generator = settings.generator()
    generator.warm_up()
    answerer = Answerer(settings, generator, Producer(name="test", version="0"))
    with_context = ContextRetrieved.model_validate_json(EXAMPLE.read_text())
    without = with_context.model_copy(update={"request_id": "empty", "contexts": []})
    answered, unanswered = answerer.answer([with_context, without])
    assert unanswered.answer == "" and unanswered.generation.finish_reasons == ["no_context"]
    assert unanswered.generation.usage.input_tokens == 0 and unanswered.lineage.chunk_ids == []
    assert answered.generation.usage.input_tokens > 0 and answered.generation.finish_reasons[0] in {"stop", "length"}
