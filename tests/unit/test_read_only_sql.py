"""ensure_read_only: the analyst path's statement check (no engine needed)."""

import pytest

from ragops_analytics.guard import ReadOnlyViolation, ensure_read_only, split_statements


@pytest.mark.parametrize(
    ("sql", "statement"),
    [
        ("SELECT 1", "SELECT 1"),
        ("  select 1 ;  ", "select 1"),
        ("SELECT 1;;", "SELECT 1"),
        ("WITH x AS (SELECT 1) SELECT * FROM x", "WITH x AS (SELECT 1) SELECT * FROM x"),
        ("SHOW TABLES", "SHOW TABLES"),
        ("DESCRIBE TABLE events", "DESCRIBE TABLE events"),
        ("desc events", "desc events"),
        ("EXPLAIN SELECT 1", "EXPLAIN SELECT 1"),
        ("EXISTS TABLE events", "EXISTS TABLE events"),
        ("(SELECT 1) UNION ALL (SELECT 2)", "(SELECT 1) UNION ALL (SELECT 2)"),
        ("-- why\nSELECT 1 -- trailing\n", "SELECT 1"),
        ("/* lead */ SELECT 1; /* tail */", "SELECT 1"),
        ("# hash comment\nSELECT 1", "SELECT 1"),
        ("SELECT ';' AS semi", "SELECT ';' AS semi"),
        ("SELECT 'it''s; DROP TABLE events'", "SELECT 'it''s; DROP TABLE events'"),
        ("SELECT 'a\\'; DROP TABLE events'", "SELECT 'a\\'; DROP TABLE events'"),
        ('SELECT "we;ird" FROM `t;x`', 'SELECT "we;ird" FROM `t;x`'),
        ("SELECT 1 AS drop_count", "SELECT 1 AS drop_count"),
        ("SELECT {n:UInt32}", "SELECT {n:UInt32}"),
    ],
)
def test_accepts_one_read_statement(sql: str, statement: str) -> None:
    assert ensure_read_only(sql) == statement


@pytest.mark.parametrize(
    "sql",
    [
        "",
        "   ",
        "-- only a comment",
        ";",
        "INSERT INTO events VALUES (1)",
        "insert into events select * from events",
        "DROP TABLE events",
        "ALTER TABLE events DELETE WHERE 1",
        "CREATE TABLE t (a UInt8) ENGINE = Memory",
        "TRUNCATE TABLE events",
        "RENAME TABLE events TO e",
        "OPTIMIZE TABLE events FINAL",
        "SYSTEM STOP MERGES",
        "SET readonly = 0",
        "GRANT ALL ON *.* TO default",
        "KILL QUERY WHERE 1",
        "SELECT 1; DROP TABLE events",
        "SELECT 1;\nSELECT 2",
        "SELECT 1; -- fine\n DROP TABLE events",
        "/* SELECT */ DROP TABLE events",
        "-- SELECT\nDROP TABLE events",
        "SELECT 1 INTO OUTFILE '/tmp/x'",
        "SELECT 'unterminated",
        "SELECT 1 /* unterminated",
        "SELECT $$; DROP TABLE events$$",
        "SELECT $$'$$; DROP TABLE events; SELECT '",
        "/* a /* b */ ; DROP TABLE events */",
        "(DROP TABLE events)",
        "1 + 1",
    ],
)
def test_refuses(sql: str) -> None:
    with pytest.raises(ReadOnlyViolation):
        ensure_read_only(sql)


def test_read_only_violation_is_a_value_error() -> None:
    """Callers that map bad input to HTTP 400 catch ValueError."""
    assert issubclass(ReadOnlyViolation, ValueError)


def test_split_statements_ends_statements_at_a_semicolon_ending_a_line() -> None:
    sql = "-- header\nCREATE TABLE a (x String DEFAULT ';');\n\n-- note\nDROP TABLE b;\n-- trailing comment\n"
    assert split_statements(sql) == ["-- header\nCREATE TABLE a (x String DEFAULT ';')", "-- note\nDROP TABLE b"]
