"""An A/B experiment over prompt versions on the embedded platform, every service in its own
process, on a slice of the real corpus: an operator pushes a prompt version over HTTP and
starts a 50:50 experiment against the served version; production questions stream in and a
simulated user sends feedback (thumbs-down when the answer shares no word with a gold answer); the
monitor's always-valid test finds the pushed version worse, concludes the experiment and
rolls it back, after which every question is answered by production again."""

import asyncio
import random
import time
from pathlib import Path

import httpx
import pytest

from ragops.client import PlatformClient, QueryTrace
from ragops.platform import EmbeddedPlatform
from ragops_evaluation.metrics import token_f1
from ragops_schemas import AnswerGenerated, FeedbackRecorded, FeedbackSubmitted
from ragops_shared.datasets import Question, load_corpus, load_questions

pytestmark = [pytest.mark.kafka, pytest.mark.qdrant, pytest.mark.clickhouse, pytest.mark.model, pytest.mark.slow]

ARTICLES = ("Normans", "Amazon_rainforest")
# A version that lost the question (a template bug a release can ship): the model never sees
# what was asked, so a user finds no answer in its replies, whatever the model. A version that
# only told the model to reply "banana" was obeyed about half the time by both packaged models
# (checked on four questions each): they answered from their own knowledge instead.
WORSE = {
    "name": "rag-answer",
    "description": "lost the question variable (a worse version, for the experiment)",
    "system": "Reply with the single word: banana.",
    "user": "Say the word.",
}


def _ask(platform: EmbeddedPlatform, questions: list[Question]) -> list[QueryTrace]:
    async def run() -> list[QueryTrace]:
        async with PlatformClient(platform.kafka_settings, name="e2e-experiment") as client:
            return await client.ask([client.question(q.question) for q in questions], concurrency=8)

    return asyncio.run(run())


# The simulated user is lenient: an answer that shares a word with a gold answer is useful to
# them. The 135M model on prompt v3 seldom holds a gold answer verbatim (in a local run 22 of
# its 75 served answers shared a word with one), and 70 answers per arm must tell the arms apart.
def _feedback(platform: EmbeddedPlatform, questions: list[Question], traces: list[QueryTrace]) -> list[object]:
    async def run() -> list[object]:
        async with PlatformClient(platform.kafka_settings, name="e2e-user") as client:
            feedback = [
                FeedbackSubmitted(
                    producer=client.producer,
                    request_id=trace.answer.request_id,
                    thumb="up" if token_f1(trace.answer.answer, question.answers) > 0 else "down",
                )
                for question, trace in zip(questions, traces, strict=True)
                if trace.answer is not None
            ]
            return list(await client.send_feedback(feedback))

    return asyncio.run(run())


