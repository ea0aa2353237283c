"""The abstention rate per tenant, read from ``generations`` (chDB)."""

from datetime import UTC, datetime
from pathlib import Path

import pytest

from ragops_analytics import queries
from ragops_analytics.chdb_store import ChdbStore
from ragops_schemas import AnswerGenerated
from ragops_schemas.ids import new_event_id
from ragops_shared.abstention import ABSTAINED, ABSTAINED_ANSWER
from ragops_sink.rows import events_to_arrow
from ragops_sink.schema import migrate, set_retention
from tests.helpers import KEEP_ROWS, example
from tests.integration.test_clickhouse import row_from_json

pytestmark = pytest.mark.clickhouse


def test_the_abstention_rate_counts_abstained_answers_per_tenant(tmp_path: Path) -> None:
    answered = example(AnswerGenerated)
    abstained = answered.model_copy(
        update={
            "event_id": new_event_id(),
            "answer": ABSTAINED_ANSWER,
            "generation": answered.generation.model_copy(update={"finish_reasons": [ABSTAINED]}),
        }
    )
    other = answered.model_copy(update={"event_id": new_event_id(), "tenant": "globex"})
    store = ChdbStore(tmp_path / "clickhouse")
    try:
        migrate(store)
        set_retention(store, KEEP_ROWS)
        rows = [
            row_from_json(event.model_dump_json(by_alias=True), offset=offset)
            for offset, event in enumerate([answered, abstained, other])
        ]
        queries.insert_events(store, events_to_arrow(rows))
        since = datetime(2000, 1, 1, tzinfo=UTC)
        rates = queries.abstention_rates(store, since)
        assert [(r.tenant, r.answers, r.abstained, r.rate) for r in rates] == [
            (answered.tenant, 2, 1, 0.5),
            ("globex", 1, 0, 0.0),
        ]
        assert [r.tenant for r in queries.abstention_rates(store, since, "globex")] == ["globex"]
    finally:
        store.close()
