"""What many tests share: the producer stamped on the events they make, the golden examples
in ``schemas/examples`` (one valid event per type), JSONL reading, events as fetched Kafka
records, API keys for HTTP calls, a ClickHouse retention that keeps every row and a generator
that echoes its prompt, and the prompt version production serves when nothing is promoted."""

import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from aiokafka import ConsumerRecord
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ragops_analytics import queries
from ragops_analytics.queries import RETAINED_TABLES
from ragops_analytics.store import AnalyticsStore
from ragops_models.generation import Generation
from ragops_schemas import Event, Producer
from ragops_shared.identity import ApiKeyStore, Role
from ragops_shared.prompts import seed_prompts
from ragops_shared.signing import DEFAULT_ALLOWED, Signer, TrustedKey, TrustStore, Verifier
from ragops_sink.audit import audit_entries, signed_price_lists, store_audited
from ragops_sink.rows import events_to_arrow, to_row

E = TypeVar("E", bound=Event)

PRODUCER = Producer(name="test", version="0")
GATEWAY_SIGNER = Signer(Ed25519PrivateKey.generate())
"""Signs as the gateway (erasure requests) for :data:`VERIFIER`."""
VERIFIER = Verifier(
    TrustStore({GATEWAY_SIGNER.key_id: TrustedKey("gateway", GATEWAY_SIGNER.public_key)}, DEFAULT_ALLOWED),
    max_clock_skew_s=60,
    model_dirs=[],
)
"""Trusts :data:`GATEWAY_SIGNER` only: control events signed by anyone else are refused."""
EXAMPLES = Path(__file__).resolve().parents[1] / "schemas" / "examples"
KEEP_ROWS: dict[str, int | None] = dict.fromkeys(RETAINED_TABLES)
"""A sink retention (``SinkSettings.retention_days``, ``set_retention``) with no TTL: the golden
examples carry fixed dates, which a TTL would drop at insert once the calendar passes them."""

SERVED_PROMPT = f"prompt=rag-answer:{max(p.version for p in seed_prompts() if p.name == 'rag-answer')}"
"""The side (``prompt=NAME:VERSION``) production serves when no version is promoted: the highest
seed version of ``rag-answer``, the one written for the default generator."""


def example_bytes(event_type: type[Event]) -> bytes:
    """The golden example of ``event_type`` as stored: ``schemas/examples/<Type>.json``."""
    return (EXAMPLES / f"{event_type.__name__}.json").read_bytes()


def example(event_type: type[E]) -> E:
    """The golden example of ``event_type``, validated."""
    return event_type.model_validate_json(example_bytes(event_type))


def read_jsonl(path: Path) -> list[dict]:
    """Every line of a JSONL file, parsed."""
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


def bearer(data_dir: Path, *roles: Role, tenant: str = "default") -> dict[str, str]:
    """``Authorization`` headers with a new API key holding ``roles``, created in the key file a
    service with ``PlatformSettings(data_dir=data_dir)`` reads (``<data_dir>/auth/api-keys.json``)."""
    _, credential = ApiKeyStore(data_dir / "auth" / "api-keys.json").create("test", tenant, list(roles))
    return {"authorization": f"Bearer {credential}"}


def record_of(event: Event, offset: int, partition: int = 0) -> ConsumerRecord:
    """``event`` as a consumer fetches it from its topic: JSON value, its key, no headers."""
    return ConsumerRecord(
        topic=event.TOPIC.value,
        partition=partition,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=event.key,
        value=event.model_dump_json(by_alias=True).encode(),
        checksum=None,
        serialized_key_size=0,
        serialized_value_size=0,
        headers=(),
    )


def store_as_sink(store: AnalyticsStore, records: Sequence[ConsumerRecord], verifier: Verifier, now: datetime) -> None:
    """What the sink's two subscribers store of ``records``: the raw ``events`` rows, then the
    audit subscriber's entries and signed price lists (``verifier`` checks the signatures)."""
    queries.insert_events(store, events_to_arrow([to_row(record, now) for record in records]))
    store_audited(store, audit_entries(records, verifier), signed_price_lists(records, verifier), now)


class EchoGenerator:
    """A :class:`ragops_models.generation.Generator` without a model: each answer is the user
    message it was given, so a test sees which prompt was rendered."""

    model_name = "echo"
    model_version = "0"

    def warm_up(self) -> None:
        pass

    def generate(self, batch: Sequence[list[dict[str, str]]]) -> list[Generation]:
        return [
            Generation(chat[-1]["content"], input_tokens=1, output_tokens=1, finish_reason="stop") for chat in batch
        ]
