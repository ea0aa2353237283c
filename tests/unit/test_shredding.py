"""Crypto-shredding: sealed values open while the subject's key exists, read as erased once it
is forgotten, refuse tampering, and an unavailable store raises instead of writing plaintext."""

import stat
from pathlib import Path

import pytest

from ragops_schemas.ids import subject_key_id
from ragops_shared.shredding import FileKeyStore, InvalidToken, KeyStoreUnavailable, Shredder, is_sealed


@pytest.fixture
def shredder(tmp_path: Path) -> Shredder:
    return Shredder(FileKeyStore.under(tmp_path))


def test_seal_then_open(shredder: Shredder) -> None:
    token = shredder.seal("alice@example.com wrote this", "acme", "user-1")
    assert is_sealed(token)
    assert token.startswith(f"shred:v1:{subject_key_id('acme', 'user-1')}:")
    assert "alice" not in token
    assert shredder.open(token) == "alice@example.com wrote this"
    # A fresh nonce each time: equal values do not give equal tokens.
    assert shredder.seal("same", "acme", "user-1") != shredder.seal("same", "acme", "user-1")


def test_sealing_for_a_key_id_is_sealing_for_its_subject(shredder: Shredder) -> None:
    # A review names the asker by key id only: the value is the subject's, forgotten with it.
    token = shredder.seal_for("a question", subject_key_id("acme", "user-1"))
    assert token.startswith(f"shred:v1:{subject_key_id('acme', 'user-1')}:") and shredder.open(token) == "a question"
    shredder.forget("acme", "user-1")
    assert shredder.open(token) is None
    with pytest.raises(ValueError, match="not a subject key id"):
        shredder.seal_for("a question", "../../escape")


def test_forget_erases_every_value_of_the_subject_only(shredder: Shredder) -> None:
    mine = [shredder.seal(text, "acme", "user-1") for text in ("a question", "an answer")]
    theirs = shredder.seal("a question", "acme", "user-2")
    other_tenant = shredder.seal("a question", "other", "user-1")
    assert shredder.forget("acme", "user-1") is True
    assert [shredder.open(token) for token in mine] == [None, None]
    assert shredder.open(theirs) == "a question"
    assert shredder.open(other_tenant) == "a question"
    # Forgetting again (a retried erasure) or a subject with no key: nothing to delete.
    assert shredder.forget("acme", "user-1") is False
    assert shredder.forget("acme", "never-seen") is False


def test_a_second_process_reads_the_same_key_and_sees_it_forgotten(tmp_path: Path) -> None:
    writer, reader = Shredder(FileKeyStore.under(tmp_path)), Shredder(FileKeyStore.under(tmp_path))
    token = writer.seal("value", "acme", "user-1")
    assert reader.open(token) == "value"
    writer.forget("acme", "user-1")
    assert reader.open(token) is None


def test_key_files_are_private(tmp_path: Path, shredder: Shredder) -> None:
    shredder.seal("value", "acme", "user-1")
    root = tmp_path / "keys" / "subjects"
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    (key_file,) = root.iterdir()
    assert key_file.name == f"{subject_key_id('acme', 'user-1')}.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.stat().st_size == 32


def test_reveal_passes_unsealed_values_through(shredder: Shredder) -> None:
    assert shredder.reveal("written before sealing") == "written before sealing"
    assert shredder.reveal(shredder.seal("sealed", "acme", "u")) == "sealed"


@pytest.mark.parametrize(
    "damage",
    [
        lambda token: token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1],  # a flipped byte
        lambda token: token[:40],  # truncated
        lambda token: "shred:v1:not-a-key:abc",
        lambda token: token + "!!",
    ],
)
def test_a_tampered_token_is_refused(shredder: Shredder, damage: object) -> None:
    token = shredder.seal("value", "acme", "user-1")
    with pytest.raises(InvalidToken):
        shredder.open(damage(token))  # type: ignore[operator]


def test_a_token_moved_to_an_existing_key_does_not_open(shredder: Shredder) -> None:
    token = shredder.seal("value", "acme", "user-1")
    shredder.seal("other", "acme", "user-2")
    moved = token.replace(subject_key_id("acme", "user-1"), subject_key_id("acme", "user-2"))
    with pytest.raises(InvalidToken, match="does not authenticate"):
        shredder.open(moved)


def test_open_refuses_a_plain_string(shredder: Shredder) -> None:
    with pytest.raises(InvalidToken):
        shredder.open("plain text")


def test_an_unavailable_store_raises_and_never_seals(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    shredder = Shredder(FileKeyStore(blocker / "subjects"))
    with pytest.raises(KeyStoreUnavailable):
        shredder.seal("value", "acme", "user-1")
    with pytest.raises(KeyStoreUnavailable):
        shredder.forget("acme", "user-1")
    token = Shredder(FileKeyStore.under(tmp_path)).seal("value", "acme", "user-1")
    with pytest.raises(KeyStoreUnavailable):
        shredder.open(token)
    # Consumers retry it as a transient error, then dead-letter it.
    from ragops_shared.retry import is_transient

    assert is_transient(KeyStoreUnavailable("down"))


def test_a_damaged_key_file_is_an_unavailable_store(tmp_path: Path, shredder: Shredder) -> None:
    token = shredder.seal("value", "acme", "user-1")
    (tmp_path / "keys" / "subjects" / f"{subject_key_id('acme', 'user-1')}.key").write_bytes(b"short")
    with pytest.raises(KeyStoreUnavailable):
        shredder.open(token)


def test_the_trainer_skips_and_counts_the_examples_of_an_erased_user(shredder: Shredder) -> None:
    from ragops_schemas import DatasetExampleAdded, Producer
    from ragops_trainer.pairs import readable_examples

    def added(question: str, answer: str) -> DatasetExampleAdded:
        return DatasetExampleAdded(
            producer=Producer(name="feedback", version="0"),
            tenant="acme",
            dataset="feedback",
            example_id=question,
            question=question,
            reference_answer=answer,
            reference_context_ids=[],
            source="correction",
            request_id="r",
            feedback_event_id="f",
        )

    examples = [
        added(shredder.seal("q1", "acme", "erased"), shredder.seal("a1", "acme", "erased")),
        added(shredder.seal("q2", "acme", "kept"), shredder.seal("a2", "acme", "kept")),
        added("q3 written before sealing", "a3"),
    ]
    shredder.forget("acme", "erased")
    readable, erased = readable_examples(examples, shredder)
    assert erased == 1
    assert [(e.question, e.reference_answer) for e in readable] == [("q2", "a2"), ("q3 written before sealing", "a3")]
