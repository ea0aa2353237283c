"""The labelled personal-data set of the redaction engine (``tests/data/pii_set.jsonl``).

Each line: ``{"text": ..., "spans": [{"start", "end", "type", "kind"}]}``; ``type`` is the
Presidio entity type that must be redacted, or ``NEGATIVE`` for a span that must be left alone
(``kind`` says what it is: a year, a price, a Luhn-failing card number...). Built from a fixed
seed, so the file is the output of this module:

    python -m tests.data.pii_set        # rewrites tests/data/pii_set.jsonl

Values are synthetic: card numbers are random digits with a Luhn check digit, IBANs random
BBANs of each country's format with their ISO 13616 check digits, phone numbers
libphonenumber's example numbers with random subscriber digits, valid for their country.
"""

import json
import random
import string
from collections.abc import Callable
from pathlib import Path

import phonenumbers

PATH = Path(__file__).with_suffix(".jsonl")
SEED = 14

Piece = str | tuple[str, str, str]
"""A piece of a sentence: plain text, or (value, type, kind) for a labelled span."""


def _luhn_digit(digits: str) -> str:
    total = 0
    for position, char in enumerate(reversed(digits)):
        digit = int(char)
        if position % 2 == 0:  # doubled: the check digit will sit to the right of these
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return str((10 - total % 10) % 10)


CARD_BRANDS = {  # brand -> (prefixes, length, grouping)
    "visa": (("4",), 16, (4, 4, 4, 4)),
    "mastercard": (("51", "52", "53", "54", "55"), 16, (4, 4, 4, 4)),
    "mastercard-2": (("2221", "2300", "2500", "2720"), 16, (4, 4, 4, 4)),
    "amex": (("34", "37"), 15, (4, 6, 5)),
    "discover": (("6011", "65"), 16, (4, 4, 4, 4)),
}


def card(rng: random.Random, brand: str, *, valid: bool) -> str:
    prefixes, length, _ = CARD_BRANDS[brand]
    body = rng.choice(prefixes)
    body += "".join(rng.choice(string.digits) for _ in range(length - 1 - len(body)))
    check = _luhn_digit(body)
    if not valid:
        check = str((int(check) + rng.randint(1, 9)) % 10)
    return body + check


def grouped(value: str, groups: tuple[int, ...], separator: str) -> str:
    parts, start = [], 0
    for size in groups:
        parts.append(value[start : start + size])
        start += size
    parts.append(value[start:])
    return separator.join(part for part in parts if part)


IBAN_FORMATS = {  # country -> BBAN as (class, count): n digit, a letter, c digit or letter
    "DE": (("n", 18),),
    "GB": (("a", 4), ("n", 14)),
    "FR": (("n", 10), ("c", 11), ("n", 2)),
    "NL": (("a", 4), ("n", 10)),
    "ES": (("n", 20),),
    "IT": (("a", 1), ("n", 10), ("c", 12)),
    "BE": (("n", 12),),
    "CH": (("n", 5), ("c", 12)),
    "AT": (("n", 16),),
    "PL": (("n", 24),),
}


def _iban_check(country: str, bban: str) -> str:
    numeric = "".join(str(int(char, 36)) for char in bban + country + "00")
    return f"{98 - int(numeric) % 97:02d}"


def iban(rng: random.Random, country: str, *, valid: bool) -> str:
    alphabet = {"n": string.digits, "a": string.ascii_uppercase, "c": string.digits * 3 + string.ascii_uppercase}
    bban = "".join(rng.choice(alphabet[kind]) for kind, count in IBAN_FORMATS[country] for _ in range(count))
    check = _iban_check(country, bban)
    if not valid:
        check = f"{(int(check) + rng.randint(1, 90)) % 97 + 2:02d}"
        if check == _iban_check(country, bban):
            check = f"{int(check) % 97 + 2:02d}"
    return country + check + bban


NATIONAL_REGIONS = ("US", "GB", "DE", "FR", "NL", "IN")
INTERNATIONAL_ONLY = ("ES", "IT", "AU", "JP", "BR", "SE")


def phone(rng: random.Random, region: str) -> phonenumbers.PhoneNumber:
    kind = rng.choice((phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE))
    example = phonenumbers.example_number_for_type(region, kind)
    assert example is not None
    national = str(example.national_number)
    for _ in range(1000):
        number = phonenumbers.PhoneNumber()
        number.merge_from(example)  # keeps Italy's leading zero
        number.national_number = int(national[:-4] + "".join(rng.choice(string.digits) for _ in range(4)))
        if phonenumbers.is_valid_number(number):
            return number
    raise AssertionError(f"no valid {region} number near the example")


