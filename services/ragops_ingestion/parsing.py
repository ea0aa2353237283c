"""Turn a submitted document (plain text, Markdown, HTML or reStructuredText) into clean
plain text plus a title.

Documents come from outside the platform, so every parser is configured never to touch
the ingestion host: reST ``include``/``raw`` (and Sphinx ``literalinclude``) never read
files or emit raw markup, docutils reads no configuration files and writes nothing to
stderr, HTML is only tokenised (scripts are dropped, never run), and raw HTML inside
Markdown is dropped. Text a browser would not show (HTML ``hidden``, ``aria-hidden="true"``,
inline ``display: none`` or ``visibility: hidden``) is dropped too: it is a channel for
instructions planted for the model, which the reader of the page never sees.

Output text: normalised by :func:`ragops_shared.text.normalise` (NFKC, no format characters
such as zero-width spaces, soft hyphens or a byte order mark), the one normalisation that
queries get too; no control characters, one block (paragraph, heading, list item,
table row, code block) per paragraph, paragraphs separated by one blank line. Prose
blocks have their whitespace collapsed to single spaces; code blocks keep their lines and
indentation (trailing spaces removed). Headings (Markdown ATX and setext headings, HTML
``<h1>``-``<h6>``, reST section titles) are paragraphs of the text too, and their offsets
are kept (:meth:`ParsedDocument.section_at`), so each chunk can name the section it is in.
"""

import bisect
import io
import re
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, cast

from bs4 import BeautifulSoup, Comment, Declaration, Doctype, ParserRejectedMarkup, ProcessingInstruction, Tag
from docutils import nodes, utils as docutils_utils
from docutils.frontend import get_default_settings
from docutils.parsers.rst import Directive, Parser, directives, roles, states
from markdown_it import MarkdownIt
from markdown_it.token import Token

from ragops_schemas.events import MAX_TITLE_CHARS
from ragops_shared.text import normalise


class DocumentParseError(ValueError):
    """A document cannot be turned into text; the message says why (unsupported content
    type, markup the parser rejects, nothing left after parsing)."""


@dataclass(frozen=True)
class ParsedDocument:
    """A parsed document.

    Attributes:
        text: clean plain text (see the module docstring), never empty.
        title: the HTML ``<title>`` (else the first ``<h1>``), the first Markdown heading or
            the first reST section title, whitespace collapsed, cut to ``MAX_TITLE_CHARS``
            (1024) characters; None when there is none.
        headings: ``(offset, heading)`` of each heading of ``text``, in text order: the
            character offset in ``text`` where the heading's paragraph starts and its text,
            whitespace collapsed, cut to ``MAX_TITLE_CHARS`` characters. Empty for plain text.
    """

    text: str
    title: str | None
    headings: tuple[tuple[int, str], ...] = ()

    def section_at(self, offset: int) -> str | None:
        """The nearest heading that starts at or before character ``offset`` of ``text``: the
        section a chunk beginning there falls under (None before the first heading)."""
        at = bisect.bisect_right(self.headings, offset, key=lambda heading: heading[0])
        return self.headings[at - 1][1] if at else None


def parse(content: str, content_type: str) -> ParsedDocument:
    """Parse ``content`` of ``content_type`` (one of :data:`CONTENT_TYPES`; parameters such as
    ``; charset=utf-8`` and letter case are ignored) into clean text and a title.

    Markup errors the parser can recover from (an unknown reST role, unbalanced HTML tags)
    do not fail the document: the text around them is kept.

    Raises:
        DocumentParseError: unsupported content type; markup the parser gives up on; the
            document has no text once markup, scripts and comments are removed, or its
            text has no letter or digit (punctuation, symbols or invisible characters only):
            either way the message says it is empty.
    """
    media_type = content_type.split(";", 1)[0].strip().lower()
    extractor = _EXTRACTORS.get(media_type)
    if extractor is None:
        raise DocumentParseError(
            f"unsupported content type {content_type!r}; supported: {', '.join(sorted(CONTENT_TYPES))}"
        )
    try:
        blocks, title, problems = extractor(_clean_characters(content))
    except RecursionError as exc:
        # Parsers and tree walks recurse once per nesting level (thousands of nested <div>s).
        raise DocumentParseError(f"markup nested too deeply to parse ({media_type})") from exc
    paragraphs = [(text, block.heading) for block in blocks if (text := block.normalised())]
    text = "\n\n".join(paragraph for paragraph, _ in paragraphs)
    if not text:
        detail = f": {'; '.join(problems[:3])}" if problems else ""
        raise DocumentParseError(f"document is empty after parsing ({media_type}){detail}")
    if not any(character.isalnum() for character in text):
        # A chunk of "!!! ---" matches nothing a reader asks and only dilutes search.
        raise DocumentParseError(
            f"document is empty after parsing ({media_type}): no letter or digit, only punctuation or symbols"
        )
    title = " ".join(_clean_characters(title).split()) if title else ""
    headings, offset = [], 0
    for paragraph, heading in paragraphs:
        if heading:
            headings.append((offset, " ".join(paragraph.split())[:MAX_TITLE_CHARS]))
        offset += len(paragraph) + 2  # the blank line between paragraphs
    # A heading can be a whole paragraph; the events that carry the title bound it.
    return ParsedDocument(text=text, title=title[:MAX_TITLE_CHARS] or None, headings=tuple(headings))


