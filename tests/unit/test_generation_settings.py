"""Choosing the generation backend from settings (no model is loaded, no server contacted)."""

import pytest
from pydantic import ValidationError

from ragops_generation.settings import GenerationSettings
from ragops_models.openai_generator import OpenAICompatibleGenerator
from ragops_models.transformers_generator import TransformersGenerator


def test_default_is_the_in_process_model() -> None:
    assert isinstance(GenerationSettings().generator(), TransformersGenerator)


def test_openai_backend_needs_a_server_and_a_model() -> None:
    with pytest.raises(ValidationError, match="OPENAI_BASE_URL"):
        GenerationSettings(backend="openai")
    generator = GenerationSettings(
        backend="openai", openai_base_url="http://127.0.0.1:9/v1", model="llama-3-8b"
    ).generator()
    assert isinstance(generator, OpenAICompatibleGenerator) and generator.model_name == "llama-3-8b"
