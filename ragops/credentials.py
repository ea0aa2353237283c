"""The credentials of the embedded platform and of the CLI.

On its first start the embedded platform (``ragops up``, ``make demo``) creates, in its API key
file, an admin key (``<data_dir>/auth/admin.key``: every role but ``platform``) for the person
who runs it, and a ``platform`` + ``monitoring`` key (``<data_dir>/auth/platform.key``) that
its own services present to each other (the monitor and the trainer read ClickHouse through
the sink's ``/sql``). Both files are mode 0600 in a 0700 folder and are kept on later starts.

The CLI presents ``RAGOPS_API_KEY`` if set, else that admin key.
"""

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

import httpx
from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from ragops_shared.identity import ApiKeyStore, Role, api_keys_file
from ragops_shared.settings import PlatformSettings

ADMIN_KEY_FILE = Path("auth") / "admin.key"
PLATFORM_KEY_FILE = Path("auth") / "platform.key"
ADMIN_ROLES = tuple(role for role in Role if role is not Role.PLATFORM)
# What the platform's own processes need of each other: cross-tenant reads, and /metrics.
PLATFORM_ROLES = (Role.PLATFORM, Role.MONITORING)


class CliCredentials(BaseSettings):
    """Env prefix ``RAGOPS_``."""

    model_config = SettingsConfigDict(env_prefix="RAGOPS_", extra="ignore")

    api_key: SecretStr | None = None


@dataclass(frozen=True)
class EmbeddedKeys:
    """The embedded platform's two credentials (``rgk_...``) and where they are stored."""

    admin: str
    platform: str
    admin_file: Path
    platform_file: Path
    api_keys_file: Path


def bootstrap_keys(settings: PlatformSettings) -> EmbeddedKeys:
    """Create, once, the admin and platform keys of ``settings.data_dir`` for
    ``settings.tenant`` in the API key file (``RAGOPS_AUTH_API_KEYS_FILE``, default
    ``<data_dir>/auth/api-keys.json``); a credential file that exists is kept as it is.
    Platforms starting on one ``data_dir`` together take turns (a lock file)."""
    data_dir = settings.data_dir
    store = ApiKeyStore(api_keys_file(settings.auth, data_dir))
    folder = data_dir / ADMIN_KEY_FILE.parent
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    folder.chmod(0o700)  # also when it was made before, by someone with a looser umask
    with (folder / ".bootstrap.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        admin = _kept_or_created(store, data_dir / ADMIN_KEY_FILE, "embedded-admin", settings.tenant, ADMIN_ROLES)
        platform = _kept_or_created(
            store, data_dir / PLATFORM_KEY_FILE, "embedded-platform", settings.tenant, PLATFORM_ROLES
        )
    return EmbeddedKeys(
        admin=admin,
        platform=platform,
        admin_file=data_dir / ADMIN_KEY_FILE,
        platform_file=data_dir / PLATFORM_KEY_FILE,
        api_keys_file=store.path,
    )


def _kept_or_created(store: ApiKeyStore, path: Path, name: str, tenant: str, roles: tuple[Role, ...]) -> str:
    if path.exists():
        return path.read_text().strip()
    _, credential = store.create(name, tenant, list(roles))
    # Created with its mode: the credential is never readable by others, not even for a moment.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(credential + "\n")
    return credential


def api_key(data_dir: Path) -> str:
    """The API key to present.

    Raises:
        FileNotFoundError: no ``RAGOPS_API_KEY`` and no admin key in ``data_dir``.
    """
    configured = CliCredentials().api_key
    if configured is not None:
        return configured.get_secret_value()
    return (data_dir / ADMIN_KEY_FILE).read_text().strip()


def bearer(data_dir: Path) -> httpx.Auth:
    """``Authorization: Bearer <key>`` for an httpx client (the key of :func:`api_key`)."""
    return bearer_of(api_key(data_dir))


def bearer_of(key: str) -> httpx.Auth:
    """``Authorization: Bearer <key>`` for an httpx client."""

    def sign(request: httpx.Request) -> httpx.Request:
        request.headers["authorization"] = f"Bearer {key}"
        return request

    return httpx.FunctionAuth(sign)
