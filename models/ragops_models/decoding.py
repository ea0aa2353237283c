"""Decoding rules of the local generator, as plain functions over logits and token lists.

Small models fall into loops on long contexts (SmolLM2-135M answered "The short answer is:"
seven times over on Python documentation pages) and run into ``max_new_tokens`` mid-sentence.
These rules keep an answer from degenerating and end it cleanly:

- :func:`penalize_repetition`: the repetition penalty of CTRL (Keskar et al. 2019, "CTRL: A
  Conditional Transformer Language Model for Controllable Generation", section 4.1).
- :func:`block_repeated_ngrams`: no-repeat n-gram blocking (Paulus et al. 2017, "A Deep
  Reinforced Model for Abstractive Summarization", section 2.5).
- :func:`cut_at_stop`: stop sequences, as OpenAI's ``stop`` parameter.
- :func:`cut_to_sentence`: an answer cut off by the token limit ends at its last complete
  sentence.

Both logit rules look only at the tokens generated for the request, never at the prompt: a
reader that copies its answer from the passages must stay free to repeat the passages' words.
"""

import re
from collections.abc import Sequence

import torch

# A sentence ends at ., ! or ? (optionally followed by a closing quote or bracket) before
# whitespace or the end of the text; "e.g. the" also matches, which only costs a shorter cut.
_SENTENCE_END_RE = re.compile(r"[.!?][\"')\]]*(?=\s|$)")


def penalize_repetition(logits: torch.Tensor, generated: Sequence[Sequence[int]], penalty: float) -> torch.Tensor:
    """CTRL's repetition penalty over each row's generated tokens.

    A token already generated in a row has its logit divided by ``penalty`` when positive and
    multiplied by it when negative (so it always becomes less likely), once per distinct token.

    Args:
        logits: (rows, vocab) next-token logits; changed in place and returned.
        generated: per row, the token ids generated so far (the prompt excluded).
        penalty: >= 1.0; 1.0 changes nothing (CTRL found 1.2 a good balance).

    Returns:
        ``logits``.
    """
    if penalty == 1.0:
        return logits
    for row, tokens in enumerate(generated):
        if not tokens:
            continue
        ids = torch.tensor(sorted(set(tokens)), device=logits.device)
        seen = logits[row, ids]
        logits[row, ids] = torch.where(seen > 0, seen / penalty, seen * penalty)
    return logits


def block_repeated_ngrams(logits: torch.Tensor, generated: Sequence[Sequence[int]], size: int) -> torch.Tensor:
    """Forbid any token that would repeat an n-gram of ``size`` tokens already generated in
    its row (its logit becomes ``-inf``).

    Args:
        logits: (rows, vocab) next-token logits; changed in place and returned.
        generated: per row, the token ids generated so far (the prompt excluded).
        size: the n-gram length, >= 2; 0 turns the rule off.

    Returns:
        ``logits``.
    """
    if size == 0:
        return logits
    for row, tokens in enumerate(generated):
        if len(tokens) < size:
            continue
        prefix = tuple(tokens[len(tokens) - size + 1 :])
        banned = {
            tokens[start + size - 1]
            for start in range(len(tokens) - size + 1)
            if tuple(tokens[start : start + size - 1]) == prefix
        }
        if banned:
            logits[row, sorted(banned)] = float("-inf")
    return logits


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """``text`` up to (excluding) the earliest stop sequence in it, and whether one was found."""
    ends = [index for index in (text.find(sequence) for sequence in stop if sequence) if index >= 0]
    if not ends:
        return text, False
    return text[: min(ends)], True


def cut_to_sentence(text: str) -> str:
    """``text`` up to its last complete sentence (ending in ``.``, ``!`` or ``?``, with any
    closing quote or bracket); ``text`` unchanged when it holds no sentence end, since a short
    answer cut by the limit ("Guido van Rossum, who") says more than nothing."""
    ends = [match.end() for match in _SENTENCE_END_RE.finditer(text)]
    return text[: ends[-1]] if ends else text
