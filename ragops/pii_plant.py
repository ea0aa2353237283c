"""Synthetic personal data planted in the demo's documents, questions and feedback comments,
so that a scan of every store afterwards (:mod:`ragops.pii_scan`) can prove none of it was kept.

Every value is generated from a seed (the same seed, the same values) and is of a kind a
checksum-validating redactor must find: e-mail addresses, phone numbers in several national
and international formats, Luhn-valid card numbers, IBANs of several countries with valid
ISO 13616 check digits, IPv4 and IPv6 addresses. They are taken from ranges reserved for
examples where such ranges exist (``example.org`` domains, RFC 5737 and RFC 3849 addresses,
Ofcom's and NANP's drama phone numbers), so no real person's data is ever planted.

Planting only appends: a document gets a sentence after its text, a question a parenthesis
after its text, so every reference answer (a span of the document) stays where it was.
"""

import dataclasses
import random
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from ragops_schemas import DocumentSubmitted, FeedbackSubmitted
from ragops_shared.datasets import Question

__all__ = [
    "Carrier",
    "PiiKind",
    "PiiPlanter",
    "PlantedValue",
    "iban_check_digits",
    "luhn_valid",
]

PiiKind = Literal["email", "phone", "card", "iban", "ip"]
Carrier = Literal["document", "question", "feedback"]

DOCUMENTS = 50
"""Documents that get personal data (the issue's figure)."""
QUESTION_SHARE = 0.2
"""Of the questions, how many get a contact detail appended."""
FEEDBACK_SHARE = 0.3
"""Of the feedback, how many get a comment with personal data."""


@dataclass(frozen=True)
class PlantedValue:
    """One planted value: ``ident`` (``<kind>-<n>``, what reports name instead of the value),
    its ``kind``, the ``value`` exactly as planted, and where: ``carrier`` and ``target`` (the
    document id, the question's example id, or the answer's request id the feedback is on)."""

    ident: str
    kind: PiiKind
    value: str
    carrier: Carrier
    target: str


def luhn_valid(digits: str) -> bool:
    """Whether a string of digits passes the Luhn check (ISO/IEC 7812-1, card numbers)."""
    total = 0
    for position, digit in enumerate(reversed(digits)):
        value = int(digit) * (2 if position % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def _luhn_complete(partial: str) -> str:
    """``partial`` with the check digit appended that makes it Luhn-valid."""
    return next(partial + d for d in string.digits if luhn_valid(partial + d))


def _iban_number(text: str) -> int:
    # ISO 13616: letters count as two digits, A = 10 ... Z = 35.
    return int("".join(str(int(char, 36)) for char in text))


def iban_check_digits(country: str, bban: str) -> str:
    """The two ISO 13616 check digits of the IBAN of ``bban`` in ``country`` (MOD 97-10)."""
    return f"{98 - _iban_number(bban + country + '00') % 97:02d}"


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


def _letters(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.ascii_uppercase) for _ in range(n))


_FIRST = ("jane", "john", "amira", "kenji", "olga", "pedro", "fatima", "liam", "mei", "noah", "sofia", "arjun")
_LAST = ("doe", "smith", "haddad", "tanaka", "ivanova", "garcia", "okafor", "murphy", "chen", "schulz", "rossi")
_DOMAINS = ("example.org", "example.com", "example.net", "mail.example.org", "corp.example.com")


def _email(rng: random.Random) -> str:
    first, last, domain = rng.choice(_FIRST), rng.choice(_LAST), rng.choice(_DOMAINS)
    local = rng.choice((f"{first}.{last}", f"{first[0]}{last}", f"{first}_{last}", f"{first}.{last}+news"))
    address = f"{local}{rng.randrange(10, 1000)}@{domain}"
    # Some written as people do, with capitals: a stored copy may be lower-cased.
    return address.title() if rng.random() < 0.25 else address


