"""Named dataset versions (``ragops dataset push|list``, ``ragops eval --dataset NAME@VERSION``).

A push stores the question file's bytes, unchanged, in the platform's content-addressed blob
store (:mod:`ragops_shared.blobs`, ``<data_dir>/blobs``) and registers
``VersionRegistered(kind="dataset", name, version)`` signed by the embedded ``operator`` key:
the version is :func:`ragops_schemas.ids.dataset_snapshot_version` of the bytes, the ``uri``
``blob:<sha256>``, the metadata the question count, the SHA-256 and the size. Pushing the same
bytes under the same name again registers nothing and names the same version.

A run resolves ``NAME@VERSION`` (or ``NAME``: the latest pushed) through the registry read
from its topics, applying only verified registrations, reads the snapshot and checks its digest
and version: a snapshot changed on disk is refused, never evaluated. A path still works: the
run records the file's name and hash, no version."""

import re
from dataclasses import dataclass
from pathlib import Path

from aiokafka.errors import KafkaConnectionError

from ragops.client import PlatformClient, PlatformUnreachableError
from ragops_models.defaults import shipped_model_dirs
from ragops_schemas.events import ContentRef
from ragops_schemas.ids import blob_digest, dataset_file_hash, dataset_registration_id, dataset_snapshot_version
from ragops_schemas.lifecycle import VersionRegistered
from ragops_schemas.registry import Registry, VersionState
from ragops_shared.blobs import BlobStore, BlobUnavailable, open_blob_store
from ragops_shared.datasets import Question, parse_questions
from ragops_shared.registry_view import RegistryView
from ragops_shared.settings import KafkaSettings, PlatformSettings
from ragops_shared.signing import signer_for, verifier_for

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
BLOB_URI = "blob:"


class DatasetError(Exception):
    """A dataset that cannot be used: unknown name or version, no blob store, a snapshot that
    is missing or changed, a file that is not a question set. The message says which."""


@dataclass(frozen=True)
class Dataset:
    """The questions of a run and what identifies them: ``name`` (a pushed name, or the file
    name), ``sha256`` (:func:`~ragops_schemas.ids.dataset_file_hash` of the bytes, as
    ``EvaluationRunCompleted.dataset_sha256``) and ``version`` (None for a plain file)."""

    name: str
    sha256: str
    version: str | None
    questions: list[Question]

    @property
    def label(self) -> str:
        """``NAME@VERSION``, or the file name."""
        return f"{self.name}@{self.version}" if self.version else self.name


@dataclass(frozen=True)
class Pushed:
    name: str
    version: str
    questions: int
    new: bool  # False: the same bytes were already registered under this name


def _store(platform: PlatformSettings) -> BlobStore:
    store = open_blob_store(platform)
    if store is None:
        raise DatasetError("named datasets need a blob store; RAGOPS_BLOB_STORE=none configures none")
    return store


def registration(client: PlatformClient, name: str, data: bytes, ref: ContentRef, questions: int) -> VersionRegistered:
    """The (unsigned) registration of ``data`` as a version of dataset ``name``; its event id
    is :func:`~ragops_schemas.ids.dataset_registration_id`, so concurrent pushes register once."""
    version = dataset_snapshot_version(data)
    return VersionRegistered(
        event_id=dataset_registration_id(name, version),
        producer=client.producer,
        kind="dataset",
        name=name,
        version=version,
        uri=f"{BLOB_URI}{ref.sha256}",
        metadata={"questions": str(questions), "sha256": ref.sha256, "bytes": str(ref.size)},
    )


async def read_registry(kafka: KafkaSettings, platform: PlatformSettings) -> Registry:
    """The registry folded from its topics up to now, verified with the platform's trust file.

    Raises:
        PlatformUnreachableError: Kafka does not answer, or the history was not read in 30 s.
        DatasetError: the registry topics do not exist (no platform ever ran on this broker)."""
    # The shipped models' registrations point into the installed packages: trusted locations.
    view = RegistryView(kafka, "ragops-cli-registry", verifier=verifier_for(platform, shipped_model_dirs()))
    try:
        await view.start()
    except (KafkaConnectionError, TimeoutError) as error:
        raise PlatformUnreachableError(f"the registry on {kafka.bootstrap_servers} cannot be read: {error}") from None
    except LookupError as error:
        raise DatasetError(f"no registry to read: {error}") from None
    await view.stop()
    return view.registry


