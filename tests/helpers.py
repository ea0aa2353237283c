"""What many tests share: the producer stamped on the events they make, the golden examples
in ``schemas/examples`` (one valid event per type), JSONL reading and API keys for HTTP calls."""

import json
from pathlib import Path
from typing import TypeVar

from ragops_schemas import Event, Producer
from ragops_shared.identity import ApiKeyStore, Role

E = TypeVar("E", bound=Event)

PRODUCER = Producer(name="test", version="0")
EXAMPLES = Path(__file__).resolve().parents[1] / "schemas" / "examples"


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
