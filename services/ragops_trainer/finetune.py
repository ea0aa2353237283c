"""Contrastive fine-tuning of the embedding model on (question, passage) pairs, in plain torch
on CPU, and the retrieval hit rate that decides whether a fine-tuned model is better.

Training uses the recipe the model was built with (sentence-transformers' all-MiniLM-L6-v2):
``AutoModel`` + mean pooling over the attention mask + L2 norm, and the in-batch-negatives
loss of Henderson et al. 2017, "Efficient Natural Language Response Suggestion for Smart
Reply" (arXiv:1705.00652), which sentence-transformers calls ``MultipleNegativesRankingLoss``:
for a batch of questions ``q_i`` with positive passages ``p_i``, the loss is the cross-entropy
of ``softmax(scale * cos(q_i, p_j))`` over all passages ``p_j`` of the batch, with target ``i``
(scale 20, sentence-transformers' default). Every other passage of the batch is a negative.

Inference (the evaluation in :func:`hits_at_k`) goes through
:class:`ragops_models.embedder.Embedder`, the platform's only inference path, so a saved
model is measured exactly as it would serve.
"""

import shutil
import tempfile
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import (
    AutoModel,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    get_linear_schedule_with_warmup,
)

from ragops_models.embedder import Embedder
from ragops_trainer.pairs import TrainingPair

SCALE = 20.0
"""Multiplier of the cosine similarities before the softmax (sentence-transformers' default)."""

WARMUP_FRACTION = 0.1
"""Share of the optimisation steps over which the learning rate rises linearly from 0."""

MAX_GRAD_NORM = 1.0
"""Gradients are clipped to this L2 norm (sentence-transformers' default)."""

WEIGHT_DECAY = 0.01
"""AdamW weight decay, not applied to biases and LayerNorm weights (the BERT convention)."""

# sentence-transformers' files of the base model (pooling and normalisation modules), copied
# beside the saved weights so the output also loads with ``SentenceTransformer(output_dir)``.
_SENTENCE_TRANSFORMERS_FILES = (
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "1_Pooling",
    "2_Normalize",
)


@dataclass(frozen=True)
class FinetuneResult:
    """What :func:`finetune_embedding` did.

    Attributes:
        model_dir: where the fine-tuned model lies (Hugging Face format: ``config.json``,
            ``model.safetensors``, tokenizer files; loads with ``Embedder(model_dir)``).
        steps: optimisation steps taken.
        epochs: epochs completed, fractional when the time bound stopped training mid-epoch.
        first_loss: loss of the first step (the base model on the first batch).
        last_loss: mean loss of the last epoch's worth of steps (the last ``steps per epoch``
            steps; with one epoch this is the mean over all steps).
        seconds: wall time of the whole call (loading, training, saving).
        pairs: distinct pairs trained on (exact duplicates of the input are dropped).
    """

    model_dir: Path
    steps: int
    epochs: float
    first_loss: float
    last_loss: float
    seconds: float
    pairs: int


class TrainingTimeout(TimeoutError):
    """``max_seconds`` ran out before one full epoch; nothing was saved."""


