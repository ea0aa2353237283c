"""Lexical attribution of answers to the chunks put into their prompt (ragops_shared.citations)."""

from collections.abc import Sequence

import pytest

from ragops_generation.app import Answerer
from ragops_generation.settings import GenerationSettings
from ragops_models.generation import Generation
from ragops_schemas import ContextRetrieved
from ragops_schemas.events import RetrievedChunk
from ragops_shared.citations import MAX_CITATIONS, cite, snippet, strip_markers
from tests.helpers import PRODUCER, example


def chunk(n: int, text: str, document: str | None = None, **fields: str) -> RetrievedChunk:
    return RetrievedChunk(
        chunk_id=f"c{n}",
        document_id=document or f"d{n}",
        document_version=f"v{n}",
        text=text,
        score=1.0 / n,
        **fields,
    )


PARIS = "Paris is the capital of France. It lies on the Seine."
BERLIN = "Berlin is the capital of Germany."


def test_a_supported_answer_cites_its_chunk_with_marker_snippet_and_lineage() -> None:
    contexts = [chunk(1, BERLIN), chunk(2, PARIS, title="France", source="france.md", section="Cities")]

    citations, text = cite("Paris", contexts)

    assert text == "Paris [2]"
    [citation] = citations
    assert (citation.marker, citation.chunk_id, citation.document_id, citation.document_version) == (
        2,
        "c2",
        "d2",
        "v2",
    )
    assert (citation.title, citation.source, citation.section) == ("France", "france.md", "Cities")
    assert citation.snippet == "Paris is the capital of France."
    assert citation.support == 1.0


def test_an_unsupported_answer_cites_nothing() -> None:
    citations, text = cite("Madrid on the Manzanares", [chunk(1, BERLIN), chunk(2, PARIS)])

    assert (citations, text) == ([], "Madrid on the Manzanares")


def test_one_citation_per_document_best_first_near_the_best_and_at_most_three() -> None:
    answer = "France borders Spain, Andorra, Italy, Belgium and Germany"  # 7 content tokens
    contexts = [
        chunk(1, "France borders Spain and Andorra.", document="short"),  # 4/7: far below the best
        chunk(2, "France borders Spain, Andorra, Italy, Belgium, Germany.", document="france"),  # 7/7
        chunk(3, "France also borders Spain, Andorra, Italy, Belgium, Germany.", document="france"),  # 7/7, same doc
        *(chunk(n, f"France borders Spain, Andorra, Italy and Belgium (map {n}).") for n in range(4, 9)),  # 6/7
    ]

    citations, text = cite(answer, contexts)

    assert [c.marker for c in citations] == [2, 4, 5]
    assert [c.support for c in citations] == [1.0, 0.8571, 0.8571]
    assert len(citations) == MAX_CITATIONS
    assert len({c.document_id for c in citations}) == len(citations)
    assert text == f"{answer} [2][4][5]"


def test_model_written_markers_are_validated_not_duplicated() -> None:
    contexts = [chunk(1, BERLIN), chunk(2, PARIS)]

    # [2] supports the answer: kept where the model put it; [1] does not, [7] names no chunk.
    citations, text = cite("Paris [2][1], on the Seine [7].", contexts)

    assert text == "Paris [2], on the Seine."
    assert [c.marker for c in citations] == [2]


def test_model_written_markers_that_all_fail_give_way_to_attribution() -> None:
    citations, text = cite("Paris [1]", [chunk(1, BERLIN), chunk(2, PARIS)])

    assert text == "Paris [2]"
    assert [c.marker for c in citations] == [2]


def test_empty_or_wordless_answers_cite_nothing() -> None:
    contexts = [chunk(1, PARIS)]

    assert cite("", contexts) == ([], "")
    assert cite("It is the one.", contexts) == ([], "It is the one.")
    assert cite("Paris", []) == ([], "Paris")


def test_strip_markers_leaves_what_the_answer_says() -> None:
    assert strip_markers("France [1]") == "France"
    assert strip_markers("France [1][3], then Spain [2].") == "France, then Spain."
    # A list in an answer about code is not a marker.
    assert strip_markers("x = [1, 2]") == "x = [1, 2]"


def test_a_long_sentence_snippet_is_the_window_around_the_answer() -> None:
    text = " ".join(["filler"] * 100 + ["the", "answer", "is", "42"] + ["filler"] * 100) + "."

    cut = snippet(text, ["42"])

    assert len(cut) <= 400
    assert "42" in cut
    assert cut.startswith("…")
    assert cut.endswith("…")


class Fixed:
    """A generator that gives the same text and finish reason for every prompt."""

    model_name = "fixed"
    model_version = "0"

    def __init__(self, text: str, finish_reason: str = "stop") -> None:
        self.text, self.finish_reason = text, finish_reason

    def warm_up(self) -> None:
        pass

    def generate(self, batch: Sequence[list[dict[str, str]]]) -> list[Generation]:
        return [Generation(self.text, input_tokens=1, output_tokens=1, finish_reason=self.finish_reason) for _ in batch]


@pytest.mark.parametrize(
    ("generated", "finish_reason", "answer", "markers"),
    [
        ("the Normans", "stop", "the Normans [1]", [1]),
        ("They were the Normans [1][4]", "stop", "They were the Normans [1]", [1]),
        ('<passage id="4" title="Normans">\nthe Normans', "length", "the Normans [1]", [1]),
        ("The documents do not say.", "abstained", "The documents do not say.", []),
    ],
)
def test_the_generation_service_publishes_the_citations_of_each_answer(
    generated: str, finish_reason: str, answer: str, markers: list[int]
) -> None:
    answerer = Answerer(GenerationSettings(), Fixed(generated, finish_reason), PRODUCER)
    retrieved = example(ContextRetrieved)

    [event] = answerer.answer([retrieved])

    assert event.answer == answer
    assert [c.marker for c in event.citations] == markers
    for citation in event.citations:
        assert citation.chunk_id == retrieved.contexts[citation.marker - 1].chunk_id
