"""``make demo``'s citation figures (``report["cite"]``), from the answers the sink stored."""

from collections.abc import Sequence
from typing import Any

from rich.table import Table

from ragops_analytics import queries
from ragops_analytics.store import Reader


def citation_figures(answers: Sequence[queries.AnswerCitations]) -> dict[str, Any]:
    """Citation figures over the *answered* questions (a non-empty answer that did not abstain):

    - ``answered_with_citation``: share of them with at least one citation;
    - ``citations_per_answer``: mean number of citations per answered question;
    - ``citation_precision``: share of their citations whose document is one of the question's
      gold contexts (``reference_context_ids``; answers without gold contexts are left out).
      One gold passage per question and one citation per document: a second citation to a
      relevant passage the dataset did not label counts as imprecise, so this is a lower bound.

    Shares are rounded to 3 decimals; None where nothing was counted."""
    answered = [a for a in answers if a.answer.strip() and "abstained" not in a.finish_reasons]
    judged = [(doc, a.reference_context_ids) for a in answered if a.reference_context_ids for doc in a.cited_documents]
    cited = sum(len(a.cited_documents) for a in answered)
    return {
        "answered": len(answered),
        "answered_with_citation": round(sum(bool(a.cited_documents) for a in answered) / len(answered), 3)
        if answered
        else None,
        "citations_per_answer": round(cited / len(answered), 3) if answered else None,
        "citation_precision": round(sum(doc in gold for doc, gold in judged) / len(judged), 3) if judged else None,
        "citations_judged": len(judged),
    }


def cite_report(analytics: Reader, run_id: str) -> dict[str, Any]:
    """:func:`citation_figures` of evaluation run ``run_id``'s answers in ClickHouse."""
    return citation_figures(queries.run_answer_citations(analytics, run_id))


def cite_rows(cite: dict[str, Any] | None, table: Table) -> None:
    """The report table's citation rows (none before the figures exist)."""
    if cite is None:
        return
    table.add_row(
        f"answers with >= 1 citation (of {cite['answered']} answered)", _figure(cite["answered_with_citation"])
    )
    table.add_row("citations per answer (mean)", _figure(cite["citations_per_answer"]))
    table.add_row(
        f"citation precision (cited document = gold context, n={cite['citations_judged']})",
        _figure(cite["citation_precision"]),
    )


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