def finetune_embedding(
    base_model: Path,
    pairs: Sequence[TrainingPair],
    output_dir: Path,
    *,
    epochs: int = 1,
    batch_size: int = 16,
    learning_rate: float = 2e-5,
    max_seconds: float = 600.0,
    max_length: int = 256,
    seed: int = 0,
    torch_threads: int = 1,
) -> FinetuneResult:
    """Fine-tune an embedding model on (question, passage) pairs with in-batch negatives.

    Loss: ``MultipleNegativesRankingLoss`` of sentence-transformers (Henderson et al. 2017,
    arXiv:1705.00652): cross-entropy over the ``(questions, passages)`` matrix of cosine
    similarities times 20, each question's target being its own passage. Embeddings are mean
    pooling over the attention mask + L2 norm, the recipe of
    :class:`~ragops_models.embedder.Embedder`. The model is trained in float32 (dropout
    on, as in sentence-transformers), with AdamW (weight decay 0.01, none on biases and
    LayerNorm), gradients clipped to norm 1, and a linear schedule whose first 10% of steps
    (rounded down) warm the learning rate up from 0 (``get_linear_schedule_with_warmup``).

    False negatives: SQuAD-like data has several questions per passage, so a batch often holds
    the same passage twice. Each batch therefore scores its questions against its *distinct*
    passages only (one column per distinct passage text; a question's target is the column of
    its passage), and a passage that is paired with the same question elsewhere in the
    training set is masked out of that question's negatives. A batch of fewer than 2 distinct
    passages has no negative and is skipped (no step); a final chunk of 1 pair is merged into
    the batch before it.

    Deterministic for a given ``seed`` and ``torch_threads``: the order is shuffled each epoch
    with a seeded ``torch.Generator``, and dropout draws from torch's global generator, seeded
    with ``torch.manual_seed`` inside ``torch.random.fork_rng`` (the caller's RNG state is
    restored afterwards, as is ``torch.get_num_threads()``).

    Bounded time: before each step the wall time since the call began is checked against
    ``max_seconds``; once it is reached training stops. The model is written to a temporary
    sibling of ``output_dir`` and renamed to ``output_dir`` only on success, so a failed or
    timed-out run leaves nothing at ``output_dir``.

    Args:
        base_model: local Hugging Face model directory to start from.
        pairs: training pairs; exact duplicates are dropped.
        output_dir: where to save; must not exist yet (or be an empty directory).
        epochs: passes over the pairs.
        batch_size: pairs per step (>= 2; more gives more in-batch negatives).
        learning_rate: peak AdamW learning rate.
        max_seconds: wall-time bound of the whole call.
        max_length: tokens per text; longer texts are truncated.
        seed: seeds the shuffling and dropout.
        torch_threads: intra-op threads for the duration of the call.

    Returns:
        What was done and where the model is; see :class:`FinetuneResult`.

    Raises:
        ValueError: fewer than 2 distinct pairs, an empty text, ``batch_size < 2``,
            ``epochs < 1``, or non-positive ``learning_rate``/``max_seconds``/``max_length``.
        FileExistsError: ``output_dir`` exists and is not an empty directory.
        TrainingTimeout: ``max_seconds`` ran out before one full epoch (nothing is saved).
    """
    started = time.monotonic()
    distinct = list(dict.fromkeys((pair.question, pair.passage) for pair in pairs))
    if len(distinct) < 2:
        raise ValueError(f"need at least 2 distinct pairs, got {len(distinct)}")
    if any(not question.strip() or not passage.strip() for question, passage in distinct):
        raise ValueError("pairs must have a non-empty question and passage")
    if batch_size < 2:
        raise ValueError(f"batch_size must be >= 2 (in-batch negatives), got {batch_size}")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if learning_rate <= 0 or max_seconds <= 0 or max_length < 1:
        raise ValueError("learning_rate, max_seconds and max_length must be positive")
    output_dir = Path(output_dir)
    if output_dir.exists() and (not output_dir.is_dir() or any(output_dir.iterdir())):
        raise FileExistsError(f"{output_dir} exists and is not an empty directory")

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(torch_threads)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return _train(
                Path(base_model),
                distinct,
                output_dir,
                epochs=epochs,
                batch_size=batch_size,
                learning_rate=learning_rate,
                deadline=started + max_seconds,
                started=started,
                max_length=max_length,
                seed=seed,
            )
    finally:
        torch.set_num_threads(previous_threads)


def _train(
    base_model: Path,
    pairs: list[tuple[str, str]],
    output_dir: Path,
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    deadline: float,
    started: float,
    max_length: int,
    seed: int,
) -> FinetuneResult:
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    model = AutoModel.from_pretrained(base_model, dtype=torch.float32)
    model.train()

    # Passages paired with each question anywhere in the set: never negatives for it.
    positives: dict[str, set[str]] = {}
    for question, passage in pairs:
        positives.setdefault(question, set()).add(passage)

    generator = torch.Generator().manual_seed(seed)
    schedule = [_batches(len(pairs), batch_size, generator) for _ in range(epochs)]
    steps_per_epoch = len(schedule[0])
    optimizer, scheduler = _optimizer(model, learning_rate, steps_per_epoch * epochs)

    losses: list[float] = []
    batches_done = 0  # batches consumed, skipped ones included: the measure of epochs done
    for index in (index for epoch_batches in schedule for index in epoch_batches):
        if time.monotonic() >= deadline:
            break
        batches_done += 1
        loss = _batch_loss(model, tokenizer, [pairs[i] for i in index], positives, max_length)
        if loss is None:  # fewer than 2 distinct passages: no negative to learn from
            continue
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
        optimizer.step()
        scheduler.step()
        losses.append(float(loss.detach()))

    epochs_done = batches_done / steps_per_epoch
    if epochs_done < 1:
        raise TrainingTimeout(
            f"time bound reached after {batches_done} of {steps_per_epoch} batches of the first epoch"
        )
    if not losses:
        raise ValueError("every batch had a single distinct passage: no in-batch negatives to train on")

    _save_atomically(model, tokenizer, base_model, output_dir)
    return FinetuneResult(
        model_dir=output_dir,
        steps=len(losses),
        epochs=epochs_done,
        first_loss=losses[0],
        last_loss=float(np.mean(losses[-steps_per_epoch:])),
        seconds=time.monotonic() - started,
        pairs=len(pairs),
    )


