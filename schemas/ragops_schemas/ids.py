"""Every id and hash rule of the platform, in one place.

Ids are part of the contract: consumers de-duplicate on them, stores are keyed by them and
versions are compared by them, so a deterministic rule never changes (its outputs are already
in topics, indexes and ClickHouse). Each function says its rule; ``tests/unit/test_ids.py``
pins a known value of each. Hashes are SHA-256 of UTF-8 text, cut to a number of hex digits
that each rule states. Random ids (UUID4, random hex) are for things that have no natural key.

Not here: the weights versions of model directories and files (a content hash of files on
disk, owned by the model code that loads them).
"""

import hashlib
import hmac
import json
import re
import secrets
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

# UUID5 namespaces: never change them.
_DERIVED_EVENTS = uuid.UUID("0b8f5a52-3c1e-4f53-9a55-2f6f1d1c7e01")
_POINTS = uuid.UUID("6279f1e2-be4d-458a-a1a1-de7bfafe0711")
_UNPARSABLE_RECORDS = uuid.UUID("9d7e3c1b-2a4f-4b6e-8c0d-1e2f3a4b5c6d")
_DEAD_LETTERS = uuid.UUID("5f3c9a7e-8d21-4b0f-b6a4-3e7d2c1f9a58")
_INDEXED_VERSIONS = uuid.UUID("3c5e7a90-1b2d-4f6e-8a0c-2e4f6a8c0b1d")
_KEYED_REQUESTS = uuid.UUID("a41c6e0f-7d35-4b92-9e18-5c3b7f2d6a04")

DEFAULT_TENANT = "default"
"""The tenant of an event whose sender names none (the envelope's default), and of every id
derived before ids named tenants: its ids keep the rule they had, so an index built then
stays valid; every other tenant's ids name the tenant."""


def _sha256_hex(data: bytes, digits: int | None = None) -> str:
    return hashlib.sha256(data).hexdigest()[:digits]


# ---- documents, chunks, vector points, indexes -------------------------------------------------


def content_hash(text: str) -> str:
    """16 hex digits: the first of the SHA-256 of ``text`` (UTF-8). Tells whether a document's
    content changed (the trainer's corpus refresh compares sources with what was submitted)."""
    return _sha256_hex(text.encode(), 16)


def blob_digest(data: bytes) -> str:
    """Key of a blob in the content-addressed blob store (a document's content left there
    instead of travelling in its event): the whole SHA-256 of ``data``, 64 hex digits. Of a
    text's UTF-8 bytes, its first 16 digits are :func:`content_hash` of the text."""
    return _sha256_hex(data)


def document_version(parsed_text: str) -> str:
    """Version of a document: :func:`content_hash` of its parsed text, so unchanged content keeps
    its version and any change gives a new one."""
    return content_hash(parsed_text)


def chunk_id(document_id: str, text: str, *, tenant: str) -> str:
    """Content-hash id of a chunk of a tenant's document: the first 32 hex digits of the
    SHA-256 of ``document_id``, a NUL byte and ``text`` (UTF-8) for :data:`DEFAULT_TENANT`;
    for any other tenant, of the JSON array ``[tenant, document_id, text]`` (JSON escapes NUL,
    so the two forms never hash the same input). Re-ingesting unchanged content gives the
    same ids; identical chunk texts within one document share one id; two tenants' documents
    with the same id never share one (a document id is unique per tenant, and the point id
    derives from the chunk id)."""
    if tenant == DEFAULT_TENANT:
        return _sha256_hex(f"{document_id}\0{text}".encode(), 32)
    return _sha256_hex(json.dumps([tenant, document_id, text]).encode(), 32)


def point_id(chunk_id: str, model_version: str) -> str:
    """Deterministic vector-store point id (a UUID5 string) of a chunk embedded by ``model_version``:
    UUID5 in a fixed namespace of the JSON array ``[model_version, chunk_id]``.

    The same pair always gives the same id, so redelivered chunks overwrite instead of
    duplicating; the model version is part of it so embeddings of two models never
    collide if they share a collection. The JSON array keeps the pair unambiguous whatever
    characters either part contains.
    """
    return str(uuid.uuid5(_POINTS, json.dumps([model_version, chunk_id])))


