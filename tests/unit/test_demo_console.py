"""The demo's stand-in reviewer and the price-list file it publishes (ragops.demo_console, ragops.tco)."""

from pathlib import Path

from ragops.demo_console import DEFAULT_PRICES, stand_in_label
from ragops.tco import price_list_body


def test_the_stand_in_reviewer_marks_correct_by_the_gold_answer_and_grounded_by_the_passages() -> None:
    passages = ["The Normans were in Normandy, a region in France.", "Rollo was a Viking."]
    assert stand_in_label("In France.", passages, ["France", "Normandy"]) == (True, True)
    # Correct, but the gold answer it gives is in no retrieved passage: not grounded.
    assert stand_in_label("Rouen", passages, ["Rouen"]) == (True, False)
    assert stand_in_label("In Spain.", passages, ["France"]) == (False, False)
    # SQuAD normalisation: case, punctuation and articles do not matter.
    assert stand_in_label("the FRANCE!", passages, ["France"]).correct


def test_the_default_price_list_file_is_a_price_list_body(tmp_path: Path) -> None:
    body = price_list_body(DEFAULT_PRICES)
    assert "effective_from" not in body, "it applies from when it is published: the gateway refuses a backdated list"
    units = {price["unit"] for price in body["prices"]}  # type: ignore[attr-defined]
    assert {"cpu_core_hour", "gpu_hour", "storage_gib_month", "input_tokens_million", "output_tokens_million"} <= units
    listed = tmp_path / "prices.toml"
    listed.write_text('reason = "file"\n[[prices]]\nunit = "gpu_hour"\nusd = 3.5\n')
    assert price_list_body(listed, "given") == {"prices": [{"unit": "gpu_hour", "usd": 3.5}], "reason": "given"}
    assert price_list_body(listed)["reason"] == "file"