async def push(kafka: KafkaSettings, platform: PlatformSettings, name: str, data: bytes, source: str) -> Pushed:
    """Store ``data`` (a question file's bytes; ``source`` names it in errors) as a snapshot and
    register it as a version of ``name`` (once per content).

    Raises:
        DatasetError: a bad name, no blob store, or a file that is not a question set.
        OSError: the store cannot be written."""
    if not NAME.match(name):
        raise DatasetError(f"dataset name {name!r}: letters, digits, '.', '_' or '-', at most 64")
    try:
        count = len(parse_questions(data, source))
    except ValueError as error:
        raise DatasetError(str(error)) from None
    if count == 0:
        raise DatasetError(f"{source} holds no questions")
    version = dataset_snapshot_version(data)
    registry = await read_registry(kafka, platform)
    if registry.get("dataset", name, version) is not None:
        return Pushed(name, version, count, new=False)
    ref = _store(platform).put(data)
    async with PlatformClient(kafka, name="dataset", platform=platform) as client:
        event = registration(client, name, data, ref, count)
        await client.publish(signer_for(platform, "operator").sign(event))
    return Pushed(name, version, count, new=True)


def snapshots(registry: Registry, name: str | None = None) -> list[VersionState]:
    """The pushed dataset versions (those held in the blob store), oldest first."""
    found = [
        (state.registered.occurred_at, state)
        for state in registry.versions("dataset", name)
        if state.registered is not None and (state.uri or "").startswith(BLOB_URI)
    ]
    return [state for _, state in sorted(found, key=lambda pair: pair[0])]


def resolve(
    registry: Registry, platform: PlatformSettings, spec: str, count: int | None = None, seed: int = 0
) -> Dataset:
    """The questions of ``NAME@VERSION`` or ``NAME`` (its latest pushed version), read from
    the snapshot and checked against the registration (size, SHA-256, version).

    Raises:
        DatasetError: unknown name or version; the snapshot is missing, changed or unreadable."""
    name, _, version = spec.partition("@")
    versions = snapshots(registry, name)
    if not versions:
        raise DatasetError(f"{spec!r} is neither a file nor a pushed dataset (ragops dataset push NAME FILE)")
    if version:
        state = next((s for s in versions if s.ref.version == version), None)
        if state is None:
            known = ", ".join(s.ref.version for s in versions)
            raise DatasetError(f"dataset {name} has no version {version} (known: {known})")
    else:
        state = versions[-1]
    ref = ContentRef(sha256=(state.uri or "")[len(BLOB_URI) :], size=int(state.metadata.get("bytes", "-1")))
    label = f"{name}@{state.ref.version}"
    try:
        data = _store(platform).get(ref)
    except BlobUnavailable as error:
        raise DatasetError(f"{label}: the snapshot cannot be used: {error}") from None
    if dataset_snapshot_version(data) != state.ref.version or blob_digest(data) != state.metadata.get("sha256"):
        raise DatasetError(f"{label}: the snapshot does not match its registration")
    try:
        questions = parse_questions(data, label, count, seed)
    except ValueError as error:
        raise DatasetError(str(error)) from None
    return Dataset(name, dataset_file_hash(data), state.ref.version, questions)


def from_file(path: Path, count: int | None = None, seed: int = 0) -> Dataset:
    """The questions of a plain file (no version). ``DatasetError`` when it is not a question set."""
    data = path.read_bytes()
    try:
        questions = parse_questions(data, str(path), count, seed)
    except ValueError as error:
        raise DatasetError(str(error)) from None
    return Dataset(path.name, dataset_file_hash(data), None, questions)
