"""P8 redaction: milliseconds per document and per question through the privacy service's
redaction engine (Presidio without an NER model) vs a regex-only pass over the same texts.

The texts: documents are SQuAD passages of 1-2 KB from ``../shared/data`` with one line of
contact data appended (an e-mail address, a phone number, an IBAN), so every document has
something to replace; questions are SQuAD questions with an e-mail address appended to every
fourth one. Each side redacts every text once per repeat, in one thread, after a warm-up.

Baseline: what a redactor without Presidio and libphonenumber would do, one compiled
alternation (e-mail, IPv4, IBAN-shaped, card-shaped with Luhn, phone-shaped digit runs) and
``re.sub``; it validates nothing but cards, so it is the floor of the cost, not an equal in
quality. Also measured: the one-time load (import and build in a fresh interpreter), and the
detections on the passages without the appended line (none expected: they hold no personal
data, but years, prices, dates and numbers).
"""

import asyncio
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable

from bench import data
from bench.harness import Check, RowArgs, alternate, result, row_main, step
from bench.stats import percentile, ratio, summary
from ragops_privacy.redaction import RedactionPolicy, Redactor

FULL = {"documents": 200, "questions": 1000, "document_chars": "1000-2000"}
QUICK = {"documents": 20, "questions": 100, "document_chars": "1000-2000"}
KEY = b"bench-pseudonym-key-of-32-bytes!"
CONTACT = "\nContact: jane.roe{n}@example.org, +44 20 7946 {n:04d}, IBAN GB82 WEST 1234 5698 7654 32."

LOAD = """
import sys, time
started = time.perf_counter()
if sys.argv[1] == "without-model-stack":
    sys.modules["torch"] = sys.modules["transformers"] = None  # as in the light image: no torch
from ragops_privacy.redaction import RedactionPolicy, Redactor
Redactor(RedactionPolicy(), b"x" * 32).redact("warm", tenant="t")
print(time.perf_counter() - started)
"""

_BASELINE = re.compile(
    r"(?P<EMAIL_ADDRESS>[\w.%+-]+@[\w-]+(?:\.[\w-]+)+)"
    r"|(?P<IBAN_CODE>\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b)"
    r"|(?P<IP_ADDRESS>\b(?:\d{1,3}\.){3}\d{1,3}\b)"
    r"|(?P<CREDIT_CARD>\b\d(?:[ -]?\d){12,18}\b)"
    r"|(?P<PHONE_NUMBER>\+?\(?\d[\d ()-]{6,}\d)"
)


def _luhn(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        digit = int(char) * (2 if position % 2 else 1)
        total += digit - 9 if digit > 9 else digit
    return total % 10 == 0


def _regex_token(match: re.Match[str]) -> str:
    entity = match.lastgroup or ""
    if entity == "CREDIT_CARD" and not _luhn(re.sub(r"\D", "", match.group())):
        return match.group()
    return f"<{entity}>"


def regex_redact(text: str) -> str:
    """The baseline: one pass of one compiled alternation."""
    return _BASELINE.sub(_regex_token, text)


def _load_seconds(variant: str) -> float:
    # Presidio's NLP package imports transformers (and through it torch) where they are
    # installed, though no recognizer here uses them: most of the load where they are.
    done = subprocess.run([sys.executable, "-c", LOAD, variant], capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def run(args: RowArgs) -> list[dict]:
    sizes = args.pick(FULL, QUICK)
    low, high = (int(x) for x in sizes["document_chars"].split("-"))
    passages = [row["text"] for row in data.passages() if low <= len(row["text"]) <= high][: sizes["documents"]]
    documents = [text + CONTACT.format(n=n) for n, text in enumerate(passages)]
    questions = [
        question.question + (f" (reply to user{n}@example.com)" if n % 4 == 0 else "")
        for n, question in enumerate(data.questions(sizes["questions"]))
    ]
    sizes.update(
        documents=len(documents),
        mean_document_chars=round(sum(map(len, documents)) / len(documents)),
        questions=len(questions),
        mean_question_chars=round(sum(map(len, questions)) / len(questions)),
    )

    step("P8", "load: import and build the engine in a fresh interpreter (x3, with and without torch)")
    loads = [_load_seconds("as-installed") for _ in range(3)]
    light_loads = [_load_seconds("without-model-stack") for _ in range(3)]
    redactor = Redactor(RedactionPolicy(), KEY)

    def per_text_ms(redact: Callable[[str], object], texts: list[str]) -> float:
        started = time.perf_counter()
        for text in texts:
            redact(text)
        return (time.perf_counter() - started) * 1000 / len(texts)

    def ours_documents(_: int) -> float:
        return per_text_ms(lambda text: redactor.redact(text, tenant="bench"), documents)

    def baseline_documents(_: int) -> float:
        return per_text_ms(regex_redact, documents)

    def ours_questions(_: int) -> float:
        return per_text_ms(lambda text: redactor.redact(text, tenant="bench"), questions)

    def baseline_questions(_: int) -> float:
        return per_text_ms(regex_redact, questions)

    step("P8", f"{len(documents)} documents and {len(questions)} questions x (1 warm-up + {args.repeats}) per side")
    by_document = asyncio.run(alternate({"ours": ours_documents, "baseline": baseline_documents}, args.repeats))
    by_question = asyncio.run(alternate({"ours": ours_questions, "baseline": baseline_questions}, args.repeats))

    clean = [redactor.detect(text) for text in passages]
    false_positives = sum(map(len, clean))
    replaced = redactor.redact(documents[0], tenant="bench").counts
    document_ms = percentile(by_document["ours"], 50)
    question_ms = percentile(by_question["ours"], 50)
    checks = [
        Check(f"{document_ms:.2f} ms per document <= 20 ms", document_ms <= 20.0),
        Check(f"{question_ms:.2f} ms per question <= 5 ms", question_ms <= 5.0),
        Check(f"{false_positives} detections in {len(passages)} passages without personal data", false_positives == 0),
        Check(f"the appended contact line is replaced ({json.dumps(replaced)})", sum(replaced.values()) == 3),
    ]
    return [
        result(
            "P8",
            "redaction",
            unit="ms per document",
            better="lower",
            goal="<= 20 ms per 1-2 KB document, <= 5 ms per question, no detections in clean passages",
            ours=summary(by_document["ours"], "Redactor.redact (Presidio, no NER model)"),
            baseline=summary(by_document["baseline"], "one regex alternation (re.sub)"),
            ratio=ratio(by_document["ours"], by_document["baseline"]),
            checks=checks,
            sizes=sizes,
            highlights=[
                f"per question: {question_ms:.3f} ms (regex {percentile(by_question['baseline'], 50):.3f} ms)",
                (
                    f"one-time load (import + build, fresh interpreter): {percentile(loads, 50):.2f} s, "
                    f"{percentile(light_loads, 50):.2f} s without torch and transformers (the light image)"
                ),
            ],
            metrics={
                "ms_per_question": {
                    "ours": summary(by_question["ours"], "Redactor.redact"),
                    "baseline": summary(by_question["baseline"], "regex"),
                },
                "load_seconds": summary(loads, "import + build"),
                "load_seconds_without_model_stack": summary(light_loads, "import + build, no torch/transformers"),
                "clean_passage_detections": false_positives,
            },
        )
    ]


if __name__ == "__main__":
    row_main(run)
