"""Split parsed document text into overlapping windows measured in tokens of the embedding
model's tokenizer, and name chunks and document versions by content hash."""

import math
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer

# A window may end early, at a paragraph or sentence end, if that end lies in this last
# fraction of the window: chunks then hold whole thoughts at a small cost in chunk count.
_BOUNDARY_ZONE = 0.2
# Sentence punctuation, optionally followed by closing quotes or brackets.
_SENTENCE_END = re.compile(r"[.!?][\"')\]\u2019\u201d]*$")


@dataclass(frozen=True)
class TextChunk:
    """One window of a text.

    Attributes:
        index: position of the chunk in its text, from 0.
        text: ``source_text[char_start:char_end]``, unaltered.
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
    tokenizer (special tokens excluded), consecutive windows overlapping by ``overlap``
    tokens.

    Window boundaries prefer ends of paragraphs, then of sentences or lines, when one falls
    in the last ~20% of the window; otherwise a window ends at the last word boundary that
    fits. A window starts ``overlap`` tokens before the previous one ends, moved back to the
    start of the word there, so windows never split a word (the overlap is then a little
    over ``overlap`` tokens) and a window's text tokenizes on its own into the same tokens.
    Only a word longer than a whole window is split.

    ``__init__`` stores configuration; :meth:`warm_up` loads the tokenizer; :meth:`chunk` may
    then be called from any thread.

    Args:
        tokenizer: a local model directory (loaded without contacting the Hugging Face Hub)
            or a hub id; the model must have a fast tokenizer (character offsets).
        chunk_size: maximum tokens per window, at least 1.
        overlap: tokens shared by consecutive windows, 0 <= overlap < chunk_size.

    Raises:
        ValueError: ``chunk_size`` < 1, or ``overlap`` negative or >= ``chunk_size``.
    """

    def __init__(self, tokenizer: str | Path, chunk_size: int = 200, overlap: int = 32) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1 token, got {chunk_size}")
        if not 0 <= overlap < chunk_size:
            raise ValueError(f"overlap must be in [0, chunk_size={chunk_size}) tokens, got {overlap}")
        self.tokenizer = tokenizer
        self.chunk_size = chunk_size
        self.overlap = overlap
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
        encoding = self._encoder.encode(text, add_special_tokens=False)
        offsets: list[tuple[int, int]] = encoding.offsets
        word_ids: list[int | None] = encoding.word_ids
        chunks: list[TextChunk] = []
        start = 0
        while start < len(offsets):
            end = self._window_end(text, offsets, word_ids, start)
            char_start, char_end = offsets[start][0], offsets[end - 1][1]
            chunks.append(TextChunk(len(chunks), text[char_start:char_end], end - start, char_start, char_end))
            if end == len(offsets):
                break
            start = self._next_start(word_ids, start, end)
        return chunks

    def _window_end(self, text: str, offsets: list[tuple[int, int]], word_ids: list[int | None], start: int) -> int:
        """Token index just past the window that begins at token ``start``."""
        limit = start + self.chunk_size
        if limit >= len(offsets):
            return len(offsets)
        # Cuts before token `cut`, latest first, that split no word and leave the next window
        # (which starts `overlap` tokens earlier) room to move forward.
        cuts = [cut for cut in range(limit, start + self.overlap, -1) if _starts_word(word_ids, cut)]
        zone_start = start + math.ceil((1 - _BOUNDARY_ZONE) * self.chunk_size)
        sentence_cut = None
        for cut in cuts:
            if cut < zone_start:
                break
            previous_end = offsets[cut - 1][1]
            gap = text[previous_end : offsets[cut][0]]
            if "\n\n" in gap:
                return cut
            if sentence_cut is None and (
                "\n" in gap or (gap and _SENTENCE_END.search(text[max(0, previous_end - 4) : previous_end]))
            ):
                sentence_cut = cut
        if sentence_cut is not None:
            return sentence_cut
        return cuts[0] if cuts else limit

    def _next_start(self, word_ids: list[int | None], start: int, end: int) -> int:
        """First token of the window after the one spanning tokens ``[start, end)``."""
        nominal = end - self.overlap
        word_start = nominal
        while word_start > start and not _starts_word(word_ids, word_start):
            word_start -= 1
        # A word reaching back to `start` is longer than a window: split it rather than stall.
        return word_start if word_start > start else nominal


def _starts_word(word_ids: list[int | None], index: int) -> bool:
    return word_ids[index] is None or word_ids[index] != word_ids[index - 1]
