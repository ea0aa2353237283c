"""ensure_read_only: the analyst path's allow-list (no engine needed)."""

import ast
from pathlib import Path

import pytest

from ragops_analytics import queries
from ragops_analytics.guard import ReadOnlyViolation, allowed_function, ensure_read_only, split_statements


@pytest.mark.parametrize(
    ("sql", "statement"),
    [
        ("SELECT 1", "SELECT 1"),
        ("  select 1 ;  ", "SELECT 1"),
        ("WITH x AS (SELECT 1) SELECT * FROM x", "WITH x AS (SELECT 1) SELECT * FROM x"),
        ("(SELECT 1) UNION ALL (SELECT 2)", "(SELECT 1) UNION ALL (SELECT 2)"),
        ("-- why\nSELECT 1 -- trailing\n", "SELECT 1"),
        ("/* lead */ SELECT 1; /* tail */", "SELECT 1"),
        ("SELECT ';' AS semi", "SELECT ';' AS semi"),
        ("SELECT 'it''s; DROP TABLE events'", "SELECT 'it''s; DROP TABLE events'"),
        ("SELECT 1 AS drop_count", "SELECT 1 AS drop_count"),
        ("SELECT {n:UInt32}", "SELECT {n: UInt32}"),
        ("SELECT count() FROM events FINAL", "SELECT count() FROM events FINAL"),
        ("SELECT countIf(x = 1), groupArrayArray(e), quantile(0.5)(ms) FROM events", None),
        ("SELECT * FROM events WHERE event_id IN (SELECT event_id FROM queries)", None),
        ("SELECT * FROM events WHERE topic IN {topics:Array(String)}", None),
        ("SELECT row_number() OVER (ORDER BY occurred_at), if(1, 2, 3), CAST(1 AS String) FROM events", None),
        ("DESCRIBE events", "DESCRIBE TABLE events"),
        ("desc table `events`;", "DESCRIBE TABLE events"),
    ],
)
def test_accepts_one_select_over_the_platforms_tables(sql: str, statement: str | None) -> None:
    assert ensure_read_only(sql) == (statement or ensure_read_only(sql))
    assert ensure_read_only(ensure_read_only(sql)) == ensure_read_only(sql)  # the sink checks again