def index_name(corpus: str, model_name: str, model_version: str) -> str:
    """The index of a corpus for one embedding model version, ``<corpus>__<model>__<version>``
    (e.g. ``default__all-MiniLM-L6-v2__2e8a342051c5``), where ``<model>`` is the last path part
    of ``model_name`` with every run of characters other than letters, digits, ``_`` and ``-``
    replaced by ``-``: its first collection's name, and the registry name its builds are versions of."""
    model = re.sub(r"[^a-zA-Z0-9_-]+", "-", model_name.rsplit("/", 1)[-1])
    return f"{corpus}__{model}__{model_version}"


def index_build_id(request_event_id: uuid.UUID) -> str:
    """Version of an index rebuilt for a retraining request: ``b`` and the first 12 hex digits
    of the request's event id (a redelivered request builds the same version)."""
    return f"b{request_event_id.hex[:12]}"


def index_build_collection(index: str, build_id: str) -> str:
    """The collection an index build writes: ``<index>__<build_id>``."""
    return f"{index}__{build_id}"


def corpus_version(content_hashes: Mapping[str, str]) -> str:
    """Version of a corpus: the first 16 hex digits of the SHA-256 of one ``<document_id>:<content_hash>``
    line per document (sorted by id, joined by newlines), so the same documents with the same
    content give the same version whatever order they came in."""
    return _sha256_hex("\n".join(f"{k}:{v}" for k, v in sorted(content_hashes.items())).encode(), 16)


# ---- datasets, prompts, evaluation ------------------------------------------------------------


def example_id(dataset: str, question: str, reference_answer: str) -> str:
    """Id of a dataset example: the first 32 hex digits of the SHA-256 of ``dataset``,
    ``question`` and ``reference_answer`` joined by NUL bytes, so the same feedback twice adds
    one example."""
    return _sha256_hex(f"{dataset}\0{question}\0{reference_answer}".encode(), 32)


def dataset_version(example_ids: Iterable[str]) -> str:
    """Version of a training-data snapshot: the first 16 hex digits of the SHA-256 of its
    example ids, sorted and joined by newlines."""
    return _sha256_hex("\n".join(sorted(example_ids)).encode(), 16)


def dataset_file_hash(content: bytes) -> str:
    """16 hex digits: the first of the SHA-256 of a question-set file's bytes (recorded with an
    evaluation run, so runs on different files are not compared)."""
    return _sha256_hex(content, 16)


def dataset_snapshot_version(content: bytes) -> str:
    """Version of a named dataset snapshot (``ragops dataset push``): the first 12 hex digits
    of :func:`dataset_file_hash` of its bytes, so pushing the same content again names the
    same version."""
    return dataset_file_hash(content)[:12]


def evaluation_run_id(prefix: str, started_at: datetime) -> str:
    """Id of an evaluation run: ``<prefix>-<UTC start, YYYYMMDDTHHMMSSZ>`` (e.g. ``eval-20260101T120000Z``)."""
    return f"{prefix}-{started_at.astimezone(UTC):%Y%m%dT%H%M%SZ}"


def prompt_hash(description: str, system: str, user: str) -> str:
    """12 hex digits: the first of the SHA-256 of the JSON array ``[description, system, user]``
    (:func:`canonical_json`) of a prompt version's body, whether it came from a seed file or was
    pushed to the registry; two versions with the same text have the same hash, and a version
    edited in place gets another. (Lineage recorded before issue 15 carries the hash of the seed
    file's bytes instead.)"""
    return _sha256_hex(canonical_json([description, system, user]).encode(), 12)


def sample_fraction(request_id: str) -> float:
    """A request's place in [0, 1]: the first 8 hex digits of the SHA-256 of ``request_id`` as an
    integer over 0xFFFFFFFF. Sampling ``< rate`` on it decides a redelivered event the same way."""
    return int(_sha256_hex(request_id.encode(), 8), 16) / 0xFFFFFFFF


def holdout_bucket(question: str) -> int:
    """A question's bucket in 0..99: the whole SHA-256 of ``question`` as an integer, modulo 100.
    Holding out buckets ``< share * 100`` keeps a question on the same side in every run."""
    return int(_sha256_hex(question.encode()), 16) % 100


# ---- event ids -------------------------------------------------------------------------------


def new_event_id() -> uuid.UUID:
    """A random event id (UUID4), for an event that starts a chain and so has no cause to
    derive it from: a submitted question or document, a drift detection, an operator's command."""
    return uuid.uuid4()


