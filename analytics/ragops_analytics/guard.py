"""The analyst path's statement check (an allow-list), and the splitting of SQL files into statements.

:func:`ensure_read_only` parses the analyst's text with sqlglot's ClickHouse dialect and
accepts only what the platform means by "read-only": one ``SELECT`` (``WITH`` and ``UNION``
of selects included) that reads the platform's own tables and views
(:data:`ragops_analytics.queries.ANALYST_TABLES`) and calls only functions of the engine's
pure categories (``sql_functions.tsv``), or ``DESCRIBE [TABLE] <one of those tables>``. What
it returns is regenerated from the checked syntax tree, without comments, so the engine runs
exactly what was checked: text that the parser and ClickHouse would read differently (nested
comments, heredocs, full-width letters) cannot smuggle anything past it. The engines back it
up with ``readonly=1`` and the limits of :class:`~ragops_analytics.store.QueryLimits`. Nothing
here talks to an engine.

Why each rule (the security review of issue 13 read host files with ``file()``, made HTTP
requests with ``DESCRIBE url(...)`` and stalled the sink with ``system.numbers``):

- tables by name only, no database qualifier: every table function (``file``, ``url``,
  ``remote``, ``s3``, ``executable``, ``input``, ``numbers``, ...) and every other database
  (``system`` included: no system table is allowed) is refused;
- functions by allow-list, not deny-list: ClickHouse has ~1,900 functions and adds more each
  release (``aiGenerate`` makes HTTP calls); a name is accepted only if it is in the list
  generated from the engine's ``system.functions`` categories that compute on their
  arguments alone (see ``sql_functions.tsv``), or an aggregate of that list with combinator
  suffixes (``countIf``, ``groupArrayArray``). ``file``, ``sleep``, ``dictGet``, ``joinGet``,
  ``getSetting``, ``hostName``, ``catboostEvaluate`` are all outside it;
- no ``SETTINGS`` (the engine's limits must hold), ``FORMAT``, ``INTO`` (``INTO OUTFILE``
  would write with this process's rights; ``INTO TABLE`` is a write), no ``IN <table>``
  shorthand, one statement. The function forms of ``IN`` (``in``, ``globalIn``, ``notNullIn``,
  ...) are outside the allow-list for the same reason: their second argument may be a bare
  table name, which the parser reads as a column, so no rule on tables would see it;
- ``{name:Type}`` placeholders only as values: ClickHouse substitutes a ``{name:Identifier}``
  placeholder as a name (``x IN {t:Identifier}`` reads table ``t``, chosen by a parameter the
  guard never sees), so that type is refused, and so is any placeholder where a table, alias
  or column name goes;
- a common table expression may not take a platform table's name (it would hide a real
  reference, in another scope, from the rules on tables);
- ``audit_log`` only for a caller that may read the audit log (``audit=True``: auditors and
  platform services, decided by the sink from the caller's roles).

The input is NFKC-normalised first (full-width ``ｆｉｌｅ`` becomes ``file``, and is then
refused like it); string literals are normalised too.

For a tenant's caller (``tenant=`` given) the checked statement is then restricted to the
tenant's rows on the syntax tree: every reference to a platform table, wherever it is (``FROM``,
joins, subqueries, ``IN (SELECT ...)``, common table expressions, ``UNION`` branches), becomes
``(SELECT * FROM <table> AS __ragops_rows WHERE __ragops_rows.tenant = '<tenant>') AS <alias>``
(the table's alias, or its name, so the rest of the query reads it as before; ``FINAL`` stays
on the table). Only :data:`~ragops_analytics.queries.TENANT_TABLES` may be read so (the views
and ``model_prices`` have no tenant column), and no identifier may start
with ``__ragops`` (a ``WITH 'x' AS tenant`` alias is visible in subqueries in ClickHouse, and
without the new analyzer it may take a column's place: the filter names its column qualified
by an alias the caller cannot write).
"""

import re
import unicodedata
from functools import cache
from importlib import resources

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from ragops_analytics.queries import ANALYST_TABLES, AUDIT_LOG, TENANT_COLUMN, TENANT_TABLES
from ragops_shared.identity import TENANT_PATTERN

