"""The analyst path's statement check, and the splitting of SQL files into statements.

:func:`ensure_read_only` accepts one read-only statement and nothing else; the engines also
run analyst statements with ClickHouse's ``readonly=1``. ``readonly=1`` rather than ``2``:
level 2 still allows table functions such as ``file()`` and ``url()``, which would let an
analyst read the host's files or reach its network. Nothing here talks to an engine.
"""

import re
from collections.abc import Iterator

__all__ = ["ReadOnlyViolation", "ensure_read_only", "split_statements"]


class ReadOnlyViolation(ValueError):
    """The analyst path was given something other than one read-only statement."""


_READ_KEYWORDS = frozenset({"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "EXISTS"})
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _tokens(sql: str) -> Iterator[tuple[str, int, int]]:
    """Yield ``(kind, start, end)`` for the significant tokens of ``sql``: ``word``, ``;``,
    ``quoted`` (a string literal or quoted identifier) or ``other`` (one character),
    skipping whitespace and comments. Raises :class:`ReadOnlyViolation` on an unterminated
    string or comment and on ``$``, which may open a heredoc string (``$tag$...$tag$``)
    whose end this scanner would have to guess: an analyst never needs one."""
    i, n = 0, len(sql)
    while i < n:
        char = sql[i]
        if char.isspace():
            i += 1
        elif sql.startswith("--", i) or char == "#":
            end = sql.find("\n", i)
            i = n if end < 0 else end + 1
        elif sql.startswith("/*", i):
            # Closed by the first "*/" even if ClickHouse nests comments: hiding less text
            # than the engine hides can only make this check refuse, never miss, a statement.
            end = sql.find("*/", i + 2)
            if end < 0:
                raise ReadOnlyViolation("unterminated /* comment")
            i = end + 2
        elif char in "'\"`":
            start, i = i, i + 1
            while True:
                if i >= n:
                    raise ReadOnlyViolation(f"unterminated {char}-quoted text")
                if sql[i] == "\\":
                    i += 2
                elif sql[i] == char:
                    if i + 1 < n and sql[i + 1] == char:  # doubled quote = one literal quote
                        i += 2
                    else:
                        i += 1
                        break
                else:
                    i += 1
            yield "quoted", start, i
        elif char == "$":
            raise ReadOnlyViolation("'$' (heredoc strings) is not accepted in analyst SQL")
        elif match := _WORD.match(sql, i):
            yield "word", i, match.end()
            i = match.end()
        else:
            yield (";" if char == ";" else "other"), i, i + 1
            i += 1


def ensure_read_only(sql: str) -> str:
    """Return ``sql`` as one read-only statement, stripped of surrounding whitespace,
    comments and a trailing ``;``.

    Accepts a single statement whose first keyword (after opening parentheses) is SELECT,
    WITH, SHOW, DESCRIBE, DESC, EXPLAIN or EXISTS. Strings, quoted identifiers and
    comments are skipped while scanning, so ``SELECT ';'`` is one statement and
    ``SELECT 1; DROP TABLE events`` is two. ``INTO OUTFILE`` is refused because the
    client writes that file, and with chDB the client is this process. The engine's
    ``readonly`` setting backs this check up; it is not a substitute, since chDB runs
    several ``;``-separated statements in one call.

    Raises:
        ReadOnlyViolation: empty input, several statements, a write or DDL statement,
            ``INTO OUTFILE``, ``$``, or unterminated quotes/comments.
    """
    first: str | None = None
    start: int | None = None
    last_end = 0
    terminated = False
    for kind, token_start, token_end in _tokens(sql):
        text = sql[token_start:token_end]
        if kind == ";":
            if first is None:
                raise ReadOnlyViolation("empty statement before ';'")
            terminated = True  # trailing semicolons are fine...
            continue
        if terminated:  # ...anything significant after one is a second statement
            raise ReadOnlyViolation("only one statement is accepted")
        if start is None:
            start = token_start
        if first is None:
            if kind == "word":
                first = text.upper()
                if first not in _READ_KEYWORDS:
                    raise ReadOnlyViolation(
                        f"{first} is not a read-only statement (use SELECT, WITH, SHOW, DESCRIBE, EXPLAIN, EXISTS)"
                    )
            elif text != "(":
                raise ReadOnlyViolation("a statement must start with a keyword")
        if kind == "word" and text.upper() == "OUTFILE":
            raise ReadOnlyViolation("INTO OUTFILE writes a file and is refused")
        last_end = token_end
    if first is None or start is None:
        raise ReadOnlyViolation("no statement given")
    return sql[start:last_end]


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
