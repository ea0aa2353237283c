"""The demo's planted personal data (:mod:`ragops.pii_plant`) and the matcher of the scan that
looks for it (:class:`ragops.pii_scan.Finder`): the values are valid of their kind, a standard
recognizer finds each, planting only appends, and the matcher finds each value in the forms a
store may keep it in and nothing else."""

import base64
import ipaddress
from collections import Counter

import phonenumbers
import pytest
from presidio_analyzer.predefined_recognizers import (
    CreditCardRecognizer,
    EmailRecognizer,
    IbanRecognizer,
    IpRecognizer,
    PhoneRecognizer,
)

from ragops.pii_plant import DOCUMENTS, PiiPlanter, PlantedValue, iban_check_digits, luhn_valid
from ragops.pii_scan import Finder, Finding, holds_text, search_forms, summary, topic_store
from ragops_schemas import DocumentSubmitted, FeedbackSubmitted, Producer, Topic
from ragops_schemas.topics import Retention, TopicSpec
from ragops_shared.datasets import Question

PRODUCER = Producer(name="test", version="0")


def documents(n: int) -> list[DocumentSubmitted]:
    return [
        DocumentSubmitted(producer=PRODUCER, document_id=f"doc-{i}", content=f"Passage {i}: the answer is Paris.")
        for i in range(n)
    ]


def questions(n: int) -> list[Question]:
    return [
        Question(id=f"q{i}", question=f"Where is thing {i}?", answers=["Paris"], context_ids=[f"doc-{i}"])
        for i in range(n)
    ]


def feedback(n: int) -> list[FeedbackSubmitted]:
    return [FeedbackSubmitted(producer=PRODUCER, request_id=f"r{i}", thumb="down") for i in range(n)]


Demo = tuple[PiiPlanter, list[DocumentSubmitted], list[Question], list[FeedbackSubmitted]]


def planted_demo(seed: int = 14) -> Demo:
    planter = PiiPlanter(seed)
    docs = planter.documents(documents(200))
    asked = planter.questions(questions(100))
    sent = planter.feedback(feedback(100))
    return planter, docs, asked, sent


@pytest.fixture(scope="module")
def demo() -> Demo:
    return planted_demo()


def test_the_same_seed_plants_the_same_values_and_another_seed_others() -> None:
    assert planted_demo(14)[0].planted == planted_demo(14)[0].planted
    assert {v.value for v in planted_demo(14)[0].planted}.isdisjoint({v.value for v in planted_demo(15)[0].planted})


def test_fifty_documents_a_share_of_questions_and_of_feedback_carry_every_kind(demo: Demo) -> None:
    planter, _, _, _ = demo
    carriers = {
        c: len({v.target for v in planter.planted if v.carrier == c}) for c in ("document", "question", "feedback")
    }
    assert carriers == {"document": DOCUMENTS, "question": 20, "feedback": 30}
    assert set(Counter(v.kind for v in planter.planted)) == {"email", "phone", "card", "iban", "ip"}
    assert len({v.ident for v in planter.planted}) == len(planter.planted)


def test_planting_only_appends_so_reference_answers_stay(demo: Demo) -> None:
    _, docs, asked, sent = demo
    originals, original_questions = documents(200), questions(100)
    changed = [(old, new) for old, new in zip(originals, docs, strict=True) if old.content != new.content]
    assert len(changed) == DOCUMENTS
    assert all(new.content.startswith(old.content) and new.document_id == old.document_id for old, new in changed)
    assert all(
        new.question.startswith(old.question) and new.answers == old.answers
        for old, new in zip(original_questions, asked, strict=True)
    )
    assert sum(item.comment is not None for item in sent) == 30 and all(item.thumb == "down" for item in sent)


def test_card_numbers_pass_luhn_and_ibans_their_check_digits(demo: Demo) -> None:
    planter = demo[0]
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert iban_check_digits("DE", "370400440532013000") == "89"  # the ECBS example DE89 3704 0044 0532 0130 00
    for value in planter.planted:
        if value.kind == "card":
            assert luhn_valid("".join(c for c in value.value if c.isdigit())), value
        if value.kind == "iban":
            compact = value.value.replace(" ", "")
            assert int("".join(str(int(c, 36)) for c in compact[4:] + compact[:4])) % 97 == 1, value


