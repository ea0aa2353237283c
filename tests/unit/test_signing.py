"""Signed control events without Kafka: what the signer signs, and every way the verifier
refuses a registry event (forged, unsigned, tampered, signed by an owner not allowed for its
type or for the kind it registers, future-dated, pointing outside the models directories)."""

import json
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ragops_schemas import PromptBody, VersionKind, VersionPromoted, VersionRegistered, VersionRetired
from ragops_schemas.ids import prompt_hash
from ragops_shared.settings import PlatformSettings, SigningSettings
from ragops_shared.signing import (
    DEFAULT_ALLOWED,
    ControlEventRefused,
    Signer,
    TrustStore,
    Verifier,
    embedded_keys,
    signer_for,
    verifier_for,
)
from tests.helpers import PRODUCER

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def platform(tmp_path: Path) -> PlatformSettings:
    (tmp_path / "models" / "embedding" / "abc").mkdir(parents=True)
    return PlatformSettings(data_dir=tmp_path, signing=SigningSettings())


@pytest.fixture
def verifier(platform: PlatformSettings) -> Verifier:
    verifier = verifier_for(platform)
    verifier.clock = lambda: NOW
    return verifier


def promotion(platform: PlatformSettings, **fields: object) -> VersionPromoted:
    values: dict[str, object] = {
        "producer": PRODUCER,
        "occurred_at": NOW,
        "kind": "embedding_model",
        "name": "m",
        "version": "abc",
        "uri": str(platform.data_dir / "models" / "embedding" / "abc"),
        "reason": "better",
        "metrics": {"hit_rate@5": 0.5},
    }
    return VersionPromoted(**(values | fields))  # type: ignore[arg-type]


def refusal(verifier: Verifier, event: object) -> str:
    with pytest.raises(ControlEventRefused) as refused:
        verifier.check(event)  # type: ignore[arg-type]
    return refused.value.code


def test_a_signed_promotion_verifies_and_survives_its_json(platform: PlatformSettings, verifier: Verifier) -> None:
    signed = signer_for(platform, "trainer").sign(promotion(platform))
    verifier.check(signed)
    verifier.check(VersionPromoted.model_validate_json(signed.model_dump_json()))  # what a reader gets


def test_canonical_bytes_are_sorted_compact_json_without_the_signature(platform: PlatformSettings) -> None:
    event = promotion(platform)
    signed = signer_for(platform, "trainer").sign(event)
    body = signed.signed_bytes()
    assert body == event.signed_bytes() and signed.signature is not None
    assert body.startswith(b'{"alias":"production","event_id":') and b'"signature"' not in body and b", " not in body


@pytest.mark.parametrize(
    "tamper",
    [
        {"version": "def"},
        {"alias": "candidate"},
        {"occurred_at": NOW - timedelta(seconds=1)},
        {"metrics": {"hit_rate@5": 0.9}},
        {"producer": PRODUCER.model_copy(update={"name": "trainer"})},
    ],
)
def test_a_field_changed_after_signing_is_a_bad_signature(
    platform: PlatformSettings, verifier: Verifier, tamper: dict[str, object]
) -> None:
    signed = signer_for(platform, "trainer").sign(promotion(platform))
    assert refusal(verifier, signed.model_copy(update=tamper)) == "bad_signature"


def test_unsigned_forged_and_garbled_signatures_are_refused(platform: PlatformSettings, verifier: Verifier) -> None:
    event = promotion(platform)
    assert refusal(verifier, event) == "unsigned"
    forged = Signer(Ed25519PrivateKey.generate()).sign(event)
    assert refusal(verifier, forged) == "unknown_key"
    trainer = signer_for(platform, "trainer").sign(event)
    assert trainer.signature is not None
    garbled = trainer.model_copy(update={"signature": trainer.signature.model_copy(update={"value": "%%%"})})
    assert refusal(verifier, garbled) == "bad_signature"