def _optimizer(
    model: torch.nn.Module, learning_rate: float, total_steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW with weight decay except on biases and LayerNorm weights, and the linear schedule
    whose first ``WARMUP_FRACTION`` of ``total_steps`` (rounded down) warm the rate up from 0."""
    decay = [p for n, p in model.named_parameters() if not n.endswith("bias") and "LayerNorm" not in n]
    no_decay = [p for n, p in model.named_parameters() if n.endswith("bias") or "LayerNorm" in n]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}],
        lr=learning_rate,
    )
    return optimizer, get_linear_schedule_with_warmup(optimizer, int(WARMUP_FRACTION * total_steps), total_steps)


def _batches(count: int, batch_size: int, generator: torch.Generator) -> list[list[int]]:
    """A seeded shuffle of ``range(count)`` cut into batches; a last chunk of one is merged
    into the batch before it (one pair alone has no in-batch negative)."""
    order = torch.randperm(count, generator=generator).tolist()
    batches = [order[start : start + batch_size] for start in range(0, count, batch_size)]
    if len(batches) > 1 and len(batches[-1]) < 2:
        batches[-2].extend(batches.pop())
    return batches


def _embed(
    model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, texts: list[str], max_length: int
) -> torch.Tensor:
    """Mean pooling over the attention mask + L2 norm (the Embedder's recipe), with gradients.
    Returns float32 ``(len(texts), hidden_size)``."""
    encoded = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    hidden = model(**encoded).last_hidden_state  # (batch, seq, dim)
    mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (batch, seq, 1)
    pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, p=2, dim=1)


def _batch_loss(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    batch: list[tuple[str, str]],
    positives: dict[str, set[str]],
    max_length: int,
) -> torch.Tensor | None:
    """In-batch-negatives cross-entropy of one batch, over its distinct passages; ``None``
    when the batch has fewer than 2 distinct passages."""
    passages = list(dict.fromkeys(passage for _, passage in batch))  # distinct, in order
    if len(passages) < 2:
        return None
    column = {passage: j for j, passage in enumerate(passages)}
    questions = [question for question, _ in batch]
    targets = torch.tensor([column[passage] for _, passage in batch])

    scores = SCALE * _embed(model, tokenizer, questions, max_length) @ _embed(model, tokenizer, passages, max_length).T
    # Another positive of the same question is not a negative: drop it from the softmax.
    false_negative = torch.tensor(
        [[p in positives[q] and j != targets[i] for j, p in enumerate(passages)] for i, q in enumerate(questions)]
    )
    scores = scores.masked_fill(false_negative, torch.finfo(scores.dtype).min)
    return torch.nn.functional.cross_entropy(scores, targets)


def _save_atomically(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, base_model: Path, output_dir: Path
) -> None:
    """Save into a temporary sibling of ``output_dir``, then rename it into place."""
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.partial-", dir=output_dir.parent))
    try:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        for name in _SENTENCE_TRANSFORMERS_FILES:
            source = base_model / name
            if source.is_dir():
                shutil.copytree(source, staging / name)
            elif source.is_file():
                shutil.copy2(source, staging / name)
        staging.chmod(0o755)  # mkdtemp makes it 0o700
        if output_dir.is_dir():  # an empty directory (checked at the start): rename replaces it
            output_dir.rmdir()
        staging.rename(output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def hits_at_k(
    model_dir: Path,
    passages: Sequence[tuple[str, str]],
    questions: Sequence[tuple[str, Collection[str]]],
    *,
    k: int = 5,
    torch_threads: int = 1,
) -> np.ndarray:
    """Whether each question's ``k`` nearest passages include one of a gold document.

    All texts are embedded with :class:`~ragops_models.embedder.Embedder` (``warm_up`` then
    ``embed``): passages into an ``(n, d)`` float32 matrix, questions into ``(m, d)``, rows of
    L2 norm 1, so the ``(m, n)`` product is the cosine similarity (brute force, numpy).

    Args:
        model_dir: local model directory (the base model or a fine-tuned one).
        passages: ``(document_id, text)``; several passages may share a document id.
        questions: ``(question, gold document ids)``; a hit when any of the question's top-k
            passages has a gold document id.
        k: passages retrieved per question (all of them when ``k`` exceeds their number).
        torch_threads: threads of the embedder.

    Returns:
        bool array of shape ``(len(questions),)``.

    Raises:
        ValueError: no passages, no questions, ``k < 1``, or a question without gold ids.
    """
    if not passages or not questions:
        raise ValueError("need at least one passage and one question")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    golds = [set(gold) for _, gold in questions]
    if any(not gold for gold in golds):
        raise ValueError("every question needs at least one gold document id")

    embedder = Embedder(model_dir, torch_threads=torch_threads)
    embedder.warm_up()
    passage_vectors = embedder.embed([text for _, text in passages])  # (n, d)
    question_vectors = embedder.embed([question for question, _ in questions])  # (m, d)
    similarity = question_vectors @ passage_vectors.T  # (m, n) cosine

    k = min(k, len(passages))
    top = np.argpartition(-similarity, k - 1, axis=1)[:, :k]  # (m, k) unordered top-k columns
    document_ids = [document_id for document_id, _ in passages]
    return np.array([any(document_ids[j] in gold for j in row) for row, gold in zip(top.tolist(), golds, strict=True)])