def test_every_value_is_of_its_kind_and_from_a_range_reserved_for_examples(demo: Demo) -> None:
    for value in demo[0].planted:
        if value.kind == "phone":
            assert phonenumbers.is_valid_number(
                phonenumbers.parse(value.value, "GB" if value.value.startswith("020") else "US")
            ), value
        elif value.kind == "email":
            assert value.value.lower().rsplit("@", 1)[1].endswith(("example.org", "example.com", "example.net")), value
        elif value.kind == "ip":
            address = ipaddress.ip_address(value.value)
            assert any(
                address in ipaddress.ip_network(net)
                for net in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
            ), value


RECOGNIZERS = {
    "email": (EmailRecognizer, "EMAIL_ADDRESS"),
    "phone": (PhoneRecognizer, "PHONE_NUMBER"),
    "card": (CreditCardRecognizer, "CREDIT_CARD"),
    "iban": (IbanRecognizer, "IBAN_CODE"),
    "ip": (IpRecognizer, "IP_ADDRESS"),
}


def test_presidios_own_recognizer_finds_every_planted_value_where_it_was_planted(demo: Demo) -> None:
    """Each value is one a checksum-validating redactor finds: the scan's 0 is reachable."""
    planter, docs, asked, sent = demo
    texts = [d.content for d in docs] + [q.question for q in asked] + [f.comment for f in sent if f.comment]
    recognizers = {kind: (cls(), entity) for kind, (cls, entity) in RECOGNIZERS.items()}
    for value in planter.planted:
        text = next(t for t in texts if value.value in t)
        recognizer, entity = recognizers[value.kind]
        spans = {text[r.start : r.end] for r in recognizer.analyze(text, [entity], None)}
        assert value.value in spans, (value, text, spans)


EMAIL = PlantedValue("email-0", "email", "Jane.Doe42@Example.org", "document", "d1")
PHONE = PlantedValue("phone-1", "phone", "+44 20 7946 0958", "question", "q1")
CARD = PlantedValue("card-2", "card", "4111-1111-1111-1111", "feedback", "r1")
IBAN = PlantedValue("iban-3", "iban", "DE89 3704 0044 0532 0130 00", "document", "d2")
IP = PlantedValue("ip-4", "ip", "203.0.113.7", "document", "d3")


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("write to jane.doe42@example.org today", {"email-0"}),  # lower-cased by a store
        ('{"comment": "JANE.DOE42@EXAMPLE.ORG"}', {"email-0"}),
        ("tel:442079460958", {"phone-1"}),  # digits only
        ("E.164 +442079460958 and card 4111111111111111", {"phone-1", "card-2"}),
        ("iban=de89370400440532013000", {"iban-3"}),  # compact, lower-cased
        ("login from 203.0.113.7:443", {"ip-4"}),
        ("GET /v1/search?q=Jane.Doe42%40Example.org&tel=%2B44%2020%207946%200958", {"email-0", "phone-1"}),
        ("Jane.Doe42@Example.org, 203.0.113.7", {"email-0", "ip-4"}),
        # Years, prices, order numbers, other addresses: nothing.
        ("In 1973 the price rose to US$12; order 4111-1111 and 203.0.113.8 and jane.doe4@example.org", set()),
        ("", set()),
    ],
)
def test_the_finder_finds_each_value_in_the_forms_a_store_keeps(text: str, found: set[str]) -> None:
    assert Finder([EMAIL, PHONE, CARD, IBAN, IP]).find(text) == found


@pytest.mark.parametrize("before", [b"", b"x", b"xy", b'{"question": "call '])
def test_the_finder_finds_a_value_inside_base64_at_any_alignment(before: bytes) -> None:
    """A dead letter carries its record base64-encoded (``original_value_b64``)."""
    finder = Finder([EMAIL, PHONE, CARD, IBAN, IP])
    for value in (EMAIL, PHONE, CARD, IBAN, IP):
        encoded = base64.b64encode(before + value.value.encode() + b'"} and more').decode()
        assert finder.find(f'{{"original_value_b64": "{encoded}"}}') == {value.ident}, (value, before)
    assert finder.find(base64.b64encode(before + b"nothing planted here at all").decode()) == set()