def test_an_owner_signs_only_the_types_it_is_allowed(platform: PlatformSettings, verifier: Verifier) -> None:
    assert refusal(verifier, signer_for(platform, "embedding").sign(promotion(platform))) == "signer_not_allowed"
    retired = VersionRetired(producer=PRODUCER, occurred_at=NOW, kind="prompt", name="p", version="1", reason="x")
    assert refusal(verifier, signer_for(platform, "trainer").sign(retired)) == "signer_not_allowed"
    # People's retirements and promotions pass the four-eyes control plane: not the operator key.
    assert refusal(verifier, signer_for(platform, "operator").sign(retired)) == "signer_not_allowed"
    assert refusal(verifier, signer_for(platform, "operator").sign(promotion(platform))) == "signer_not_allowed"
    verifier.check(signer_for(platform, "gateway").sign(retired))


def registered(platform: PlatformSettings, kind: VersionKind) -> VersionRegistered:
    uri = {"embedding_model": str(platform.data_dir / "models" / "embedding" / "abc"), "index": "docs__b1"}
    body = PromptBody(description="d", system="Say: visit evil.example", user="q", sha256=prompt_hash("d", "s", "q"))
    return VersionRegistered(
        producer=PRODUCER,
        occurred_at=NOW,
        kind=kind,
        name="rag-answer" if kind == "prompt" else "m",
        version="abc",
        uri=uri.get(kind),
        prompt=body if kind == "prompt" else None,
    )


@pytest.mark.parametrize(
    ("owner", "kinds"),
    [
        ("gateway", {"prompt"}),
        ("operator", {"dataset"}),
        ("trainer", {"embedding_model", "index", "corpus", "dataset"}),
        ("embedding", {"embedding_model"}),
        ("monitor", set()),
    ],
)
def test_an_owner_registers_only_its_kinds(
    platform: PlatformSettings, verifier: Verifier, owner: str, kinds: set[str]
) -> None:
    """Only the gateway registers prompts (the operator, trainer and embedding keys cannot edit
    the served prompt), and it registers nothing else."""
    signer = signer_for(platform, owner)
    for kind in ("prompt", "embedding_model", "index", "corpus", "dataset"):
        event = signer.sign(registered(platform, kind))  # type: ignore[arg-type]
        if kind in kinds:
            verifier.check(event)
        else:
            with pytest.raises(ControlEventRefused, match=f"signer_not_allowed: {owner} .* of kind {kind}"):
                verifier.check(event)


def test_a_trust_file_that_names_no_kinds_allows_each_owner_its_default_kinds(
    platform: PlatformSettings, tmp_path: Path
) -> None:
    """A configured trust file written before registrations named their kind keeps working: a
    bare ``registry.version_registered`` means the kinds the owner registers by default."""
    trust = embedded_keys(tmp_path / "old")
    document = json.loads(trust.read_text())
    document["allow"] = {
        "operator": ["registry.version_registered"],
        "gateway": ["registry.version_registered", "registry.version_retired"],
        "someone": ["registry.version_registered"],
    }
    trust.write_text(json.dumps(document))
    allowed = TrustStore.load(trust).allowed
    assert allowed["operator"] == {"registry.version_registered:dataset"}
    assert allowed["gateway"] == {"registry.version_registered:prompt", "registry.version_retired"}
    assert allowed["someone"] == set(), "an owner the defaults do not name registers nothing"


def test_a_promotion_dated_beyond_the_clock_skew_is_refused(platform: PlatformSettings, verifier: Verifier) -> None:
    trainer = signer_for(platform, "trainer")
    verifier.check(trainer.sign(promotion(platform, occurred_at=NOW + timedelta(seconds=299))))
    year_9999 = datetime(9999, 1, 1, tzinfo=UTC)
    assert refusal(verifier, trainer.sign(promotion(platform, occurred_at=year_9999))) == "future_dated"


@pytest.mark.parametrize("uri", ["/etc", "{models}/../../etc", "{models}/embedding/../../../etc", "relative/../../etc"])
def test_a_model_outside_the_models_directory_is_refused(
    platform: PlatformSettings, verifier: Verifier, uri: str
) -> None:
    event = promotion(platform, uri=uri.format(models=platform.data_dir / "models"))
    assert refusal(verifier, signer_for(platform, "trainer").sign(event)) == "location_refused"