def _phone(rng: random.Random) -> str:
    # Numbers for drama and examples: Ofcom's 020 7946 0xxx, NANP's 555-01xx; the others valid
    # numbers of libphonenumber's metadata in Berlin, Paris and Mumbai.
    london = f"7946 0{_digits(rng, 3)}"
    nanp = f"{rng.choice(('202', '212', '415', '617'))}"
    line = f"01{_digits(rng, 2)}"
    formats: tuple[Callable[[], str], ...] = (
        lambda: f"+44 20 {london}",
        lambda: f"020 {london}",
        lambda: f"+1 {nanp}-555-{line}",
        lambda: f"({nanp}) 555-{line}",
        lambda: f"{nanp}.555.{line}",
        lambda: f"+49 30 {rng.randrange(2, 10)}{_digits(rng, 7)}",
        lambda: f"+33 1 99 00 {_digits(rng, 2)} {_digits(rng, 2)}",
        lambda: f"+91 98{_digits(rng, 3)} {_digits(rng, 5)}",
    )
    return rng.choice(formats)()


def _card(rng: random.Random) -> str:
    prefix, length, groups = rng.choice(
        (
            ("4", 16, (4, 4, 4, 4)),  # Visa
            (f"5{rng.randrange(1, 6)}", 16, (4, 4, 4, 4)),  # Mastercard
            (f"3{rng.choice('47')}", 15, (4, 6, 5)),  # American Express
            ("6011", 16, (4, 4, 4, 4)),  # Discover
        )
    )
    number = _luhn_complete(prefix + _digits(rng, length - len(prefix) - 1))
    separator = rng.choice((" ", "-", ""))
    parts, start = [], 0
    for size in groups:
        parts.append(number[start : start + size])
        start += size
    return separator.join(parts)


# Country -> a BBAN of the right shape (ISO 13616 registry formats).
_BBANS: dict[str, Callable[[random.Random], str]] = {
    "DE": lambda rng: _digits(rng, 18),
    "GB": lambda rng: _letters(rng, 4) + _digits(rng, 14),
    "FR": lambda rng: _digits(rng, 23),
    "NL": lambda rng: _letters(rng, 4) + _digits(rng, 10),
    "ES": lambda rng: _digits(rng, 20),
    "IT": lambda rng: _letters(rng, 1) + _digits(rng, 22),
}


def _iban(rng: random.Random) -> str:
    country = rng.choice(sorted(_BBANS))
    bban = _BBANS[country](rng)
    compact = country + iban_check_digits(country, bban) + bban
    if rng.random() < 0.3:  # the electronic form; else the printed one, in groups of four
        return compact
    return " ".join(compact[i : i + 4] for i in range(0, len(compact), 4))


def _ip(rng: random.Random) -> str:
    if rng.random() < 0.25:  # RFC 3849's documentation prefix
        return f"2001:db8:{rng.randrange(1, 0xFFFF):x}::{rng.randrange(1, 0xFFFF):x}"
    network = rng.choice(("192.0.2", "198.51.100", "203.0.113"))  # RFC 5737's
    return f"{network}.{rng.randrange(1, 255)}"


_GENERATORS: dict[PiiKind, Callable[[random.Random], str]] = {
    "email": _email,
    "phone": _phone,
    "card": _card,
    "iban": _iban,
    "ip": _ip,
}

