"""The demo's abstention round: a mixed set of answerable and unanswerable questions asked
through the running platform, and how often the platform said that the documents do not say.

The questions are drawn (seeded) outside the sample the packaged calibration was fitted on
(:func:`ragops.calibrate.calibration_sample` with the calibration file's seed and size), so
the rates are held-out figures of the whole pipeline (hybrid retrieval, the generator, the check)."""

import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.table import Table

from ragops.calibrate import calibration_sample, read_jsonl
from ragops.client import PlatformClient
from ragops_schemas import AnswerGenerated
from ragops_shared.abstention import ABSTAINED, DEFAULT_CALIBRATION
from ragops_shared.settings import KafkaSettings


def held_out_questions(
    data_dir: Path, per_class: int, seed: int, calibration: Path = DEFAULT_CALIBRATION
) -> dict[str, list[str]]:
    """``per_class`` answerable (``questions.jsonl``) and unanswerable
    (``questions-unanswerable.jsonl``) questions of ``data_dir`` that ``calibration`` was not
    fitted on, drawn by ``random.Random(seed)``."""
    fitted = json.loads(calibration.read_text(encoding="utf-8"))
    drawn = {}
    for kind, file in (("answerable", "questions.jsonl"), ("unanswerable", "questions-unanswerable.jsonl")):
        rows = read_jsonl(data_dir / file)
        used = {row["id"] for row in calibration_sample(rows, fitted["per_class"], fitted["seed"])}
        unused = sorted((row for row in rows if row["id"] not in used), key=lambda row: str(row["id"]))
        drawn[kind] = [row["question"] for row in random.Random(seed).sample(unused, min(per_class, len(unused)))]
    return drawn


def rates(answers: Sequence[AnswerGenerated | None]) -> dict[str, Any]:
    """Counts and shares of one kind of question: ``asked``, ``answered`` (an answer event came),
    ``abstained`` (finish reason ``abstained``), ``checked`` (the check ran), ``abstained_rate``."""
    came = [answer for answer in answers if answer is not None]
    abstained = sum(answer.generation.finish_reasons == [ABSTAINED] for answer in came)
    return {
        "asked": len(answers),
        "answered": len(came),
        "checked": sum(answer.abstention is not None for answer in came),
        "abstained": abstained,
        "abstained_rate": round(abstained / len(came), 3) if came else None,
    }


async def abstention_round(
    kafka: KafkaSettings, data_dir: Path, *, per_class: int = 40, seed: int = 2017, concurrency: int = 8
) -> dict[str, Any]:
    """Ask :func:`held_out_questions` through the platform (Kafka, as the demo's users do) and
    return :func:`rates` per kind, with the calibration's id. Raises ``RequestTimeoutError``
    when an answer does not come."""
    questions = held_out_questions(data_dir, per_class, seed)
    report: dict[str, Any] = {"calibration": json.loads(DEFAULT_CALIBRATION.read_text(encoding="utf-8"))["id"]}
    async with PlatformClient(kafka, name="demo-abstention") as client:
        for kind, asked in questions.items():
            traces = await client.ask([client.question(text) for text in asked], concurrency=concurrency)
            report[kind] = rates(
                [trace.outcome if isinstance(trace.outcome, AnswerGenerated) else None for trace in traces]
            )
    return report


def abstain_rows(report: dict[str, Any] | None, table: Table) -> None:
    """The round's figures as rows of the demo's report table (nothing when it did not run)."""
    if not report:
        return
    for kind in ("unanswerable", "answerable"):
        figures = report[kind]
        table.add_row(
            f"abstained on {kind} questions ({figures['answered']} held out, {report['calibration']})",
            f"{figures['abstained']} ({figures['abstained_rate']})",
        )
