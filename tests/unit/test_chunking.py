"""Token-window chunking with the real all-MiniLM-L6-v2 tokenizer (chunk ids and document
versions: tests/unit/test_ids.py)."""

import itertools
import re

import pytest
from tokenizers import Tokenizer

from ragops_ingestion.chunking import TextChunk, TokenChunker
from ragops_models.defaults import default_embedding_model_dir

PROSE = " ".join(
    f"Sentence number {i} talks about the {word} of an unbelievably interesting topic."
    for i, word in enumerate(["history", "économie", "geography", "naïve-physics", "café culture"] * 30)
)


@pytest.fixture(scope="module")
def chunker() -> TokenChunker:
    chunker = TokenChunker(default_embedding_model_dir(), chunk_size=50, overlap=10)
    chunker.warm_up()
    return chunker


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    tokenizer = Tokenizer.from_file(str(default_embedding_model_dir() / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def count_tokens(tokenizer: Tokenizer, text: str) -> int:
    return len(tokenizer.encode(text, add_special_tokens=False).ids)


def check_windows(chunks: list[TextChunk], source: str, tokenizer: Tokenizer, chunk_size: int, overlap: int) -> None:
    """Every chunk is a slice of the source within chunk_size tokens; consecutive chunks
    share at least `overlap` tokens (a word more at most); together they cover the text."""
    encoding = tokenizer.encode(source, add_special_tokens=False)
    token_starts = [start for start, _ in encoding.offsets]
    assert [chunk.index for chunk in chunks] == list(range(len(chunks)))
    assert chunks[0].char_start == encoding.offsets[0][0]
    assert chunks[-1].char_end == encoding.offsets[-1][1]
    for chunk in chunks:
        assert chunk.text == source[chunk.char_start : chunk.char_end]
        assert chunk.token_count == count_tokens(tokenizer, chunk.text) <= chunk_size
    for previous, following in itertools.pairwise(chunks):
        assert previous.char_start < following.char_start < previous.char_end
        shared = sum(following.char_start <= start < previous.char_end for start in token_starts)
        assert overlap <= shared < overlap + 10


@pytest.mark.parametrize(("size", "overlap"), [(-1, 0), (0, 0), (10, 10), (10, 11), (10, -1)])
def test_invalid_configuration(size: int, overlap: int) -> None:
    with pytest.raises(ValueError):
        TokenChunker("unused", chunk_size=size, overlap=overlap)


def test_chunk_before_warm_up_raises() -> None:
    with pytest.raises(RuntimeError, match="warm_up"):
        TokenChunker("unused").chunk("text")


@pytest.mark.model
def test_windows_respect_size_and_overlap(chunker: TokenChunker, tokenizer: Tokenizer) -> None:
    chunks = chunker.chunk(PROSE)
    assert len(chunks) > 10
    check_windows(chunks, PROSE, tokenizer, chunk_size=50, overlap=10)


@pytest.mark.model
def test_windows_prefer_sentence_and_paragraph_ends(chunker: TokenChunker) -> None:
    # Sentences of about 6 tokens: one always ends in the last 20% (10 tokens) of a window.
    sentences = " ".join(f"This is short sentence {i}." for i in range(100))
    chunks = chunker.chunk(sentences)
    assert len(chunks) > 10
    assert all(chunk.text.endswith(".") for chunk in chunks)
    # Paragraph ends beat sentence ends, even earlier ones.
    paragraphs = "\n\n".join(f"Item {i} is here. And more" for i in range(100))
    for chunk in chunker.chunk(paragraphs)[:-1]:
        assert paragraphs[chunk.char_end : chunk.char_end + 2] == "\n\n"


@pytest.mark.model
def test_text_without_boundaries_is_cut_between_words(chunker: TokenChunker, tokenizer: Tokenizer) -> None:
    text = " ".join(["unbelievably"] * 200)
    chunks = chunker.chunk(text)
    check_windows(chunks, text, tokenizer, chunk_size=50, overlap=10)
    assert all(re.fullmatch(r"unbelievably( unbelievably)*", chunk.text) for chunk in chunks)


@pytest.mark.model
def test_word_longer_than_a_window_is_split(chunker: TokenChunker) -> None:
    # 98 characters: under WordPiece's 100-character limit, above which a word is one [UNK].
    text = "start " + "x1" * 49 + " end"
    chunks = chunker.chunk(text)
    assert len(chunks) > 2
    assert all(chunk.token_count <= 50 for chunk in chunks)
    assert chunks[-1].text.endswith(" end")


@pytest.mark.model
def test_short_and_empty_texts(chunker: TokenChunker) -> None:
    text = "  A short text, well under the window.  "
    assert chunker.chunk(text) == [TextChunk(0, "A short text, well under the window.", 9, 2, 38)]
    assert chunker.chunk("") == []
    assert chunker.chunk(" \n\t ") == []


@pytest.mark.model
def test_long_text_is_not_truncated(chunker: TokenChunker, capfd: pytest.CaptureFixture[str]) -> None:
    text = PROSE * 10  # far over the model's 512-token maximum
    chunks = chunker.chunk(text)
    assert chunks[-1].char_end == len(text)
    assert "longer than the specified maximum" not in "".join(capfd.readouterr())


@pytest.mark.model
def test_warm_up_is_idempotent_and_chunking_deterministic() -> None:
    chunker = TokenChunker(default_embedding_model_dir(), chunk_size=50, overlap=10)
    chunker.warm_up()
    first = chunker.chunk(PROSE)
    chunker.warm_up()
    assert chunker.chunk(PROSE) == first


@pytest.mark.model
def test_real_passages_default_settings(tokenizer: Tokenizer, corpus_rows: list[dict]) -> None:
    chunker = TokenChunker(default_embedding_model_dir())
    chunker.warm_up()
    passages = [row["text"] for row in corpus_rows[:200]]
    for passage in passages:
        chunks = chunker.chunk(passage)
        if len(chunks) == 1:
            assert chunks[0].text == passage.strip()
        else:
            check_windows(chunks, passage, tokenizer, chunk_size=200, overlap=32)