def derived_event_id(event_type: str, cause_event_id: uuid.UUID, scope: str = "") -> uuid.UUID:
    """Id of every event caused by another (:meth:`ragops_schemas.envelope.Event.caused`):
    UUID5 in a fixed namespace of ``<event_type>:<cause id>``, plus ``:<scope>`` when given.

    ``event_type`` is the output's class name (``AnswerGenerated``); ``scope`` is the output's
    identity among the outputs of one type that one cause yields (an index build, a policy
    rule), empty when there is one. Processing the same event again (a redelivery after the
    outputs were published but before the offset was committed) yields the same ids, so
    consumers and the sink (keyed on ids) keep one copy."""
    name = f"{event_type}:{cause_event_id}" + (f":{scope}" if scope else "")
    return uuid.uuid5(_DERIVED_EVENTS, name)


def keyed_request_event_id(tenant: str, route: str, idempotency_key: str, body: object) -> uuid.UUID:
    """Id of the event an HTTP request sent with an ``Idempotency-Key`` header publishes
    (IETF draft-ietf-httpapi-idempotency-key-header): UUID5 in a fixed namespace of the JSON
    array ``[tenant, route, idempotency_key, canonical_json(body)]``.

    A client that retries after losing the response (a timeout, a dropped connection, a
    gateway restarted mid-call) sends the same key and body and so publishes the same event
    again, which consumers and the sink keep once: the retry has no second effect. The same
    key with another body, on another route or of another tenant names another event, so a
    key chosen by one tenant can never reach another's request. Raises ``TypeError`` for a
    body JSON cannot hold."""
    return uuid.uuid5(_KEYED_REQUESTS, json.dumps([tenant, route, idempotency_key, canonical_json(body)]))


def dead_letter_event_id(topic: str, partition: int, offset: int, consumer_group: str | None) -> uuid.UUID:
    """Id of the dead letter of one Kafka record for one consumer group: UUID5 in a fixed
    namespace of the JSON array ``[topic, partition, offset, consumer_group or ""]``.

    A record redelivered to the same group and refused again gets the same id (one dead
    letter); two groups that both refuse it publish two (each is a fact of its own). The JSON
    array keeps the parts apart whatever characters a group id contains."""
    return uuid.uuid5(_DEAD_LETTERS, json.dumps([topic, partition, offset, consumer_group or ""]))


def part_scope(part: int, parts: int) -> str:
    """The ``scope`` of part ``part`` of ``parts`` (1-based) of an output split by size, for
    :func:`derived_event_id` (``Event.caused(scope=...)``): ``part:<part>/<parts>``, or empty
    for an output in one part (1 of 1), whose id is then the same as if it had never been split."""
    return f"part:{part}/{parts}" if parts > 1 else ""


def part_event_id(event_type: str, cause_event_id: uuid.UUID, part: int, parts: int) -> uuid.UUID:
    """Id of part ``part`` of ``parts`` of an output split by size: :func:`derived_event_id`
    with :func:`part_scope`."""
    return derived_event_id(event_type, cause_event_id, part_scope(part, parts))


def indexed_version_event_id(document_id: str, document_version: str, collection: str, *, tenant: str) -> uuid.UUID:
    """Id of the ``DocumentIndexed`` of a tenant's document version in a collection: UUID5 in
    a fixed namespace of the JSON array ``[document_id, document_version, collection]``, with
    ``tenant`` appended unless it is :data:`DEFAULT_TENANT` (two tenants indexing the same
    content under the same document id get two ids). A version split into parts is complete
    after whichever part arrives last, and again after any redelivered part: each time the
    same id, so it is recorded once."""
    parts = [document_id, document_version, collection] + ([] if tenant == DEFAULT_TENANT else [tenant])
    return uuid.uuid5(_INDEXED_VERSIONS, json.dumps(parts))


def unparsable_event_id(topic: str, partition: int, offset: int) -> uuid.UUID:
    """The sink's id of a record that is not a valid event: UUID5 in a fixed namespace of
    ``<topic>:<partition>:<offset>``, so a redelivered record is stored once."""
    return uuid.uuid5(_UNPARSABLE_RECORDS, f"{topic}:{partition}:{offset}")