__all__ = ["ReadOnlyViolation", "allowed_function", "ensure_read_only", "split_statements"]


class ReadOnlyViolation(ValueError):
    """The analyst path was given something other than one allowed read-only statement; the
    message says what was refused."""


_DIALECT = "clickhouse"
# Aggregate combinators (ClickHouse "Aggregate Function Combinators"): a suffix on an allowed
# aggregate changes how it aggregates, never what it can reach.
_COMBINATORS = (
    "If",
    "Array",
    "Map",
    "SimpleState",
    "State",
    "MergeState",
    "Merge",
    "ForEach",
    "Distinct",
    "OrDefault",
    "OrNull",
    "Resample",
    "ArgMin",
    "ArgMax",
)
# Select clauses an analyst may use; anything else the parser knows (settings, format, into,
# locks, ...) is refused by name.
_SELECT_CLAUSES = frozenset(
    {
        "expressions",
        "distinct",
        "from_",
        "joins",
        "where",
        "prewhere",
        "group",
        "having",
        "qualify",
        "windows",
        "order",
        "limit",
        "limit_by",
        "offset",
        "with_",
        "sample",
        "kind",
    }
)
# Function nodes that the generator prints as syntax rather than ``name(...)``: operators
# (AND, =, NOT, unary minus, ...) and CASE.
_SYNTAX_FUNCTIONS = (exp.Binary, exp.Connector, exp.Unary, exp.Case, exp.If, exp.Array)
_CALL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\(")
_DESCRIBE = re.compile(r"(?i)\s*(?:DESCRIBE|DESC)\s+(?:TABLE\s+)?(`?)([A-Za-z_][A-Za-z0-9_]*)\1\s*;?\s*")


@cache
def _functions() -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    """(names, lower-cased case-insensitive names, aggregate names) of sql_functions.tsv."""
    names: set[str] = set()
    insensitive: set[str] = set()
    aggregates: set[str] = set()
    text = resources.files(__package__).joinpath("sql_functions.tsv").read_text(encoding="utf-8")
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, flags = line.split("\t")
        names.add(name)
        if "i" in flags:
            insensitive.add(name.lower())
        if "a" in flags:
            aggregates.add(name)
    return frozenset(names), frozenset(insensitive), frozenset(aggregates)


def allowed_function(name: str) -> bool:
    """Whether an analyst may call function ``name`` (ClickHouse spelling; case matters
    except for the engine's case-insensitive names)."""
    names, insensitive, aggregates = _functions()
    if name in names or name.lower() in insensitive:
        return True
    # An aggregate with combinators, stripped from the end: quantilesIfOrNull -> quantiles.
    base = name
    while stripped := next((base[: -len(s)] for s in _COMBINATORS if base.endswith(s) and len(base) > len(s)), ""):
        base = stripped
        if base in aggregates:
            return True
    return False


def _check_function(node: exp.Func) -> None:
    if isinstance(node, exp.Anonymous):
        # A function sqlglot does not know: the engine resolves the name as written
        # (quoted or not), so that is the name checked.
        name = node.name
    else:
        printed = node.sql(dialect=_DIALECT, comments=False)
        call = _CALL.match(printed)
        if call is None:
            if isinstance(node, _SYNTAX_FUNCTIONS):
                return  # printed as an operator or CASE, the engine's own syntax
            raise ReadOnlyViolation(f"this expression is not accepted in analyst SQL: {printed[:60]}")
        name = call.group(1)
    if not allowed_function(name):
        raise ReadOnlyViolation(f"function {name}() is not allowed in analyst SQL")


def _check_readable(name: str, audit: bool) -> None:
    if name not in ANALYST_TABLES:
        raise ReadOnlyViolation(f"{name} is not one of the platform's tables or views")
    if name == AUDIT_LOG and not audit:
        raise ReadOnlyViolation(f"{name} is readable by auditors only")


def _check_table(node: exp.Table, ctes: set[str], audit: bool) -> None:
    if not isinstance(node.this, exp.Identifier):
        name = node.this.sql(dialect=_DIALECT, comments=False)[:60]
        raise ReadOnlyViolation(f"table functions are not allowed in analyst SQL: {name}")
    if node.args.get("db") or node.args.get("catalog"):
        raise ReadOnlyViolation(f"only the platform's own tables may be read, not {node.sql(dialect=_DIALECT)}")
    if node.name not in ctes:
        _check_readable(node.name, audit)


# Where a placeholder would stand for a name rather than a value.
_NAME_PLACES = (exp.Table, exp.TableAlias, exp.Column, exp.Dot, exp.CTE)


def _check_placeholder(node: exp.Placeholder) -> None:
    # sqlglot keeps a {name:Type} placeholder's type as a DataType, except Identifier (in
    # any letter case, as ClickHouse reads it), which stays a bare name.
    if not isinstance(node.args.get("kind"), exp.DataType):
        raise ReadOnlyViolation(
            f"placeholder {node.sql(dialect=_DIALECT)} is not allowed: analyst SQL takes parameters as values only"
        )
    if isinstance(node.parent, _NAME_PLACES) or node.arg_key == "alias":
        raise ReadOnlyViolation(f"placeholder {node.sql(dialect=_DIALECT)} may not stand for a name")


def _check_select(statement: exp.Expression, audit: bool) -> None:
    ctes = {cte.alias_or_name for cte in statement.find_all(exp.CTE)}
    if shadowing := sorted(ctes & ANALYST_TABLES):
        raise ReadOnlyViolation(f"a common table expression may not be named {shadowing[0]}, a platform table")
    for node in statement.walk():
        if isinstance(node, exp.Select):
            refused = sorted(key for key, value in node.args.items() if value and key not in _SELECT_CLAUSES)
            if refused:
                raise ReadOnlyViolation(f"{refused[0].rstrip('_').upper()} is not allowed in analyst SQL")
        elif isinstance(node, (exp.Union, exp.Intersect, exp.Except, exp.Subquery, exp.CTE, exp.With)):
            # Clauses on a set operation or subquery (SETTINGS, FORMAT, INTO) are refused as on a select.
            for key in ("settings", "format", "into", "options"):
                if node.args.get(key):
                    raise ReadOnlyViolation(f"{key.upper()} is not allowed in analyst SQL")
        elif isinstance(node, (exp.DML, exp.DDL, exp.Command, exp.Into, exp.Values, exp.Set)):
            raise ReadOnlyViolation(f"{node.key.upper()} is not allowed in analyst SQL")
        elif isinstance(node, exp.Table):
            _check_table(node, ctes, audit)
        elif isinstance(node, exp.Placeholder):
            _check_placeholder(node)
        elif isinstance(node, exp.In) and isinstance(node.args.get("field"), (exp.Column, exp.Table)):
            raise ReadOnlyViolation("IN <table> is not allowed in analyst SQL: use IN (SELECT ...)")
        elif isinstance(node, exp.Func):
            _check_function(node)


def ensure_read_only(sql: str, tenant: str | None = None, *, audit: bool = False) -> str:
    """The statement to send to the engine for the analyst's ``sql``: one allowed read-only
    statement, regenerated from its syntax tree (no comments, no trailing ``;``); for a
    ``tenant`` (``None``: a platform caller, every row), restricted to that tenant's rows
    (see the module's docstring). ``audit``: whether the caller may read ``audit_log``
    (auditors and platform services).

    Accepts ``SELECT`` (with ``WITH``, subqueries, joins, ``UNION``/``INTERSECT``/``EXCEPT``,
    ``{name:Type}`` placeholders as values) over :data:`~ragops_analytics.queries.ANALYST_TABLES`
    (less ``audit_log`` without ``audit``) and common table expressions, calling only allowed
    functions (:func:`allowed_function`), and ``DESCRIBE [TABLE] <analyst table>``.

    Raises:
        ReadOnlyViolation: empty input, a syntax error, several statements, anything but the
            above (writes, DDL, SHOW, EXPLAIN, SET, SETTINGS, FORMAT, INTO, table functions,
            functions outside the allow-list, ``Identifier`` placeholders or placeholders for
            names, other databases or tables, ``audit_log`` without ``audit``, a common table
            expression named like a platform table), and for a tenant a table without a
            tenant column or a name the restriction reserves.
        ValueError: ``tenant`` is not a valid tenant name.
    """
    if tenant is not None and not re.match(TENANT_PATTERN, tenant):
        raise ValueError(f"invalid tenant {tenant!r}")
    text = unicodedata.normalize("NFKC", sql)
    if describe := _DESCRIBE.fullmatch(text):
        table = describe.group(2)
        _check_readable(table, audit)
        if tenant is not None:
            _check_tenant_table(table)
        return f"DESCRIBE TABLE {table}"
    try:
        parsed = sqlglot.parse(text, dialect=_DIALECT)
        # A comment after the last ";" parses as an empty Semicolon statement.
        statements = [s for s in parsed if s is not None and not isinstance(s, exp.Semicolon)]
    except SqlglotError as error:
        raise ReadOnlyViolation(f"not a statement analyst SQL accepts: {str(error).splitlines()[0]}") from None
    if not statements:
        raise ReadOnlyViolation("no statement given")
    if len(statements) > 1:
        raise ReadOnlyViolation("only one statement is accepted")
    [statement] = statements
    if not isinstance(statement, (exp.Select, exp.Union, exp.Intersect, exp.Except)):
        raise ReadOnlyViolation(
            f"{statement.key.upper()} is not accepted: analyst SQL is SELECT (or WITH ... SELECT) and DESCRIBE"
        )
    _check_select(statement, audit)
    if tenant is not None:
        statement = _restrict_to_tenant(statement, tenant)
    return statement.sql(dialect=_DIALECT, comments=False)


_ROWS_ALIAS = "__ragops_rows"


def _check_tenant_table(name: str) -> None:
    if name not in TENANT_TABLES:
        raise ReadOnlyViolation(f"{name} has no tenant column: only platform callers may read it")


def _restrict_to_tenant(statement: exp.Expression, tenant: str) -> exp.Expression:
    """``statement`` (already checked) with every platform table reference replaced by a
    subquery of the tenant's rows under the reference's alias. Raises :class:`ReadOnlyViolation`."""
    for identifier in statement.find_all(exp.Identifier):
        if identifier.name.lower().startswith("__ragops"):
            raise ReadOnlyViolation(f"the name {identifier.name} is reserved")
    ctes = {cte.alias_or_name for cte in statement.find_all(exp.CTE)}
    statement = statement.copy()
    for table in list(statement.find_all(exp.Table)):
        if table.name in ctes:
            continue
        _check_tenant_table(table.name)
        alias = table.args.get("alias") or exp.TableAlias(this=exp.to_identifier(table.name))
        inner = exp.Table(this=table.this.copy(), alias=exp.TableAlias(this=exp.to_identifier(_ROWS_ALIAS)))
        # FINAL wraps the table in the tree: it goes inside, with the table.
        target = table.parent if isinstance(table.parent, exp.Final) else table
        source = exp.Final(this=inner) if target is not table else inner
        rows = (
            exp.select("*")
            .from_(source)
            .where(exp.column(TENANT_COLUMN, table=_ROWS_ALIAS).eq(exp.Literal.string(tenant)))
        )
        target.replace(exp.Subquery(this=rows, alias=alias.copy()))
    return statement


# ------------------------------------------------------------------------ SQL files

# A statement ends with ";" at the end of a line, so ";" inside strings or on the same
# line as more SQL never splits (the migrations are ours, so this rule is enough).
_STATEMENT_END = re.compile(r";[ \t]*(?:\r?\n|\Z)")
_COMMENT_LINE = re.compile(r"^\s*(--.*)?$")


def split_statements(sql: str) -> list[str]:
    """Split a migration file into statements at ``;`` ending a line; chunks holding only
    blank lines and ``--`` comments are dropped."""
    chunks = (chunk.strip() for chunk in _STATEMENT_END.split(sql))
    return [chunk for chunk in chunks if not all(_COMMENT_LINE.match(line) for line in chunk.splitlines())]
