"""Contrastive fine-tuning of the real embedding model (all-MiniLM-L6-v2) on real SQuAD
(question, passage) pairs from ``../shared/data``, and the hit rate that judges it."""

import random
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from ragops_models.defaults import default_embedding_model_dir
from ragops_models.embedder import Embedder
from ragops_models.weights import weights_version
from ragops_trainer.finetune import (
    FinetuneResult,
    TrainingPair,
    TrainingTimeout,
    finetune_embedding,
    hits_at_k,
)
from tests.helpers import read_jsonl

pytestmark = pytest.mark.model

ARTICLES = ("Ctenophora", "Black Death", "Force", "Apollo program")
"""Four of the corpus's 40 articles; the training pairs come from their questions."""


@pytest.fixture(scope="module")
def corpus(corpus_rows: list[dict]) -> dict[str, dict]:
    return {record["id"]: record for record in corpus_rows}


@pytest.fixture(scope="module")
def article_questions(data_dir: Path, corpus: dict[str, dict]) -> list[dict]:
    """Questions of ARTICLES, in a seeded random order."""
    questions = [
        q for q in read_jsonl(data_dir / "questions-all.jsonl") if corpus[q["context_ids"][0]]["title"] in ARTICLES
    ]
    random.Random(0).shuffle(questions)
    return questions


def to_pairs(questions: list[dict], corpus: dict[str, dict]) -> list[TrainingPair]:
    return [TrainingPair(q["question"], corpus[q["context_ids"][0]]["text"]) for q in questions]


def mean_gold_cosine(model_dir: Path, pairs: list[TrainingPair]) -> float:
    """Mean cosine(question, its passage), embedded in float32 so that the small change of one
    short epoch is not hidden by bf16 rounding."""
    embedder = Embedder(model_dir, dtype="float32", torch_threads=2)
    embedder.warm_up()
    questions = embedder.embed([pair.question for pair in pairs])
    passages = embedder.embed([pair.passage for pair in pairs])
    return float(np.mean(np.sum(questions * passages, axis=1)))


@pytest.fixture(scope="module")
def trained(
    tmp_path_factory: pytest.TempPathFactory, corpus, article_questions
) -> tuple[FinetuneResult, list[TrainingPair]]:
    """Two epochs on 64 (question, gold passage) pairs of ARTICLES, batch 16 (8 steps)."""
    pairs = to_pairs(article_questions[:64], corpus)
    output = tmp_path_factory.mktemp("finetune") / "model"
    started = time.monotonic()
    result = finetune_embedding(
        default_embedding_model_dir(), pairs, output, epochs=2, batch_size=16, learning_rate=5e-5, torch_threads=2
    )
    seconds = time.monotonic() - started
    print(
        f"\nfine-tuning: {result.pairs} pairs, batch 16, {result.steps} steps in {seconds:.1f}s "
        f"-> {result.pairs * result.epochs / seconds:.2f} pairs/s (2 threads, load and save included); "
        f"loss {result.first_loss:.4f} -> {result.last_loss:.4f}"
    )
    return result, pairs


def test_finetuned_model_serves_and_moves_towards_the_gold_passages(trained) -> None:
    result, pairs = trained
    base = default_embedding_model_dir()
    assert result.model_dir.is_dir()
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "modules.json"):
        assert (result.model_dir / name).is_file(), name
    # Nothing but the model lies beside it: the staging directory was renamed, not left behind.
    assert [path.name for path in result.model_dir.parent.iterdir()] == ["model"]
    assert (result.steps, result.epochs, result.pairs) == (8, 2.0, 64)
    assert np.isfinite(result.first_loss) and np.isfinite(result.last_loss)
    # The second epoch's mean loss, on pairs seen once already, is below the untrained first batch's.
    assert 0 < result.last_loss < result.first_loss

    assert weights_version(result.model_dir) != weights_version(base)
    embedder = Embedder(result.model_dir)
    info = embedder.warm_up()
    assert info.version == weights_version(result.model_dir) and info.dimension == 384
    vectors = embedder.embed(["a question", "a passage"])
    assert vectors.shape == (2, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-3)

    before, after = mean_gold_cosine(base, pairs), mean_gold_cosine(result.model_dir, pairs)
    print(f"\nmean cosine(question, gold passage) on the training pairs: {before:.4f} -> {after:.4f}")
    assert after > before + 0.005


def test_training_is_deterministic_for_a_seed(tmp_path: Path, corpus, article_questions) -> None:
    pairs = to_pairs(article_questions[:8], corpus)
    runs = [
        finetune_embedding(default_embedding_model_dir(), pairs, tmp_path / name, batch_size=4, torch_threads=2)
        for name in ("a", "b")
    ]
    assert runs[0].first_loss == runs[1].first_loss and runs[0].last_loss == runs[1].last_loss
    assert weights_version(tmp_path / "a") == weights_version(tmp_path / "b")
    other = finetune_embedding(
        default_embedding_model_dir(), pairs, tmp_path / "c", batch_size=4, seed=1, torch_threads=2
    )
    assert weights_version(tmp_path / "c") != weights_version(tmp_path / "a")
    assert other.steps == runs[0].steps == 2


