"""``ragops calibrate abstention``: fit the abstention check from labelled questions.

Labelled data: ``questions.jsonl`` (answerable, label 0) and ``questions-unanswerable.jsonl``
(SQuAD 2.0 questions written against a passage that does not answer them, label 1) over
``corpus.jsonl`` (``../shared/data``, its README). The procedure:

1. Draw ``per_class`` questions of each file (seeded, :func:`calibration_sample`) and split
   each class in half (seeded) into a training and a held-out split.
2. Signals (:mod:`ragops_shared.abstention`) from the platform's own retrieval, run in this
   process: every passage embedded by the platform's embedding model and indexed as one
   chunk in a Qdrant Edge collection (the retrieval service's store), each question
   embedded and searched as the retrieval service searches (``mode`` hybrid: contexts; dense:
   the similarities), the first ``context_chunks`` contexts being what the prompt gets.
3. Fit ``sklearn.linear_model.LogisticRegression`` on the training split's signals
   (label 1 = unanswerable); its predicted probability is the check's score.
4. The threshold: on the training split's ROC curve (``sklearn.metrics.roc_curve``, positive
   class unanswerable), the point with the highest true-positive rate (share of unanswerable
   abstained) among those whose false-positive rate (share of answerable abstained) is at most
   ``1 - min_answered`` (:func:`pick_threshold`), i.e. the issue's constraint that at least
   0.9 of the answerable questions still get their answer.
5. Report the ROC AUC and both shares on the held-out split, and write the calibration file.

Retrieval-only signals cost one embedding per passage and per question (about a minute on
one core for the whole corpus); the draft answer's ``groundedness`` would cost a generation
per question (about 2.5 s each), so the packaged calibration does not use it.
"""

from __future__ import annotations

import hashlib
import json
import random
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ragops_shared.abstention import calibration_id, signals

RETRIEVAL_SIGNALS = ("top_similarity", "margin", "question_coverage", "top_coverage")
"""The signals the packaged calibration may use: retrieval only, no draft answer."""


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSON Lines file."""
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def calibration_sample(rows: Sequence[dict[str, Any]], count: int, seed: int) -> list[dict[str, Any]]:
    """``count`` rows drawn without replacement by ``random.Random(seed)`` from ``rows`` in id
    order (all of them when fewer): the same draw whatever the file's line order. The demo
    asks questions outside this draw."""
    ordered = sorted(rows, key=lambda row: str(row["id"]))
    return random.Random(seed).sample(ordered, min(count, len(ordered)))


def pick_threshold(labels: Sequence[int], scores: Sequence[float], min_answered: float) -> float:
    """The ROC threshold that abstains on the most unanswerable questions (label 1) while at
    least ``min_answered`` of the answerable ones (label 0) are answered (score below it).

    Among the points of ``sklearn.metrics.roc_curve`` with false-positive rate
    ``<= 1 - min_answered``, the one with the highest true-positive rate; of ties, the highest
    threshold (fewest abstentions). Abstain when ``score >= threshold``. Returns 1.0 (abstain
    only on a certain score) when no point but the curve's start meets the constraint.
    """
    from sklearn.metrics import roc_curve

    fpr, tpr, thresholds = roc_curve(labels, scores)
    allowed = np.flatnonzero(fpr <= 1.0 - min_answered + 1e-12)
    best = allowed[np.argmax(tpr[allowed])]  # argmax: the first (highest threshold) of ties
    return float(min(thresholds[best], 1.0))


@dataclass(frozen=True)
class Split:
    features: np.ndarray  # (n, len(feature names))
    labels: np.ndarray  # 1 = unanswerable


def rates(split: Split, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """Share of unanswerable abstained and of answerable answered at ``threshold``."""
    abstained = scores >= threshold
    return {
        "abstained_unanswerable": float(abstained[split.labels == 1].mean()),
        "answered_answerable": float((~abstained[split.labels == 0]).mean()),
    }


def fit(train: Split, held_out: Split, features: Sequence[str], *, min_answered: float, seed: int) -> dict[str, Any]:
    """Fit the logistic regression on ``train``, pick the threshold on its ROC curve
    (:func:`pick_threshold`), score ``held_out``: the figures of a calibration file."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    model = LogisticRegression(random_state=seed, max_iter=1000).fit(train.features, train.labels)
    train_scores = model.predict_proba(train.features)[:, 1]
    threshold = pick_threshold(train.labels.tolist(), train_scores.tolist(), min_answered)
    held_scores = model.predict_proba(held_out.features)[:, 1]
    return {
        "features": list(features),
        "coefficients": [round(float(value), 6) for value in model.coef_[0]],
        "intercept": round(float(model.intercept_[0]), 6),
        "threshold": round(threshold, 6),
        "threshold_rule": (
            f"highest share of unanswerable abstained on the training split's ROC curve with at least "
            f"{min_answered} of answerable answered (false-positive rate <= {1 - min_answered:.2f}); "
            "abstain when score >= threshold"
        ),
        "roc_auc": {
            "train": round(float(roc_auc_score(train.labels, train_scores)), 4),
            "held_out": round(float(roc_auc_score(held_out.labels, held_scores)), 4),
        },
        "train_rates": rates(train, train_scores, threshold),
        "held_out_rates": rates(held_out, held_scores, threshold),
    }


