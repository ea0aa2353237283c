"""Citations of an answer: which of the chunks put into the prompt support it, and the ``[n]``
markers that name them (generation writes them, evaluation, feedback and the CLI read them).

Method: **lexical attribution**. An answer's *content tokens* are its SQuAD-normalised tokens
(:func:`normalize_answer`: lower case, no punctuation, no articles; Rajpurkar et al., 2016)
without English function words (:data:`STOP_WORDS`), counted with repetition. A chunk's
*support* of the answer is the share of those tokens found among the chunk's normalised
tokens, in ``[0, 1]`` (the chunk-level form of the evaluation's ``faithfulness``,
``token_support_v1``). A chunk is cited when its support is at least :data:`MIN_SUPPORT`
and within :data:`SUPPORT_GAP` of the best chunk's; the cited chunks are ranked by support
(then by their place in the prompt), one per document (its best chunk), at most
:data:`MAX_CITATIONS`. The marker ``[n]`` is the chunk's 1-based position in
``AnswerGenerated.contexts``.

Measured on the 2,000 questions of ../shared/data with the gold passage among four other
passages of the same article (hard distractors, shuffled): the gold short answer gets a
citation for 98.9% of the questions, the gold passage is cited for 98.3%, and 89.0% of the
citations name the gold passage (76.0% without the gap rule: a year or a name that the
article repeats gave each passage holding it a citation); an answer padded with the
question's words ("<question>: <answer>.") 94.7%, 94.4% and 96.1% (90.3% without the gap).
Through the pipeline (hybrid retrieval, SmolLM2-135M-Instruct, 40 questions of three
articles): 82.5% of answers cite a chunk, 0.98 citations per answer, 53.8% of citations name
the gold passage (which was in the prompt for 85% of the questions; 40% of the answers
contained a gold answer: a wrong answer's words come from another passage). Tried and not
kept: leaving out the answer's words that restate the question (precision 43%, 40 questions).

Limits: support is word overlap, not entailment. A chunk that holds the answer's words in
another relation ("Paris is not the capital of France") supports "Paris" as well as one that
states it; a paraphrase with other words ("1,200" for "twelve hundred") gets no support; a
short answer made of common words ("yes", "the first one") has few or no content tokens, so
it cites nothing (no content token) or anything that mentions the word. Citations say where
the answer's words come from, not that the answer is right.
"""

import re
import string
from collections.abc import Sequence

from ragops_schemas.events import Citation, RetrievedChunk

MIN_SUPPORT = 0.5
"""Least support for a citation: more than half the answer's content tokens must be in the
chunk. For the usual short factual answer (one to four content tokens) this needs most of the
answer's words; a lower bar would cite chunks that share one incidental word with a sentence."""

SUPPORT_GAP = 0.2
"""A chunk is cited only if its support is at most this much below the best chunk's: the
chunks that hold the answer, not those that share a word of it (see the measurements above).
An answer joining facts from two chunks cites the second only if it holds nearly as many
of the answer's words."""

MAX_CITATIONS = 3
"""Most citations per answer (documents): a reader checks a few sources, not the whole top-k."""

SNIPPET_CHARS = 400
"""Longest snippet (characters), the schema's bound on ``Citation.snippet``."""

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_PARAGRAPH = re.compile(r"\n\s*\n")
# "[3]": a marker names one chunk. "[1, 2]" is left alone: in an answer about code it is a list.
_MARKER = re.compile(r"[ \t]*\[(\d{1,3})\]")

