"""``ragops keys``: create, list and revoke API keys in the key file the services read
(``RAGOPS_AUTH_API_KEYS_FILE``, else ``<data_dir>/auth/api-keys.json``). A new key is
printed once, on stdout alone (``KEY=$(ragops keys create ...)``); the file keeps its hash."""

from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from ragops_shared.identity import ApiKeyStore, Role, api_keys_file
from ragops_shared.settings import AuthSettings

app = typer.Typer(help="API keys of services and products (hashed at rest, shown once).", no_args_is_help=True)
console = Console(stderr=True)

DataDir = Annotated[
    Path, typer.Option(help="Where the key file is, unless RAGOPS_AUTH_API_KEYS_FILE says.", envvar="RAGOPS_DATA_DIR")
]


def _store(data_dir: Path) -> ApiKeyStore:
    return ApiKeyStore(api_keys_file(AuthSettings(), data_dir))


@app.command()
def create(
    name: Annotated[str, typer.Option(help="Who holds it (a service, a product).")],
    tenant: Annotated[str, typer.Option(help="The tenant everything it does belongs to.")],
    role: Annotated[list[Role], typer.Option(help="A role it has (repeat for several).")],
    owner: Annotated[
        str | None,
        typer.Option(
            help="The person who answers for it (person:<sub>): four eyes are two owners, so a key "
            "never approves its owner's changes. Default: the key itself."
        ),
    ] = None,
    data_dir: DataDir = Path(".ragops"),
) -> None:
    """Create a key and print it, once: only its hash is stored."""
    store = _store(data_dir)
    try:
        key, credential = store.create(name, tenant, role, owner)
    except ValidationError as error:
        for problem in error.errors(include_url=False):
            console.print(f"[red]invalid {'.'.join(map(str, problem['loc']))}: {problem['msg']}")
        raise typer.Exit(2) from None
    console.print(
        f"created key {key.key_id} ({key.name}, tenant {key.tenant}, owner {key.owner}) in {store.path}; "
        "it is shown once:"
    )
    print(credential)


@app.command(name="list")
def list_keys(data_dir: DataDir = Path(".ragops")) -> None:
    """Every key, revoked ones included, oldest first (never a secret)."""
    table = Table("key id", "name", "tenant", "roles", "owner", "created", "revoked")
    stored = _store(data_dir).keys()
    for key in stored:
        revoked = key.revoked_at.isoformat(timespec="seconds") if key.revoked_at else ""
        created = key.created_at.isoformat(timespec="seconds")
        table.add_row(key.key_id, key.name, key.tenant, ",".join(key.roles), key.owner, created, revoked)
    Console(width=200).print(table)


@app.command()
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (`ragops keys list`).")],
    data_dir: DataDir = Path(".ragops"),
) -> None:
    """Revoke a key: refused from then on, kept in the file for the record."""
    try:
        key = _store(data_dir).revoke(key_id)
    except KeyError:
        console.print(f"[red]no key {key_id}")
        raise typer.Exit(1) from None
    console.print(f"revoked key {key.key_id} ({key.name}, tenant {key.tenant})")
