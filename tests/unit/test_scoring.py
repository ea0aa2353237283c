from ragops.scoring import contains_answer, exact_match, hit_at_k, normalize_answer, token_f1


def test_normalisation_follows_the_squad_script() -> None:
    assert normalize_answer("The  Normans, of course!") == "normans of course"
    assert normalize_answer("An apple a day") == "apple day"


def test_exact_match_takes_the_best_reference() -> None:
    assert exact_match("in the 1050s", ["1050s", "in the 1050s"]) == 1.0
    assert exact_match("1050", ["1050s"]) == 0.0


def test_token_f1_is_partial_credit() -> None:
    assert token_f1("Gamal Abdul Nasser", ["Gamal Abdul Nasser"]) == 1.0
    assert token_f1("president Nasser", ["Gamal Abdul Nasser"]) == 0.4  # p=1/2, r=1/3
    assert token_f1("", ["x"]) == 0.0


def test_contains_answer_matches_whole_tokens() -> None:
    assert contains_answer("It was Inertia, said Newton.", ["inertia"]) == 1.0
    assert contains_answer("Inertial frames", ["inertia"]) == 0.0
    assert contains_answer("anything", ["the"]) == 0.0  # a reference that normalises to nothing


def test_hit_at_k() -> None:
    assert hit_at_k(["a", "b", "c"], ["c"], 3) == 1.0
    assert hit_at_k(["a", "b", "c"], ["c"], 2) == 0.0
