"""The redaction engine of the privacy service: finds personal data in a text with Microsoft
Presidio's analyzer and replaces it with Presidio's anonymizer, one mode per entity type.

Detection runs without any trained NER model (none can be downloaded into the images): the
analyzer gets Presidio's ``NoOpNlpEngine`` and only self-contained recognizers, each of which
checks what its pattern found:

- ``EMAIL_ADDRESS``: Presidio's pattern with a practical local part (letters, digits, ``._%+-``
  and an inner ``'``, so ``https://x.org/?u=ann@example.com`` yields ``ann@example.com``); the domain must end in
  a public suffix (tldextract's bundled list, read offline);
- ``PHONE_NUMBER``: Google's libphonenumber (``phonenumbers``) ``PhoneNumberMatcher`` at
  leniency VALID, for the policy's regions: a number must be valid for its country, in its
  international form or in a national form of one of the regions, digits grouped as that
  country groups them; a match of fewer than 7 digits, a dotted date or one glued to letters
  of an identifier (``ORD-2024-001234``) is dropped;
- ``CREDIT_CARD``: Presidio's card pattern and the Luhn checksum;
- ``IBAN_CODE``: Presidio's pattern (in any case), the ISO 13616 mod-97 check digits and the
  country's length and format;
- ``IP_ADDRESS``: Presidio's IPv4/IPv6 patterns, parsed by ``ipaddress``;
- the policy's extra types: its regexes and deny-list terms (both matched case-insensitively,
  Presidio's default).

Known limits: a four-part version number whose parts are all <= 255 (``1.2.3.4``) is an IPv4
address to any pattern; a bare digit string that is a valid national phone number of a
configured region (``4155552671``) is taken for one; a 13-19 digit id that passes Luhn with a
card prefix is taken for a card.
"""

import ipaddress
import logging
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

import phonenumbers
import tldextract
from presidio_analyzer import (
    AnalyzerEngine,
    EntityRecognizer,
    Pattern,
    PatternRecognizer,
    RecognizerRegistry,
    RecognizerResult,
)
from presidio_analyzer.nlp_engine import NoOpNlpEngine
from presidio_analyzer.predefined_recognizers import (
    CreditCardRecognizer,
    EmailRecognizer,
    IbanRecognizer,
    IpRecognizer,
    PhoneRecognizer,
)
from presidio_anonymizer import AnonymizerEngine
from presidio_anonymizer.entities import ConflictResolutionStrategy, OperatorConfig, RecognizerResult as AnonymizerInput
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from ragops_schemas import ids
from ragops_shared.pseudonyms import subject_pseudonym

Mode = Literal["mask", "type", "pseudonym"]

BUILT_IN_ENTITIES = ("EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS")

MASK = "********"
"""What ``mask`` mode writes for any value: eight asterisks, whatever the value's length, so a
masked span tells neither the length nor the layout of what it hid (a 16-digit card from a
19-digit one, a national from an international phone number)."""

SCORE_THRESHOLD = 0.4
"""Lowest Presidio score kept. Every recognizer here validates what it finds, and a result
that fails validation is dropped by the recognizer itself (cards: Luhn, IBANs: mod 97, e-mail:
public suffix, IPs: ``ipaddress``); what survives scores 1.0 (checksummed types, e-mail, the
policy's patterns and deny lists), 0.6 (IPs), 0.5 (an IBAN in lower case, whose check digits
Presidio validates but not its upper-case format) or 0.4 (phone numbers: valid for their country
per libphonenumber, which has no checksum to raise it). 0.4 keeps all of those and drops only
Presidio's 0.1 pattern for the bare IPv6 ``::``. With no NLP model the context words of the
recognizers cannot raise a score, so no lower threshold would gain anything."""

MIN_KEY_BYTES = 16
"""A pseudonym key shorter than 128 bits could be searched for (RFC 2104 asks for a key at
least as long as the hash output, 32 bytes; 16 is the floor accepted)."""

DEFAULT_PHONE_REGIONS = ("US", "GB", "DE", "FR", "NL", "IN")

_LANGUAGE = "en"

# libphonenumber's STRICT_GROUPING: a valid number whose digits, where grouped at all, are
# grouped as its country writes them; VALID (Presidio's default) also takes any grouping, so an
# ISBN (0-306-40615-2) or an order number (2024-001234) would be a phone number.
_PHONE_LENIENCY = phonenumbers.Leniency.STRICT_GROUPING

# Presidio's card pattern ("All Credit Cards (weak)", validated by Luhn) plus the Mastercard
# 2-series (2221-2720) that it predates.
_CARD = (
    r"\b(?!1\d{12}(?!\d))((4\d{3})|(5[0-5]\d{2})|(2[2-7]\d{2})|(6\d{3})|(1\d{3})|(3\d{3}))"
    r"[- ]?(\d{3,4})[- ]?(\d{3,4})[- ]?(\d{3,5})\b"
)