@pytest.mark.parametrize(
    "sql",
    [
        # not one statement
        "",
        "   ",
        "-- only a comment",
        ";",
        "SELECT 1; DROP TABLE events",
        "SELECT 1;\nSELECT 2",
        "SELECT 1; -- fine\n DROP TABLE events",
        "/* a /* b */ ; DROP TABLE events */",
        "SELECT 'unterminated",
        "SELECT 1 /* unterminated",
        # writes, DDL, other statements
        "INSERT INTO events VALUES (1)",
        "insert into events select * from events",
        "WITH x AS (SELECT 1) INSERT INTO events SELECT * FROM x",
        "DROP TABLE events",
        "/* SELECT */ DROP TABLE events",
        "-- SELECT\nDROP TABLE events",
        "ALTER TABLE events DELETE WHERE 1",
        "CREATE TABLE t (a UInt8) ENGINE = Memory",
        "TRUNCATE TABLE events",
        "OPTIMIZE TABLE events FINAL",
        "SYSTEM STOP MERGES",
        "SET readonly = 0",
        "GRANT ALL ON *.* TO default",
        "KILL QUERY WHERE 1",
        "SHOW TABLES",
        "SHOW CREATE TABLE events",
        "EXPLAIN SELECT 1",
        "EXISTS TABLE events",
        "(DROP TABLE events)",
        # clauses
        "SELECT 1 INTO OUTFILE '/tmp/x'",
        "SELECT * FROM events INTO OUTFILE 'x.csv'",
        "SELECT 1 INTO TABLE t",
        "SELECT 1 SETTINGS readonly = 0",
        "SELECT * FROM (SELECT 1 SETTINGS max_execution_time = 1000)",
        "SELECT 1 UNION ALL SELECT 2 SETTINGS max_threads = 64",
        "SELECT 1 FORMAT JSON",
        # table functions
        "SELECT * FROM file('/etc/passwd', 'LineAsString')",
        "SELECT * FROM url('http://127.0.0.1/', 'CSV')",
        "SELECT * FROM remote('127.0.0.1:9000', system.one)",
        "SELECT * FROM remoteSecure('127.0.0.1:9440', system.one)",
        "SELECT * FROM s3('http://bucket/x.csv')",
        "SELECT * FROM hdfs('hdfs://x/y', 'CSV')",
        "SELECT * FROM executable('id', 'TSV', 'x String')",
        "SELECT * FROM input('a UInt8')",
        "SELECT * FROM mysql('h:3306', 'db', 't', 'u', 'p')",
        "SELECT * FROM postgresql('h:5432', 'db', 't', 'u', 'p')",
        "SELECT * FROM numbers(10)",
        "SELECT * FROM events AS e, numbers(1000000000)",
        "SELECT * FROM events JOIN generateRandom('a UInt8') AS g ON 1",
        "SELECT * FROM cluster('default', system.one)",
        "SELECT * FROM VALUES('a UInt8', 1)",
        "SELECT count() FROM {table:Identifier}",
        "DESCRIBE url('http://127.0.0.1/', 'CSV')",
        "DESCRIBE TABLE url('http://127.0.0.1/', 'CSV')",
        "DESCRIBE remote('127.0.0.1:9000', system.one)",
        "DESCRIBE (SELECT * FROM file('/etc/passwd'))",
        "DESCRIBE system.tables",
        "DESCRIBE schema_migrations",
        # scalar functions that reach outside, and unknown ones
        "SELECT file('/etc/passwd')",
        "SELECT file('/proc/self/environ')",
        "SELECT FILE('/etc/passwd')",
        "SELECT `file`('/etc/passwd')",
        "SELECT \"file\"('/etc/passwd')",
        "SELECT ｆｉｌｅ('/etc/passwd')",
        "SELECT fi/**/le('/etc/passwd')",
        "SELECT sleep(3)",
        "SELECT sleepEachRow(1) FROM events",
        "SELECT dictGet('d', 'a', 1)",
        "SELECT joinGet('j', 'a', 1)",
        "SELECT getSetting('max_memory_usage')",
        "SELECT hostName()",
        "SELECT hasColumnInTable('system', 'users', 'name')",
        "SELECT catboostEvaluate('/etc/passwd', 1)",
        "SELECT aiGenerate('hello')",
        "SELECT no_such_function(1)",
        "SELECT arrayMap(x -> file(x), ['/etc/passwd'])",
        "WITH file('/etc/passwd') AS x SELECT x",
        # system tables, other databases and tables
        "SELECT count() FROM system.numbers",
        "SELECT * FROM `system`.`one`",
        "SELECT * FROM ｓｙｓｔｅｍ.one",
        "SELECT name FROM system.tables",
        "SELECT * FROM events WHERE 1 IN system.one",
        "SELECT * FROM default.events",
        "SELECT * FROM other.events",
        "SELECT * FROM schema_migrations",
        "SELECT * FROM queries_mv",
        "SELECT * FROM no_such_table",
        "SELECT * FROM events WHERE event_id IN (SELECT event_id FROM system.query_log)",
        "SELECT $$; DROP TABLE events$$ FROM system.one",
    ],
)
def test_refuses(sql: str) -> None:
    with pytest.raises(ReadOnlyViolation):
        ensure_read_only(sql)


# The function forms of IN take a bare table name as their set, which parses as a column.
IN_FUNCTIONS = [
    f"{name}{suffix}"
    for name in ("in", "notIn", "nullIn", "notNullIn", "globalIn", "globalNotIn", "globalNullIn", "globalNotNullIn")
    for suffix in ("", "IgnoreSet")
]


@pytest.mark.parametrize("name", IN_FUNCTIONS)
def test_the_function_forms_of_in_are_refused(name: str) -> None:
    assert not allowed_function(name)
    with pytest.raises(ReadOnlyViolation, match=rf"function {name}\(\) is not allowed"):
        ensure_read_only(f"SELECT `{name}`(('other', 'secret'), audit_log) FROM queries", tenant="acme")