# --- shared text clean-up ---------------------------------------------------------------

# C0/C1 control characters other than tab and newline: invisible, and they confuse
# tokenizers and terminals. \r, \v, \f and Unicode line separators become \n before this.
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _clean_characters(text: str) -> str:
    """:func:`~ragops_shared.text.normalise`, every line-break convention as ``\\n``, control
    characters removed."""
    unified = "\n".join(normalise(text).splitlines())
    return _CONTROL_CHARACTERS.sub("", unified)


@dataclass(frozen=True)
class _Block:
    """One paragraph of output; ``keep_lines`` for code and other preformatted text;
    ``heading`` for a section heading."""

    text: str
    keep_lines: bool = False
    heading: bool = False

    def normalised(self) -> str:
        # Entities and parser output can reintroduce decomposed or control characters.
        text = _clean_characters(self.text)
        if not self.keep_lines:
            return " ".join(text.split())
        return "\n".join(line.rstrip() for line in text.split("\n")).strip("\n")


# Each extractor returns (blocks, title, problems); problems are parser messages that
# explain an empty result.
_Extraction = tuple[list[_Block], str | None, list[str]]


# --- plain text -------------------------------------------------------------------------


def _extract_plain(content: str) -> _Extraction:
    # Line breaks inside a plain-text paragraph may be meaningful (lists, addresses): kept;
    # spacing within a line is not.
    blocks = [
        _Block("\n".join(" ".join(line.split()) for line in paragraph.split("\n")), keep_lines=True)
        for paragraph in re.split(r"\n\s*\n", content)
    ]
    return blocks, None, []


# --- Markdown ---------------------------------------------------------------------------

# CommonMark plus GFM tables. HTML recognition stays on so raw HTML becomes html_block /
# html_inline tokens, which are dropped, instead of showing up as literal tag text.
_MARKDOWN = MarkdownIt("commonmark").enable("table")


def _extract_markdown(content: str) -> _Extraction:
    blocks: list[_Block] = []
    title: str | None = None
    row: list[str] | None = None
    in_heading = False
    for token in _MARKDOWN.parse(content):
        if token.type in ("fence", "code_block"):
            blocks.append(_Block(token.content, keep_lines=True))
        elif token.type == "heading_open":
            in_heading = True
        elif token.type == "tr_open":
            row = []
        elif token.type == "tr_close" and row is not None:
            blocks.append(_Block(" | ".join(cell for cell in row if cell)))
            row = None
        elif token.type == "inline":
            text = _markdown_inline_text(token.children or [])
            if row is not None:
                row.append(" ".join(text.split()))
            else:
                blocks.append(_Block(text, heading=in_heading))
            if in_heading and title is None:
                title = text
            in_heading = False
    return blocks, title, []


def _markdown_inline_text(children: list[Token]) -> str:
    parts: list[str] = []
    for child in children:
        if child.type in ("text", "text_special", "code_inline", "image"):
            # An image's content is its alt text.
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" ")
        # html_inline (raw tags) and emphasis/link open/close markers carry no text.
    return "".join(parts)


# --- HTML -------------------------------------------------------------------------------

# Never text: code, styling, fallbacks for scripting, inert templates, document metadata
# (the title is read separately) and site navigation.
_HTML_DROPPED_TAGS = ("script", "style", "noscript", "template", "head", "nav")
# Navigation header/footer class names of DocBook's HTML output (the PostgreSQL manual).
_HTML_NAVIGATION_CLASSES = frozenset({"navheader", "navfooter"})
_HTML_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
_HTML_BLOCK_TAGS = frozenset(
    {
        "address", "article", "aside", "blockquote", "body", "caption", "dd", "details", "div",
        "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4",
        "h5", "h6", "header", "hr", "legend", "li", "main", "ol", "p", "section", "summary",
        "table", "tbody", "tfoot", "thead", "ul",
    }
)  # fmt: skip