class _WithoutValues(logging.Filter):
    """Keeps the template of a Presidio log message and drops its arguments: the IBAN
    recognizer logs a candidate it cannot validate ("Failed to validate text %s") at ERROR."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = str(record.msg), None
        return True


# WARNING: with no NLP model the analyzer logs "Skipping context extraction" at INFO per call.
_PRESIDIO_LOG = logging.getLogger("presidio-analyzer")
_PRESIDIO_LOG.setLevel(logging.WARNING)
_PRESIDIO_LOG.addFilter(_WithoutValues())


def _known_regions(regions: tuple[str, ...]) -> tuple[str, ...]:
    unknown = sorted(set(regions) - phonenumbers.SUPPORTED_REGIONS)
    if unknown:
        raise ValueError(f"not libphonenumber regions: {unknown}")
    return regions


def _compilable(patterns: dict[str, list[str]]) -> dict[str, list[str]]:
    for entity, regexes in patterns.items():
        for regex in regexes:
            try:
                re.compile(regex)
            except re.error as error:
                raise ValueError(f"pattern of {entity} does not compile: {error}") from error
    return patterns


class RedactionPolicy(BaseModel):
    """What is redacted and how: per entity type a mode, extra regexes and deny lists.

    Entity types are Presidio's names (``EMAIL_ADDRESS``, ``PHONE_NUMBER``, ``CREDIT_CARD``,
    ``IBAN_CODE``, ``IP_ADDRESS``) plus the keys of ``patterns`` and ``deny_lists``. Modes:
    ``type`` writes ``<EMAIL_ADDRESS>``; ``mask`` writes :data:`MASK`; ``pseudonym`` writes
    ``<EMAIL_ADDRESS:0123456789abcdef>``, 16 hex digits of a keyed per-tenant hash of the
    normalised value (:func:`ragops_schemas.ids.pseudonym`). Raises ``ValidationError`` for an
    unknown mode or phone region, or a regex that does not compile.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    modes: dict[str, Mode] = Field(default_factory=dict, description="Entity type -> mode.")
    default_mode: Mode = Field(default="type", description="Mode of every type not in ``modes``.")
    patterns: Annotated[dict[str, list[str]], AfterValidator(_compilable)] = Field(
        default_factory=dict,
        description="Extra entity type -> regexes (Python ``re`` syntax, run by Presidio with the "
        "``regex`` module, case-insensitive).",
    )
    deny_lists: dict[str, list[str]] = Field(
        default_factory=dict, description="Extra entity type -> literal terms (whole words, case-insensitive)."
    )
    pseudonymize_user_ids: bool = Field(
        default=True, description="Whether the service replaces user and subject ids by their pseudonym."
    )
    phone_regions: Annotated[tuple[str, ...], AfterValidator(_known_regions)] = Field(
        default=DEFAULT_PHONE_REGIONS,
        description="ISO 3166 regions whose national phone formats are recognised (international "
        "``+CC`` numbers of any country are recognised regardless); each region is one more "
        "libphonenumber pass over the text.",
    )

    def mode(self, entity: str) -> Mode:
        """The mode of ``entity``: its entry in ``modes``, else ``default_mode``."""
        return self.modes.get(entity, self.default_mode)


@dataclass(frozen=True)
class Redaction:
    """A redacted text and how many spans of each entity type were replaced (never the values)."""

    text: str
    counts: dict[str, int]


@dataclass(frozen=True)
class Detection:
    """A span of personal data: ``text[start:end]`` is of type ``entity``; ``score`` is Presidio's (0-1)."""

    entity: str
    start: int
    end: int
    score: float


# tldextract fetches the Public Suffix List over HTTP on first use unless told not to; the
# services run without internet, so the list bundled with tldextract is what is read.
_OFFLINE_SUFFIXES = tldextract.TLDExtract(cache_dir=None, suffix_list_urls=())


class _EmailRecognizer(EmailRecognizer):
    """Presidio's e-mail recognizer with the practical local part and an offline suffix list."""

    def __init__(self) -> None:
        pattern = r"(?<![\w.%+-])[\w%+-](?:[\w.%+'-]*[\w%+-])?@\w+(?:-+\w+)*(?:\.\w+(?:-+\w+)*)+\b"
        super().__init__(patterns=[Pattern("Email (practical local part)", pattern, 0.5)])

    def validate_result(self, pattern_text: str) -> bool:
        return _OFFLINE_SUFFIXES(pattern_text.rsplit("@", 1)[1]).fqdn != ""


