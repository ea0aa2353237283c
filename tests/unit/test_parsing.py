"""Parsing of each supported content type, titles, empty documents, parser safety (no file
reads, no raw markup or scripts in the text) and real pages from the large corpus."""

import unicodedata
from pathlib import Path

import pytest

from ragops_ingestion.parsing import CONTENT_TYPES, DocumentParseError, ParsedDocument, parse
from ragops_schemas.events import content_type_for


def test_content_types() -> None:
    assert {"text/plain", "text/markdown", "text/html", "text/x-rst"} == CONTENT_TYPES


# --- plain text ---------------------------------------------------------------------------


def test_plain_text_normalises_whitespace_and_unicode() -> None:
    content = "  First  paragraph,\r\nsecond\tline. \r\n\r\n\r\n\nCafe\u0301\x00 au lait.\x0c\n"
    parsed = parse(content, "text/plain")
    assert parsed == ParsedDocument(text="First paragraph,\nsecond line.\n\nCafé au lait.", title=None)
    assert unicodedata.is_normalized("NFC", parsed.text)


def test_content_type_parameters_and_case_are_ignored() -> None:
    assert parse("hello", "Text/Plain; charset=utf-8").text == "hello"


def test_unsupported_content_type_is_rejected() -> None:
    with pytest.raises(DocumentParseError, match="unsupported content type 'application/pdf'"):
        parse("%PDF-1.7", "application/pdf")


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        ("", "text/plain"),
        (" \n\t\r\n ", "text/plain"),
        ("<html><head><title>Only a title</title><script>var x = 1;</script></head><body> </body></html>", "text/html"),
        ("<!-- just a comment -->", "text/html"),
        ("<div>\n<script>alert(1)</script>\n</div>\n", "text/markdown"),
        (".. a comment\n\n.. |sub| replace:: text\n", "text/x-rst"),
    ],
)
def test_empty_after_parsing_raises(content: str, content_type: str) -> None:
    with pytest.raises(DocumentParseError, match=f"document is empty after parsing \\({content_type}\\)"):
        parse(content, content_type)


def test_deeply_nested_html_raises_parse_error() -> None:
    with pytest.raises(DocumentParseError, match="nested too deeply"):
        parse("<div>" * 2_000 + "x", "text/html")


def test_deeply_nested_rst_raises_parse_error() -> None:
    content = "".join("  " * depth + "- item\n\n" for depth in range(400))
    with pytest.raises(DocumentParseError, match="could not be parsed"):
        parse(content, "text/x-rst")


# --- Markdown -----------------------------------------------------------------------------


def test_markdown_text_title_code_and_tables() -> None:
    content = """# The *Title*

Some **bold** text with `code` and a [link](https://example.com),
wrapped on two lines. ![a chart](chart.png)

- item one
- item two

```python
def f():
    return 1
```

| name | value |
| ---- | ----- |
| a    | 1     |

## Second heading
"""
    parsed = parse(content, "text/markdown")
    assert parsed.title == "The Title"
    assert parsed.text == (
        "The Title\n\n"
        "Some bold text with code and a link, wrapped on two lines. a chart\n\n"
        "item one\n\nitem two\n\n"
        "def f():\n    return 1\n\n"
        "name | value\n\na | 1\n\n"
        "Second heading"
    )


def test_markdown_without_heading_has_no_title() -> None:
    assert parse("just text", "text/markdown").title is None


def test_markdown_strips_raw_html() -> None:
    content = (
        'Before <span onclick="steal()">inline</span> after.\n\n'
        '<script>alert("x")</script>\n\n<div class="a">\nhidden block\n</div>\n'
    )
    parsed = parse(content, "text/markdown")
    assert parsed.text == "Before inline after."


# --- HTML ---------------------------------------------------------------------------------


