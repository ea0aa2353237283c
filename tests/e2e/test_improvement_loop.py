"""The closed improvement loop on a small slice of the real corpus, every service in its own
process: questions switch to articles the index does not hold; the monitor detects it, the
policy asks for a corpus refresh and a fine-tune, the trainer refreshes, fine-tunes,
evaluates, and promotes or rejects, and every step lands in ClickHouse.

Same scenario code as ``ragops demo --drift`` (:mod:`ragops.drift_demo`), with small
windows, a small corpus and a policy that needs little feedback."""

import asyncio
import json
from dataclasses import asdict
from pathlib import Path

import pytest
from rich.console import Console

from ragops.drift_demo import Scenario, corpus_rows, run_scenario, write_jsonl
from ragops.platform import EmbeddedPlatform
from ragops_shared.datasets import load_corpus, load_questions

pytestmark = [pytest.mark.kafka, pytest.mark.qdrant, pytest.mark.clickhouse, pytest.mark.model, pytest.mark.slow]

FIRST = {"Construction", "Black_Death"}
LATER = {"Packet_switching", "Geology"}
POLICY = """
[[rules]]
name = "new-topics"
signals = ["query_embedding", "no_context_rate"]
action = "refresh_corpus"

[[rules]]
name = "feedback-finetune"
# Whichever retrieval-side signal fires first: with windows this small, the corpus refresh
# can move the baseline before a given signal has fired twice in a row.
signals = ["query_embedding", "no_context_rate", "retrieval_top_similarity", "negative_feedback_rate"]
action = "finetune_embedding"
min_examples_after = 5
"""


def test_drift_is_detected_and_the_trainer_closes_the_loop(data_dir: Path, tmp_path: Path) -> None:
    documents = [d for d in load_corpus(data_dir / "corpus.jsonl") if d.id.rsplit("-p", 1)[0] in FIRST | LATER]
    questions = load_questions(data_dir / "questions-all.jsonl", count=None)
    about = {title: [q for q in questions if q.context_ids[0].rsplit("-p", 1)[0] == title] for title in FIRST | LATER}
    scenario = Scenario(
        first=[d for d in documents if d.id.rsplit("-p", 1)[0] in FIRST],
        later=[d for d in documents if d.id.rsplit("-p", 1)[0] in LATER],
        first_questions=[q for title in sorted(FIRST) for q in about[title][:60]],
        later_questions=[q for title in sorted(LATER) for q in about[title][:60]],
    )
    holdout = [q for title in sorted(FIRST | LATER) for q in about[title][60:75]]
    sources, holdout_file, policy = tmp_path / "corpus.jsonl", tmp_path / "holdout.jsonl", tmp_path / "policy.toml"
    write_jsonl(sources, corpus_rows(scenario.first))
    write_jsonl(holdout_file, [asdict(q) for q in holdout])
    policy.write_text(POLICY)
    env = {
        "RAGOPS_MONITOR_INTERVAL_S": "1",
        "RAGOPS_MONITOR_REFERENCE_SIZE": "20",
        "RAGOPS_MONITOR_CURRENT_SIZE": "10",
        "RAGOPS_MONITOR_MIN_NEW": "5",
        "RAGOPS_MONITOR_POLICY": str(policy),
        "RAGOPS_TRAINER_SOURCES": json.dumps([str(sources)]),
        "RAGOPS_TRAINER_HOLDOUT": str(holdout_file),
        # 4 pairs: how many of the ~30 examples gathered by then hold a usable (question,
        # passage) pair depends on when the request lands relative to the refresh (7 in one
        # CI run, below the 8 this asked for); the loop, not the model's gain, is under test.
        "RAGOPS_TRAINER_MIN_PAIRS": "4",
        "RAGOPS_TRAINER_BATCH_SIZE": "8",
        "RAGOPS_TRAINER_MAX_TRAIN_SECONDS": "300",
        # Short answers from one passage: the loop needs answers, not good prose, and this keeps the test short.
        "RAGOPS_GENERATION_MAX_NEW_TOKENS": "12",
        "RAGOPS_GENERATION_CONTEXT_CHUNKS": "1",
    }
    with EmbeddedPlatform(data_dir=tmp_path / "platform", env=env) as platform:
        platform.wait_ready(timeout_s=600)
        report = asyncio.run(
            run_scenario(
                platform,
                scenario,
                sources,
                baseline=40,
                after=16,
                max_questions=112,
                concurrency=8,
                null_questions=100,
                console=Console(quiet=True),
            )
        )
        (tmp_path / "drift-report.json").write_text(
            json.dumps(report, indent=2, default=str)
        )  # for a failure's post-mortem
        analytics = platform.analytics()
        decisions = analytics.query(
            "SELECT kind, decision, action, rule FROM version_decisions ORDER BY decided_at"
        ).rows
        live_collections = analytics.query(
            "SELECT DISTINCT collection FROM retrievals FINAL WHERE occurred_at > "
            "(SELECT max(occurred_at) FROM versions FINAL WHERE event_type = 'registry.version_promoted')"
        ).rows
        platform.check()

    assert report["detected"], report["loop_events"]
    assert report["detection_delay"] is not None and report["detection_delay"] <= 60
    assert report["live_false_alarms"] == 0
    # The refresh: the later articles were ingested by the trainer from the source, and the
    # corpus version it promoted says why (rule and action from the request).
    assert ("corpus", "promoted", "refresh_corpus", "new-topics") in decisions
    quality = report["quality_by_phase"]
    assert quality["refreshed"]["hit@5"] > quality["drifted"]["hit@5"] + 0.3, quality
    # The fine-tune: evaluated on held-out questions; promoted only if it beat the live model.
    finetune = report["finetune"]
    assert finetune["decision"] in {"promote", "reject"}, report["loop_events"]
    assert finetune["held_out_questions"] == len(holdout)
    promoted_models = [v for v in report["versions_promoted"] if v.startswith("embedding_model@")]
    if finetune["hit_at_5_candidate"] > finetune["hit_at_5_live"]:
        assert finetune["decision"] == "promote" and len(promoted_models) == 1
        assert ("index", "promoted", "finetune_embedding", "feedback-finetune") in decisions
        # Queries after the promotion search the rebuilt index of the new model.
        assert len(live_collections) == 1 and live_collections[0][0].endswith(
            report["versions_promoted"][-2].split("@")[1]
        )
    else:
        assert finetune["decision"] == "reject" and not promoted_models
        assert ("embedding_model", "rejected", "finetune_embedding", "feedback-finetune") in decisions
