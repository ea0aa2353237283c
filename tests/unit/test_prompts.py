"""Prompt templates: seed files, pushed bodies, resolving a version against the registry,
rendering, and the template sandbox."""

from pathlib import Path

import pytest
from jinja2 import UndefinedError
from jinja2.exceptions import SecurityError
from prometheus_client import REGISTRY

from ragops_generation.app import Answerer
from ragops_generation.settings import GenerationSettings
from ragops_schemas import (
    AnswerGenerated,
    ContextRetrieved,
    Producer,
    PromptBody,
    VersionPromoted,
    VersionRegistered,
    VersionRetired,
)
from ragops_schemas.experiments import ExperimentAssignment
from ragops_schemas.ids import prompt_hash
from ragops_schemas.registry import Registry
from ragops_shared.prompts import (
    PromptNotFoundError,
    PromptTemplate,
    check_renders,
    load_prompt,
    prompt_body,
    resolve_prompt,
    seed_prompts,
)
from tests.helpers import EchoGenerator, example

PRODUCER = Producer(name="test", version="0")

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
    versions = [p.version for p in seed_prompts() if p.name == "rag-answer"]
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
    for template in seed_prompts():
        assert all(m["content"] for m in template.render("q?", CONTEXTS))


def test_load_latest_and_explicit_version(tmp_path: Path) -> None:
    write_prompt(tmp_path, "demo", 1)
    write_prompt(tmp_path, "demo", 2, user="v2 {{ question }}")
    # Numeric, not lexicographic: v10 is later than v2.
    write_prompt(tmp_path, "demo", 10, user="v10 {{ question }}")
    assert load_prompt("demo", directory=tmp_path).version == 10
    assert load_prompt("demo", 2, directory=tmp_path).render("x", [])[1]["content"] == "v2 x"
    assert [(p.name, p.version) for p in seed_prompts(tmp_path)] == [("demo", 1), ("demo", 2), ("demo", 10)]


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

    latest = answerer.prompt_for(request(None))[0].version
    assert latest == 3, "no promotion yet: the latest file"
    registry.apply(VersionPromoted(producer=producer, kind="prompt", name="rag-answer", version="1", reason="rollback"))
    assert answerer.prompt_for(request(None))[0].version == 1
    assert answerer.prompt_for(request(2))[0].version == 2, "a pinned live version is honoured"
    registry.apply(VersionRetired(producer=producer, kind="prompt", name="rag-answer", version="2", reason="bad"))
    assert answerer.prompt_for(request(2))[0].version == 1, "a retired version takes no traffic, even pinned"


def test_a_pushed_body_carries_the_hash_of_its_text_and_renders_like_a_seed() -> None:
    seed = load_prompt("rag-answer", 2)
    body = prompt_body(seed.description, seed.system, seed.user)
    assert body == seed.body() and len(body.sha256) == 12
    pushed = PromptTemplate.from_body("rag-answer", 7, body)
    assert (pushed.version, pushed.sha256) == (7, seed.sha256)
    assert pushed.render("q?", CONTEXTS) == seed.render("q?", CONTEXTS)
    assert prompt_body("other", seed.system, seed.user).sha256 != body.sha256, "the description is part of the text"


def test_a_body_edited_after_hashing_is_refused() -> None:
    body = load_prompt("rag-answer", 1).body()
    with pytest.raises(ValueError, match="sha256"):
        PromptTemplate.from_body("rag-answer", 3, body.model_copy(update={"user": "Q: {{ question }}"}))


