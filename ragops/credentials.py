"""The credential the CLI presents to the gateway: ``RAGOPS_API_KEY`` if set, else the admin
key the embedded platform created on its first start (``<data_dir>/auth/admin.key``)."""

from pathlib import Path

import httpx
from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

ADMIN_KEY_FILE = Path("auth") / "admin.key"


class CliCredentials(BaseSettings):
    """Env prefix ``RAGOPS_``."""

    model_config = SettingsConfigDict(env_prefix="RAGOPS_", extra="ignore")

    api_key: SecretStr | None = None


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
    """``Authorization: Bearer <key>`` for an httpx client."""
    key = api_key(data_dir)

    def sign(request: httpx.Request) -> httpx.Request:
        request.headers["authorization"] = f"Bearer {key}"
        return request

    return httpx.FunctionAuth(sign)
