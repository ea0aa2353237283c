"""The redaction engine (ragops_privacy.redaction): modes, pseudonyms, deny lists, the policy's
patterns, overlapping detections, and texts with nothing or nothing but personal data."""

import logging
import re

import pytest
from pydantic import ValidationError

from ragops_privacy.redaction import MASK, RedactionPolicy, Redactor
from ragops_schemas import ids

KEY = b"unit-test-pseudonym-key-32-bytes"
TEXT = "Mail Alice.Smith@Example.com or call +44 20 7946 0958; card 4111 1111 1111 1111."


@pytest.fixture(scope="module")
def redactor() -> Redactor:
    return Redactor(RedactionPolicy(), KEY)


def test_type_mode_writes_the_entity_type_and_counts_each_type(redactor: Redactor) -> None:
    redaction = redactor.redact(TEXT, tenant="acme")
    assert redaction.text == "Mail <EMAIL_ADDRESS> or call <PHONE_NUMBER>; card <CREDIT_CARD>."
    assert redaction.counts == {"CREDIT_CARD": 1, "EMAIL_ADDRESS": 1, "PHONE_NUMBER": 1}


def test_mask_mode_writes_a_fixed_mask_whatever_the_length() -> None:
    redactor = Redactor(RedactionPolicy(default_mode="mask"), KEY)
    redaction = redactor.redact(TEXT, tenant="acme")
    assert redaction.text == f"Mail {MASK} or call {MASK}; card {MASK}."
    assert redaction.counts == {"CREDIT_CARD": 1, "EMAIL_ADDRESS": 1, "PHONE_NUMBER": 1}


def test_modes_per_type_and_the_default_for_the_rest() -> None:
    policy = RedactionPolicy(modes={"EMAIL_ADDRESS": "pseudonym", "CREDIT_CARD": "mask"})
    text = Redactor(policy, KEY).redact(TEXT, tenant="acme").text
    email = ids.pseudonym(KEY, "alice.smith@example.com", tenant="acme")
    assert text == f"Mail <EMAIL_ADDRESS:{email}> or call <PHONE_NUMBER>; card {MASK}."


def test_pseudonyms_are_stable_per_value_and_tenant_and_differ_across_tenants() -> None:
    redactor = Redactor(RedactionPolicy(default_mode="pseudonym"), KEY)
    first = redactor.redact(TEXT, tenant="acme").text
    assert redactor.redact(TEXT, tenant="acme").text == first
    other = redactor.redact(TEXT, tenant="globex").text
    tokens = re.findall(r"<(\w+):([0-9a-f]{16})>", first)
    assert [entity for entity, _ in tokens] == ["EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD"]
    assert not set(tokens) & set(re.findall(r"<(\w+):([0-9a-f]{16})>", other))
    # Another key (another deployment) gives other pseudonyms of the same values.
    rekeyed = Redactor(RedactionPolicy(default_mode="pseudonym"), b"another-key-of-at-least-16-bytes")
    assert rekeyed.redact(TEXT, tenant="acme").text != first


def test_spellings_of_one_value_share_a_pseudonym() -> None:
    redactor = Redactor(RedactionPolicy(default_mode="pseudonym"), KEY)

    def token(text: str) -> str:
        (found,) = re.findall(r"<\w+:[0-9a-f]{16}>", redactor.redact(text, tenant="acme").text)
        return found

    assert token("to ALICE@example.COM") == token("to alice@example.com")
    assert token("card 4111-1111-1111-1111") == token("card 4111111111111111")
    assert token("IBAN DE89 3704 0044 0532 0130 00") == token("IBAN DE89370400440532013000")
    assert token("call +44 20 7946 0958") == token("call +442079460958")
    assert token("call alice@example.com") != token("call bob@example.com")


def test_user_id_pseudonym_is_the_keyed_rule_of_ids(redactor: Redactor) -> None:
    assert redactor.pseudonym("user-42", tenant="acme") == ids.pseudonym(KEY, "user-42", tenant="acme")
    assert redactor.pseudonym(" user-42 ", tenant="acme") == redactor.pseudonym("user-42", tenant="acme")
    assert redactor.pseudonym("user-42", tenant="acme") != redactor.pseudonym("user-42", tenant="globex")
    assert redactor.pseudonym("User-42", tenant="acme") != redactor.pseudonym("user-42", tenant="acme")


def test_deny_lists_match_whole_terms_in_any_case_longest_first() -> None:
    policy = RedactionPolicy(deny_lists={"PROJECT": ["Falcon", "Blue Falcon", " "]})
    redaction = Redactor(policy, KEY).redact("Blue falcon ships; FALCON too, not Falconry.", tenant="acme")
    assert redaction.text == "<PROJECT> ships; <PROJECT> too, not Falconry."
    assert redaction.counts == {"PROJECT": 2}


