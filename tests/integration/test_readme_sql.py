"""The example queries the README gives analysts run on the real schema."""

import re
from pathlib import Path

import pytest

from ragops_analytics.chdb_store import ChdbStore
from ragops_analytics.guard import split_statements

pytestmark = pytest.mark.clickhouse
README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_example_queries_run(chdb_store: ChdbStore) -> None:
    blocks = re.findall(r"```sql\n(.*?)```", README.read_text(), re.S)
    statements = [statement for block in blocks for statement in split_statements(block)]
    assert len(statements) >= 5
    for statement in statements:
        chdb_store.query(statement)  # raises on a syntax error or an unknown column
