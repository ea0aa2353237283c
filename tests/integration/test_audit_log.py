"""The audit log on a real broker and chDB: the sink appends one entry per audited event (a
refused call, an answer, registry events whose signatures it checks), a redelivered event
once, the chains check out; a row edited in ClickHouse afterwards is found by `ragops audit
verify`, which names its chain and seq."""

import asyncio
import json
import time
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

import ragops.cli
from ragops_analytics import audit
from ragops_analytics.chdb_store import ChdbStore
from ragops_schemas import AnswerGenerated, Topic, VersionPromoted, utc_now
from ragops_schemas.ids import audit_chain, refused_audit_id
from ragops_shared.access import Refusal
from ragops_shared.audit import refused_call
from ragops_shared.identity import Principal, Role
from ragops_shared.settings import PlatformSettings
from ragops_shared.signing import Signer, signer_for, verifier_for
from ragops_sink.app import create_app
from ragops_sink.audit import audit_entry
from ragops_sink.settings import SinkSettings
from tests.helpers import KEEP_ROWS, PRODUCER, example
from tests.integration.services import produce_raw, running

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse]

KEY = Principal(
    subject="key:3f9a0c1b2d4e5f60",
    tenant="acme",
    roles=frozenset({Role.ANALYST}),
    kind="api_key",
    name="bi",
    owner="key:3f9a0c1b2d4e5f60",
)


async def _until_audited(probe: ChdbStore, audit_id: str, timeout_s: float = 60) -> None:
    """Wait until the audit log holds ``audit_id``."""
    deadline = time.monotonic() + timeout_s
    while not probe.query(
        "SELECT 1 FROM audit_log WHERE toString(audit_id) = {id:String}", {"id": audit_id}, audit=True
    ).rows:
        assert time.monotonic() < deadline, f"{audit_id} was not audited in time"
        await asyncio.sleep(0.2)