def _hides(one: Detection, other: Detection) -> bool:
    """Whether ``other`` is left out for ``one`` (as Presidio's anonymizer would): it lies
    inside ``one``'s longer span (digits of an IBAN that pass Luhn or make a phone number), or
    has the same span and a lower score (an IPv4 address that is also a valid phone number)."""
    if one is other or not (one.start <= other.start and other.end <= one.end):
        return False
    if (one.start, one.end) != (other.start, other.end):
        return True
    return one.score > other.score or (one.score == other.score and one.entity < other.entity)


# A run of digits and what phone numbers are written with, holding a number of 7 digits or more.
_PHONE_CANDIDATE = re.compile(r"\+?\(?\d[\d \t().\-/]*\d\)?")


class _PhoneRecognizer(PhoneRecognizer):
    """Presidio's libphonenumber recognizer, run only around digit runs that could be a number.

    libphonenumber parses every digit run of the text once per region (85% of the time of a
    redaction, with six regions); a text's runs of 7 digits or more are few, and a number is
    looked for only in them (with two characters either side: the matcher rejects a number
    glued to letters)."""

    def analyze(self, text: str, entities: list[str], nlp_artifacts: object = None) -> list[RecognizerResult]:
        results: list[RecognizerResult] = []
        for candidate in _PHONE_CANDIDATE.finditer(text):
            if sum(char.isdigit() for char in candidate.group()) < _MIN_PHONE_DIGITS:
                continue
            offset = max(0, candidate.start() - 2)
            for found in super().analyze(text[offset : candidate.end() + 2], entities):
                found.start += offset
                found.end += offset
                results.append(found)
        return results


# A dotted or dashed day.month.year that libphonenumber reads as a number (3.10.2014).
_DATE = re.compile(r"\d{1,2}[./-]\d{1,2}[./-]\d{2,4}")


# Fewer digits than any number one can dial from outside its local area: libphonenumber takes
# some four-digit strings for German pager numbers (1649, 1685: years in any history text).
_MIN_PHONE_DIGITS = 7


def _not_a_phone_number(text: str, start: int, end: int) -> bool:
    value = text[start:end]
    return (
        sum(char.isdigit() for char in value) < _MIN_PHONE_DIGITS
        or _DATE.fullmatch(value) is not None
        or _inside_identifier(text, start, end)
    )


# A phone match is part of an identifier when the run of identifier characters around it holds
# a letter or '#' outside the match (ORD-2024-001234, INV/2024/0042, #2024-001234).
_ID_CHARS = re.compile(r"[\w#/-]")


def _inside_identifier(text: str, start: int, end: int) -> bool:
    left = start
    while left > 0 and _ID_CHARS.match(text[left - 1]):
        left -= 1
    right = end
    while right < len(text) and _ID_CHARS.match(text[right]):
        right += 1
    around = text[left:start] + text[end:right]
    return any(char.isalpha() or char == "#" for char in around)


def _normalised(entity: str, value: str, regions: Sequence[str]) -> str:
    """The form of a value that its pseudonym hashes: spellings of one value give one pseudonym
    (upper/lower case e-mail, spaced/dashed card or IBAN, national/international phone)."""
    value = unicodedata.normalize("NFKC", value).strip()
    if entity == "EMAIL_ADDRESS":
        return value.casefold()
    if entity in ("CREDIT_CARD", "IBAN_CODE"):
        return re.sub(r"[\s-]", "", value).upper()
    if entity == "PHONE_NUMBER":
        return _e164(value, regions)
    if entity == "IP_ADDRESS":
        try:
            return str(ipaddress.ip_interface(value.split("%", 1)[0]))
        except ValueError:
            return value.casefold()
    return value.casefold()