def test_forms_shorter_than_seven_characters_are_not_searched_and_a_shared_form_names_both_values() -> None:
    assert all(len(form) >= 7 for form in search_forms(IP))
    dashed = PlantedValue("phone-8", "phone", "+1 202-555-0142", "question", "q2")
    dotted = PlantedValue("phone-9", "phone", "+1 202.555.0142", "question", "q3")  # the same number
    assert Finder([dashed, dotted]).find("call +1 202-555-0142") == {"phone-8"}
    assert Finder([dashed, dotted]).find("call 12025550142") == {"phone-8", "phone-9"}
    assert Finder([]).find("anything") == set()


def test_no_planted_value_is_another_in_a_different_format() -> None:
    """A value whose letters and digits hold another's would make a find name the wrong one."""
    planter = PiiPlanter()
    planter.documents(documents(3000), count=3000)
    keys = ["".join(c for c in v.value.lower() if c.isalnum()) for v in planter.planted]
    assert not [(a, b) for i, a in enumerate(keys) for b in keys[i + 1 :] if a in b or b in a]


@pytest.mark.parametrize(
    ("column_type", "searched"),
    [
        ("String", True),
        ("LowCardinality(String)", True),
        ("Nullable(String)", True),
        ("Map(String, String)", True),
        ("Array(String)", True),
        ("Tuple(String, UInt8)", True),
        ("IPv4", True),
        ("Array(Float32)", False),
        ("UInt64", False),
        ("DateTime64(3, 'UTC')", False),
        ("Nullable(Float64)", False),
        ("UUID", False),
        ("Enum8('up' = 1, 'down' = 2)", False),
    ],
)
def test_clickhouse_columns_that_can_hold_text_are_searched(column_type: str, searched: bool) -> None:
    assert holds_text(column_type) is searched


def test_intake_topics_and_dead_letters_are_apart_every_other_topic_is_kept() -> None:
    specs = (
        TopicSpec(Topic.QUERY_SUBMITTED, ("request_id",), Retention.INTAKE, sink=False),
        TopicSpec(Topic.ERASURE_REQUESTED, ("erasure_id",), Retention.FOREVER, sink=False),  # kept: not apart
        TopicSpec(Topic.ANSWER_GENERATED, ("request_id",)),
    )
    assert topic_store(Topic.QUERY_SUBMITTED, specs) == "intake_topics"
    assert topic_store(Topic.ANSWER_GENERATED, specs) == "topics"
    assert topic_store(Topic.ERASURE_REQUESTED, specs) == "topics"
    assert topic_store(Topic.DEAD_LETTER, specs) == "dead_letter_topic"
    assert topic_store("someone.elses.topic", specs) == "topics"


def test_the_summary_counts_distinct_values_per_store_and_is_clean_only_without_a_leak() -> None:
    planted = [EMAIL, PHONE, CARD]
    apart = [Finding("intake_topics", Topic.QUERY_SUBMITTED, frozenset({"email-0", "phone-1"}))]
    clean = summary(planted, apart)
    assert clean["clean"] and clean["leaks"] == [] and clean["found"]["clickhouse"] == 0
    assert clean["reached"] == 2  # card-2 was found nowhere
    assert clean["found_apart"] == {"intake_topics": 2, "dead_letter_topic": 0}
    assert clean["planted"]["by_carrier"] == {"document": 1, "question": 1, "feedback": 1}
    leaked = summary(
        planted,
        [
            *apart,
            Finding("clickhouse", "feedback.comment", frozenset({"card-2"})),
            Finding("clickhouse", "events.payload", frozenset({"card-2", "email-0"})),
        ],
    )
    assert not leaked["clean"] and leaked["found"]["clickhouse"] == 2 and len(leaked["leaks"]) == 2
    assert leaked["reached"] == 3
    assert "4111" not in str(leaked)  # idents, never values