_DOCUMENT_SENTENCES: tuple[tuple[str, tuple[PiiKind, ...]], ...] = (
    ("Contact: {} or {}.", ("email", "phone")),
    ("Questions about this page go to {}.", ("email",)),
    ("Call the archive on {}.", ("phone",)),
    ("Donations: IBAN {}, or card {}.", ("iban", "card")),
    ("Edited from {} by {}.", ("ip", "email")),
    ("Card on file for the licence: {}.", ("card",)),
    ("Royalties are paid to {}.", ("iban",)),
)
_QUESTION_SUFFIXES: tuple[tuple[str, PiiKind], ...] = (
    (" (reply to {})", "email"),
    (" (call me on {})", "phone"),
    (" (asked from {})", "ip"),
)
_FEEDBACK_COMMENTS: tuple[tuple[str, tuple[PiiKind, ...]], ...] = (
    ("Wrong answer, write to me at {}.", ("email",)),
    ("Please call {} about this.", ("phone",)),
    ("Refund the upgrade to card {}.", ("card",)),
    ("Pay the bounty to {}, thanks.", ("iban",)),
    ("Seen from {} and {}, both wrong.", ("ip", "email")),
)


class PiiPlanter:
    """Plants values drawn from one seeded generator; :attr:`planted` lists them all, each
    value once over the whole demo (a value found by the scan names one place it was planted).

    Call :meth:`documents`, :meth:`questions` and :meth:`feedback` in a fixed order for the
    same values from the same seed."""

    def __init__(self, seed: int = 14) -> None:
        self._rng = random.Random(seed)
        self.planted: list[PlantedValue] = []
        self._seen: set[str] = set()

    def _new(self, kind: PiiKind, carrier: Carrier, target: str) -> PlantedValue:
        while True:
            value = _GENERATORS[kind](self._rng)
            # Distinct also case-blind and without separators, which the scan matches too, and
            # not inside another (the same number with and without its country code).
            key = "".join(char for char in value.lower() if char.isalnum())
            if not any(key in seen or seen in key for seen in self._seen):
                self._seen.add(key)
                break
        planted = PlantedValue(f"{kind}-{len(self.planted)}", kind, value, carrier, target)
        self.planted.append(planted)
        return planted

    def _fill(self, template: str, kinds: Sequence[PiiKind], carrier: Carrier, target: str) -> str:
        return template.format(*(self._new(kind, carrier, target).value for kind in kinds))

    def documents(self, documents: Sequence[DocumentSubmitted], count: int = DOCUMENTS) -> list[DocumentSubmitted]:
        """``documents`` with a sentence of personal data appended to ``count`` of them (a
        seeded choice; all when fewer). A document without inline content (a blob reference)
        is left as it is and not counted."""
        inline = [i for i, document in enumerate(documents) if document.content_ref is None]
        chosen = set(self._rng.sample(inline, min(count, len(inline))))
        planted = list(documents)
        for i in sorted(chosen):
            document = documents[i]
            template, kinds = self._rng.choice(_DOCUMENT_SENTENCES)
            sentence = self._fill(template, kinds, "document", document.document_id)
            planted[i] = document.model_copy(update={"content": f"{document.content}\n\n{sentence}"})
        return planted

    def questions(self, questions: Sequence[Question], share: float = QUESTION_SHARE) -> list[Question]:
        """``questions`` with a contact detail in parentheses after ``share`` of them (seeded)."""
        chosen = set(self._rng.sample(range(len(questions)), round(share * len(questions))))
        planted = list(questions)
        for i in sorted(chosen):
            question = questions[i]
            template, kind = self._rng.choice(_QUESTION_SUFFIXES)
            suffix = self._fill(template, (kind,), "question", question.id)
            planted[i] = dataclasses.replace(question, question=question.question + suffix)
        return planted

    def feedback(self, feedback: Sequence[FeedbackSubmitted], share: float = FEEDBACK_SHARE) -> list[FeedbackSubmitted]:
        """``feedback`` with a comment holding personal data on ``share`` of it (seeded)."""
        chosen = set(self._rng.sample(range(len(feedback)), round(share * len(feedback))))
        planted = list(feedback)
        for i in sorted(chosen):
            item = feedback[i]
            template, kinds = self._rng.choice(_FEEDBACK_COMMENTS)
            comment = self._fill(template, kinds, "feedback", item.request_id)
            planted[i] = item.model_copy(update={"comment": comment})
        return planted