# 150 answers, then an experiment that must conclude: measured 487 s alone, more on a loaded box.
@pytest.mark.timeout(1200)
def test_a_worse_prompt_version_loses_its_experiment_and_is_rolled_back(data_dir: Path, tmp_path: Path) -> None:
    documents = [d for d in load_corpus(data_dir / "corpus.jsonl") if d.id.rsplit("-p", 1)[0] in ARTICLES]
    passages = {d.id for d in documents}
    questions = [q for q in load_questions(data_dir / "questions-all.jsonl") if q.context_ids[0] in passages]
    random.Random(15).shuffle(questions)
    streamed, after = questions[:140], questions[140:150]
    env = {
        "RAGOPS_MONITOR_EXPERIMENT_INTERVAL_S": "2",
        # The test is about the experiment machinery, not the model: the faster packaged model
        # (SmolLM2, about 0.8x Gemma's time per answer) keeps 150 answers well inside the timeout.
        "RAGOPS_GENERATION_PRESET": "smollm2-135m-instruct",
    }
    with EmbeddedPlatform(data_dir=tmp_path / "platform", env=env) as platform:
        platform.wait_ready(timeout_s=600)
        assert platform.keys is not None
        gateway = httpx.Client(
            base_url=platform.gateway_url, headers={"Authorization": f"Bearer {platform.keys.admin}"}, timeout=60
        )

        async def ingest() -> None:
            async with PlatformClient(platform.kafka_settings, name="e2e-ingest") as client:
                await client.ingest([client.document(d.id, d.text, title=d.title) for d in documents], concurrency=8)

        asyncio.run(ingest())

        pushed = gateway.post("/v1/prompts", json=WORSE)
        assert pushed.status_code == 201, pushed.text
        version = pushed.json()["version"]
        served = gateway.get("/v1/prompts/rag-answer").json()
        control = max(v["version"] for v in served["versions"] if v["version"] != version)
        started = gateway.post(
            "/v1/experiments",
            json={
                "target": "prompt",
                "target_name": "rag-answer",
                "variants": [
                    {"name": f"v{control}", "version": str(control), "weight": 50},
                    {"name": f"v{version}", "version": str(version), "weight": 50},
                ],
                "unit": "request",
                "policy": {"primary_metric": "thumbs_down_rate", "min_samples": 30},
                "reason": "does the one-word version serve users better?",
            },
        )
        assert started.status_code == 201, started.text
        experiment_id = started.json()["experiment_id"]
        # A second experiment over the same traffic is refused while this one runs.
        again = gateway.post("/v1/experiments", json=_body(control, version))
        assert again.status_code == 409, again.text

        traces = _ask(platform, streamed)
        answers = [t.answer for t in traces]
        assert all(isinstance(a, AnswerGenerated) for a in answers)
        arms = {a.lineage.variant for a in answers if a is not None}
        assert arms == {f"v{control}", f"v{version}"}, "both arms were served"
        assert all(
            a is not None
            and a.lineage.experiment_id == experiment_id
            and a.lineage.prompt.version == int(a.lineage.variant[1:])
            for a in answers
        ), "each answer rendered its arm's version"
        outcomes = _feedback(platform, streamed, traces)
        assert all(isinstance(o, FeedbackRecorded) for o in outcomes)

        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            [listed] = [e for e in gateway.get("/v1/experiments").json() if e["experiment_id"] == experiment_id]
            if listed["status"] != "running":
                break
            time.sleep(2)
        thumbs_up = {
            arm: sum(o.thumb == "up" for o in outcomes if isinstance(o, FeedbackRecorded) and o.lineage.variant == arm)
            for arm in arms
        }
        assert listed["status"] == "concluded", (listed, "thumbs up per arm", thumbs_up)

        analytics = platform.analytics()
        [(decision, variant, rolled_back)] = analytics.query(
            "SELECT JSONExtractString(payload, 'decision'), JSONExtractString(payload, 'variant'), "
            "JSONExtractBool(payload, 'rolled_back') FROM events "
            "WHERE event_type = 'experiment.concluded' AND JSONExtractString(payload, 'experiment_id') = {id:String}",
            {"id": experiment_id},
        ).rows
        assert (decision, variant, rolled_back) == ("loser", f"v{version}", 1)
        per_arm = dict(
            analytics.query(
                "SELECT variant, count() FROM generations FINAL WHERE experiment_id = {id:String} GROUP BY variant",
                {"id": experiment_id},
            ).rows
        )
        assert sum(per_arm.values()) == len(streamed) and set(per_arm) == arms

        # Rolled back: every later question is production's, outside any experiment.
        later = [t.answer for t in _ask(platform, after)]
        assert all(a is not None and a.lineage.variant is None and a.lineage.prompt.version == control for a in later)
        platform.check()


def _body(control: int, version: int) -> dict:
    return {
        "target": "prompt",
        "target_name": "rag-answer",
        "variants": [
            {"name": "a", "version": str(control), "weight": 50},
            {"name": "b", "version": str(version), "weight": 50},
        ],
        "unit": "user",
        "reason": "a second experiment over the same traffic",
    }
