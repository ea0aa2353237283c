"""Prompt templates: loading versions from files, rendering, and the template sandbox."""

from pathlib import Path

import pytest
from jinja2 import UndefinedError
from jinja2.exceptions import SecurityError

from ragops_generation.prompts import PromptNotFoundError, list_prompts, load_prompt

CONTEXTS = [
    {"text": "The Loire is the longest river in France.", "title": "Loire", "chunk_id": "loire-p000"},
    {"text": "Nantes lies on the Loire estuary.", "title": "Nantes", "chunk_id": "nantes-p003"},
]


def write_prompt(directory: Path, name: str, version: int, user: str = "Q: {{ question }}") -> Path:
    folder = directory / name
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"v{version}.toml"
    path.write_text(
        f'name = "{name}"\nversion = {version}\ndescription = "test"\nsystem = "Be brief."\nuser = """{user}"""\n'
    )
    return path


def test_packaged_default_is_the_highest_version() -> None:
    versions = [p.version for p in list_prompts() if p.name == "rag-answer"]
    assert versions and versions == sorted(versions)
    assert load_prompt("rag-answer").version == max(versions)
    assert load_prompt("rag-answer", 1).version == 1


def test_render_includes_question_and_every_context() -> None:
    messages = load_prompt("rag-answer").render("How long is the Loire?", CONTEXTS)
    assert [m["role"] for m in messages] == ["system", "user"]
    prompt = "\n".join(m["content"] for m in messages)
    assert "How long is the Loire?" in prompt
    for context in CONTEXTS:
        assert context["text"] in prompt


def test_every_packaged_version_renders() -> None:
    for template in list_prompts():
        assert all(m["content"] for m in template.render("q?", CONTEXTS))


def test_load_latest_and_explicit_version(tmp_path: Path) -> None:
    write_prompt(tmp_path, "demo", 1)
    write_prompt(tmp_path, "demo", 2, user="v2 {{ question }}")
    # Numeric, not lexicographic: v10 is later than v2.
    write_prompt(tmp_path, "demo", 10, user="v10 {{ question }}")
    assert load_prompt("demo", directory=tmp_path).version == 10
    assert load_prompt("demo", 2, directory=tmp_path).render("x", [])[1]["content"] == "v2 x"
    assert [(p.name, p.version) for p in list_prompts(tmp_path)] == [("demo", 1), ("demo", 2), ("demo", 10)]


def test_missing_prompt_or_version_raises(tmp_path: Path) -> None:
    write_prompt(tmp_path, "demo", 1)
    with pytest.raises(PromptNotFoundError):
        load_prompt("absent", directory=tmp_path)
    with pytest.raises(PromptNotFoundError):
        load_prompt("demo", 7, directory=tmp_path)
    with pytest.raises(ValueError):
        load_prompt("../demo", directory=tmp_path)


def test_sha256_changes_when_a_version_is_edited_in_place(tmp_path: Path) -> None:
    path = write_prompt(tmp_path, "demo", 1)
    before = load_prompt("demo", 1, directory=tmp_path).sha256
    path.write_text(path.read_text().replace("Be brief.", "Be very brief."))
    after = load_prompt("demo", 1, directory=tmp_path).sha256
    assert len(before) == 12 and before != after


def test_version_must_match_file_name(tmp_path: Path) -> None:
    path = write_prompt(tmp_path, "demo", 1)
    path.rename(path.with_name("v3.toml"))
    with pytest.raises(ValueError, match="disagree"):
        load_prompt("demo", 3, directory=tmp_path)


def test_undefined_variable_is_an_error(tmp_path: Path) -> None:
    write_prompt(tmp_path, "demo", 1, user="{{ questoin }}")
    with pytest.raises(UndefinedError):
        load_prompt("demo", directory=tmp_path).render("q", [])


def test_missing_context_key_is_an_error(tmp_path: Path) -> None:
    write_prompt(tmp_path, "demo", 1, user="{% for c in contexts %}{{ c.url }}{% endfor %}")
    with pytest.raises(UndefinedError):
        load_prompt("demo", directory=tmp_path).render("q", CONTEXTS)


@pytest.mark.parametrize(
    "expression",
    ["{{ ''.__class__ }}", "{{ question.__class__.__mro__ }}", "{{ contexts.__init__.__globals__ }}"],
)
def test_sandbox_refuses_attribute_tricks(tmp_path: Path, expression: str) -> None:
    write_prompt(tmp_path, "demo", 1, user=expression)
    with pytest.raises(SecurityError):
        load_prompt("demo", directory=tmp_path).render("q", CONTEXTS)


def test_template_syntax_error_is_reported_at_load(tmp_path: Path) -> None:
    write_prompt(tmp_path, "demo", 1, user="{% for c in contexts %}")
    with pytest.raises(ValueError, match="does not compile"):
        load_prompt("demo", directory=tmp_path)


def test_the_registry_decides_the_prompt_version_and_a_retired_one_gets_no_traffic() -> None:
    from ragops_generation.app import Answerer
    from ragops_generation.settings import GenerationSettings
    from ragops_schemas import (
        ContextRetrieved,
        EmbeddingModelInfo,
        Producer,
        RetrievalInfo,
        VersionPromoted,
        VersionRetired,
    )
    from ragops_schemas.registry import Registry

    producer = Producer(name="test", version="0")
    registry = Registry()
    answerer = Answerer(GenerationSettings(), None, producer, registry)  # type: ignore[arg-type]  # no model call here

    def request(version: int | None) -> ContextRetrieved:
        return ContextRetrieved(
            producer=producer,
            request_id="r",
            question="q",
            prompt_version=version,
            contexts=[],
            retrieval=RetrievalInfo(
                collection="c", mode="dense", top_k=1, embedding=EmbeddingModelInfo(name="m", version="v", dimension=3)
            ),
        )

    latest = answerer.prompt_for(request(None)).version
    assert latest == 2, "no promotion yet: the latest file"
    registry.apply(VersionPromoted(producer=producer, kind="prompt", name="rag-answer", version="1", reason="rollback"))
    assert answerer.prompt_for(request(None)).version == 1
    assert answerer.prompt_for(request(2)).version == 2, "a pinned live version is honoured"
    registry.apply(VersionRetired(producer=producer, kind="prompt", name="rag-answer", version="2", reason="bad"))
    assert answerer.prompt_for(request(2)).version == 1, "a retired version takes no traffic, even pinned"