def phone_text(rng: random.Random, number: phonenumbers.PhoneNumber, *, national: bool) -> str:
    fmt = phonenumbers.PhoneNumberFormat
    if national:
        text = phonenumbers.format_number(number, fmt.NATIONAL)
        if phonenumbers.region_code_for_number(number) == "US" and rng.random() < 0.5:
            digits = str(number.national_number)
            text = rng.choice(("{}-{}-{}", "{}.{}.{}", "{} {} {}")).format(digits[:3], digits[3:6], digits[6:])
        return text
    style = rng.choice(("international", "e164", "dashed"))
    if style == "e164":
        return phonenumbers.format_number(number, fmt.E164)
    text = phonenumbers.format_number(number, fmt.INTERNATIONAL)
    return text.replace(" ", "-") if style == "dashed" else text


FIRST = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory", "oscar")
LAST = ("smith", "jones", "müller", "dupont", "de-vries", "patel", "rossi", "garcia", "nguyen", "okafor")
DOMAINS = ("example.com", "mail.example.org", "corp.example.co.uk", "example.de", "uni-example.fr", "example.io")


def email(rng: random.Random) -> str:
    first, last = rng.choice(FIRST), rng.choice(LAST).replace("ü", "u")
    local = rng.choice(
        (f"{first}.{last}", f"{first}{rng.randint(1, 99)}", f"{first}_{last}", f"{first}+news", f"{first[0]}.{last}")
    )
    address = f"{local}@{rng.choice(DOMAINS)}"
    return address.upper() if rng.random() < 0.15 else address


def ipv4(rng: random.Random) -> str:
    first = rng.choice((10, 172, 192, 203, 198, 81, 62, 8))
    return ".".join(str(part) for part in (first, rng.randint(0, 255), rng.randint(0, 255), rng.randint(1, 254)))


def ipv6(rng: random.Random) -> str:
    groups = [f"{rng.randint(0, 0xFFFF):x}" for _ in range(8)]
    style = rng.choice(("full", "compressed", "link-local"))
    if style == "full":
        return ":".join(["2001", "db8", *groups[2:]])
    if style == "compressed":
        return f"2001:db8:{groups[2]}::{groups[6]}:{groups[7]}"
    return f"fe80::{groups[4]}:{groups[5]}:{groups[6]}:{groups[7]}"


# ---- sentences ----------------------------------------------------------------------------------

CARD_TEMPLATES = (
    "Please charge my card {} for the renewal.",
    "Card number: {}",
    "I paid with {} yesterday, can you refund it?",
    "The customer read out {}, expiry 09/27.",
    "Billing details ({}) were updated.",
    "cc={};amount=42.00",
)
IBAN_TEMPLATES = (
    "Please wire the deposit to {} by Friday.",
    "IBAN: {}",
    "My new account is {}, the old one is closed.",
    "Refunds go to {}.",
    "Beneficiary account {} (reference INV-2291).",
)
PHONE_TEMPLATES = (
    "Call me at {} after 6pm.",
    "Phone: {}",
    "You can reach the clinic on {}.",
    "My mobile is {}, text first please.",
    "Contact ({}) for support.",
    "tel:{}",
)
EMAIL_TEMPLATES = (
    "Send the report to {}.",
    "Contact: <{}>",
    "[Email me](mailto:{})",
    "Unsubscribe: https://news.example.com/unsub?email={}&list=7",
    "Reply to {}, cc the team.",
    '"{}" wrote:',
    "Questions? ({})",
    "{}: your password was reset",
)
IP_TEMPLATES = (
    "Login from {} was blocked.",
    "The server at {} stopped answering.",
    "client_ip={} status=403",
    "Requests came from {} and were throttled.",
)
IPV6_TEMPLATES = (
    "Login from {} was blocked.",
    "Connect to [{}]:443 instead.",
    "client_ip={} status=403",
)

