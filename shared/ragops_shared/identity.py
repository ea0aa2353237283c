"""Who is calling: API keys for services and products, OIDC/JWT bearer tokens for people,
each mapped to a :class:`Principal` (subject, tenant, roles).

An HTTP call carries ``Authorization: Bearer <credential>``. A credential that starts with
``rgk_`` is an API key, anything else is a JWT.

API keys (``rgk_<key_id>_<secret>``, 256 random bits of secret) live in a JSON file
(``RAGOPS_AUTH_API_KEYS_FILE``, default ``<data_dir>/auth/api-keys.json``, mode 0600) that
holds only the SHA-256 of each secret: a high-entropy random secret needs no slow password
hash (OWASP Password Storage Cheat Sheet: slow hashes are for low-entropy passwords), and a
leaked file gives no usable key. The file is re-read when it changes, so a key created or
revoked with ``ragops keys`` (or a re-mounted Kubernetes Secret) takes effect without a
restart.

JWTs are verified with PyJWT against the issuer's JWKS (``RAGOPS_AUTH_OIDC_JWKS_URL``, or
a local file): signature with an asymmetric algorithm from an allow-list, ``iss``, ``aud``,
``exp`` and ``iat`` required; the tenant and roles come from claims (``ragops_tenant``,
``ragops_roles`` by default), never from a request body (RFC 7519, RFC 8725 "JWT Best
Current Practices").
"""

import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import jwt
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ragops_shared.settings import AuthSettings

KEY_PREFIX = "rgk_"
# A tenant name travels in events, ClickHouse rows, Qdrant payloads and log lines.
TENANT_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
# Who answers for a key: a person (a token's sub) or a key (itself, or the key that created it).
OWNER_PATTERN = r"^(person|key):[^\x00-\x20\x7f]+$"
_KEY_TOKEN = re.compile(r"^rgk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")


class Role(StrEnum):
    """What a principal may do; each route allows an explicit set (README "Roles")."""

    PRODUCER = "producer"  # submit documents and questions
    PRODUCT = "product"  # send user feedback
    ANALYST = "analyst"  # read-only SQL and reports on its tenant
    REVIEWER = "reviewer"  # judge answers (human review)
    OPERATOR = "operator"  # request retraining, retirements, promotions, experiments
    APPROVER = "approver"  # approve or reject another person's change
    AUDITOR = "auditor"  # read the audit log
    MONITORING = "monitoring"  # scrape /metrics
    PLATFORM = "platform"  # a platform service reading across tenants (the monitor); never a person's
    ADMIN = "admin"  # API keys, roles, tenants


class Unauthenticated(Exception):
    """No credential, or one that is malformed, unknown, revoked, expired or badly signed (401)."""


class Forbidden(Exception):
    """A valid credential without a role the action allows (403)."""


@dataclass(frozen=True)
class Principal:
    """An authenticated caller.

    Attributes:
        subject: ``key:<key_id>`` for an API key, ``person:<sub>`` for a person (its token's ``sub``).
        tenant: the tenant every object it creates or reads belongs to.
        roles: what it may do.
        kind: ``api_key`` (a service or product) or ``person`` (OIDC).
        name: a label for logs and the audit trail (the key's name, the token's ``sub``).
        owner: who answers for it: a person's own subject; a key's owner
            (:attr:`ApiKey.owner`). Four eyes are two owners, not two credentials.
    """

    subject: str
    tenant: str
    roles: frozenset[Role]
    kind: Literal["api_key", "person"]
    name: str
    owner: str

    def allowed(self, roles: frozenset[Role]) -> bool:
        return not self.roles.isdisjoint(roles)


def authorize(principal: Principal, allowed: frozenset[Role]) -> None:
    """Raises:
    Forbidden: ``principal`` holds none of ``allowed``."""
    if not principal.allowed(allowed):
        raise Forbidden(f"{principal.subject} lacks a role allowed here: {', '.join(sorted(allowed))}")


class ApiKey(BaseModel):
    """One API key as stored: never the secret, only its SHA-256.

    ``owner`` is who answers for the key (``person:<sub>`` or ``key:<key_id>``): the
    ``--owner`` of ``ragops keys create``, else the key itself; a key an admin creates over
    HTTP is its creator's owner's. A key file written before owners reads as owned by each key.
    """

    model_config = ConfigDict(frozen=True)

    key_id: str
    name: str = Field(min_length=1, max_length=128)
    tenant: str = Field(pattern=TENANT_PATTERN)
    roles: tuple[Role, ...] = Field(min_length=1)
    owner: str = Field(pattern=OWNER_PATTERN, max_length=256)
    secret_sha256: str
    created_at: datetime
    revoked_at: datetime | None = None

    @model_validator(mode="before")
    @classmethod
    def _owned_by_itself(cls, data: Any) -> Any:
        # A key file written before owners: each key answers for itself.
        if isinstance(data, dict) and "owner" not in data and "key_id" in data:
            return {**data, "owner": f"key:{data['key_id']}"}
        return data

    @field_validator("roles")
    @classmethod
    def _unique(cls, roles: tuple[Role, ...]) -> tuple[Role, ...]:
        return tuple(sorted(set(roles)))

    def principal(self) -> Principal:
        return Principal(
            subject=f"key:{self.key_id}",
            tenant=self.tenant,
            roles=frozenset(self.roles),
            kind="api_key",
            name=self.name,
            owner=self.owner,
        )


