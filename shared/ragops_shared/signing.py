"""Signed control events: who may change the version registry, and the check every reader
runs before it applies such a change.

An owner (the trainer, the embedding service, an operator) signs each
:class:`~ragops_schemas.SignedEvent` it publishes with its Ed25519 private key
(:class:`Signer`; :class:`~ragops_shared.broker.EventPublisher` does it when given one). A
reader checks it with a :class:`Verifier` holding the trust list: the public key of each
owner and which event types each owner may sign. An event is refused
(:class:`ControlEventRefused`, its ``code`` first in the reason) when it is ``unsigned``, signed
by an ``unknown_key``, carries a ``bad_signature`` (forged, or a field changed after signing),
is of a type its owner may not sign (``signer_not_allowed``; for a registration, of a ``kind``
its owner may not register), is ``future_dated`` beyond the clock skew allowed, or points
outside the places artifacts may live (``location_refused``).

Configuration (:class:`~ragops_shared.settings.SigningSettings`): ``RAGOPS_SIGNING_KEY_FILE``
(this process's private key, PEM PKCS#8) and ``RAGOPS_SIGNING_TRUST_FILE`` (the trust list,
JSON: ``{"keys": [{"owner": "trainer", "public_key": "<32 bytes, base64>"}, ...],
"allow": {"trainer": ["registry.version_promoted", "registry.version_registered:index", ...],
...}}``). An ``allow`` entry is an event type; a registration's is qualified by the kind
registered, ``registry.version_registered:<kind>`` (:func:`permission`). A bare
``registry.version_registered`` (the format of trust files before kinds were named) allows the
kinds :data:`DEFAULT_ALLOWED` gives that owner, and none to an owner it does not name. Unset,
outside production, both come from the embedded key directory ``<data_dir>/keys``, created on
first use: one key pair per owner of :data:`DEFAULT_ALLOWED` (private keys readable by their
user only) and ``trust.json``.
"""

import base64
import binascii
import fcntl
import hashlib
import json
import os
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import TypeVar

import structlog
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ragops_schemas import Event, Signature, SignedEvent, utc_now
from ragops_schemas.changes import ChangeApproved, ChangeRejected, ChangeRequested
from ragops_schemas.cost import PricesPublished
from ragops_schemas.erasure import ErasureRequested
from ragops_schemas.experiments import ExperimentConcluded, ExperimentStarted, ExperimentStopped
from ragops_schemas.lifecycle import VersionKind, VersionPromoted, VersionRegistered, VersionRejected, VersionRetired
from ragops_shared.settings import PlatformSettings

log = structlog.get_logger(__name__)
S = TypeVar("S", bound=SignedEvent)

_REGISTERED = VersionRegistered.model_fields["event_type"].default
_PROMOTED = VersionPromoted.model_fields["event_type"].default
_REJECTED = VersionRejected.model_fields["event_type"].default
_RETIRED = VersionRetired.model_fields["event_type"].default
_CHANGE_REQUESTED = ChangeRequested.model_fields["event_type"].default
_ERASURE_REQUESTED = ErasureRequested.model_fields["event_type"].default
_EXPERIMENT_STARTED = ExperimentStarted.model_fields["event_type"].default
_EXPERIMENT_STOPPED = ExperimentStopped.model_fields["event_type"].default
_EXPERIMENT_CONCLUDED = ExperimentConcluded.model_fields["event_type"].default
_PRICES_PUBLISHED = PricesPublished.model_fields["event_type"].default
_CHANGE_DECIDED = frozenset(event.model_fields["event_type"].default for event in (ChangeApproved, ChangeRejected))


def permission(event: Event) -> str:
    """What signing ``event`` takes in a trust list's ``allow``: its ``event_type``, and for a
    ``VersionRegistered`` ``registry.version_registered:<kind>`` (who may register a prompt is
    not who may register a model)."""
    if isinstance(event, VersionRegistered):
        return f"{event.event_type}:{event.kind}"
    return event.event_type


def _registers(*kinds: VersionKind) -> frozenset[str]:
    return frozenset(f"{_REGISTERED}:{kind}" for kind in kinds)