async def test_audited_events_are_appended_once_and_an_edited_row_is_found(kafka, tmp_path: Path, monkeypatch) -> None:
    refusal = refused_call(
        Refusal(403, "POST", "/v1/sql", "key:3f9a0c1b2d4e5f60 lacks a role", KEY), PRODUCER, tenant="default"
    )
    answer = example(AnswerGenerated)
    # A second answer to the same request (same key, so the same partition, after the redelivery).
    later = answer.model_copy(update={"event_id": uuid.uuid4()})
    settings = SinkSettings(
        retention_days=KEEP_ROWS, kafka=kafka, platform=PlatformSettings(data_dir=tmp_path), batch_wait_ms=50
    )
    # Two promotions, one signed with the platform's gateway key, one with a key no one trusts.
    promotion = example(VersionPromoted)
    trusted = signer_for(settings.platform, "gateway").sign(promotion)
    stranger = Signer(Ed25519PrivateKey.generate()).sign(promotion.model_copy(update={"event_id": uuid.uuid4()}))
    # A refused signed event's entry has an id of its own content (ids.refused_audit_id).
    stranger_id = str(refused_audit_id(stranger.event_id, stranger.signed_bytes()))

    async with running(create_app(settings)):
        probe = ChdbStore(tmp_path / "clickhouse")  # a second session on the sink's path, same process
        try:
            await produce_raw(kafka, Topic.AUDIT_RECORDED, [(refusal.key, refusal.model_dump_json().encode())])
            await produce_raw(kafka, Topic.ANSWER_GENERATED, [(answer.key, answer.model_dump_json().encode())])
            await _until_audited(probe, str(answer.event_id))
            # The same answer again (a redelivery), then another behind it on the same partition.
            await produce_raw(
                kafka,
                Topic.ANSWER_GENERATED,
                [(answer.key, answer.model_dump_json().encode()), (later.key, later.model_dump_json().encode())],
            )
            await _until_audited(probe, str(later.event_id))
            await _until_audited(probe, str(refusal.event_id))
            await produce_raw(
                kafka,
                Topic.VERSION_PROMOTED,
                [(event.key, event.model_dump_json().encode()) for event in (trusted, stranger)],
            )
            await _until_audited(probe, stranger_id)
            await _until_audited(probe, str(trusted.event_id))
        finally:
            probe.close()

    store = ChdbStore(tmp_path / "clickhouse")
    try:
        rows = {row.audit_id: row for row in audit.entries(store, limit=100)}
        assert set(rows) == {  # the redelivery: once
            str(refusal.event_id),
            str(answer.event_id),
            str(later.event_id),
            str(trusted.event_id),
            stranger_id,
        }
        # The sink checks signatures with the platform's trust list: a key id is only a claim.
        assert (rows[str(trusted.event_id)].outcome, rows[stranger_id].outcome) == ("signed", "unknown_key")
        assert json.loads(rows[str(trusted.event_id)].after)["signer"] == "gateway"
        denied = rows[str(refusal.event_id)]
        assert (denied.tenant, denied.actor_id, denied.action, denied.outcome, denied.target) == (
            "acme",
            KEY.subject,
            "auth.refused",
            "refused",
            "POST /v1/sql",
        )
        assert denied.chain.startswith("acme/ragops.audit.recorded.v1/") and denied.seq == 1
        first, second = rows[str(answer.event_id)], rows[str(later.event_id)]
        assert (first.action, first.actor_id, first.target) == ("answer.generated", "generation", answer.request_id)
        assert second.chain == first.chain and (first.seq, second.seq) == (1, 2)
        assert second.prev_hash == first.hash
        assert first.chain == audit_chain("default", Topic.ANSWER_GENERATED, first.source_partition)
        assert [row.audit_id for row in audit.entries(store, actor=KEY.subject)] == [str(refusal.event_id)]
        assert [row.audit_id for row in audit.entries(store, action="answer.generated", tenant="default")] == [
            str(later.event_id),
            str(answer.event_id),
        ]

        intact = audit.verify(store)
        assert intact.intact and (intact.rows, intact.chains) == (5, 3)
        monkeypatch.setattr(ragops.cli, "_analytics", lambda _: _Unclosed(store))
        listed = CliRunner().invoke(
            ragops.cli.app, ["audit", "--action", "auth.refused", "--since", "2000-01-01", "--json"]
        )
        assert listed.exit_code == 0, listed.output
        assert [json.loads(line)["audit_id"] for line in listed.stdout.splitlines()] == [str(refusal.event_id)]
        verified = CliRunner().invoke(ragops.cli.app, ["audit", "verify"])
        assert verified.exit_code == 0 and "5 entries in 3 chains" in verified.output, verified.output

        # Someone with write access to ClickHouse rewrites what the first answer used.
        store.execute(
            "ALTER TABLE audit_log UPDATE target = 'another-request' WHERE toString(audit_id) = {id:String} "
            "SETTINGS mutations_sync = 1",
            {"id": str(answer.event_id)},
        )
        broken = audit.verify(store).broken
        assert broken is not None and (broken.chain, broken.seq) == (first.chain, 1) and "edited" in broken.problem
        assert audit.verify(store, tenant="acme").intact  # another tenant's chains are untouched
        refused = CliRunner().invoke(ragops.cli.app, ["audit", "verify"])
        assert refused.exit_code == 1
        assert f"chain {first.chain} at seq 1" in refused.output, refused.output

        # Deleting the row instead is found too: the chain now starts at seq 2.
        store.execute(
            "ALTER TABLE audit_log DELETE WHERE toString(audit_id) = {id:String} SETTINGS mutations_sync = 1",
            {"id": str(answer.event_id)},
        )
        broken = audit.verify(store).broken
        assert broken is not None and (broken.chain, broken.seq) == (first.chain, 1) and "missing" in broken.problem
    finally:
        store.close()


class _Unclosed:
    """The test's store as the CLI's reader: the CLI closes its reader, the test keeps using the store."""

    def __init__(self, store: ChdbStore) -> None:
        self.query = store.query

    def close(self) -> None:
        return None


def test_append_reads_the_heads_from_the_table_and_skips_what_is_there(chdb_store: ChdbStore, tmp_path: Path) -> None:
    """Each batch continues its chains from the rows stored (no state kept between batches); a
    batch that repeats stored entries, or one entry twice, appends each once."""
    answer = example(AnswerGenerated)
    verifier = verifier_for(PlatformSettings(data_dir=tmp_path))
    entries = [
        entry
        for offset, event in enumerate([answer, answer.model_copy(update={"event_id": uuid.uuid4()})])
        if (entry := audit_entry(event, Topic.ANSWER_GENERATED, 1, offset, verifier)) is not None
    ]
    assert len(audit.append(chdb_store, entries[:1], utc_now())) == 1
    appended = audit.append(chdb_store, [entries[0], entries[1], entries[1]], utc_now())
    assert [(row.audit_id, row.seq) for row in appended] == [(str(entries[1].audit_id), 2)]
    assert audit.append(chdb_store, entries, utc_now()) == []
    verification = audit.verify(chdb_store)
    assert verification.intact and verification.rows == 2
    assert verification.heads == {entries[0].chain: (2, appended[0].hash)}