def _sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class ApiKeyStore:
    """The API key file: create, list, revoke, and authenticate a presented key.

    Writers take an exclusive ``flock`` on ``<file>.lock`` and replace the file atomically,
    so two ``ragops keys`` commands never lose each other's key and a reader never sees half
    a file. Readers keep the parsed file until its modification time or size changes.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[int, int, int] | None = None
        self._keys: dict[str, ApiKey] = {}

    def keys(self) -> list[ApiKey]:
        """Every key, revoked ones included, oldest first."""
        return sorted(self._load().values(), key=lambda key: key.created_at)

    def find(self, key_id: str) -> ApiKey | None:
        """The key ``key_id`` (revoked or not), ``None`` if there is none."""
        return self._load().get(key_id)

    def create(self, name: str, tenant: str, roles: list[Role], owner: str | None = None) -> tuple[ApiKey, str]:
        """A new key; returns it and the credential, which is shown once and never stored.
        ``owner`` (``person:<sub>`` or ``key:<key_id>``) answers for it; None: the key itself.

        Raises:
            pydantic.ValidationError: a bad tenant name or owner, no role, or a name over 128
                characters.
        """
        key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        key = ApiKey(
            key_id=key_id,
            name=name,
            tenant=tenant,
            roles=tuple(roles),
            owner=owner or f"key:{key_id}",
            secret_sha256=_sha256(secret),
            created_at=datetime.now(UTC),
        )
        with self._locked() as keys:
            keys[key_id] = key
        return key, f"{KEY_PREFIX}{key_id}_{secret}"

    def revoke(self, key_id: str) -> ApiKey:
        """Mark ``key_id`` revoked (kept in the file for the record). Idempotent.

        Raises:
            KeyError: no such key.
        """
        with self._locked() as keys:
            key = keys[key_id]
            if key.revoked_at is None:
                key = keys[key_id] = key.model_copy(update={"revoked_at": datetime.now(UTC)})
        return key

    def authenticate(self, credential: str) -> Principal:
        """Raises:
        Unauthenticated: malformed, unknown or revoked (one message for all: nothing tells
        a guesser which)."""
        match = _KEY_TOKEN.match(credential)
        key = self._load().get(match.group(1)) if match else None
        # Compared in constant time even for an unknown id, so timing tells nothing either.
        presented = _sha256(match.group(2)) if match else ""
        if key is None or not hmac.compare_digest(presented, key.secret_sha256) or key.revoked_at is not None:
            raise Unauthenticated("invalid API key")
        return key.principal()

    def _load(self) -> dict[str, ApiKey]:
        try:
            status = self.path.stat()
        except FileNotFoundError:
            self._seen, self._keys = None, {}
            return self._keys
        # Every write replaces the file (a new inode): a change within the clock's resolution
        # that keeps the size (a revocation of another key) is seen too.
        seen = (status.st_ino, status.st_mtime_ns, status.st_size)
        if self._seen != seen:
            self._keys = self._parse(self.path.read_bytes())
            self._seen = seen
        return self._keys

    @staticmethod
    def _parse(data: bytes) -> dict[str, ApiKey]:
        keys = [ApiKey.model_validate(found) for found in json.loads(data or b'{"keys": []}')["keys"]]
        return {key.key_id: key for key in keys}

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, ApiKey]]:
        """The keys, to change in the ``with`` block, written back when it ends; the file's
        folder is created with mode 0700.

        Raises:
            PermissionError: the folder is writable by its group or others (who could swap the
                file, or plant a link where this writes).
            OSError: the lock file is a symbolic link (``ELOOP``), or a temporary file appeared
                between the removal of a stale one and its creation (``EEXIST``).
        """
        folder = self.path.parent
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        if folder.stat().st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise PermissionError(f"{folder} is writable by its group or others: no API keys are written there")
        # No link is followed: one planted at either name would have this write wherever it points.
        lock_descriptor = os.open(
            self.path.with_name(self.path.name + ".lock"), os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600
        )
        with os.fdopen(lock_descriptor, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            keys = self._parse(self.path.read_bytes()) if self.path.exists() else {}
            yield keys
            document = {"keys": [key.model_dump(mode="json") for key in keys.values()]}
            temporary = self.path.with_name(self.path.name + ".tmp")
            # One left by a writer that died mid-write (or a link put there) is removed, not reused.
            temporary.unlink(missing_ok=True)
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(descriptor, "w") as file:
                json.dump(document, file, indent=1)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self.path)
            self._seen = None


def _is_role(value: object) -> bool:
    """A claim value naming a :class:`Role` (a list or object in a claim is not one)."""
    return isinstance(value, str) and value in Role._value2member_map_


class JwtVerifier:
    """People's bearer tokens, verified with PyJWT against the issuer's JWKS."""

    def __init__(self, settings: AuthSettings) -> None:
        if settings.oidc_issuer is None:
            raise ValueError("RAGOPS_AUTH_OIDC_ISSUER is not set")
        self.settings = settings
        self._client = jwt.PyJWKClient(settings.oidc_jwks_url, cache_keys=True) if settings.oidc_jwks_url else None
        self._file_keys = (
            jwt.PyJWKSet.from_json(settings.oidc_jwks_file.read_text()) if settings.oidc_jwks_file else None
        )
        if self._client is None and self._file_keys is None:
            raise ValueError("set RAGOPS_AUTH_OIDC_JWKS_URL or RAGOPS_AUTH_OIDC_JWKS_FILE with the issuer")

    def authenticate(self, token: str) -> Principal:
        """Blocks on the first fetch of the JWKS (call from a worker thread).

        Raises:
            Unauthenticated: bad signature, algorithm, issuer, audience, expiry, a missing
                or malformed tenant or roles claim, or a ``platform`` role (never a person's).
        """
        settings = self.settings
        try:
            key = self._signing_key(token)
            claims = jwt.decode(
                token,
                key,
                algorithms=settings.oidc_algorithms,
                audience=settings.oidc_audience,
                issuer=settings.oidc_issuer,
                leeway=settings.leeway_s,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except (jwt.PyJWTError, KeyError) as error:
            raise Unauthenticated(f"invalid token: {error}") from None
        tenant, roles = claims.get(settings.tenant_claim), claims.get(settings.roles_claim)
        # fullmatch: re.match's "$" also matches before a final newline.
        if not isinstance(tenant, str) or not re.fullmatch(TENANT_PATTERN, tenant):
            raise Unauthenticated(f"invalid token: no valid {settings.tenant_claim!r} claim")
        if not isinstance(roles, list) or not roles or not all(_is_role(role) for role in roles):
            raise Unauthenticated(f"invalid token: no valid {settings.roles_claim!r} claim")
        # platform reads across tenants: only the platform's own keys hold it, never an issuer's word.
        if Role.PLATFORM in roles:
            raise Unauthenticated(f"invalid token: {settings.roles_claim!r} names the platform role")
        subject = f"person:{claims['sub']}"
        return Principal(
            subject=subject,
            tenant=tenant,
            roles=frozenset(map(Role, roles)),
            kind="person",
            name=str(claims["sub"]),
            owner=subject,
        )

    def _signing_key(self, token: str) -> jwt.PyJWK:
        if self._client is not None:
            return self._client.get_signing_key_from_jwt(token)
        assert self._file_keys is not None
        kid = jwt.get_unverified_header(token).get("kid")
        return self._file_keys[kid] if kid else self._file_keys.keys[0]


class Authenticator:
    """An ``Authorization`` header to a :class:`Principal`."""

    def __init__(self, keys: ApiKeyStore, people: JwtVerifier | None = None) -> None:
        self.keys = keys
        self.people = people

    def authenticate(self, authorization: str | None) -> Principal:
        """Blocks when a JWKS must be fetched (call from a worker thread).

        Raises:
            Unauthenticated: no ``Bearer`` credential, or one that does not verify.
        """
        scheme, _, credential = (authorization or "").partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise Unauthenticated("missing bearer credential")
        if credential.startswith(KEY_PREFIX):
            return self.keys.authenticate(credential)
        if self.people is None:
            raise Unauthenticated("invalid API key")
        return self.people.authenticate(credential)


def api_keys_file(settings: AuthSettings, data_dir: Path) -> Path:
    return settings.api_keys_file or data_dir / "auth" / "api-keys.json"


def authenticator_for(settings: AuthSettings, data_dir: Path) -> Authenticator:
    """The authenticator the settings describe (JWTs only when an issuer is configured)."""
    people = JwtVerifier(settings) if settings.oidc_issuer else None
    return Authenticator(ApiKeyStore(api_keys_file(settings, data_dir)), people)
