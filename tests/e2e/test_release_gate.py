"""The release gate on the embedded platform, end to end: 12 questions of the real data
pushed as a dataset version, a candidate prompt version that answers one fixed word
(pushed through the gateway, which numbers it) blocked by ``ragops eval --fail-under``
(exit 1, JUnit failures, ``EvaluationComparisonCompleted(passed=False)``), and the baseline
against itself passed (exit 0)."""

import asyncio
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from ragops.cli import app
from ragops.demo import fixed_word_prompt, register_prompt
from ragops.platform import EmbeddedPlatform
from ragops_schemas import EvaluationComparisonCompleted, EvaluationRunCompleted
from tests.helpers import SERVED_PROMPT, read_jsonl
from tests.integration.services import read_records

pytestmark = [pytest.mark.kafka, pytest.mark.qdrant, pytest.mark.model, pytest.mark.slow]
QUESTIONS = 8


@pytest.mark.timeout(1800)  # the platform's start, and 32 answers generated on a shared CPU
def test_the_gate_blocks_a_worse_prompt_and_passes_the_baseline(
    tmp_path: Path, data_dir: Path, corpus_rows: list[dict]
) -> None:
    questions = read_jsonl(data_dir / "questions.jsonl")[:QUESTIONS]
    passages = {context for row in questions for context in row["context_ids"]}
    (tmp_path / "questions.jsonl").write_text("".join(json.dumps(row) + "\n" for row in questions))
    (tmp_path / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in corpus_rows if r["id"] in passages))
    # Short answers from one passage: the gate, not good prose, is under test.
    env = {"RAGOPS_GENERATION_MAX_NEW_TOKENS": "12", "RAGOPS_GENERATION_CONTEXT_CHUNKS": "1"}
    home = tmp_path / "platform"
    with EmbeddedPlatform(data_dir=home, env=env) as platform:
        platform.wait_ready(timeout_s=600)

        def ragops(*args: str) -> Result:
            return CliRunner().invoke(
                app,
                [*args, "--data-dir", str(home)],
                env={"KAFKA_BOOTSTRAP_SERVERS": platform.kafka_settings.bootstrap_servers, "COLUMNS": "200"},
            )

        ingested = ragops("ingest", str(tmp_path / "corpus.jsonl"))
        assert ingested.exit_code == 0, ingested.output
        pushed = ragops("dataset", "push", "squad-12", str(tmp_path / "questions.jsonl"))
        assert pushed.exit_code == 0, pushed.output
        dataset = pushed.stdout.strip().splitlines()[-1]
        candidate = asyncio.run(
            register_prompt(platform.gateway_url, platform.auth, "rag-answer", fixed_word_prompt())
        )  # the gateway numbers the version

        junit = tmp_path / "gate.xml"
        blocked = ragops(
            "eval",
            "--dataset",
            "squad-12",  # the latest version
            "--candidate",
            f"prompt=rag-answer:{candidate}",
            "--baseline",
            "production",
            "--fail-under",
            "faithfulness=0.2",
            "--fail-under",
            "f1=0.05",
            "--max-regression",
            "f1=0.02",
            "--junit",
            str(junit),
            "--run-id",
            "gate-worse",
        )
        assert blocked.exit_code == 1, blocked.output
        suite = ET.parse(junit).getroot().find("testsuite")
        assert suite is not None
        failed = {case.get("name") for case in suite.iter("testcase") if case.find("failure") is not None}
        # "banana" answers nothing (F1 near 0); its faithfulness stays above 0.2: the small model echoes the question.
        assert "fail-under f1=0.05" in failed and "answered" not in failed, blocked.output

        itself = ragops(
            "eval",
            "--dataset",
            dataset,
            "--candidate",
            SERVED_PROMPT,  # production's version: an older one may not suit the default generator
            "--baseline",
            SERVED_PROMPT,
            "--fail-under",
            "faithfulness=0.2",
            "--max-regression",
            "f1=0.15",  # the same prompt: only batching could make an answer differ
            "--run-id",
            "gate-same",
        )
        assert itself.exit_code == 0, itself.output

        kafka = platform.kafka_settings
        comparisons = {e.run_id: e for e, _ in asyncio.run(read_records(kafka, EvaluationComparisonCompleted, 2))}
        worse, same = comparisons["gate-worse"], comparisons["gate-same"]
        assert (worse.passed, worse.mode, worse.dataset, worse.questions) == (False, "dataset", dataset, QUESTIONS)
        paired = {p.metric: p for p in worse.paired}
        assert (paired["f1"].pairs, paired["f1"].test) == (QUESTIONS, "wilcoxon") and paired["f1"].candidate_mean < 0.05
        assert paired["faithfulness"].ci_high < 0  # clearly worse: the whole interval below zero
        assert paired["exact_match"].test == "mcnemar"
        assert same.passed and same.reasons == []
        runs = [e for e, _ in asyncio.run(read_records(kafka, EvaluationRunCompleted, 4))]
        assert {(r.run_id, r.side, r.dataset_version) for r in runs} == {
            (f"{run}-{side}", side, dataset.partition("@")[2])
            for run in ("gate-worse", "gate-same")
            for side in ("baseline", "candidate")
        }
        platform.check()