def test_the_policy_patterns_add_entity_types() -> None:
    policy = RedactionPolicy(patterns={"EMPLOYEE_ID": [r"\bEMP-\d{5}\b"]}, modes={"EMPLOYEE_ID": "mask"})
    redaction = Redactor(policy, KEY).redact("EMP-12345 and EMP-1234 filed it", tenant="acme")
    assert redaction.text == f"{MASK} and EMP-1234 filed it"
    assert redaction.counts == {"EMPLOYEE_ID": 1}


def test_overlapping_detections_leave_no_character_visible() -> None:
    # The pattern takes the e-mail's domain and what follows; the e-mail and the pattern
    # overlap, and the IBAN holds digits that pass Luhn (a card inside it).
    policy = RedactionPolicy(patterns={"HOST": [r"example\.com/\w+"]})
    text = "alice@example.com/path and DE12 3351 4735 9397 1771 15"
    redaction = Redactor(policy, KEY).redact(text, tenant="acme")
    # The e-mail scores as high as the pattern and starts first: the pattern keeps "/path".
    assert redaction.text == "<EMAIL_ADDRESS><HOST> and <IBAN_CODE>"
    assert redaction.counts == {"EMAIL_ADDRESS": 1, "HOST": 1, "IBAN_CODE": 1}


def test_empty_and_blank_texts_come_back_unchanged(redactor: Redactor) -> None:
    for text in ("", "   \n"):
        redaction = redactor.redact(text, tenant="acme")
        assert (redaction.text, redaction.counts) == (text, {})


def test_a_text_without_personal_data_comes_back_unchanged(redactor: Redactor) -> None:
    text = "Order #100234 of 2024-03-15 cost $1,299.99 with v3.11.2 (ISBN 978-3-16-148410-0)."
    assert redactor.redact(text, tenant="acme").text == text


def test_no_year_is_a_phone_number(redactor: Redactor) -> None:
    # libphonenumber reads some four-digit strings as German pager numbers (1649, 1685).
    text = " ".join(f"In {year} (or {year}–{year % 100 + 1:02d})," for year in range(1000, 2100))
    assert redactor.detect(text) == []


def test_a_text_of_nothing_but_personal_data(redactor: Redactor) -> None:
    text = "alice@example.com +442079460958 4111111111111111 GB82WEST12345698765432 192.168.1.10"
    redaction = redactor.redact(text, tenant="acme")
    assert redaction.text == "<EMAIL_ADDRESS> <PHONE_NUMBER> <CREDIT_CARD> <IBAN_CODE> <IP_ADDRESS>"
    assert sum(redaction.counts.values()) == 5


def test_counts_name_types_never_values(redactor: Redactor) -> None:
    counts = redactor.redact(TEXT, tenant="acme").counts
    assert all(re.fullmatch(r"[A-Z_]+", entity) for entity in counts)


def test_a_policy_refuses_a_bad_regex_a_bad_region_or_mode() -> None:
    with pytest.raises(ValidationError, match="does not compile"):
        RedactionPolicy(patterns={"X": ["("]})
    with pytest.raises(ValidationError, match="not libphonenumber regions"):
        RedactionPolicy(phone_regions=("US", "XX"))
    with pytest.raises(ValidationError):
        RedactionPolicy(default_mode="hash")  # type: ignore[arg-type]


def test_a_short_pseudonym_key_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        Redactor(RedactionPolicy(), b"short")


def test_phone_regions_decide_national_numbers() -> None:
    # A French national number is one only where France is a region; international ones always.
    only_us = Redactor(RedactionPolicy(phone_regions=("US",)), KEY)
    assert only_us.redact("appelez le 06 12 34 56 78", tenant="acme").counts == {}
    assert only_us.redact("appelez le +33 6 12 34 56 78", tenant="acme").counts == {"PHONE_NUMBER": 1}
    with_fr = Redactor(RedactionPolicy(phone_regions=("US", "FR")), KEY)
    assert with_fr.redact("appelez le 06 12 34 56 78", tenant="acme").counts == {"PHONE_NUMBER": 1}


def test_presidio_logs_no_value_and_nothing_per_call(redactor: Redactor, caplog: pytest.LogCaptureFixture) -> None:
    # An IBAN with a Kelvin sign (U+212A) matches Presidio's case-insensitive pattern but fails
    # its validation, which logs the candidate at ERROR.
    with caplog.at_level(logging.DEBUG):
        redactor.redact("pay to GB82 \u212aEST 1234 5698 7654 32 or alice@example.com", tenant="acme")
    logged = [record.getMessage() for record in caplog.records]
    assert not any("1234" in message or "alice" in message for message in logged), logged
    assert not any("context extraction" in message for message in logged), logged
