"""Shadow replay on the embedded platform: 12 production questions asked first (so they are
retained), then ``ragops shadow`` replays them through a clearly worse prompt version
pushed through the gateway (blocked: exit 1), and the baseline against itself passes
(exit 0); the replays' own traffic is not replayed again."""

import asyncio
import json
import time
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from typer.testing import CliRunner

from ragops.cli import app
from ragops.client import PlatformClient
from ragops.demo import SHADOW_PROMPT, fixed_word_prompt, register_prompt
from ragops.gate import Side
from ragops.platform import EmbeddedPlatform
from ragops_analytics import queries
from ragops_analytics.store import Reader
from ragops_schemas import AnswerGenerated
from ragops_schemas.ids import DEFAULT_TENANT
from tests.helpers import SERVED_PROMPT, read_jsonl

pytestmark = [pytest.mark.kafka, pytest.mark.qdrant, pytest.mark.model, pytest.mark.slow]
ARTICLE = "Normans"
QUESTIONS = 12


async def production_traffic(platform: EmbeddedPlatform, passages: list[dict[str, Any]], questions: list[str]) -> Side:
    """Ingest ``passages``, push the worse candidate through the gateway, and ask ``questions``
    untagged. Returns the candidate (the version the gateway numbered)."""
    candidate = Side.prompt(
        SHADOW_PROMPT, await register_prompt(platform.gateway_url, platform.auth, SHADOW_PROMPT, fixed_word_prompt())
    )
    async with PlatformClient(platform.kafka_settings, name="users") as client:
        await client.ingest([client.document(row["id"], row["text"], title=row["title"]) for row in passages])
        traces = await client.ask([client.question(q) for q in questions], concurrency=4, timeout_s=900)
    assert all(isinstance(t.outcome, AnswerGenerated) for t in traces)
    return candidate


@pytest.mark.timeout(1800)  # 12 + 2 x 12 + 2 x 4 answers on the one CPU of a loaded machine
def test_a_worse_candidate_is_blocked_and_the_baseline_against_itself_passes(
    tmp_path: Path, data_dir: Path, corpus_rows: list[dict[str, Any]]
) -> None:
    passages = [row for row in corpus_rows if row["title"] == ARTICLE][:12]
    ids = {row["id"] for row in passages}
    asked = [row["question"] for row in read_jsonl(data_dir / "questions.jsonl") if row["context_ids"][0] in ids]
    assert len(asked) >= QUESTIONS
    with EmbeddedPlatform(data_dir=tmp_path / "platform") as platform:
        platform.wait_ready(timeout_s=600)
        candidate = asyncio.run(production_traffic(platform, passages, asked[:QUESTIONS]))
        analytics = platform.analytics()
        deadline = time.monotonic() + 60
        while len(queries.retained_questions(analytics, DEFAULT_TENANT)) < QUESTIONS:
            assert time.monotonic() < deadline, "the sink did not retain the production questions"
            time.sleep(0.5)

        runner = CliRunner()
        where = ["--data-dir", str(platform.data_dir)]
        junit = tmp_path / "shadow.xml"
        worse = runner.invoke(
            app,
            [
                *("shadow", "--candidate", candidate.label, "--since", "1h"),
                *("--min-questions", str(QUESTIONS), "--junit", str(junit), "--concurrency", "8", *where),
            ],
        )
        assert worse.exit_code == 1, worse.output
        printed = " ".join(worse.output.split())  # rich wraps at the terminal's width
        assert f"on {QUESTIONS} retained questions" in printed
        assert "blocked: faithfulness: candidate worse" in printed
        assert "questions on which the sides disagree" in printed
        failed = [
            case.get("name") for case in ElementTree.parse(junit).iter("testcase") if case.find("failure") is not None
        ]
        assert "faithfulness" in failed and "min-questions" not in failed

        # The replay's questions were tagged runs: still only the production ones are retained.
        assert len(queries.retained_questions(analytics, DEFAULT_TENANT)) == QUESTIONS
        same = runner.invoke(
            app,
            [
                *("shadow", "--candidate", SERVED_PROMPT, "--baseline", SERVED_PROMPT),
                *("--sample", "4", "--min-questions", "4", "--concurrency", "8", *where),
            ],
        )
        assert same.exit_code == 0, same.output
        printed = " ".join(same.output.split())
        assert "passed" in printed and "on 4 retained questions" in printed
        # Both decisions were published (the sink stores them, as it stores every event).
        deadline = time.monotonic() + 60
        while len(comparisons := comparison_payloads(analytics)) < 2:
            assert time.monotonic() < deadline, comparisons
            time.sleep(0.5)
        analytics.close()
    decisions = sorted((c["candidate"], c["mode"], c["passed"]) for c in comparisons)
    assert decisions == sorted([(SERVED_PROMPT, "shadow", True), (candidate.label, "shadow", False)])


def comparison_payloads(analytics: Reader) -> list[dict[str, Any]]:
    rows = analytics.query("SELECT payload FROM events FINAL WHERE event_type = 'evaluation.comparison_completed'").rows
    return [json.loads(row[0]) for row in rows]