def retrieve(
    corpus: Sequence[dict[str, Any]], questions: Sequence[str], *, top_k: int, context_chunks: int, threads: int
) -> list[tuple[list[float], list[str]]]:
    """For each question, the dense similarities (best first, ``top_k``) and the texts of the
    first ``context_chunks`` hybrid contexts, from the platform's embedder and store."""
    from ragops_models.defaults import DEFAULT_EMBEDDING_MODEL_NAME, default_embedding_model_dir
    from ragops_models.embedder import Embedder
    from ragops_retrieval.store import ChunkPoint, open_store
    from ragops_shared.text import contextual_text

    embedder = Embedder(default_embedding_model_dir(), name=DEFAULT_EMBEDDING_MODEL_NAME, torch_threads=threads)
    info = embedder.warm_up()
    # Embedded and BM25-indexed under their title header, as the embedding and retrieval services do.
    headed = [contextual_text(passage["text"], title=passage.get("title")) for passage in corpus]
    vectors = embedder.embed(headed)
    asked = embedder.embed(list(questions))
    with tempfile.TemporaryDirectory(prefix="ragops-calibrate-") as directory:
        store = open_store(url=None, api_key=None, path=directory)
        try:
            store.ensure_collection("calibration", info.dimension)
            store.upsert(
                "calibration",
                [
                    ChunkPoint(
                        chunk_id=passage["id"],
                        document_id=passage["id"],
                        document_version="1",
                        text=passage["text"],
                        vector=vector.tolist(),
                        payload={"title": passage.get("title")},
                        indexed_text=indexed,
                    )
                    for passage, vector, indexed in zip(corpus, vectors, headed, strict=True)
                ],
                info.version,
            )
            found = []
            for question, vector in zip(questions, asked, strict=True):
                query = vector.tolist()
                nearest = store.search("calibration", vector=query, text=question, top_k=top_k, mode="dense")
                hits = store.search("calibration", vector=query, text=question, top_k=top_k, mode="hybrid")
                found.append(([hit.score for hit in nearest], [hit.text for hit in hits[:context_chunks]]))
            return found
        finally:
            store.close()


def calibrate(
    data_dir: Path,
    *,
    per_class: int = 1000,
    seed: int = 17,
    min_answered: float = 0.9,
    features: Sequence[str] = RETRIEVAL_SIGNALS,
    top_k: int = 5,
    context_chunks: int = 3,
    threads: int = 1,
    name: str = "abstention-retrieval",
) -> dict[str, Any]:
    """The content of a calibration file (:data:`ragops_shared.abstention.CALIBRATION_KEYS`)
    fitted as the module docstring says. Raises ``ValueError`` for a draft signal (not
    computed here) or an unknown one."""
    if not set(features) <= set(RETRIEVAL_SIGNALS):
        raise ValueError(f"features must be among {RETRIEVAL_SIGNALS}; draft signals need generation")
    files = {
        "corpus.jsonl": data_dir / "corpus.jsonl",
        "questions.jsonl": data_dir / "questions.jsonl",
        "questions-unanswerable.jsonl": data_dir / "questions-unanswerable.jsonl",
    }
    answerable = calibration_sample(read_jsonl(files["questions.jsonl"]), per_class, seed)
    unanswerable = calibration_sample(read_jsonl(files["questions-unanswerable.jsonl"]), per_class, seed)
    rows = [(row["question"], 0) for row in answerable] + [(row["question"], 1) for row in unanswerable]
    found = retrieve(
        read_jsonl(files["corpus.jsonl"]),
        [question for question, _ in rows],
        top_k=top_k,
        context_chunks=context_chunks,
        threads=threads,
    )
    table = np.array(
        [
            [signals(question, similarities, contexts, "")[feature] for feature in features]
            for (question, _), (similarities, contexts) in zip(rows, found, strict=True)
        ]
    )
    labels = np.array([label for _, label in rows])
    # Half of each class trains, the other half is held out (seeded).
    order = np.random.default_rng(seed).permutation(len(rows))
    train_index = np.sort(
        np.concatenate([order[labels[order] == label][: (labels == label).sum() // 2] for label in (0, 1)])
    )
    held_index = np.setdiff1d(np.arange(len(rows)), train_index)
    train = Split(table[train_index], labels[train_index])
    held_out = Split(table[held_index], labels[held_index])
    figures = fit(train, held_out, features, min_answered=min_answered, seed=seed)
    content: dict[str, Any] = {
        "name": name,
        "features": figures["features"],
        "coefficients": figures["coefficients"],
        "intercept": figures["intercept"],
        "threshold": figures["threshold"],
        "threshold_rule": figures["threshold_rule"],
        "roc_auc": figures["roc_auc"],
        "train": {
            "answerable": int((train.labels == 0).sum()),
            "unanswerable": int((train.labels == 1).sum()),
            **figures["train_rates"],
        },
        "held_out": {
            "answerable": int((held_out.labels == 0).sum()),
            "unanswerable": int((held_out.labels == 1).sum()),
            **figures["held_out_rates"],
        },
        "seed": seed,
        "per_class": per_class,
        "datasets": {file: sha256_of(path) for file, path in files.items()},
        "retrieval": {"top_k": top_k, "context_chunks": context_chunks, "chunking": "one chunk per passage"},
        "generation": None,  # no draft signal: any generation model and prompt
        "created_by": "ragops calibrate abstention",
    }
    content["id"] = calibration_id(content)
    return content