# Inline CSS that hides an element (CSS 2.1 and CSS Display 3: "display: none" removes the
# box, "visibility: hidden" or "collapse" leaves it invisible); CSS comments are removed
# first, so "display:/**/none" is caught too.
_CSS_COMMENT = re.compile(r"/\*.*?\*/", re.DOTALL)
_CSS_HIDING = re.compile(r"(?:^|;)\s*(?:display\s*:\s*none|visibility\s*:\s*(?:hidden|collapse))\b", re.IGNORECASE)


def _html_hidden(element: Tag) -> bool:
    """Whether ``element`` and its content are kept from the page's readers: the ``hidden``
    attribute (HTML Living Standard: not rendered), ``aria-hidden="true"`` (WAI-ARIA: removed
    from what screen readers read; planted text pairs it with visual hiding) or hiding inline
    CSS. Style sheets are not evaluated: hiding by a class or an off-screen position is not seen."""
    style = element.get("style")
    return (
        element.has_attr("hidden")
        or str(element.get("aria-hidden", "")).strip().lower() == "true"
        or (isinstance(style, str) and _CSS_HIDING.search(_CSS_COMMENT.sub("", style)) is not None)
    )


def _extract_html(content: str) -> _Extraction:
    try:
        soup = BeautifulSoup(content, "html.parser")
    except ParserRejectedMarkup as exc:
        raise DocumentParseError(f"HTML could not be parsed: {exc}") from exc
    # First: a hidden first <h1> is no title either.
    for element in soup.find_all(_html_hidden):
        element.decompose()
    title_tag = soup.find("title")
    title = title_tag.get_text() if title_tag else None
    if not (title and title.strip()):
        first_h1 = soup.find("h1")
        title = first_h1.get_text(" ") if first_h1 else None
    # Removed before walking so that get_text() on <pre> and table rows cannot see them.
    for element in soup.find_all(_HTML_DROPPED_TAGS):
        element.decompose()
    for element in soup.find_all(class_=lambda names: names in _HTML_NAVIGATION_CLASSES):
        element.decompose()
    for string in soup.find_all(string=lambda s: isinstance(s, (Comment, Declaration, Doctype, ProcessingInstruction))):
        string.extract()
    collector = _HtmlBlocks()
    collector.walk(soup)
    collector.flush()
    return collector.blocks, title, []


class _HtmlBlocks:
    """Collects text blocks from an HTML tree: block-level elements and ``<br>`` end a
    block, ``<pre>`` keeps its lines, a table row becomes ``cell | cell``."""

    def __init__(self) -> None:
        self.blocks: list[_Block] = []
        self._inline: list[str] = []
        self._heading = False

    def flush(self) -> None:
        if self._inline:
            self.blocks.append(_Block("".join(self._inline), heading=self._heading))
            self._inline = []

    def walk(self, element: Tag) -> None:
        for child in element.children:
            if not isinstance(child, Tag):
                self._inline.append(str(child))
            elif child.name == "br":
                self.flush()
            elif child.name == "pre":
                self.flush()
                self.blocks.append(_Block(child.get_text(), keep_lines=True))
            elif child.name == "tr":
                self.flush()
                cells = (" ".join(cell.get_text(" ").split()) for cell in child.find_all(["td", "th"], recursive=False))
                self.blocks.append(_Block(" | ".join(cell for cell in cells if cell)))
            elif child.name in _HTML_BLOCK_TAGS:
                self.flush()
                heading, self._heading = self._heading, self._heading or child.name in _HTML_HEADINGS
                self.walk(child)
                self.flush()
                self._heading = heading
            else:
                self.walk(child)


# --- reStructuredText -------------------------------------------------------------------

_RST_SAFE_SETTINGS: dict[str, Any] = {
    # include, csv-table :file:/:url: and raw :file: would read files from this host.
    "file_insertion_enabled": False,
    # raw passes markup (HTML, JavaScript) straight through.
    "raw_enabled": False,
    # Messages are collected from the reporter instead: nothing goes to stderr ...
    "report_level": docutils_utils.Reporter.SEVERE_LEVEL + 1,
    # ... and no message, however severe, aborts the parse.
    "halt_level": docutils_utils.Reporter.SEVERE_LEVEL + 1,
    # Only the text is wanted; no Pygments tokenising of code blocks.
    "syntax_highlight": "none",
}


_PYTHON_OBJECT_DIRECTIVES = (
    "module", "function", "method", "class", "attribute", "data", "exception", "decorator",
    "decoratormethod", "classmethod", "staticmethod", "abstractmethod", "coroutinefunction",
    "coroutinemethod", "awaitablefunction", "awaitablemethod", "property", "type",
)  # fmt: skip