def _e164(value: str, regions: Sequence[str]) -> str:
    # The first region in which the number is valid, as the recognizer found it; a number
    # valid nowhere (cannot happen for a recognised one) keeps its digits.
    for region in regions or ("ZZ",):
        try:
            number = phonenumbers.parse(value, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return re.sub(r"[^\d+]", "", value)


class Redactor:
    """Redacts texts under one policy; build one per process (loading takes about a second).

    ``pseudonym_key``: the secret of every pseudonym (at least :data:`MIN_KEY_BYTES` bytes;
    ``ValueError`` otherwise). Safe to share between threads; ``redact`` is CPU-bound, so an
    async caller runs it in a thread (``asyncio.to_thread``).
    """

    def __init__(self, policy: RedactionPolicy, pseudonym_key: bytes) -> None:
        if len(pseudonym_key) < MIN_KEY_BYTES:
            raise ValueError(f"pseudonym key must have at least {MIN_KEY_BYTES} bytes")
        self.policy = policy
        self._key = pseudonym_key
        self.entities = tuple(dict.fromkeys([*BUILT_IN_ENTITIES, *policy.patterns, *policy.deny_lists]))
        nlp_engine = NoOpNlpEngine(models=[{"lang_code": _LANGUAGE, "model_name": "none"}])
        nlp_engine.load()
        registry = RecognizerRegistry(supported_languages=[_LANGUAGE])
        for recognizer in self._recognizers(policy):
            registry.add_recognizer(recognizer)
        self._analyzer = AnalyzerEngine(
            nlp_engine=nlp_engine,
            registry=registry,
            supported_languages=[_LANGUAGE],
            default_score_threshold=SCORE_THRESHOLD,
        )
        self._anonymizer = AnonymizerEngine()

    @staticmethod
    def _recognizers(policy: RedactionPolicy) -> list[EntityRecognizer]:
        recognizers: list[EntityRecognizer] = [
            _EmailRecognizer(),
            _PhoneRecognizer(supported_regions=policy.phone_regions, leniency=_PHONE_LENIENCY),
            CreditCardRecognizer(patterns=[Pattern("Card numbers (Presidio's and Mastercard 2-series)", _CARD, 0.3)]),
            # Case-insensitive: an IBAN written in lower case is still one (its check digits are
            # computed on the upper-case form).
            IbanRecognizer(regex_flags=re.DOTALL | re.MULTILINE | re.IGNORECASE),
            IpRecognizer(),
        ]
        for entity, regexes in policy.patterns.items():
            patterns = [Pattern(f"{entity} {number}", regex, 1.0) for number, regex in enumerate(regexes)]
            recognizers.append(PatternRecognizer(supported_entity=entity, patterns=patterns, name=f"{entity} patterns"))
        for entity, terms in policy.deny_lists.items():
            # Longest first: the regex alternation takes the first term that matches.
            ordered = sorted({term for term in terms if term.strip()}, key=len, reverse=True)
            if ordered:
                recognizers.append(
                    PatternRecognizer(supported_entity=entity, deny_list=ordered, name=f"{entity} deny list")
                )
        return recognizers

    def redact(self, text: str, *, tenant: str) -> Redaction:
        """``text`` with every detected span replaced per the policy's mode of its type, and the
        number of spans replaced per type. Overlapping detections: one of a type containing or
        overlapping another of that type merge; of two types, a contained span is dropped and a
        partly overlapping one is cut back by the higher-scoring one (Presidio's
        ``REMOVE_INTERSECTIONS``), so no character is replaced twice and none is left visible."""
        spans = [
            AnonymizerInput(entity_type=span.entity, start=span.start, end=span.end, score=span.score)
            for span in self.detect(text)
        ]
        if not spans:
            return Redaction(text=text, counts={})
        operators = {entity: self._operator(entity, tenant) for entity in self.entities}
        result = self._anonymizer.anonymize(
            text,
            spans,
            operators,
            conflict_resolution=ConflictResolutionStrategy.REMOVE_INTERSECTIONS,
            # Merging two e-mails separated by a space into one span would miscount them.
            merge_entities_with_spaces=False,
        )
        counts = Counter(item.entity_type for item in result.items)
        return Redaction(text=result.text, counts=dict(sorted(counts.items())))

    def detect(self, text: str) -> list[Detection]:
        """Every span of personal data found in ``text`` (offsets in characters), possibly
        overlapping, in Presidio's order; what :meth:`redact` replaces."""
        if not text.strip():
            return []
        found = [
            Detection(entity=result.entity_type, start=result.start, end=result.end, score=result.score)
            for result in self._analyzer.analyze(text, language=_LANGUAGE, entities=list(self.entities))
            if not (result.entity_type == "PHONE_NUMBER" and _not_a_phone_number(text, result.start, result.end))
        ]
        return [span for span in found if not any(_hides(other, span) for other in found)]

    def pseudonym(self, value: str, *, tenant: str) -> str:
        """16 hex digits: the keyed per-tenant pseudonym of ``value`` (a user or subject id),
        NFKC-normalised and stripped (ids are case-sensitive); the rule of
        :func:`ragops_schemas.ids.pseudonym`, as in ``pseudonym`` mode."""
        return subject_pseudonym(self._key, value, tenant=tenant)

    def _operator(self, entity: str, tenant: str) -> OperatorConfig:
        mode = self.policy.mode(entity)
        if mode == "mask":
            return OperatorConfig("replace", {"new_value": MASK})
        if mode == "type":
            return OperatorConfig("replace", {"new_value": f"<{entity}>"})
        return OperatorConfig("custom", {"lambda": self._pseudonymizer(entity, tenant)})

    def _pseudonymizer(self, entity: str, tenant: str) -> Callable[[str], str]:
        def token(value: str) -> str:
            normal = _normalised(entity, value, self.policy.phone_regions)
            return f"<{entity}:{ids.pseudonym(self._key, normal, tenant=tenant)}>"

        return token