def test_html_text_title_and_structure() -> None:
    content = """<!DOCTYPE html>
<html><head><title> Page   title </title><style>p { color: red }</style></head>
<body>
<nav><a href="/">Home</a></nav>
<div class="navheader">Prev Up Next</div>
<h1>Heading</h1>
<p>First <b>bold</b>
paragraph.<br>After a break.</p>
<!-- a comment -->
<ul><li>one</li><li>two &amp; three</li></ul>
<pre>  indented
    code  </pre>
<table><tr><th>k</th><th>v</th></tr><tr><td>a</td><td><p>1</p></td></tr></table>
<noscript>Enable JavaScript</noscript><template><p>inert</p></template>
<script>document.write("injected")</script>
</body></html>"""
    parsed = parse(content, "text/html")
    assert parsed.title == "Page title"
    assert parsed.text == (
        "Heading\n\nFirst bold paragraph.\n\nAfter a break.\n\none\n\ntwo & three\n\n"
        "  indented\n    code\n\nk | v\n\na | 1"
    )


def test_html_title_falls_back_to_h1() -> None:
    parsed = parse("<body><h1>The <em>heading</em></h1><p>text</p></body>", "text/html")
    assert parsed.title == "The heading"
    assert parse("<p>text</p>", "text/html").title is None


def test_html_scripts_are_dropped_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    content = (
        f"<p>safe</p><script>require('fs').writeFileSync({str(marker)!r}, 'x')</script>"
        "<img src=x onerror=alert(1)><style>@import url(evil.css);</style>"
    )
    assert parse(content, "text/html").text == "safe"
    assert not marker.exists()


def test_malformed_html_is_recovered() -> None:
    parsed = parse("<div><p>unclosed <b>bold<div>next</span></p>", "text/html")
    assert parsed.text == "unclosed bold\n\nnext"


# --- reStructuredText ---------------------------------------------------------------------


def test_rst_text_title_and_structure() -> None:
    content = """=========
The Title
=========

A paragraph with *emphasis*, ``literal`` and a `link <https://example.com>`_
wrapped on two lines.

Section
=======

* item one
* item two

::

    def f():
        return 1

term
    definition

=====  =====
key    value
=====  =====
a      1
=====  =====

.. note:: A note.

.. This is a comment.
"""
    parsed = parse(content, "text/x-rst")
    assert parsed.title == "The Title"
    assert parsed.text == (
        "The Title\n\n"
        "A paragraph with emphasis, literal and a link wrapped on two lines.\n\n"
        "Section\n\nitem one\n\nitem two\n\n"
        "def f():\n    return 1\n\n"
        "term\n\ndefinition\n\n"
        "key | value\n\na | 1\n\n"
        "A note."
    )


def test_rst_without_section_has_no_title() -> None:
    assert parse("Just a paragraph.", "text/x-rst").title is None