def refused_audit_id(event_id: uuid.UUID, signed_bytes: bytes) -> uuid.UUID:
    """Audit id of a signed event whose signature did not verify (its audit entry's outcome is
    the refusal): UUID5 in a fixed namespace of ``refused:<event id>:<SHA-256 of its signed
    bytes>``. A verified event's entry keeps the event id, which the audit log holds once (a
    redelivery appends nothing); a record that reuses a genuine event's id with other content
    is not a redelivery of it and gets an entry of its own, while the same refused record
    redelivered gets the same id (one entry)."""
    return uuid.uuid5(_DERIVED_EVENTS, f"refused:{event_id}:{_sha256_hex(signed_bytes)}")


def price_list_id(prices: Iterable[Mapping[str, object]], effective_from: datetime) -> str:
    """Id of a price list (``PricesPublished.price_list_id``): ``prices-`` and 20 hex digits of
    SHA-256 over canonical JSON of its prices (each ``{unit, resource, usd}``, sorted by unit and
    resource) and ``effective_from`` in UTC milliseconds, so the same list published twice, in any
    order, is one list and a list with a new date is another."""
    items = sorted(
        ({"unit": p["unit"], "resource": p["resource"], "usd": float(p["usd"])} for p in prices),  # type: ignore[arg-type]
        key=lambda item: (str(item["unit"]), str(item["resource"])),
    )
    moment = int(effective_from.astimezone(UTC).timestamp() * 1000)
    return "prices-" + _sha256_hex(canonical_json({"effective_from_ms": moment, "prices": items}).encode(), 20)


def model_registration_id(name: str, version: str) -> uuid.UUID:
    """Event id of the embedding service's registration of its default model (it has no cause:
    it is published at start): UUID5 in the URL namespace of
    ``ragops:embedding_model:<name>:<version>``, the same on every start."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"ragops:embedding_model:{name}:{version}")


def prompt_registration_id(name: str, version: int, sha256: str) -> uuid.UUID:
    """Event id of the ``VersionRegistered`` of a prompt version (a seed the gateway registers at
    start, or a pushed body): UUID5 in the URL namespace of ``ragops:prompt:<name>:<version>:<sha256>``
    (a name is ``[A-Za-z0-9][A-Za-z0-9_-]*``, so the colons keep the parts apart). Every gateway
    replica, and every retry of a push, publishes the same id for the same text."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"ragops:prompt:{name}:{version}:{sha256}")


def dataset_registration_id(name: str, version: str) -> uuid.UUID:
    """Event id of the ``VersionRegistered`` of a dataset version (``ragops dataset push``):
    UUID5 in the URL namespace of ``ragops:dataset:<name>:<version>`` (the version is
    :func:`dataset_snapshot_version` of the bytes, so it names the content). Two pushes of the
    same file at once publish the same id, and every reader and the sink keep one registration."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"ragops:dataset:{name}:{version}")


def resubmission_event_id(request_event_id: uuid.UUID, document_id: str, content_hash: str) -> uuid.UUID:
    """Event id of a document the trainer's corpus refresh submits: UUID5 in the namespace of the
    request's event id of ``<document_id>:<content_hash>``, so a redelivered request resubmits
    with the same ids."""
    return uuid.uuid5(request_event_id, f"{document_id}:{content_hash}")


# ---- the audit log ---------------------------------------------------------------------------

AUDIT_GENESIS = "0" * 64
"""The ``prev_hash`` of the first entry of every audit chain."""


def canonical_json(value: object) -> str:
    """``value`` as canonical JSON text: keys sorted, no whitespace (``,`` and ``:``), non-ASCII
    characters as themselves (not ``\\u`` escapes), integers as integers. Raises ``TypeError``
    for a value JSON cannot hold."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def audit_chain(tenant: str, topic: str, partition: int) -> str:
    """The audit chain an entry belongs to: ``<tenant>/<topic>/<partition>`` of the Kafka record
    it came from. One partition has one consumer at a time, so each chain has one writer."""
    return f"{tenant}/{topic}/{partition}"


def audit_hash(prev_hash: str, content: Mapping[str, object]) -> str:
    """The hash of an audit entry: the SHA-256 (64 hex digits) of the UTF-8 bytes of
    ``prev_hash`` (the hash of the chain's previous entry, :data:`AUDIT_GENESIS` for the first)
    followed by :func:`canonical_json` of ``content`` (every stored field of the entry but its
    hashes; times as integer milliseconds since the epoch, JSON states as their text). Changing
    any field, or the entry before it, changes the hash."""
    return _sha256_hex((prev_hash + canonical_json(content)).encode())