class _SphinxDirective(Directive):
    """Stands in for the Sphinx directives docutils does not know (``function``,
    ``versionadded``, ``c:member``...), which would otherwise be dropped with their text:
    the arguments become a paragraph (object signatures as plain text; version notes
    after a label such as "New in version", as Sphinx shows them) and the content is parsed
    as reST; code-like directives keep their content as a literal block; index, navigation
    and file-inclusion directives give nothing (and never read a file). Directives in
    neither docutils nor these lists are dropped with their content (a parser warning)."""

    optional_arguments = 1
    final_argument_whitespace = True
    has_content = True

    class _AnyOptions(dict[str, Callable[[str], str]]):
        """Accepts every option (each Sphinx directive has its own), value kept as text."""

        def __missing__(self, name: str) -> Callable[[str], str]:
            return directives.unchanged

        def __bool__(self) -> bool:
            # docutils parses options only when the spec is truthy.
            return True

    option_spec = _AnyOptions()

    LITERAL = frozenset({"doctest", "testcode", "testoutput", "productionlist"})
    IGNORED = frozenset(
        {
            "toctree", "index", "highlight", "currentmodule", "sectionauthor", "moduleauthor",
            "codeauthor", "tabularcolumns", "testsetup", "testcleanup",
            # Sphinx and CPython's extensions read these from files.
            "literalinclude", "miscnews", "audit-event-table", "limited-api-list",
        }
    )  # fmt: skip
    LABELS: ClassVar[dict[str, str]] = {
        "versionadded": "New in version",
        "versionchanged": "Changed in version",
        "deprecated": "Deprecated since version",
        "deprecated-removed": "Deprecated since version / removed in version",
        "seealso": "See also:",
        "availability": "Availability:",
        "impl-detail": "CPython implementation detail:",
    }
    TEXT = frozenset(
        {
            # Python domain; "class" replaces docutils' own class-attribute directive, as in Sphinx.
            *_PYTHON_OBJECT_DIRECTIVES,
            *(f"py:{name}" for name in _PYTHON_OBJECT_DIRECTIVES),
            # C domain.
            "c:function", "c:member", "c:type", "c:var", "c:macro", "c:struct", "c:union",
            "c:enum", "c:enumerator",
            # Standard domain and other Sphinx built-ins.
            "describe", "object", "program", "cmdoption", "envvar", "glossary", "only",
            "centered", "hlist",
            # CPython documentation extensions.
            "audit-event", "opcode", "pdbcommand", "2to3fixer",
            *LABELS,
        }
    )  # fmt: skip

    def run(self) -> list[nodes.Node]:
        if self.name in self.IGNORED:
            return []
        if self.name in self.LITERAL:
            text = "\n".join(self.content)
            return [nodes.literal_block(text, text)]
        result: list[nodes.Node] = []
        heading = " ".join(filter(None, (self.LABELS.get(self.name), *self.arguments)))
        if self.name in self.LABELS:
            inline_nodes, messages = self.state.inline_text(heading, self.lineno)
            result += [nodes.paragraph(heading, "", *inline_nodes), *messages]
        elif heading:
            # Object signatures such as "f(*args, **kwargs)" are code, not inline reST.
            result.append(nodes.paragraph(heading, heading))
        if self.content:
            body = nodes.container()
            self.state.nested_parse(self.content, self.content_offset, body)
            result.append(body)
        return result


# docutils looks directives up in a process-wide registry; these names are not docutils
# directives (except "class", see above), so other docutils users only gain directives.
for _name in _SphinxDirective.TEXT | _SphinxDirective.LITERAL | _SphinxDirective.IGNORED:
    directives.register_directive(_name, _SphinxDirective)

# A role function as docutils calls it: options and content are optional, and it returns
# nodes and messages (the stubs require all seven arguments and type both results as references).
_RoleFunction = Callable[..., tuple[list[nodes.Node], list[nodes.system_message]]]

# Sphinx's ``title <target>`` form of cross-reference roles.
_EXPLICIT_TITLE = re.compile(r"^(.+?)\s*<[^<>]*>$", re.DOTALL)


def _literal_text_role(
    name: str,
    rawtext: str,
    text: str,
    lineno: int,
    inliner: states.Inliner,
    options: dict[str, Any] | None = None,
    content: list[str] | None = None,
) -> tuple[list[nodes.Node], list[nodes.system_message]]:
    """Role function for roles docutils does not know (``:func:``, ``:ref:``...): the text
    Sphinx would show, e.g. ``~os.path.join`` -> ``join``, ``Title <label>`` -> ``Title``."""
    shown = docutils_utils.unescape(text)
    explicit = _EXPLICIT_TITLE.match(shown)
    if explicit:
        shown = explicit.group(1)
    else:
        shown = shown.removeprefix("!")
        if shown.startswith("~"):
            shown = shown[1:].rsplit(".", 1)[-1]
    return [nodes.inline(rawtext, shown)], []


