"""The version registry folded from its events: aliases, retirement, order independence."""

from datetime import UTC, datetime, timedelta

from ragops_schemas import VersionPromoted, VersionRegistered, VersionRejected, VersionRetired
from ragops_schemas.registry import Registry
from tests.helpers import PRODUCER as P

T0 = datetime(2026, 11, 29, tzinfo=UTC)


def events() -> list:
    return [
        VersionRegistered(producer=P, occurred_at=T0, kind="prompt", name="rag-answer", version="1", uri="p/1"),
        VersionRegistered(producer=P, occurred_at=T0, kind="prompt", name="rag-answer", version="2", uri="p/2"),
        VersionPromoted(
            producer=P,
            occurred_at=T0 + timedelta(seconds=1),
            kind="prompt",
            name="rag-answer",
            version="2",
            reason="better",
        ),
        VersionPromoted(
            producer=P,
            occurred_at=T0 + timedelta(seconds=2),
            kind="prompt",
            name="rag-answer",
            version="1",
            reason="rolled back",
        ),
        VersionRejected(
            producer=P,
            occurred_at=T0 + timedelta(seconds=3),
            kind="embedding_model",
            name="m",
            version="c",
            reason="worse",
        ),
    ]


def test_the_latest_promotion_wins_whatever_the_order_events_are_read_in() -> None:
    forward, backward = Registry(), Registry()
    for event in events():
        forward.apply(event)
    for event in reversed(events()):
        backward.apply(event)
    for registry in (forward, backward):
        production = registry.alias("prompt", "rag-answer")
        assert production is not None and production.ref.version == "1" and production.uri == "p/1"
        assert registry.get("embedding_model", "m", "c").rejected is not None  # type: ignore[union-attr]
        assert registry.last_promotion() == T0 + timedelta(seconds=2)
        assert registry.last_promotion(["corpus"]) is None


def test_a_retired_version_takes_no_traffic_and_a_duplicate_changes_nothing() -> None:
    registry, history = Registry(), events()
    for event in history:
        assert registry.apply(event)
    assert not registry.apply(history[0]), "a redelivered event is not applied twice"
    registry.apply(
        VersionRetired(
            producer=P,
            occurred_at=T0 + timedelta(seconds=9),
            kind="prompt",
            name="rag-answer",
            version="1",
            reason="bad",
        )
    )
    assert registry.is_retired("prompt", "rag-answer", "1")
    assert registry.alias("prompt", "rag-answer") is None, "callers fall back to their default"
