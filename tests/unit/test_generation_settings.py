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


def test_the_decoding_settings_reach_both_backends() -> None:
    local = GenerationSettings(
        preset="smollm2-135m-instruct", stop=["\n"], repetition_penalty=1.3, no_repeat_ngram_size=3
    ).generator()
    assert isinstance(local, TransformersGenerator) and local.model_name == "SmolLM2-135M-Instruct"
    assert (local._stop, local._repetition_penalty, local._no_repeat_ngram_size) == (("\n",), 1.3, 3)
    remote = GenerationSettings(backend="openai", openai_base_url="http://127.0.0.1:9/v1", model="m", stop=["\n"])
    assert isinstance(remote.generator(), OpenAICompatibleGenerator) and remote.generator()._stop == ["\n"]
    with pytest.raises(ValidationError):
        GenerationSettings(repetition_penalty=0.9)
