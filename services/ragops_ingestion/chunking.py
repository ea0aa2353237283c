"""Split parsed document text into overlapping windows measured in tokens of the embedding
model's tokenizer, and bounded in characters."""

import bisect
import math
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer

# A window may end early, at a paragraph or sentence end, if that end lies in this last
# fraction of the window: chunks then hold whole thoughts at a small cost in chunk count.
_BOUNDARY_ZONE = 0.2
# Sentence punctuation, optionally followed by closing quotes or brackets.
_SENTENCE_END = re.compile(r"[.!?][\"')\]\u2019\u201d]*$")

MAX_CHUNK_CHARS = 2000
"""Default bound of a chunk in characters. The 28,000 chunks of 200 tokens of the development
corpora (/work/shared/data: SQuAD passages, the PostgreSQL HTML and Python reST manuals) are
at most 1,291 characters long (median 660-786), so prose is bounded by its tokens and never
by this; it binds only where few tokens cover many characters: an unbroken run (a base64
blob, a minified line) that the tokenizer reads as one ``[UNK]`` per 100+ characters."""


@dataclass(frozen=True)
class TextChunk:
    """One window of a text.

    Attributes:
        index: position of the chunk in its text, from 0.
        text: ``source_text[char_start:char_end]``, unaltered; at most the chunker's
            ``max_chars`` characters.
        token_count: tokens of the window (special tokens excluded), at most the chunker's
            ``chunk_size``.
        char_start: offset of the first character in the source text (characters).
        char_end: offset just past the last character (characters).
    """

    index: int
    text: str
    token_count: int
    char_start: int
    char_end: int


