"""`ragops sql` prints values literally, as a table, CSV or JSON (ragops.cli.format_rows)."""

import csv
import io
import json

from ragops.cli import RowFormat, format_rows

COLUMNS = ["line", "note"]
ROWS = [["root:x:0:0", "[red]secret[/red]"], ['a, "quoted"\nvalue', None]]


def test_table_prints_markup_and_emoji_codes_literally() -> None:
    text = format_rows(COLUMNS, ROWS[:1], RowFormat.table)
    assert "root:x:0:0" in text
    assert "[red]secret[/red]" in text
    assert "❌" not in text


def test_table_headers_are_literal_too() -> None:
    assert "[bold]x[/bold]" in format_rows(["[bold]x[/bold]"], [[1]], RowFormat.table)


def test_csv_round_trips_commas_quotes_and_newlines() -> None:
    text = format_rows(COLUMNS, ROWS, RowFormat.csv)
    assert list(csv.reader(io.StringIO(text))) == [
        COLUMNS,
        ["root:x:0:0", "[red]secret[/red]"],
        ['a, "quoted"\nvalue', ""],
    ]


def test_json_is_one_object_per_row() -> None:
    lines = format_rows(COLUMNS, ROWS, RowFormat.json).splitlines()
    assert [json.loads(line) for line in lines] == [
        {"line": "root:x:0:0", "note": "[red]secret[/red]"},
        {"line": 'a, "quoted"\nvalue', "note": None},
    ]