def test_hit_rate_of_the_base_model_is_sane_and_deterministic(corpus, article_questions) -> None:
    # Passages of one article, keyed by passage id; its questions with their gold passage ids.
    passages = [(pid, record["text"]) for pid, record in corpus.items() if record["title"] == "Ctenophora"]
    questions = [
        (q["question"], set(q["context_ids"]))
        for q in article_questions
        if corpus[q["context_ids"][0]]["title"] == "Ctenophora"
    ][:60]
    model = default_embedding_model_dir()
    hit5 = hits_at_k(model, passages, questions, k=5, torch_threads=2).mean()
    hit1 = hits_at_k(model, passages, questions, k=1, torch_threads=2).mean()
    everything = hits_at_k(model, passages, questions, k=len(passages) + 10, torch_threads=2).mean()
    print(
        f"\nbase model on {len(passages)} Ctenophora passages, {len(questions)} questions: "
        f"hit@1 {hit1:.3f}, hit@5 {hit5:.3f}"
    )
    assert 0.3 < hit1 <= hit5 < 1.0  # far above chance (5/len(passages)), not perfect
    assert everything == 1.0
    assert hits_at_k(model, passages, questions, k=5, torch_threads=2).mean() == hit5

    # Gold ids that name no passage are never hit; document ids shared by passages count once.
    assert hits_at_k(model, passages, [(text, {"nowhere"}) for text, _ in questions[:5]], k=5).mean() == 0.0
    articles = [("Ctenophora", text) for _, text in passages] + [("Force", corpus["Force-p000"]["text"])]
    assert hits_at_k(model, articles, [(questions[0][0], {"Ctenophora"})], k=1).mean() == 1.0


def test_hit_rate_rejects_empty_inputs() -> None:
    model = default_embedding_model_dir()
    with pytest.raises(ValueError):
        hits_at_k(model, [], [("q", {"d"})])
    with pytest.raises(ValueError):
        hits_at_k(model, [("d", "text")], [])
    with pytest.raises(ValueError):
        hits_at_k(model, [("d", "text")], [("q", {"d"})], k=0)
    with pytest.raises(ValueError):
        hits_at_k(model, [("d", "text")], [("q", set())])


def test_time_bound_before_one_epoch_leaves_no_model(tmp_path: Path, corpus, article_questions) -> None:
    pairs = to_pairs(article_questions[:64], corpus)
    output = tmp_path / "model"
    with pytest.raises(TrainingTimeout):
        finetune_embedding(default_embedding_model_dir(), pairs, output, max_seconds=0.5, torch_threads=2)
    assert not output.exists()
    assert list(tmp_path.iterdir()) == []  # no staging directory either


def test_rejects_too_few_pairs_and_tiny_batches(tmp_path: Path) -> None:
    base = default_embedding_model_dir()
    pair = TrainingPair("What is a ctenophore?", "Ctenophora is a phylum of marine invertebrates.")
    other = TrainingPair("What do ctenophores eat?", "Ctenophores are predators of plankton.")
    with pytest.raises(ValueError, match="2 distinct pairs"):
        finetune_embedding(base, [pair], tmp_path / "a")
    with pytest.raises(ValueError, match="2 distinct pairs"):
        finetune_embedding(base, [pair, pair, pair], tmp_path / "b")
    with pytest.raises(ValueError, match="batch_size"):
        finetune_embedding(base, [pair, other], tmp_path / "c", batch_size=1)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    with pytest.raises(FileExistsError):
        finetune_embedding(base, [pair, other], tmp_path / "taken")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["taken"]


def test_a_passage_twice_in_a_batch_is_not_its_own_negative() -> None:
    from transformers import AutoModel, AutoTokenizer

    from ragops_trainer.finetune import SCALE, _batch_loss, _embed

    base = default_embedding_model_dir()
    tokenizer, model = AutoTokenizer.from_pretrained(base), AutoModel.from_pretrained(base).eval()
    ctenophora = "Ctenophora is a phylum of marine invertebrates known as comb jellies."
    plague = "The Black Death was a bubonic plague pandemic that peaked in Europe from 1347 to 1351."
    batch = [
        ("What are comb jellies?", ctenophora),
        ("Which phylum are comb jellies?", ctenophora),
        ("When was the plague?", plague),
    ]
    positives = {
        "What are comb jellies?": {ctenophora},
        "Which phylum are comb jellies?": {ctenophora},
        "When was the plague?": {plague},
    }
    with torch.no_grad():
        loss = float(_batch_loss(model, tokenizer, batch, positives, 64))
        questions = _embed(model, tokenizer, [q for q, _ in batch], 64)
        passages = _embed(model, tokenizer, [ctenophora, plague], 64)  # one column per distinct passage
        expected = float(torch.nn.functional.cross_entropy(SCALE * questions @ passages.T, torch.tensor([0, 0, 1])))
        duplicated = _embed(model, tokenizer, [p for _, p in batch], 64)  # the naive 3 columns
        naive = float(torch.nn.functional.cross_entropy(SCALE * questions @ duplicated.T, torch.tensor([0, 1, 2])))
    assert loss == pytest.approx(expected, rel=1e-5)
    assert naive > loss + 0.3  # the copy counted as a negative would cost about log 2

    # A second passage of the same question (elsewhere in the set) is masked, not a negative.
    positives["What are comb jellies?"] = {ctenophora, plague}
    with torch.no_grad():
        masked = float(_batch_loss(model, tokenizer, batch, positives, 64))
    assert masked < loss

    # A batch of one distinct passage has no negative: no loss.
    assert _batch_loss(model, tokenizer, batch[:2], positives, 64) is None