def _interpreted_with_fallback(
    inliner: states.Inliner, rawsource: str, text: str, role: str, lineno: int
) -> tuple[list[nodes.Node], list[nodes.system_message]]:
    """``Inliner.interpreted`` whose unknown roles fall back to :func:`_literal_text_role`
    instead of an error plus the raw ``:role:`text``` markup, and whose raw roles give
    nothing."""
    role_fn, messages = roles.role(role, inliner.language, lineno, inliner.reporter)
    if getattr(role_fn, "base_role", role_fn) is roles.raw_role:
        # With raw_enabled=False a raw-based role (".. role:: html(raw)") reports an error and
        # keeps its markup as text; drop it, as the disabled raw directive is dropped.
        return [], messages
    role_function = cast("_RoleFunction | None", role_fn) or _literal_text_role
    role_nodes, role_messages = role_function(role, rawsource, text, lineno, inliner)
    return role_nodes, messages + role_messages


def _lenient_inliner() -> states.Inliner:
    # Bound on the instance rather than in a subclass: Inliner builds its patterns from
    # vars(type(self)), which a subclass does not have. Registering the fallback as roles
    # would need every Sphinx role name, process-wide.
    inliner = states.Inliner()
    inliner.interpreted = types.MethodType(_interpreted_with_fallback, inliner)  # type: ignore[method-assign]
    return inliner


# Not text: parser messages (which quote the offending source, e.g. a disabled raw
# directive's payload), comments, definitions and link targets. raw is listed as a second
# line of defence: raw_enabled=False already stops raw nodes from being created.
_RST_SKIPPED_NODES = (nodes.system_message, nodes.comment, nodes.substitution_definition, nodes.target, nodes.raw)


def _extract_rst(content: str) -> _Extraction:
    settings = get_default_settings(Parser)
    for name, value in _RST_SAFE_SETTINGS.items():
        setattr(settings, name, value)
    # Belt and braces with report_level: a per-document sink, never sys.stderr.
    settings.warning_stream = io.StringIO()
    document = docutils_utils.new_document("<document>", settings)
    problems: list[str] = []

    def collect(message: nodes.system_message) -> None:
        if message["level"] >= docutils_utils.Reporter.WARNING_LEVEL:
            problems.append(f"line {message.get('line', '?')}: {message.children[0].astext()}")

    document.reporter.attach_observer(collect)
    try:
        Parser(inliner=_lenient_inliner()).parse(content, document)
    except Exception as exc:  # docutils has no single base exception for parser failures
        raise DocumentParseError(f"reStructuredText could not be parsed: {exc!r}") from exc
    first_section = next(document.findall(nodes.section), None)
    # A section always begins with its title.
    heading = first_section.next_node(nodes.title) if first_section else None
    title = heading.astext() if heading is not None else None
    return list(_rst_blocks(document)), title, problems


def _rst_blocks(element: nodes.Node) -> Iterator[_Block]:
    for child in element.children:
        if isinstance(child, _RST_SKIPPED_NODES):
            continue
        if isinstance(child, (nodes.literal_block, nodes.doctest_block)):
            yield _Block(child.astext(), keep_lines=True)
        elif isinstance(child, nodes.line_block):
            yield _Block("\n".join(line.astext() for line in child.findall(nodes.line)), keep_lines=True)
        elif isinstance(child, nodes.row):
            cells = (" ".join(block.normalised() for block in _rst_blocks(entry)) for entry in child.children)
            yield _Block(" | ".join(cell for cell in cells if cell))
        elif isinstance(child, (nodes.TextElement, nodes.Text)):
            # A section's title; other titles (admonitions, topics, tables) head no section.
            yield _Block(child.astext(), heading=isinstance(child, nodes.title) and isinstance(element, nodes.section))
        else:
            yield from _rst_blocks(child)


_EXTRACTORS: dict[str, Callable[[str], _Extraction]] = {
    "text/plain": _extract_plain,
    "text/markdown": _extract_markdown,
    "text/html": _extract_html,
    "text/x-rst": _extract_rst,
}

CONTENT_TYPES: frozenset[str] = frozenset(_EXTRACTORS)
"""The content types :func:`parse` accepts: text/plain, text/markdown, text/html, text/x-rst."""
