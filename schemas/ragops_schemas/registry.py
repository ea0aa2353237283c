"""The version registry as a projection of the registry events.

Every service folds ``VersionRegistered`` / ``VersionPromoted`` / ``VersionRejected`` /
``VersionRetired`` (read from the start of their topics) into a :class:`Registry` and asks it
which version an alias points at. The fold does not depend on the order the four topics are
read in: aliases resolve to the latest promotion by ``occurred_at``, and a promotion carries
the artifact's ``uri`` itself.

A version is immutable: the first registration of ``(kind, name, version)`` read stays. A
later one with the same content (``uri`` and prompt body) is a no-op; one with other content,
or a prompt whose ``sha256`` is not the hash of its own text, is refused
(:meth:`Registry.refusal`): a key that may register cannot edit a served version in place.
"""

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime

from ragops_schemas.envelope import Event
from ragops_schemas.ids import prompt_hash
from ragops_schemas.lifecycle import (
    VersionKind,
    VersionPromoted,
    VersionRef,
    VersionRegistered,
    VersionRejected,
    VersionRetired,
)


@dataclass
class VersionState:
    ref: VersionRef
    uri: str | None = None
    registered: VersionRegistered | None = None
    promoted: VersionPromoted | None = None
    rejected: VersionRejected | None = None
    retired: VersionRetired | None = None
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass
class _Alias:
    version: str
    promoted: VersionPromoted


class Registry:
    """Versions and aliases per artifact ``(kind, name)``. Not thread-safe: fold and read on
    one event loop (services copy what they need into their own state)."""

    def __init__(self) -> None:
        self._versions: dict[tuple[str, str, str], VersionState] = {}
        self._aliases: dict[tuple[str, str, str], _Alias] = {}
        self._seen: set[object] = set()

    def apply(self, event: Event) -> bool:
        """Fold one event in; returns True when it changed the registry (False for other
        event types, a duplicate delivery, a version registered again with the same content,
        and a registration :meth:`refusal` refuses)."""
        if not isinstance(event, VersionRegistered | VersionPromoted | VersionRejected | VersionRetired):
            return False
        if event.event_id in self._seen:
            return False
        if self.refusal(event) is not None:
            return False
        self._seen.add(event.event_id)
        state = self._state(event.ref)
        if isinstance(event, VersionRegistered):
            if state.registered is not None:  # the same content registered again
                return False
            state.registered, state.uri = event, event.uri or state.uri
            state.metadata.update(event.metadata)
        elif isinstance(event, VersionPromoted):
            state.uri = state.uri or event.uri
            if event.alias == "production":  # a candidate is not live
                state.promoted = event
            slot = (event.kind, event.name, event.alias)
            current = self._aliases.get(slot)
            if current is None or current.promoted.occurred_at <= event.occurred_at:
                self._aliases[slot] = _Alias(event.version, event)
        elif isinstance(event, VersionRejected):
            state.rejected = event
        else:
            state.retired = event
        return True

    def refusal(self, event: Event) -> tuple[str, str] | None:
        """Why :meth:`apply` will not fold ``event`` in, as ``(code, reason)``; None when it
        will (or it is a duplicate delivery, or not a registration). Codes:
        ``prompt_hash_mismatch`` (``prompt.sha256`` is not ``ids.prompt_hash`` of its text) and
        ``conflicting_registration`` (the version was registered first with another ``uri`` or
        prompt body; its metadata is descriptive and not compared)."""
        if not isinstance(event, VersionRegistered) or event.event_id in self._seen:
            return None
        where = f"{event.kind}/{event.name}@{event.version}"
        body = event.prompt
        if body is not None and body.sha256 != (actual := prompt_hash(body.description, body.system, body.user)):
            return "prompt_hash_mismatch", f"{where} claims sha256 {body.sha256} but its text hashes to {actual}"
        state = self.get(event.kind, event.name, event.version)
        first = state.registered if state else None
        if first is not None and (first.uri, first.prompt) != (event.uri, event.prompt):
            return (
                "conflicting_registration",
                f"{where} was registered by event {first.event_id} with another uri or body; "
                "a version is immutable (register a new version)",
            )
        return None

    def _state(self, ref: VersionRef) -> VersionState:
        return self._versions.setdefault((ref.kind, ref.name, ref.version), VersionState(ref=ref))

    def get(self, kind: VersionKind, name: str, version: str) -> VersionState | None:
        return self._versions.get((kind, name, version))

    def alias(self, kind: VersionKind, name: str, alias: str = "production") -> VersionState | None:
        """The version ``alias`` points at, or None when it was never set or its version is
        retired (a retired version takes no new traffic: callers fall back to their default)."""
        entry = self._aliases.get((kind, name, alias))
        if entry is None:
            return None
        state = self._state(VersionRef(kind=kind, name=name, version=entry.version))
        return None if state.retired else state

    def aliases(self, kind: VersionKind, name: str) -> dict[str, str]:
        """Every alias of ``(kind, name)`` -> the version it points at, those whose version is
        retired left out (as :meth:`alias` answers None for them)."""
        return {
            alias: entry.version
            for (k, n, alias), entry in list(self._aliases.items())
            if k == kind and n == name and not self.is_retired(kind, name, entry.version)
        }

    def promoted_at(self, kind: VersionKind, name: str, alias: str = "production") -> datetime | None:
        entry = self._aliases.get((kind, name, alias))
        return entry.promoted.occurred_at if entry else None

    def is_retired(self, kind: VersionKind, name: str, version: str) -> bool:
        state = self.get(kind, name, version)
        return bool(state and state.retired)

    def versions(self, kind: VersionKind, name: str | None = None) -> list[VersionState]:
        """Every known version of ``kind`` (optionally of one ``name``), in registration order."""
        # A copy first: worker threads read while the event loop folds new events in.
        return [state for (k, n, _), state in list(self._versions.items()) if k == kind and (name is None or n == name)]

    def last_promotion(self, kinds: Collection[str] | None = None, alias: str = "production") -> datetime | None:
        """When ``alias`` of a version of one of ``kinds`` (any kind by default) last moved:
        the monitor re-baselines its reference windows then."""
        times = [
            entry.promoted.occurred_at
            for (kind, _, name), entry in list(self._aliases.items())
            if (kinds is None or kind in kinds) and name == alias
        ]
        return max(times) if times else None