STOP_WORDS = frozenset(
    # A word list this long reads as text; as a list literal (SIM905) the formatter puts one word a line.
    """
    about above after again against all am and any are as at be because been before being below
    between both but by can could did do does doing dont down during each few for from further
    had has have having he her here hers herself him himself his how i if in into is it its itself
    just me more most my myself no nor not now of off on once only or other our ours ourselves out
    over own same she should so some such than that their theirs them themselves then there these
    they this those through to too under until up very was we were what when where which while who
    whom why will with would you your yours yourself yourselves
    """.split()  # noqa: SIM905
)
"""English function words, already SQuAD-normalised (lower case, no punctuation: "don't" ->
"dont"; the articles a/an/the are removed by normalisation): they carry no claim of their own."""


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lower case, no punctuation, no articles, single spaces."""
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION)).split())


def content_tokens(text: str) -> list[str]:
    """SQuAD-normalised tokens of ``text`` without :data:`STOP_WORDS`, in order, with repeats."""
    return [token for token in normalize_answer(text).split() if token not in STOP_WORDS]


def split_sentences(text: str) -> list[str]:
    """``text`` split after ``.``, ``!`` or ``?`` followed by white space; sentences that
    normalise to nothing (punctuation, articles) are dropped."""
    return [sentence for sentence in (part.strip() for part in _SENTENCE_END.split(text)) if normalize_answer(sentence)]


def strip_markers(text: str) -> str:
    """``text`` without its ``[n]`` citation markers (and the spaces before them): what the
    answer says, as evaluation and datasets compare it. ``"France [1]."`` -> ``"France."``."""
    return _MARKER.sub("", text)


def support(answer_tokens: Sequence[str], chunk_text: str) -> float:
    """Share (``[0, 1]``) of ``answer_tokens`` (:func:`content_tokens`, with repeats) found
    among the normalised tokens of ``chunk_text``; 0.0 when there are no answer tokens."""
    if not answer_tokens:
        return 0.0
    tokens = set(normalize_answer(chunk_text).split())
    return sum(token in tokens for token in answer_tokens) / len(answer_tokens)


def cite(answer: str, contexts: Sequence[RetrievedChunk]) -> tuple[list[Citation], str]:
    """The citations of ``answer`` and the answer text with their ``[n]`` markers.

    Markers the model wrote itself are checked: one that names no context, or a chunk whose
    support is under :data:`MIN_SUPPORT`, or a second chunk of a document already cited, is
    removed; when valid ones remain they are the citations (their places in the text are
    kept). Otherwise every marker is removed and the chunks are attributed as the module
    docstring says, their markers appended to the text, best first (``"France [1][3]"``).

    Args:
        answer: the generated text; empty means no answer.
        contexts: the chunks put into the prompt, in prompt order (``AnswerGenerated.contexts``).

    Returns:
        ``(citations best first, at most MAX_CITATIONS; text)``. An answer with no content
        token (empty, function words only) cites nothing and is returned without markers.
    """
    plain = strip_markers(answer)
    tokens = content_tokens(plain)
    if not tokens:
        return [], plain
    supports = [support(tokens, chunk.text) for chunk in contexts]
    written = [int(n) for n in _MARKER.findall(answer)]
    kept = _best_per_document(
        [n - 1 for n in dict.fromkeys(written) if 1 <= n <= len(contexts)], supports, contexts, limit=len(contexts)
    )
    if kept:
        text = _MARKER.sub(lambda marker: marker.group(0) if int(marker.group(1)) - 1 in kept else "", answer)
    else:
        best = max(supports, default=0.0)
        near_best = [i for i, value in enumerate(supports) if value >= best - SUPPORT_GAP]
        kept = _best_per_document(near_best, supports, contexts, limit=MAX_CITATIONS)
        text = f"{plain.rstrip()} {''.join(f'[{i + 1}]' for i in kept)}" if kept else plain
    return [_citation(i + 1, contexts[i], tokens, supports[i]) for i in kept], text


def _best_per_document(
    candidates: Sequence[int], supports: Sequence[float], contexts: Sequence[RetrievedChunk], *, limit: int
) -> list[int]:
    """Of the ``candidates`` (0-based positions) with support >= :data:`MIN_SUPPORT`: each
    document's best, best first (ties: earlier in the prompt), at most ``limit``."""
    ranked = sorted((i for i in candidates if supports[i] >= MIN_SUPPORT), key=lambda i: (-supports[i], i))
    best: dict[str, int] = {}
    for i in ranked:
        best.setdefault(contexts[i].document_id, i)
    return list(best.values())[:limit]


def _citation(marker: int, chunk: RetrievedChunk, tokens: Sequence[str], value: float) -> Citation:
    return Citation(
        marker=marker,
        chunk_id=chunk.chunk_id,
        document_id=chunk.document_id,
        document_version=chunk.document_version,
        # The index stores "" for a document without one.
        title=chunk.title or None,
        source=chunk.source or None,
        section=chunk.section or None,
        snippet=snippet(chunk.text, tokens),
        support=round(value, 4),
    )


def snippet(text: str, answer_tokens: Sequence[str], size: int = SNIPPET_CHARS) -> str:
    """The sentence (or paragraph without a sentence end, such as a heading) of ``text``
    holding the most distinct ``answer_tokens`` (ties: the first),
    on one line; a longer sentence is cut to the window of whole words, at most ``size``
    characters, that holds the most of them (``…`` marks a cut end)."""
    wanted = set(answer_tokens)

    def covered(words: Sequence[str]) -> int:
        return len(wanted & set(normalize_answer(" ".join(words)).split()))

    # Paragraphs first: a heading or a list item ends without a full stop.
    parts = [sentence.split() for paragraph in _PARAGRAPH.split(text) for sentence in split_sentences(paragraph)]
    parts = parts or [text.split()]
    words = max(parts, key=covered)  # max keeps the first of equals
    if len(" ".join(words)) <= size:
        return " ".join(words)
    windows = []
    end, length = 0, -1  # words[start:end] is the window, ``length`` its characters joined
    for start in range(len(words)):
        # Room for the two ellipses a window in the middle of the sentence gets.
        while end < len(words) and length + 1 + len(words[end]) <= size - 2:
            length += 1 + len(words[end])
            end += 1
        windows.append((start, max(end, start + 1)))
        if end > start:
            length -= 1 + len(words[start])
        else:
            end, length = start + 1, -1
    start, end = max(windows, key=lambda window: covered(words[window[0] : window[1]]))
    cut = " ".join(words[start:end])[: size - 2]
    return ("…" if start else "") + cut + ("…" if end < len(words) else "")


def source_label(citation: Citation) -> str:
    """How a person recognises a cited document: its title, else the file name of its source
    (the last segment of a path or URL, query and fragment left out), else its document id."""
    if citation.title:
        return citation.title
    if citation.source:
        name = citation.source.split("?", 1)[0].split("#", 1)[0].rstrip("/").rsplit("/", 1)[-1]
        return name or citation.source
    return citation.document_id