def test_rst_include_never_reads_files(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    content = (
        f"Intro.\n\n.. include:: {secret}\n\n.. include:: /etc/passwd\n\n"
        f".. literalinclude:: {secret}\n\n.. csv-table:: T\n   :file: {secret}\n\nOutro.\n"
    )
    parsed = parse(content, "text/x-rst")
    assert parsed.text == "Intro.\n\nOutro."


def test_rst_include_only_document_is_empty_and_says_why() -> None:
    with pytest.raises(DocumentParseError, match='"include" directive disabled'):
        parse(".. include:: /etc/passwd\n", "text/x-rst")


def test_rst_raw_is_never_emitted() -> None:
    content = """Text.

.. raw:: html

   <script>alert("raw directive")</script>

.. role:: html(raw)
   :format: html

Inline :html:`<script>alert("raw role")</script>` end.
"""
    assert parse(content, "text/x-rst").text == "Text.\n\nInline end."


def test_rst_errors_are_not_written_to_stderr_and_do_not_abort(capsys: pytest.CaptureFixture[str]) -> None:
    content = (
        "Title\n=====\n\nBroken *emphasis and `interpreted.\n\n.. unknown-directive:: x\n\n   body\n\n"
        "Sub\n---\n\nText.\n\nSub2\n===\n"
    )
    parsed = parse(content, "text/x-rst")
    assert "Text." in parsed.text
    assert parsed.title == "Title"
    assert capsys.readouterr() == ("", "")


def test_rst_sphinx_roles_and_directives_keep_their_text() -> None:
    content = """:mod:`asyncio` --- Asynchronous I/O
===================================

.. currentmodule:: asyncio

.. index:: single: event loop

Use :func:`asyncio.run`, :meth:`~loop.run_until_complete`,
:ref:`the guide <asyncio-dev>` and :unknownrole:`kept text`.

.. function:: run(coro, *, debug=None)
   :noindex:

   Execute the coroutine *coro*.

   .. versionadded:: 3.7

   .. versionchanged:: 3.12
      Added *debug*.

.. code-block:: python

   asyncio.run(main())

.. doctest::

   >>> 1 + 1
   2

.. toctree::
   :maxdepth: 1

   asyncio-task.rst
"""
    parsed = parse(content, "text/x-rst")
    assert parsed.title == "asyncio --- Asynchronous I/O"
    assert parsed.text == (
        "asyncio --- Asynchronous I/O\n\n"
        "Use asyncio.run, run_until_complete, the guide and kept text.\n\n"
        "run(coro, *, debug=None)\n\n"
        "Execute the coroutine coro.\n\n"
        "New in version 3.7\n\n"
        "Changed in version 3.12 Added debug.\n\n"
        "asyncio.run(main())\n\n"
        ">>> 1 + 1\n2"
    )


# --- real pages ---------------------------------------------------------------------------


def test_real_python_docs_page(data_dir: Path) -> None:
    path = data_dir / "corpus-large" / "python-3.11-docs-rst/library/asyncio-task.rst.txt"
    parsed = parse(path.read_text(encoding="utf-8"), content_type_for(path))
    assert parsed.title == "Coroutines and Tasks"
    assert parsed.text.startswith("Coroutines and Tasks\n\nThis section outlines high-level asyncio APIs")
    # A Sphinx function directive keeps its signature and body; roles keep their text.
    assert "create_task(coro, *, name=None, context=None)\n\nWrap the coro coroutine into a Task" in parsed.text
    assert ":func:" not in parsed.text and ".. versionadded" not in parsed.text


def test_real_postgresql_page(data_dir: Path) -> None:
    path = data_dir / "corpus-large" / "postgresql-15-docs-html/sql-select.html"
    parsed = parse(path.read_text(encoding="utf-8"), content_type_for(path))
    assert parsed.title == "SELECT"
    assert parsed.text.startswith("SELECT\n\nSELECT, TABLE, WITH — retrieve rows from a table or view\n\nSynopsis")
    assert "[ WITH [ RECURSIVE ] with_query [, ...] ]\nSELECT [ ALL | DISTINCT" in parsed.text
    # DocBook's navigation header and footer are not content.
    assert "Prev" not in parsed.text.split("\n\n")[0:3]


# --- sections -----------------------------------------------------------------------------

SECTIONED = {
    "text/markdown": "# Guide\n\nIntro text.\n\n## Install\n\nRun pip.\n\nSetext\n------\n\nMore text.\n",
    "text/html": "<html><body><h1>Guide</h1><p>Intro text.</p><h2>Install <em>it</em></h2><p>Run pip.</p>"
    '<section><h3 class="x">Setext</h3><div><p>More text.</p></div></section></body></html>',
    "text/x-rst": "Guide\n=====\n\nIntro text.\n\n.. note:: A note title is no section.\n\n"
    "Install\n-------\n\nRun pip.\n\nSetext\n~~~~~~\n\nMore text.\n",
}


@pytest.mark.parametrize("content_type", sorted(SECTIONED))
def test_each_paragraph_falls_under_its_nearest_heading(content_type: str) -> None:
    parsed = parse(SECTIONED[content_type], content_type)

    def section(words: str) -> str | None:
        return parsed.section_at(parsed.text.index(words))

    assert section("Intro text.") == "Guide"
    assert section("Run pip.").startswith("Install")
    assert section("More text.") == "Setext"
    assert [heading for _, heading in parsed.headings] == [
        "Guide",
        "Install it" if "html" in content_type else "Install",
        "Setext",
    ]
    # A heading's own paragraph is under itself; text before the first heading under none.
    assert parsed.section_at(parsed.headings[1][0]) == parsed.headings[1][1]
    assert parse("Before.\n\n# Later\n\nAfter.", "text/markdown").section_at(0) is None


def test_plain_text_has_no_sections() -> None:
    assert parse("INSTALL\n\nRun pip.", "text/plain").headings == ()