@pytest.mark.parametrize(
    "sql",
    [
        # ClickHouse substitutes an Identifier parameter as a name: a table the guard never sees.
        "SELECT * FROM queries WHERE request_id IN {t:Identifier}",
        "SELECT * FROM queries WHERE request_id IN ({t:Identifier})",
        "SELECT * FROM queries WHERE request_id IN {t:identifier}",
        "SELECT {c:Identifier} FROM queries",
        "SELECT {t:Identifier}.tenant FROM queries",
        "SELECT count() FROM queries GROUP BY {c:Identifier}",
        # Any placeholder where a name goes.
        "SELECT * FROM queries AS {a:String}",
        "SELECT request_id AS {a:String} FROM queries",
        "WITH {a:String} AS x SELECT x",
    ],
)
def test_placeholders_stand_for_values_only(sql: str) -> None:
    for tenant in (None, "acme"):
        with pytest.raises(ReadOnlyViolation, match="placeholder"):
            ensure_read_only(sql, tenant)


def test_the_audit_log_is_for_callers_that_may_audit() -> None:
    for sql in (
        "SELECT count() FROM audit_log",
        "DESCRIBE audit_log",
        "SELECT 1 WHERE 1 IN (SELECT seq FROM audit_log)",
    ):
        with pytest.raises(ReadOnlyViolation, match="audit_log is readable by auditors only"):
            ensure_read_only(sql)
        with pytest.raises(ReadOnlyViolation, match="auditors only"):
            ensure_read_only(sql, "acme")
        ensure_read_only(sql, audit=True)
    assert "__ragops_rows.tenant = 'acme'" in ensure_read_only("SELECT * FROM audit_log", "acme", audit=True)


def test_a_common_table_expression_may_not_take_a_platform_tables_name() -> None:
    # In another scope the name reads the real table: the CTE would hide it from the rules on tables.
    sql = "SELECT * FROM (WITH audit_log AS (SELECT 1) SELECT * FROM audit_log) UNION ALL SELECT seq FROM audit_log"
    for tenant in (None, "acme"):
        with pytest.raises(ReadOnlyViolation, match="may not be named audit_log"):
            ensure_read_only(sql, tenant)


def test_the_refusal_says_what_was_refused() -> None:
    with pytest.raises(ReadOnlyViolation, match=r"function file\(\) is not allowed"):
        ensure_read_only("SELECT file('/etc/passwd')")
    with pytest.raises(ReadOnlyViolation, match="SETTINGS"):
        ensure_read_only("SELECT 1 SETTINGS readonly = 0")


@pytest.mark.parametrize(
    "name", ["count", "COUNT", "countIf", "sumOrNull", "quantilesIf", "toDate", "JSONExtractString"]
)
def test_allowed_functions(name: str) -> None:
    assert allowed_function(name)


@pytest.mark.parametrize("name", ["file", "sleep", "sleepEachRow", "dictGet", "joinGet", "fileIf", "url"])
def test_refused_functions(name: str) -> None:
    assert not allowed_function(name)


def test_read_only_violation_is_a_value_error() -> None:
    """Callers that map bad input to HTTP 400 catch ValueError."""
    assert issubclass(ReadOnlyViolation, ValueError)


def test_split_statements_ends_statements_at_a_semicolon_ending_a_line() -> None:
    sql = "-- header\nCREATE TABLE a (x String DEFAULT ';');\n\n-- note\nDROP TABLE b;\n-- trailing comment\n"
    assert split_statements(sql) == ["-- header\nCREATE TABLE a (x String DEFAULT ';')", "-- note\nDROP TABLE b"]


def _reader_statements() -> list[str]:
    """Every SELECT literal of queries.py, except those it runs through ``execute`` (the
    sink's own path) and parts of f-strings (row_count checks its table first): the
    platform's readers (demo, monitor, CLI) go through the analyst path, so each must pass
    the guard."""
    tree = ast.parse(Path(queries.__file__).read_text())
    executed = {
        id(argument)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "execute"
        for argument in node.args
    } | {id(part) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for part in node.values}
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value.lstrip().upper().startswith(("SELECT", "WITH"))
        and id(node) not in executed
    ]


def test_the_platforms_own_read_queries_pass_the_guard() -> None:
    statements = _reader_statements()
    assert len(statements) >= 10
    for sql in statements:
        ensure_read_only(sql)