def change_id(requested_event_id: uuid.UUID) -> str:
    """Id of a four-eyes change: ``chg-`` and the first 20 hex digits of the SHA-256 of its
    ``ChangeRequested``'s event id (36-character UUID text). A trainer's request is derived from
    the retraining request that caused it, so a redelivered one names the same change."""
    return f"chg-{_sha256_hex(str(requested_event_id).encode(), 20)}"


def experiment_id(started_event_id: uuid.UUID) -> str:
    """Id of an experiment: ``exp-`` and the first 20 hex digits of the SHA-256 of its
    ``ExperimentStarted``'s event id (36-character UUID text)."""
    return f"exp-{_sha256_hex(str(started_event_id).encode(), 20)}"


def assignment_bucket(key: bytes, experiment_id: str, unit: str) -> int:
    """A unit's bucket in an experiment: the first 8 bytes, big-endian, of
    HMAC-SHA256(``key``, ``experiment_id`` NUL ``unit``) (UTF-8; RFC 2104). Keyed so that
    nobody outside the platform can compute or choose an arm for a unit; one experiment's
    buckets are independent of another's (the id is in the message), so a unit in the losing
    arm of one experiment is not in the losing arm of every later one."""
    digest = hmac.new(key, f"{experiment_id}\0{unit}".encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big")


# ---- personal data ---------------------------------------------------------------------------


def pseudonym(key: bytes, value: str, *, tenant: str) -> str:
    """16 hex digits (64 bits): the first of HMAC-SHA256(``key``, ``tenant`` NUL ``value``), UTF-8.
    A keyed, per-tenant pseudonym of a personal value (an e-mail address, a user id) that the
    privacy service writes instead of the value: the same value of one tenant always gives the
    same pseudonym (distinct values can be counted), another tenant's gives another, and without
    the key no value can be tried against it (RFC 2104). 64 bits: among a tenant's distinct
    values, two collide with probability about n**2 / 2**65 (1e-9 at n = 200 000), so counts of
    distinct values stay exact; more bits would only lengthen every token. ``value`` is
    normalised by the caller (the rule of its entity type)."""
    message = f"{tenant}\0{value}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()[:16]


def subject_key_id(tenant: str, subject: str) -> str:
    """Id of a data subject's sealing key (crypto-shredding): the first 32 hex digits of the
    SHA-256 of the JSON array ``["subject-key", tenant, subject]``. It names the key in sealed
    values and the key store's file, so neither shows the subject id itself."""
    return _sha256_hex(json.dumps(["subject-key", tenant, subject]).encode(), 32)


def erasure_id(tenant: str, subject: str, request_key: str) -> str:
    """Id of an erasure of a data subject: ``era-`` and the first 20 hex digits of the SHA-256 of
    the JSON array ``[tenant, subject, request_key]``, where ``request_key`` is the client's
    idempotency key (a retry with the same key names the same erasure) or the request's time."""
    return f"era-{_sha256_hex(json.dumps([tenant, subject, request_key]).encode(), 20)}"


# ---- random ids ------------------------------------------------------------------------------


def new_request_id() -> str:
    """A random request id: a UUID4 string."""
    return str(uuid.uuid4())


def new_document_id() -> str:
    """A random document id for a document submitted without one: a UUID4 string."""
    return str(uuid.uuid4())


def new_alert_id() -> str:
    """A random drift-alert id: 32 hex digits of a UUID4."""
    return uuid.uuid4().hex


def new_trace_id() -> str:
    """A random W3C trace id: 32 hex digits."""
    return secrets.token_hex(16)


def new_span_id() -> str:
    """A random W3C span id: 16 hex digits."""
    return secrets.token_hex(8)


def tuning_half(question_id: str) -> bool:
    """Whether a question belongs to the tuning half of a question set (the other half is held
    out to report on): the first byte of the SHA-256 of its id (UTF-8) is even. Stable across
    runs and files, and independent of the questions' order."""
    return hashlib.sha256(question_id.encode("utf-8")).digest()[0] % 2 == 0