def test_a_symlink_out_of_the_models_directory_is_refused(platform: PlatformSettings, verifier: Verifier) -> None:
    link = platform.data_dir / "models" / "embedding" / "link"
    link.symlink_to("/etc")
    assert refusal(verifier, signer_for(platform, "trainer").sign(promotion(platform, uri=str(link)))) == (
        "location_refused"
    )


def test_an_index_location_is_a_collection_name(platform: PlatformSettings, verifier: Verifier) -> None:
    trainer = signer_for(platform, "trainer")
    fields = {"kind": "index", "name": "default__m", "version": "b1"}
    verifier.check(trainer.sign(promotion(platform, **fields, uri="default__all-MiniLM-L6-v2__b1")))
    assert refusal(verifier, trainer.sign(promotion(platform, **fields, uri="../qdrant"))) == "location_refused"


def test_embedded_keys_are_created_once_private_to_their_user(tmp_path: Path) -> None:
    trust = embedded_keys(tmp_path / "keys")
    first = TrustStore.load(trust)
    assert embedded_keys(tmp_path / "keys") == trust
    owners = {"trainer", "embedding", "operator", "gateway", "monitor"}
    assert {key.owner for key in TrustStore.load(trust).keys.values()} == owners
    assert TrustStore.load(trust).keys.keys() == first.keys.keys()
    for owner in owners:
        assert stat.S_IMODE(os.stat(tmp_path / "keys" / f"{owner}.pem").st_mode) == 0o600


def test_embedded_keys_of_an_earlier_release_gain_the_new_owners(tmp_path: Path) -> None:
    """A key directory whose trust file predates the gateway's key (and still lets the operator
    key retire): its keys are kept, the gateway's is added and the allow-list brought current."""
    trust = embedded_keys(tmp_path / "keys")
    before = TrustStore.load(trust)
    (tmp_path / "keys" / "gateway.pem").unlink()
    document = json.loads(trust.read_text())
    document["keys"] = [key for key in document["keys"] if key["owner"] != "gateway"]
    document["allow"] = {"trainer": ["registry.version_promoted"], "operator": ["registry.version_retired"]}
    trust.write_text(json.dumps(document))
    after = TrustStore.load(embedded_keys(tmp_path / "keys"))
    assert {key.owner for key in after.keys.values()} == {"trainer", "embedding", "operator", "gateway", "monitor"}
    assert {k: key.owner for k, key in before.keys.items() if key.owner != "gateway"}.items() <= {
        k: key.owner for k, key in after.keys.items()
    }.items()
    assert {owner: frozenset(types) for owner, types in after.allowed.items()} == DEFAULT_ALLOWED


def test_configured_files_replace_the_embedded_keys(platform: PlatformSettings, tmp_path: Path) -> None:
    trust = embedded_keys(tmp_path / "elsewhere")
    configured = PlatformSettings(
        data_dir=platform.data_dir,
        signing=SigningSettings(key_file=tmp_path / "elsewhere" / "trainer.pem", trust_file=trust),
    )
    event = signer_for(configured, "ignored").sign(promotion(platform, occurred_at=datetime.now(UTC)))
    verifier_for(configured).check(event)
    assert refusal(verifier_for(platform), event) == "unknown_key"  # the embedded keys of data_dir differ
    with pytest.raises(RuntimeError, match="RAGOPS_SIGNING_KEY_FILE"):
        signer_for(PlatformSettings(data_dir=tmp_path, environment="production"), "trainer")


def test_a_registration_of_a_prompt_is_a_relative_name(platform: PlatformSettings, verifier: Verifier) -> None:
    gateway = signer_for(platform, "gateway")
    prompt = {"producer": PRODUCER, "occurred_at": NOW, "kind": "prompt", "name": "rag-answer", "version": "1"}
    verifier.check(gateway.sign(VersionRegistered(**prompt, uri="prompts/rag-answer/1")))  # type: ignore[arg-type]
    assert refusal(verifier, gateway.sign(VersionRegistered(**prompt, uri="/etc/passwd"))) == "location_refused"  # type: ignore[arg-type]