class TokenChunker:
    """Splits text into windows of at most ``chunk_size`` tokens of the embedding model's
    tokenizer (special tokens excluded) and at most ``max_chars`` characters, consecutive
    windows overlapping by ``overlap`` tokens (a window the characters cut short: by the same
    share of its tokens, ``overlap / chunk_size``).

    Window boundaries prefer ends of paragraphs, then of sentences or lines, when one falls
    in the last ~20% of the window; otherwise a window ends at the last word boundary that
    fits. A window starts ``overlap`` tokens before the previous one ends, moved back to the
    start of the word there, so windows never split a word (the overlap is then a little
    over ``overlap`` tokens) and a window's text tokenizes on its own into the same tokens.
    Only a word longer than a whole window is split. A single token longer than ``max_chars``
    (an unbroken run the tokenizer reads as one ``[UNK]``) is cut into pieces of
    ``max_chars`` characters, each chunked on its own with no overlap.

    ``__init__`` stores configuration; :meth:`warm_up` loads the tokenizer; :meth:`chunk` may
    then be called from any thread.

    Args:
        tokenizer: a local model directory (loaded without contacting the Hugging Face Hub)
            or a hub id; the model must have a fast tokenizer (character offsets).
        chunk_size: maximum tokens per window, at least 1.
        overlap: tokens shared by consecutive windows, 0 <= overlap < chunk_size.
        max_chars: maximum characters per window, at least 1 (default :data:`MAX_CHUNK_CHARS`).

    Raises:
        ValueError: ``chunk_size`` < 1, ``overlap`` negative or >= ``chunk_size``, or
            ``max_chars`` < 1.
    """

    def __init__(
        self, tokenizer: str | Path, chunk_size: int = 200, overlap: int = 32, max_chars: int = MAX_CHUNK_CHARS
    ) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1 token, got {chunk_size}")
        if not 0 <= overlap < chunk_size:
            raise ValueError(f"overlap must be in [0, chunk_size={chunk_size}) tokens, got {overlap}")
        if max_chars < 1:
            raise ValueError(f"max_chars must be at least 1 character, got {max_chars}")
        self.tokenizer = tokenizer
        self.chunk_size = chunk_size
        self.overlap = overlap
        self.max_chars = max_chars
        self._encoder: Tokenizer | None = None
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        """Load the tokenizer (idempotent).

        Raises:
            ValueError: the model has no fast tokenizer.
            OSError: the directory or hub id has no tokenizer files (or the hub is needed and
                unreachable).
        """
        with self._lock:
            if self._encoder is not None:
                return
            source = str(self.tokenizer)
            local = Path(source) / "tokenizer.json"
            if local.is_file():
                # The Rust tokenizer straight from its file: importing transformers would
                # import torch, ~220 MiB of RSS this service never uses (make bench, MEM).
                encoder = Tokenizer.from_file(str(local))
            else:
                # Hub ids and models shipped without tokenizer.json; a local directory never
                # contacts the hub.
                from transformers import AutoTokenizer

                loaded = AutoTokenizer.from_pretrained(source, local_files_only=Path(source).is_dir())
                if not loaded.is_fast:
                    raise ValueError(f"{source}: chunking needs a fast tokenizer (character offsets)")
                encoder = loaded.backend_tokenizer
            # The Rust tokenizer's encode() is thread-safe and, unlike the transformers call,
            # does not warn about texts longer than the model's maximum. The truncation and
            # padding saved in tokenizer.json (128 tokens for all-MiniLM-L6-v2) would cut or
            # pad whole documents.
            encoder.no_truncation()
            encoder.no_padding()
            self._encoder = encoder

    def chunk(self, text: str) -> list[TextChunk]:
        """Split ``text`` into windows (see the class docstring).

        Returns:
            chunks in text order, each a slice of ``text``; one chunk when the text has at most
            ``chunk_size`` tokens; none when it has no tokens (empty or whitespace only).
        Raises:
            RuntimeError: :meth:`warm_up` was not called.
        """
        if self._encoder is None:
            raise RuntimeError("TokenChunker.warm_up() must run before chunk()")
        windows = self._windows(self._encoder, text, 0, len(text))
        return [
            TextChunk(index, text[char_start:char_end], tokens, char_start, char_end)
            for index, (tokens, char_start, char_end) in enumerate(windows)
        ]

    def _windows(self, encoder: Tokenizer, text: str, lo: int, hi: int) -> Iterator[tuple[int, int, int]]:
        """(tokens, char_start, char_end) of the windows of ``text[lo:hi]``, offsets in ``text``."""
        encoding = encoder.encode(text[lo:hi], add_special_tokens=False)
        offsets: list[tuple[int, int]] = [(start + lo, end + lo) for start, end in encoding.offsets]
        word_ids: list[int | None] = encoding.word_ids
        start = 0
        while start < len(offsets):
            token_start, token_end = offsets[start]
            if token_end - token_start > self.max_chars:
                # One token longer than a window may be: its pieces tokenize on their own,
                # and none holds a token longer than itself, so this recurses once.
                for piece in range(token_start, token_end, self.max_chars):
                    yield from self._windows(encoder, text, piece, min(piece + self.max_chars, token_end))
                start += 1
                continue
            end, overlap = self._window_end(text, offsets, word_ids, start)
            yield end - start, token_start, offsets[end - 1][1]
            if end == len(offsets):
                break
            # No overlap into a token cut into pieces: the next window could not reach past it.
            start = (
                end
                if offsets[end][1] - offsets[end][0] > self.max_chars
                else self._next_start(word_ids, start, end, overlap)
            )

    def _window_end(
        self, text: str, offsets: list[tuple[int, int]], word_ids: list[int | None], start: int
    ) -> tuple[int, int]:
        """Token index just past the window that begins at token ``start``, and the overlap
        (tokens) of the next window with it."""
        # The most tokens from `start` that fit in max_chars (token ends only grow).
        fitting = bisect.bisect_right(offsets, offsets[start][0] + self.max_chars, lo=start, key=lambda o: o[1])
        limit = min(start + self.chunk_size, fitting)
        # A window the characters cut short keeps the configured shares: the overlap and the
        # boundary zone scale with its size (a token-bound window has them as configured).
        size = limit - start
        overlap = self.overlap * size // self.chunk_size
        if limit >= len(offsets):
            return len(offsets), overlap
        # Cuts before token `cut`, latest first, that split no word and leave the next window
        # (which starts `overlap` tokens earlier) room to move forward.
        cuts = [cut for cut in range(limit, start + overlap, -1) if _starts_word(word_ids, cut)]
        zone_start = start + math.ceil((1 - _BOUNDARY_ZONE) * size)
        sentence_cut = None
        for cut in cuts:
            if cut < zone_start:
                break
            previous_end = offsets[cut - 1][1]
            gap = text[previous_end : offsets[cut][0]]
            if "\n\n" in gap:
                return cut, overlap
            if sentence_cut is None and (
                "\n" in gap or (gap and _SENTENCE_END.search(text[max(0, previous_end - 4) : previous_end]))
            ):
                sentence_cut = cut
        if sentence_cut is not None:
            return sentence_cut, overlap
        return (cuts[0] if cuts else limit), overlap

    def _next_start(self, word_ids: list[int | None], start: int, end: int, overlap: int) -> int:
        """First token of the window after the one spanning tokens ``[start, end)``."""
        nominal = end - overlap
        word_start = nominal
        while word_start > start and not _starts_word(word_ids, word_start):
            word_start -= 1
        # A word reaching back to `start` is longer than a window: split it rather than stall.
        return word_start if word_start > start else nominal


def _starts_word(word_ids: list[int | None], index: int) -> bool:
    return word_ids[index] is None or word_ids[index] != word_ids[index - 1]