@pytest.mark.parametrize(
    ("system", "user", "reason"),
    [
        ("Be brief.", "{% for c in contexts %}", "does not compile"),
        ("Be brief.", "{{ questoin }}", "UndefinedError"),
        ("Be brief.", "{% for c in contexts %}{{ c.url }}{% endfor %}", "UndefinedError"),
        ("{{ ''.__class__ }}", "{{ question }}", "SecurityError"),
        ("Be brief.", "{{ 1 / 0 }}", "ZeroDivisionError"),
        ("Be brief.", "{% if false %}{{ question }}{% endif %}", "renders empty"),
        ("", "{{ question }}", "at least 1 character"),
    ],
)
def test_prompt_body_refuses_a_template_that_cannot_serve(system: str, user: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        prompt_body("d", system, user)


def registered(version: int, body: PromptBody) -> VersionRegistered:
    return VersionRegistered(producer=PRODUCER, kind="prompt", name="rag-answer", version=str(version), prompt=body)


def test_resolve_prompt_pinned_then_production_then_highest_seed_and_a_body_wins() -> None:
    registry = Registry()
    assert resolve_prompt(registry, "rag-answer", None).version == 3, "nothing registered: the highest seed"
    assert resolve_prompt(registry, "rag-answer", 1).version == 1, "a pinned seed version"
    with pytest.raises(PromptNotFoundError):
        resolve_prompt(registry, "rag-answer", 4)
    pushed = prompt_body("pushed", "Answer in French.", "Q: {{ question }}")
    registry.apply(registered(4, pushed))
    assert resolve_prompt(registry, "rag-answer", 4).render("q", [])[1]["content"] == "Q: q"
    assert resolve_prompt(registry, "rag-answer", None).version == 3, "registered is not production"
    registry.apply(VersionPromoted(producer=PRODUCER, kind="prompt", name="rag-answer", version="4", reason="r"))
    assert resolve_prompt(registry, "rag-answer", None).sha256 == pushed.sha256
    assert resolve_prompt(registry, "rag-answer", 1).version == 1, "a pin beats production"
    registry.apply(VersionRetired(producer=PRODUCER, kind="prompt", name="rag-answer", version="4", reason="bad"))
    assert resolve_prompt(registry, "rag-answer", 4).version == 3, "retired: neither pin nor alias serve it"


def test_check_renders_passes_every_seed() -> None:
    for template in seed_prompts():
        check_renders(template)


# Renders on prompt_body's sample, fails on the question "boom": a failure only real traffic finds.
FRAGILE = prompt_body("fragile", "Be brief.", "A: {{ question }}{% if question == 'boom' %}{{ nope }}{% endif %}")


def arm(version: str, target_name: str = "rag-answer") -> ExperimentAssignment:
    return ExperimentAssignment(
        experiment_id="exp-0123456789abcdef0123", target="prompt", target_name=target_name, variant="b", version=version
    )


def test_generation_renders_the_assigned_version_and_falls_back_to_production_when_it_fails() -> None:
    registry = Registry()
    registry.apply(registered(4, FRAGILE))
    answerer = Answerer(GenerationSettings(), EchoGenerator(), PRODUCER, registry)
    asked = example(ContextRetrieved)

    def answer(**update: object) -> AnswerGenerated:
        return answerer.answer([asked.model_copy(update=update)])[0]

    def failures() -> float:
        labels = {"prompt": "rag-answer", "version": "4"}
        return REGISTRY.get_sample_value("ragops_prompt_render_failures_total", labels) or 0.0

    served = answer(assignment=arm("4"))
    assert served.answer == f"A: {asked.question}"
    assert (served.lineage.prompt.version, served.lineage.variant) == (4, "b")
    assert served.lineage.experiment_id == "exp-0123456789abcdef0123"
    other = answer(assignment=arm("4", target_name="other-prompt"))
    assert (other.lineage.prompt.version, other.lineage.variant) == (3, None), "an arm of another prompt"
    pinned = answer(assignment=arm("4"), prompt_version=1)
    assert (pinned.lineage.prompt.version, pinned.lineage.variant) == (1, None), "a pin beats the arm"

    before = failures()
    fell_back = answer(assignment=arm("4"), question="boom")
    assert (fell_back.lineage.prompt.version, fell_back.lineage.variant, fell_back.lineage.experiment_id) == (
        3,
        None,
        None,
    ), "production (here the highest seed) served, and the answer counts for no arm"
    assert failures() == before + 1
    with pytest.raises(UndefinedError):
        answer(prompt_version=4, question="boom")  # pinned: dead-lettered with the reason, as before

    registry.apply(VersionRetired(producer=PRODUCER, kind="prompt", name="rag-answer", version="4", reason="bad"))
    retired = answer(assignment=arm("4"))
    assert (retired.lineage.prompt.version, retired.lineage.variant) == (3, None), "a retired arm serves no one"


# Templates that render on a question and two passages but fail on what production sends
# (context_chunks = 3 passages) or on another question length: refused at push now.
FAILS_AT_THREE = "{{ question }}{{ 60 // (3 - contexts|length) }}"


@pytest.mark.parametrize(
    ("user", "reason"),
    [
        (FAILS_AT_THREE, r"3 passage\(s\).*ZeroDivisionError"),
        ("{{ question }}{% if contexts|length > 9 %}{{ nope }}{% endif %}", r"10 passage\(s\).*UndefinedError"),
        ("{{ question }}{% if question|length < 2 %}{{ 1 // 0 }}{% endif %}", "1-character question"),
        ("{{ question }}{% if question|length > 3000 %}{{ 1 // 0 }}{% endif %}", "4000-character question"),
        ("{{ question }}{% for i in range(contexts|length * 40000) %}{% endfor %}", "range"),
        ("{{ question }}{% if contexts|length > 2 %}{{ (question * 2000000)|length }}{% endif %}", "repetition"),
    ],
)
def test_prompt_body_renders_every_number_of_passages_and_question_length(user: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        prompt_body("d", "Be brief.", user)


# Templates that would spend the worker's CPU or memory: each is stopped by a limit of the
# sandbox (SecurityError) before it does.
@pytest.mark.parametrize(
    ("template", "limit"),
    [
        ("{% for i in range(10**9) %}x{% endfor %}", "integer argument"),
        ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "range"),
        ("{% for i in range(100) %}{% for j in range(100) %}{% endfor %}{% endfor %}", "range"),
        ("{{ ('x' * 300000000)|length }}", "repetition"),
        ("{{ ([1] * 300000000)|length }}", "repetition"),
        ("{{ 9 ** (9 ** 7) }}", "power"),
        ("{% set ns = namespace(x=9) %}{% for i in range(40) %}{% set ns.x = ns.x * ns.x %}{% endfor %}", "product"),
        ("{% set ns = namespace(s='xx') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}", "concat"),
        ("{% set ns = namespace(s='xx') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}", "concat"),
        ("{{ 'x'|center(300000000) }}", "integer argument"),
        ("{{ [1]|batch(300000000, 0)|list|length }}", "integer argument"),
        ("{{ 'x'.ljust(300000000) }}", "integer argument"),
        ("{{ '{:>300000000}'.format(1) }}", "format width"),
        ("{{ '%300000000d' % 1 }}", "format width"),
        ("{{ '%300000000d'|format(1) }}", "format width"),
        (
            "{% for a in question %}{% for b in question %}{% for c in question %}{% endfor %}{% endfor %}{% endfor %}",
            "loop",
        ),
        ("{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}", "calls"),
        ("{% set s = 'x' * 99999 %}{% for i in range(1000) %}{{ s }}{% endfor %}", "renders over 100000"),
        ("{% set s = 'x' * 99999 %}{% for i in range(100) %}{{ (s ~ '')|length }}{% endfor %}", "builds over"),
    ],
)
def test_prompt_body_refuses_a_template_past_a_sandbox_limit(template: str, limit: str) -> None:
    with pytest.raises(ValueError, match=f"SecurityError: .*{limit}"):
        prompt_body("d", "Be brief.", "{{ question }}" + template)


def test_a_recursive_loop_is_refused_at_compile() -> None:
    with pytest.raises(ValueError, match="recursive for loop is not allowed"):
        prompt_body("d", "Be brief.", "{{ question }}{% for c in contexts recursive %}{{ loop(contexts) }}{% endfor %}")


def test_the_limits_leave_room_for_a_real_prompt() -> None:
    user = (
        "{% for c in contexts %}[{{ loop.index }}] {{ c.title|upper }}: {{ c.text|truncate(500) }} ({{ c.chunk_id }})\n"
        "{% endfor %}{{ '-' * 40 }}\n{{ '%s?' % question.rstrip('?') }}{% for i in range(9000) %}{% endfor %}"
    )
    body = prompt_body("d", "Answer from {{ contexts|length }} passages.", user)
    messages = PromptTemplate.from_body("p", 1, body).render("q" * 4000, [CONTEXTS[0]] * 10)
    assert messages[1]["content"].count("LOIRE") == 10
    assert messages[1]["content"].endswith("q" * 4000 + "?")


def test_generation_falls_back_to_production_for_an_arm_that_fails_on_the_served_passages() -> None:
    # Registered as another replica might have before the render check existed: it renders on
    # two passages and raises ZeroDivisionError on the three production sends.
    body = PromptBody(
        description="d", system="Be brief.", user=FAILS_AT_THREE, sha256=prompt_hash("d", "Be brief.", FAILS_AT_THREE)
    )
    edited = PromptBody(description="d", system="Be brief.", user="{{ question }}", sha256=body.sha256)
    registry = Registry()
    registry.apply(registered(4, body))
    registry.apply(registered(5, edited))  # edited in place: resolve_prompt raises ValueError
    answerer = Answerer(GenerationSettings(), EchoGenerator(), PRODUCER, registry)
    asked = example(ContextRetrieved)
    three = [asked.contexts[0].model_copy(update={"chunk_id": f"{asked.contexts[0].chunk_id}-{n}"}) for n in range(3)]

    def failures(version: str) -> float:
        labels = {"prompt": "rag-answer", "version": version}
        return REGISTRY.get_sample_value("ragops_prompt_render_failures_total", labels) or 0.0

    for version in ("4", "5"):
        before = failures(version)
        served = answerer.answer([asked.model_copy(update={"contexts": three, "assignment": arm(version)})])[0]
        assert (served.lineage.prompt.version, served.lineage.variant, served.lineage.experiment_id) == (3, None, None)
        assert failures(version) == before + 1
    with pytest.raises(ZeroDivisionError):  # pinned: dead-lettered with the reason, as before
        answerer.answer([asked.model_copy(update={"contexts": three, "prompt_version": 4})])