NEGATIVES: tuple[tuple[str, Callable[[random.Random], str], tuple[str, ...]], ...] = (
    (
        "year",
        lambda r: r.choice((str(r.randint(1000, 2099)), f"{r.randint(1000, 2099)}–{r.randint(10, 99)}")),
        ("The policy changed in {}.", "Revenue for fiscal {} was flat.", "The plague returned in {} and again later."),
    ),
    (
        "price",
        lambda r: r.choice(("${:,}.{:02d}", "€{:,}.{:02d}", "{:,}.{:02d} EUR")).format(
            r.randint(1, 99999), r.randint(0, 99)
        ),
        ("The upgrade costs {} per seat.", "Total due: {}"),
    ),
    (
        "date",
        lambda r: r.choice(("{y}-{m:02d}-{d:02d}", "{d:02d}/{m:02d}/{y}", "{d}.{m}.{y}", "{m}/{d}/{y}")).format(
            y=r.randint(1990, 2030), m=r.randint(1, 12), d=r.randint(1, 28)
        ),
        ("The contract ends on {}.", "Delivered {}, signed by reception."),
    ),
    (
        "order number",
        lambda r: r.choice(("#{}", "ORD-{}-{:06d}", "INV/{}/{:04d}", "PO {}-{:05d}")).format(
            r.randint(2019, 2026) if r.random() < 0.7 else r.randint(100000, 99999999), r.randint(1, 99999)
        ),
        ("Where is order {}?", "Invoice {} is overdue."),
    ),
    (
        "version",
        lambda r: r.choice(("v{}.{}.{}", "{}.{}.{}", "{}.{}.{}-rc.1", "{}.{}")).format(
            r.randint(0, 30), r.randint(0, 40), r.randint(0, 300)
        ),
        ("Upgrade to {} before the migration.", "Fixed in release {}."),
    ),
    (
        "id",
        lambda r: r.choice(
            (
                f"user {r.randint(1, 99999)}",
                f"JIRA-{r.randint(100, 9999)}",
                f"{r.getrandbits(32):08x}-{r.getrandbits(16):04x}-4{r.getrandbits(12):03x}-a{r.getrandbits(12):03x}-{r.getrandbits(48):012x}",
                f"commit {r.getrandbits(28):07x}",
                f"doc-{r.randint(1000, 999999)}",
            )
        ),
        ("See {} for details.", "The request ({}) was closed."),
    ),
    (
        "isbn",
        lambda r: r.choice(("978-3-16-148410-0", "0-306-40615-2", "978-1-4028-9462-6", "ISBN 9780262033848")),
        ("The textbook ({}) covers it.", "Cite {} in the bibliography."),
    ),
    (
        "quantity",
        lambda r: r.choice(("{:,} users", "{} ms", "{}%", "{}x1080", "port {}", "HTTP {}")).format(
            r.randint(100, 9_999_999)
        ),
        ("We measured {} at peak.", "The dashboard shows {}."),
    ),
    (
        "time",
        lambda r: f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d}:{r.randint(0, 59):02d}",
        ("The job ran at {} UTC.",),
    ),
    (
        "not an e-mail",
        lambda r: r.choice(("@alice", "alice at example dot com", "user@localhost", "name@", "@example.com")),
        ("Ping {} on chat.", "Written as {} to avoid spam."),
    ),
)


# Written out: spellings the generators above do not produce, and look-alikes. The last phone
# number (a German national number split by a slash and spaces) is one the engine misses.
HARD: list[list[Piece]] = [
    ["Ruf an: ", ("+49 (0)30 12345678", "PHONE_NUMBER", "DE trunk zero in brackets"), "."],
    ["Call ", ("+44 (0) 20 7946 0958", "PHONE_NUMBER", "GB trunk zero in brackets"), " today."],
    ["Dial ", ("0044 20 7946 0958", "PHONE_NUMBER", "GB 00 prefix"), " from abroad."],
    ["US office: ", ("+1 (415) 555-2671", "PHONE_NUMBER", "US international with brackets"), "."],
    ["Toll-free ", ("1-800-555-0199", "PHONE_NUMBER", "US toll-free"), " works 24/7."],
    ["Portable: ", ("+33 (0)6 12 34 56 78", "PHONE_NUMBER", "FR trunk zero in brackets"), "."],
    ["Mobile ", ("07400 123456", "PHONE_NUMBER", "GB national mobile"), ", no texts."],
    ["Tel. ", ("030/1234567", "PHONE_NUMBER", "DE slash"), " (Zentrale)"],
    ["India desk: ", ("+91-98765-43210", "PHONE_NUMBER", "IN dashed"), "."],
    ["Tel: ", ("089 / 12 34 56", "PHONE_NUMBER", "DE slash and spaces"), " (Empfang)"],
    [
        "Write to ",
        ("o'neil@example.com", "EMAIL_ADDRESS", "apostrophe"),
        " or ",
        ("BOB@EXAMPLE.ORG", "EMAIL_ADDRESS", "upper case"),
        ".",
    ],
    [
        "email:",
        ("ann.lee@example.co.uk", "EMAIL_ADDRESS", "after a colon"),
        ";phone:",
        ("+44 7400 123456", "PHONE_NUMBER", "GB international"),
    ],
    ["**", ("dev-team@example.io", "EMAIL_ADDRESS", "markdown bold"), "**"],
    ["Pay to ", ("de89 3704 0044 0532 0130 00", "IBAN_CODE", "DE lower case"), " please."],
    [
        "Amex ",
        ("3782 822463 10005", "CREDIT_CARD", "amex test number"),
        " and Visa ",
        ("4111-1111-1111-1111", "CREDIT_CARD", "visa test number"),
    ],
    ["Parcel ", ("1Z999AA10123456784", "NEGATIVE", "tracking number"), " left the depot."],
    ["Serial ", ("SN 12345-67890", "NEGATIVE", "serial number"), " is under warranty."],
    ["Ask for ext. ", ("4521", "NEGATIVE", "extension"), " or call ", ("911", "NEGATIVE", "emergency number"), "."],
    [
        "Bad addresses ",
        ("999.10.1.1", "NEGATIVE", "invalid IPv4"),
        " and ",
        ("10.0.0.300", "NEGATIVE", "invalid IPv4"),
        ".",
    ],
    ["We reached ", ("1,234,567", "NEGATIVE", "quantity"), " users in ", ("2023", "NEGATIVE", "year"), "."],
    ["Build ", ("20240315.4", "NEGATIVE", "build number"), " shipped on ", ("15.03.2024", "NEGATIVE", "date"), "."],
    ["Coordinates ", ("52.5200, 13.4050", "NEGATIVE", "coordinates"), " are Berlin."],
]


