"""The one text normalisation of documents and queries, so a word is the same string on both
sides of a search: ingestion applies :func:`normalise` to a document's parsed text (its
chunks, title and version), and the query side applies it to a question before embedding it
and before building its BM25 query.

Rule: format characters (Unicode general category ``Cf``: zero-width space U+200B, soft
hyphen U+00AD, zero-width joiner U+200D, the byte order mark U+FEFF, bidirectional marks,
word joiner...) are removed, then NFKC (Unicode Standard Annex #15: compatibility forms
folded, e.g. the ligature "ﬁ" to "fi", full-width "Ａ" to "A", non-breaking space to a
space). Invisible characters inside a word otherwise split it for BM25 and the embedding
tokenizer ("data\\u00adbase" is not "database"), and they are a way to hide planted text.

Mixed-script words (a Cyrillic "а" inside a Latin word: a look-alike, the usual homograph
trick) are not folded, because which letter was meant cannot be known in general; they are
counted (:func:`mixed_script_words`) so that events can flag them.
"""

import functools
import re
import unicodedata
from collections import Counter


def _format_characters() -> re.Pattern[str]:
    """A character class of every ``Cf`` code point of this Python's Unicode database, as
    ranges: a class of 163 single characters matches about 8 times slower."""
    ranges: list[list[int]] = []
    for code in range(0x110000):
        if unicodedata.category(chr(code)) == "Cf":
            if ranges and ranges[-1][1] == code - 1:
                ranges[-1][1] = code
            else:
                ranges.append([code, code])
    return re.compile("[" + "".join(f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in ranges) + "]")


_FORMAT_CHARACTERS = _format_characters()


def normalise(text: str) -> str:
    """``text`` without format characters (category ``Cf``), in NFKC; idempotent.

    Format characters are removed before NFKC so that a base letter and its combining mark
    separated by one compose, and again after, in case a compatibility decomposition yields one.
    """
    return _FORMAT_CHARACTERS.sub("", unicodedata.normalize("NFKC", _FORMAT_CHARACTERS.sub("", text)))


# Scripts whose letters look alike (Latin "a", Cyrillic "а", Greek "α"...): a word mixing
# two of them is a homograph candidate. Other mixes are ordinary writing (Japanese mixes
# kanji and kana in one word).
_CONFUSABLE_SCRIPTS = ("LATIN", "CYRILLIC", "GREEK")
# The micro sign (NFKC: Greek mu) in units such as "μm" or "μs" is not a look-alike.
_ORDINARY_MIXES = frozenset({"\u03bc"})
_WORD = re.compile(r"[^\W\d_]{2,}")


@functools.cache
def _script(letter: str) -> str | None:
    name = unicodedata.name(letter, "")
    return next((script for script in _CONFUSABLE_SCRIPTS if name.startswith(script)), None)


def mixed_script_words(text: str) -> int:
    """How many words (runs of two or more letters) of ``text`` mix letters of two or more of
    the Latin, Cyrillic and Greek scripts, e.g. "pаypal" with a Cyrillic "а" (U+0430).
    Scripts are read from the Unicode character names; the micro sign/Greek mu is ignored."""
    # Each distinct word is looked at once; an ASCII word has one script and is not looked at.
    words = Counter(word for word in _WORD.findall(text) if not word.isascii())
    return sum(count for word, count in words.items() if _mixes_scripts(word))


def _mixes_scripts(word: str) -> bool:
    return len({_script(letter) for letter in word if letter not in _ORDINARY_MIXES} - {None}) > 1


def contextual_text(text: str, *, title: str | None, section: str | None = None) -> str:
    """The text a chunk is embedded and BM25-indexed as: a header line naming its document's
    ``title`` and, when known, the ``section`` it falls under (``"title > section"``), a blank
    line, then ``text``; ``text`` unchanged when neither is given. The header is for search
    only: the chunk's own ``text`` is what users and prompts see.

    A chunk cut from the middle of a document often never names what it is about ("It was
    founded in 1890"); the header puts that back into both retrievers (Anthropic,
    "Introducing Contextual Retrieval", 2024, prepends generated context the same way; the
    title is its cheapest form). Measured on the development questions by
    ``python -m bench.retrieval_study``.
    """
    parts = [part.strip() for part in (title, section) if part and part.strip()]
    return f"{' > '.join(parts)}\n\n{text}" if parts else text
