"""The local generator's decoding rules (ragops_models.decoding), without a model."""

import math

import pytest
import torch

from ragops_models.decoding import block_repeated_ngrams, cut_at_stop, cut_to_sentence, penalize_repetition
from ragops_models.transformers_generator import completion_prompt


def test_repetition_penalty_lowers_generated_tokens_only_and_both_signs() -> None:
    logits = torch.tensor([[2.0, -1.0, 3.0, 0.5], [2.0, -1.0, 3.0, 0.5]])
    penalize_repetition(logits, [[0, 1, 0], []], 2.0)
    # CTRL: positive logits divided, negative multiplied, once per distinct token.
    assert logits[0].tolist() == [1.0, -2.0, 3.0, 0.5]
    assert logits[1].tolist() == [2.0, -1.0, 3.0, 0.5], "a row with nothing generated is unchanged"
    assert penalize_repetition(logits.clone(), [[2], [2]], 1.0).equal(logits), "1.0 is off"


def test_repetition_penalty_can_change_the_greedy_choice() -> None:
    logits = torch.tensor([[3.0, 2.0]])
    assert penalize_repetition(logits, [[0]], 1.6).argmax().item() == 1


def test_no_repeat_ngram_blocks_the_token_that_would_repeat_a_trigram() -> None:
    # "The short answer is: The short" -> "answer" would repeat "The short answer".
    the, short, answer, is_ = 5, 6, 7, 8
    logits = torch.zeros(2, 10)
    block_repeated_ngrams(logits, [[the, short, answer, is_, the, short], [the, short]], 3)
    assert math.isinf(logits[0, answer].item()) and logits[0, answer] < 0
    assert torch.isfinite(logits[0, [i for i in range(10) if i != answer]]).all(), "only that token"
    assert torch.isfinite(logits[1]).all(), "nothing generated twice yet"
    unchanged = torch.zeros(1, 10)
    assert block_repeated_ngrams(unchanged, [[the, short, answer, the, short]], 0).equal(torch.zeros(1, 10))


@pytest.mark.parametrize(
    ("text", "stop", "expected"),
    [
        (" Paris\nQuestion: what", ["\n"], (" Paris", True)),
        ("Paris. END more", ["END", "."], ("Paris", True)),
        ("Paris", ["\n"], ("Paris", False)),
        ("Paris", [], ("Paris", False)),
        ("\nParis", ["\n"], ("", True)),
    ],
)
def test_cut_at_stop_ends_before_the_earliest_stop_sequence(
    text: str, stop: list[str], expected: tuple[str, bool]
) -> None:
    assert cut_at_stop(text, stop) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("It was built in 1889. It is made of", "It was built in 1889."),
        ('He said "stop!" and the crowd', 'He said "stop!"'),
        ("Is it? Yes. Maybe (not", "Is it? Yes."),
        ("Version 3.11 of the", "Version 3.11 of the"),
        ("Guido van Rossum, who", "Guido van Rossum, who"),
    ],
)
def test_cut_to_sentence_keeps_the_last_complete_sentence_or_everything(text: str, expected: str) -> None:
    assert cut_to_sentence(text) == expected


def test_completion_prompt_is_system_blank_line_user() -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q: x\nAnswer:"}]
    assert completion_prompt(messages) == "Be brief.\n\nQ: x\nAnswer:"