DEFAULT_ALLOWED: Mapping[str, frozenset[str]] = {
    # Fine-tuned models, index builds, corpus versions and feedback snapshots (datasets). With
    # RAGOPS_TRAINER_PROMOTION=approval it requests its promotions instead of making them.
    "trainer": _registers("embedding_model", "index", "corpus", "dataset") | {_PROMOTED, _REJECTED, _CHANGE_REQUESTED},
    "embedding": _registers("embedding_model"),  # its default model, registered at every start
    # `ragops dataset push`. People's promotions and retirements pass the four-eyes control
    # plane, not this key; their prompts are registered by the gateway.
    "operator": _registers("dataset"),
    # The control plane: records people's change requests and decisions, and applies an
    # approved change (ragops_gateway.changes); asks the stores to erase a data subject.
    # Prompt versions pushed by people (and the packaged seed versions) are registered by it,
    # and nothing else; it starts and stops experiments for operators, and publishes their
    # price lists.
    "gateway": _registers("prompt")
    | frozenset(
        {
            _PROMOTED,
            _RETIRED,
            _CHANGE_REQUESTED,
            *_CHANGE_DECIDED,
            _ERASURE_REQUESTED,
            _EXPERIMENT_STARTED,
            _EXPERIMENT_STOPPED,
            _PRICES_PUBLISHED,
        }
    ),
    # Its sequential test concludes experiments (and, by policy, rolls the loser back).
    "monitor": frozenset({_EXPERIMENT_CONCLUDED}),
}
"""Which control events each owner may sign (:func:`permission`): the embedded trust list's
``allow``."""

# An index version's ``uri`` is the name of its collection (ragops_schemas.ids.index_name),
# never a path: a name cannot leave the vector store's directory.
_COLLECTION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,254}")


class ControlEventRefused(Exception):
    """A control event that must not be applied; ``str()`` is ``"<code>: <detail>"``."""

    def __init__(self, code: str, detail: str) -> None:
        self.code = code
        super().__init__(f"{code}: {detail}")


def key_id(public_key: Ed25519PublicKey) -> str:
    """A key's id: the first 16 hex digits of the SHA-256 of its 32 raw bytes."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


class Signer:
    """Signs control events with one private key."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.public_key = private_key.public_key()
        self.key_id = key_id(self.public_key)

    @classmethod
    def from_file(cls, path: Path) -> "Signer":
        """Load a PEM (PKCS#8, unencrypted) Ed25519 private key. Raises ``OSError`` when it
        cannot be read and ``ValueError`` when it is not such a key."""
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} holds a {type(key).__name__}, not an Ed25519 private key")
        return cls(key)

    def sign(self, event: S) -> S:
        """``event`` with its :class:`~ragops_schemas.Signature` (over ``event.signed_bytes()``)."""
        value = base64.b64encode(self._key.sign(event.signed_bytes())).decode()
        return event.model_copy(update={"signature": Signature(key_id=self.key_id, value=value)})


@dataclass(frozen=True)
class TrustedKey:
    owner: str
    public_key: Ed25519PublicKey


@dataclass(frozen=True)
class TrustStore:
    """Trusted public keys by key id, and the event types each owner may sign."""

    keys: Mapping[str, TrustedKey]
    allowed: Mapping[str, Collection[str]]

    @classmethod
    def load(cls, path: Path) -> "TrustStore":
        """Read a trust file (format in the module's docstring). Raises ``OSError`` when it
        cannot be read and ``ValueError`` when it is malformed."""
        try:
            document = json.loads(path.read_bytes())
            keys = {}
            for entry in document["keys"]:
                public_key = Ed25519PublicKey.from_public_bytes(base64.b64decode(entry["public_key"], validate=True))
                keys[key_id(public_key)] = TrustedKey(str(entry["owner"]), public_key)
            allowed = {
                str(owner): _qualified(str(owner), map(str, types)) for owner, types in document["allow"].items()
            }
        except (KeyError, TypeError, AttributeError, binascii.Error, json.JSONDecodeError) as error:
            raise ValueError(f"{path} is not a trust file: {error!r}") from error
        return cls(keys, allowed)