def _record(pieces: list[Piece]) -> dict[str, object]:
    text, spans = "", []
    for piece in pieces:
        if isinstance(piece, str):
            text += piece
            continue
        value, entity, kind = piece
        spans.append({"start": len(text), "end": len(text) + len(value), "type": entity, "kind": kind})
        text += value
    return {"text": text, "spans": spans}


def _fill(template: str, *values: Piece) -> list[Piece]:
    pieces: list[Piece] = []
    parts = template.split("{}")
    for part, value in zip(parts, [*values, ""], strict=True):
        pieces.append(part)
        if value:
            pieces.append(value)
    return [piece for piece in pieces if piece]


def build() -> list[dict[str, object]]:
    """The records, in a fixed order."""
    rng = random.Random(SEED)
    records: list[list[Piece]] = []
    for brand, (_, _, groups) in CARD_BRANDS.items():
        for number in range(12):
            value = card(rng, brand, valid=number < 8)
            value = grouped(value, groups, rng.choice(("", " ", "-")))
            label = ("CREDIT_CARD", brand) if number < 8 else ("NEGATIVE", "card failing Luhn")
            records.append(_fill(rng.choice(CARD_TEMPLATES), (value, *label)))
    for country in IBAN_FORMATS:
        for number in range(6):
            value = iban(rng, country, valid=number < 4)
            if rng.random() < 0.5:
                value = grouped(value, (4,) * 9, " ")
            label = ("IBAN_CODE", country) if number < 4 else ("NEGATIVE", "IBAN failing mod 97")
            records.append(_fill(rng.choice(IBAN_TEMPLATES), (value, *label)))
    for region in NATIONAL_REGIONS + INTERNATIONAL_ONLY:
        for number in range(8 if region in NATIONAL_REGIONS else 4):
            national = region in NATIONAL_REGIONS and number % 2 == 0
            value = phone_text(rng, phone(rng, region), national=national)
            kind = f"{region} {'national' if national else 'international'}"
            records.append(_fill(rng.choice(PHONE_TEMPLATES), (value, "PHONE_NUMBER", kind)))
    for template in EMAIL_TEMPLATES:
        for _ in range(6):
            records.append(_fill(template, (email(rng), "EMAIL_ADDRESS", "e-mail")))
    for _ in range(16):
        records.append(_fill(rng.choice(IP_TEMPLATES), (ipv4(rng), "IP_ADDRESS", "IPv4")))
    for _ in range(14):
        records.append(_fill(rng.choice(IPV6_TEMPLATES), (ipv6(rng), "IP_ADDRESS", "IPv6")))
    for kind, value_of, templates in NEGATIVES:
        for _ in range(8):
            records.append(_fill(rng.choice(templates), (value_of(rng), "NEGATIVE", kind)))
    # Several kinds in one sentence: the positives must not swallow the negatives next to them.
    for _ in range(20):
        negative_kind, value_of, _ = rng.choice(NEGATIVES)
        records.append(
            _fill(
                "On {} {} wrote from {} about order {}: call {} or pay to {}.",
                (value_of(rng), "NEGATIVE", negative_kind) if negative_kind == "date" else "Monday",
                (email(rng), "EMAIL_ADDRESS", "e-mail"),
                (ipv4(rng), "IP_ADDRESS", "IPv4"),
                (f"#{rng.randint(100000, 999999)}", "NEGATIVE", "order number"),
                (phone_text(rng, phone(rng, "GB"), national=False), "PHONE_NUMBER", "GB international"),
                (iban(rng, "NL", valid=True), "IBAN_CODE", "NL"),
            )
        )
    records.extend(HARD)
    return [_record(pieces) for pieces in records]


def write(path: Path = PATH) -> None:
    """Write :func:`build`'s records to ``path``, one JSON object a line."""
    path.write_text("".join(json.dumps(record, ensure_ascii=False) + "\n" for record in build()), encoding="utf-8")


if __name__ == "__main__":
    write()
