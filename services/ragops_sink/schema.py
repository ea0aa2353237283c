"""The sink's ClickHouse schema: the numbered migrations in ``ragops_sink/migrations``
(``NNNN_<name>.up.sql`` / ``.down.sql``; they create the raw ``events`` table, the typed
tables fed from it by materialized views, and the analyst views), the retention of each
table and the model prices of the cost views. The sink applies them at start; both
engines run the same SQL."""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources

from ragops_analytics import queries
from ragops_analytics.guard import split_statements
from ragops_analytics.store import AnalyticsStore

_MIGRATION_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.up\.sql$")


@dataclass(frozen=True)
class Migration:
    """One numbered schema change: ``version`` 1 is ``0001_<name>``."""

    version: int
    name: str
    up: tuple[str, ...]
    down: tuple[str, ...]


def discover_migrations() -> list[Migration]:
    """The sink's migrations in version order.

    Raises:
        RuntimeError: a ``.down.sql`` is missing or two files share a version (a packaging
            mistake that must stop the platform rather than half-apply a schema).
    """
    folder = resources.files("ragops_sink").joinpath("migrations")
    found: dict[int, Migration] = {}
    for entry in folder.iterdir():
        match = _MIGRATION_FILE.match(entry.name)
        if match is None:
            continue
        version, name = int(match.group(1)), entry.name.removesuffix(".up.sql")
        down = folder.joinpath(f"{name}.down.sql")
        if not down.is_file():
            raise RuntimeError(f"migration {name} has no {name}.down.sql")
        if version in found:
            raise RuntimeError(f"migrations {found[version].name} and {name} share version {version}")
        found[version] = Migration(
            version,
            name,
            tuple(split_statements(entry.read_text("utf-8"))),
            tuple(split_statements(down.read_text("utf-8"))),
        )
    return [found[version] for version in sorted(found)]


def pending_migrations(store: AnalyticsStore) -> list[Migration]:
    """The migrations not applied yet, in version order. Raises StoreUnavailable."""
    applied = queries.applied_migrations(store)
    return [migration for migration in discover_migrations() if migration.version not in applied]


def migrate(store: AnalyticsStore) -> list[str]:
    """Apply the pending up-migrations in order; return the names applied (``[]`` when up
    to date). Raises StoreUnavailable."""
    done = []
    for migration in pending_migrations(store):
        # Statements use IF [NOT] EXISTS, so a migration interrupted half-way is
        # simply applied again from its first statement at the next start.
        for statement in migration.up:
            store.execute(statement)
        queries.record_migration(store, migration.version, migration.name, applied=True)
        done.append(migration.name)
    return done


def migrate_down(store: AnalyticsStore, to: int = 0) -> list[str]:
    """Revert applied migrations above version ``to``, newest first; return their names.
    For tests and operators: it drops tables and their data. Raises StoreUnavailable."""
    applied = queries.applied_migrations(store)
    done = []
    for migration in reversed(discover_migrations()):
        if migration.version > to and migration.version in applied:
            for statement in migration.down:
                store.execute(statement)
            queries.record_migration(store, migration.version, migration.name, applied=False)
            done.append(migration.name)
    return done


MAX_DAYS = 18_250
"""The longest TTL (50 years): the TTL is a DateTime, which ends in 2106, and a later expiry
wraps round to the past and deletes the rows at once."""


def set_retention(store: AnalyticsStore, days: Mapping[str, int | None]) -> list[str]:
    """Give each table of ``days`` (table -> days after ``occurred_at``, None: forever; the
    tables of ``queries.RETAINED_TABLES``) that TTL; return the tables whose TTL changed.
    Tables already at their value are left alone (a changed TTL rewrites the table's parts).

    Raises:
        ValueError: an unknown table, or days that are not a whole number in 1..MAX_DAYS
            (nothing is changed then).
        StoreUnavailable: an ALTER failed.
    """
    for table, value in days.items():
        if table not in queries.RETAINED_TABLES:
            raise ValueError(f"no retention for {table!r}: one of {sorted(queries.RETAINED_TABLES)}")
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_DAYS):
            raise ValueError(
                f"retention of {table} must be a whole number of days in 1..{MAX_DAYS} or None, not {value!r}"
            )
    return [table for table, value in days.items() if queries.set_table_retention(store, table, value)]


def set_prices(store: AnalyticsStore, prices: Mapping[str, tuple[float, float]]) -> None:
    """Upsert model -> (input, output) prices in USD per million tokens; models not in
    ``prices`` keep theirs. cost_per_request reads the latest price of each model, so a
    price change re-prices past requests too.

    Raises:
        ValueError: an empty model name or a negative price.
        StoreUnavailable: the insert failed.
    """
    for model, (input_price, output_price) in prices.items():
        if not model or input_price < 0 or output_price < 0:
            raise ValueError(f"invalid price for {model!r}: need a model name and prices >= 0 USD per million tokens")
    if prices:
        queries.insert_prices(store, prices)