def _qualified(owner: str, allowed: Iterable[str]) -> frozenset[str]:
    """``allowed`` with a bare ``registry.version_registered`` (a trust file written before
    registrations named their kind) read as the kinds :data:`DEFAULT_ALLOWED` gives ``owner``."""
    bare, default = frozenset(allowed), DEFAULT_ALLOWED.get(owner, frozenset())
    if _REGISTERED not in bare:
        return bare
    return (bare - {_REGISTERED}) | {entry for entry in default if entry.startswith(f"{_REGISTERED}:")}


def trust_document(public_keys: Mapping[str, Ed25519PublicKey], allowed: Mapping[str, Collection[str]]) -> str:
    """A trust file's text for one key per owner (the format :meth:`TrustStore.load` reads)."""
    raw = {
        owner: base64.b64encode(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)).decode()
        for owner, key in public_keys.items()
    }
    document = {
        "keys": [
            {"owner": owner, "key_id": key_id(key), "public_key": raw[owner]} for owner, key in public_keys.items()
        ],
        "allow": {owner: sorted(types) for owner, types in allowed.items()},
    }
    return json.dumps(document, indent=2) + "\n"


class Verifier:
    """Checks control events before they are applied (see the module's docstring)."""

    def __init__(
        self,
        trust: TrustStore,
        *,
        max_clock_skew_s: float,
        model_dirs: Sequence[Path],
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        """``model_dirs``: where an ``embedding_model`` version's files may lie (after
        resolving symlinks and ``..``); ``clock``: the current time (UTC)."""
        self.trust = trust
        self.max_clock_skew = timedelta(seconds=max_clock_skew_s)
        self.model_dirs = [directory.resolve() for directory in model_dirs]
        self.clock = clock

    def check(self, event: Event) -> None:
        """Return if ``event`` may be applied (any event that is not a control event may);
        raise :class:`ControlEventRefused` otherwise."""
        if not isinstance(event, SignedEvent):
            return
        self.signer(event)
        self._check_location(event)

    def signer(self, event: SignedEvent) -> str:
        """The owner whose trusted key signed ``event``, which that owner may sign and which is
        not dated ahead of this reader's clock (where its artifacts lie is not looked at).

        Raises:
            ControlEventRefused: ``unsigned``, ``unknown_key``, ``bad_signature``,
                ``signer_not_allowed`` or ``future_dated``.
        """
        if event.signature is None:
            raise ControlEventRefused("unsigned", f"{event.event_type} carries no signature")
        trusted = self.trust.keys.get(event.signature.key_id)
        if trusted is None:
            raise ControlEventRefused(
                "unknown_key", f"signed with key {event.signature.key_id!r}, which is not trusted"
            )
        try:
            trusted.public_key.verify(base64.b64decode(event.signature.value, validate=True), event.signed_bytes())
        except (InvalidSignature, binascii.Error, ValueError):
            raise ControlEventRefused(
                "bad_signature", f"the signature of key {event.signature.key_id} ({trusted.owner}) does not match"
            ) from None
        if permission(event) not in self.trust.allowed.get(trusted.owner, ()):
            what = f" of kind {event.kind}" if isinstance(event, VersionRegistered) else ""
            raise ControlEventRefused("signer_not_allowed", f"{trusted.owner} may not sign {event.event_type}{what}")
        if event.occurred_at > self.clock() + self.max_clock_skew:
            raise ControlEventRefused(
                "future_dated",
                f"occurred_at {event.occurred_at.isoformat()} is more than "
                f"{self.max_clock_skew.total_seconds():.0f} s ahead of this reader's clock",
            )
        return trusted.owner

    def _check_location(self, event: SignedEvent) -> None:
        uri = getattr(event, "uri", None)
        kind = getattr(event, "kind", None)
        if uri is None:
            return
        if kind == "embedding_model":
            resolved = Path(uri).resolve()
            if not any(resolved.is_relative_to(directory) for directory in self.model_dirs):
                raise ControlEventRefused(
                    "location_refused",
                    f"{uri!r} resolves to {resolved}, outside {', '.join(map(str, self.model_dirs))}",
                )
        elif kind == "index":
            if not _COLLECTION_NAME.fullmatch(uri):
                raise ControlEventRefused("location_refused", f"{uri!r} is not a collection name")
        else:
            path = PurePosixPath(uri)
            if path.is_absolute() or ".." in path.parts or "\\" in uri:
                raise ControlEventRefused("location_refused", f"{uri!r} is not a relative name for a {kind}")


def _current(trust: Path) -> bool:
    """True when ``trust`` exists and allows exactly :data:`DEFAULT_ALLOWED` (a key directory
    made by an earlier release lacks a newer owner, or allows an owner what it no longer may)."""
    try:
        allowed = json.loads(trust.read_bytes())["allow"]
    except FileNotFoundError:
        return False
    return {owner: frozenset(types) for owner, types in allowed.items()} == DEFAULT_ALLOWED


def embedded_keys(directory: Path) -> Path:
    """Create, once, a private key per owner of :data:`DEFAULT_ALLOWED` in ``directory``
    (``<owner>.pem``, mode 0600) and their trust file (``trust.json``); returns its path. A
    trust file that allows other than :data:`DEFAULT_ALLOWED` is rewritten (existing keys
    kept, missing owners' keys created). Processes starting together take turns (a lock
    file), so they all get the same keys."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    trust = directory / "trust.json"
    with (directory / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _current(trust):
            return trust
        public_keys = {}
        for owner in DEFAULT_ALLOWED:
            path = directory / f"{owner}.pem"
            if not path.exists():
                private = Ed25519PrivateKey.generate()
                pem = private.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                )
                descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(descriptor, "wb") as file:
                    file.write(pem)
            public_keys[owner] = Signer.from_file(path).public_key
        staging = trust.with_suffix(".tmp")
        staging.write_text(trust_document(public_keys, DEFAULT_ALLOWED))
        staging.replace(trust)
    log.warning("signing_keys_created", directory=str(directory), trust_file=str(trust), owners=list(public_keys))
    return trust


def _embedded_directory(platform: PlatformSettings, missing: str) -> Path:
    if platform.environment == "production":
        raise RuntimeError(f"{missing} must be set in production (no embedded signing keys there)")
    embedded_keys(platform.data_dir / "keys")
    return platform.data_dir / "keys"


def signer_for(platform: PlatformSettings, owner: str) -> Signer:
    """This process's signer: ``RAGOPS_SIGNING_KEY_FILE``, else (outside production) the
    embedded key of ``owner``. Raises ``RuntimeError`` in production without a key file."""
    path = platform.signing.key_file or _embedded_directory(platform, "RAGOPS_SIGNING_KEY_FILE") / f"{owner}.pem"
    return Signer.from_file(path)


def verifier_for(platform: PlatformSettings, model_dirs: Sequence[Path] = ()) -> Verifier:
    """This process's verifier: the trust file ``RAGOPS_SIGNING_TRUST_FILE``, else (outside
    production) the embedded one; model files may lie under ``<data_dir>/models``,
    ``RAGOPS_SIGNING_MODEL_DIRS`` and ``model_dirs`` (the shipped default models)."""
    settings = platform.signing
    trust = settings.trust_file or _embedded_directory(platform, "RAGOPS_SIGNING_TRUST_FILE") / "trust.json"
    return Verifier(
        TrustStore.load(trust),
        max_clock_skew_s=settings.max_clock_skew_s,
        model_dirs=[platform.data_dir / "models", *settings.model_dirs, *model_dirs],
    )


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m ragops_shared.signing DIRECTORY``: create the key pairs and the trust file
    of :func:`embedded_keys` in ``DIRECTORY`` (kept if they exist) and print where they are:
    the keys of a deployment (docker compose's one-shot ``signing-keys``; Kubernetes Secrets)."""
    import sys

    args = sys.argv[1:] if argv is None else list(argv)
    if len(args) != 1:
        raise SystemExit("usage: python -m ragops_shared.signing DIRECTORY")
    trust = embedded_keys(Path(args[0]))
    print(f"trust list: {trust}")
    for owner in DEFAULT_ALLOWED:
        print(f"private key of {owner}: {trust.parent / f'{owner}.pem'}")


if __name__ == "__main__":
    main()
