"""Degenerate output, against the real models: ``tests/data/degenerate-prompts.jsonl`` holds
prompts on Python documentation pages (../shared/data/corpus-large, three 150-word passages of
one page, a question a new user would ask) that SmolLM2-135M-Instruct answered, with prompt
rag-answer v2 and the old decoding (greedy, no repetition rules, no sentence cut), by repeating
"The short answer is:" seven times or one line three times, or by stopping mid-sentence at
48 tokens (``old_answer``). And the Gemma 3 270M preset's loading path (completion prompts)."""

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from ragops_models.defaults import default_generation_model, generation_preset
from ragops_models.generation import Generation
from ragops_models.transformers_generator import TransformersGenerator
from ragops_shared.prompts import load_prompt
from tests.integration.test_generator import HARVARD_PASSAGE, MODEL_CACHE

CASES = [
    json.loads(line)
    for line in (Path(__file__).parents[1] / "data" / "degenerate-prompts.jsonl").read_text().splitlines()
]


def most_repeated_trigram(text: str) -> int:
    """How often the answer's most frequent word trigram occurs."""
    words = re.findall(r"\w+", text.lower())
    return max(Counter(zip(words, words[1:], words[2:], strict=False)).values(), default=0)


SENTENCE_END = r"[.!?][\"')\]]*"


def degenerate(generation: Generation) -> list[str]:
    """What is wrong with an answer: a trigram 3+ times, or an answer cut by the token limit
    after a complete sentence that does not end at one (the sentence cut's rule: back to the
    last sentence end; an answer with none is kept whole, see ``cut_to_sentence``)."""
    faults = []
    if most_repeated_trigram(generation.text) >= 3:
        faults.append("repeats a trigram 3+ times")
    cut = generation.finish_reason != "stop"
    if cut and re.search(SENTENCE_END + r"\s", generation.text) and not re.search(SENTENCE_END + "$", generation.text):
        faults.append("ends mid-sentence")
    return faults


def test_the_old_answers_fail_the_check() -> None:
    # The set holds what the old decoding produced: each recorded answer ran into the limit.
    old = [degenerate(Generation(case["old_answer"], 0, 48, "length")) for case in CASES]
    assert all(old), old
    assert sum("repeats a trigram 3+ times" in faults for faults in old) >= 2


@pytest.mark.model
def test_smollm2_answers_the_degenerate_set_without_repeating_and_at_a_sentence_end() -> None:
    folder, gguf_file = default_generation_model()
    # The service's decoding defaults (repetition penalty, no-repeat n-grams, sentence cut).
    generator = TransformersGenerator(folder, gguf_file=gguf_file, cache_dir=MODEL_CACHE, max_new_tokens=48)
    prompt = load_prompt("rag-answer", 2)
    answers = generator.generate([prompt.render(case["question"], case["contexts"]) for case in CASES])
    faults = {case["document"]: degenerate(answer) for case, answer in zip(CASES, answers, strict=True)}
    assert not any(faults.values()), (faults, [a.text for a in answers])


@pytest.mark.model
def test_gemma_preset_answers_from_a_completion_prompt_on_one_line() -> None:
    folder, gguf_file = generation_preset("gemma-3-270m", MODEL_CACHE)
    options: dict[str, Any] = {"cache_dir": MODEL_CACHE, "max_new_tokens": 24}
    generator = TransformersGenerator(folder, gguf_file=gguf_file, **options)
    contexts = [{"title": "Harvard University", "chunk_id": "Harvard_University-p014", "text": HARVARD_PASSAGE}]
    prompt = load_prompt("rag-answer", 3)
    messages = prompt.render("What project did Harvard halt due to the financial crisis?", contexts)
    (answer,) = generator.generate([messages])
    assert generator.model_name == "gemma-3-270m"
    assert "\n" not in answer.text and answer.finish_reason == "stop", "a base model stops at the newline"
    assert "allston" in answer.text.lower()
