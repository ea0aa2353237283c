"""The chaos harness, small (``make chaos`` runs it big): under a load of questions, services
are killed with ``kill -9``, generation is killed between publishing an answer and committing,
the broker is killed and restarted by the supervisor, the sink is stopped, and one poison
record of each kind is injected; then nothing is lost, nothing doubled, ClickHouse equals
Kafka and no consumer is stuck. The load is a careful client: a call whose response was lost
(the gateway killed mid-call) is sent again with its ``Idempotency-Key``."""

from pathlib import Path

import pytest

from chaos.run import Options, closing, run_chaos

pytestmark = [pytest.mark.kafka, pytest.mark.qdrant, pytest.mark.model, pytest.mark.slow]


def test_nothing_lost_doubled_or_stuck_under_chaos(data_dir: Path, tmp_path: Path) -> None:
    options = Options(
        questions=20,
        documents=12,
        seed=12,
        kills=["embedding", "gateway"],
        sink_stop_s=5.0,
        poison_rounds=1,
        interval_s=4.0,
        drain_timeout_s=240.0,
        data=data_dir,
        report=tmp_path / "chaos-report.json",
    )
    report = run_chaos(options, tmp_path / "platform")
    print(closing(report))
    assert report["failures"] == [], closing(report)
    # Every call reached the platform (a lost response was sent again with its key) and was
    # answered, as one request each: none lost to a killed gateway, none doubled by a retry.
    assert report["requests"]["requests"] >= options.questions and report["http"]["unanswered"] == []
    assert report["requests"]["unpublished"] == [] and report["requests"]["split"] == []
    assert report["requests"]["lost"] == [] and report["requests"]["duplicated"] == []
    assert {fault["action"] for fault in report["faults"]} >= {"kill:embedding", "broker", "generation-window"}
    assert report["targeted_generation_kill"].get("answer_event_id"), report["targeted_generation_kill"]
    kinds = report["poison"]
    assert set(kinds) == {"oversized", "bad_header", "schema_version", "colliding", "tombstone"}
    assert all(kind["lost"] == 0 for kind in kinds.values()), kinds
    assert report["restarts"].get("broker") == 1 and report["restarts"].get("embedding", 0) >= 1
