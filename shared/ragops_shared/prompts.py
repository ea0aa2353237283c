"""Versioned prompt templates: prompts as data.

A version comes from one of two places. The registry: an operator pushes a body
(``POST /v1/prompts``, ``ragops prompt push``) and the gateway publishes it on a signed
``VersionRegistered`` (``prompt`` = :class:`~ragops_schemas.PromptBody`), which every reader
folds live, so a pushed version is served without a deploy. Or the seed files packaged here,
which the gateway also registers at start: ``<directory>/<name>/v<N>.toml``, one file per
version. Each file holds

* ``name`` (str): equal to its folder name,
* ``version`` (int): equal to the ``N`` of its file name,
* ``description`` (str): what the version changes and why,
* ``system`` and ``user`` (str): Jinja2 templates of the two chat messages.

Templates see two variables: ``question`` (str) and ``contexts``, a list of mappings with
the keys ``text``, ``title`` and ``chunk_id``. They render in a
:class:`~jinja2.sandbox.SandboxedEnvironment` (a template cannot reach Python internals such
as ``''.__class__``) with :class:`~jinja2.StrictUndefined` (a misspelt variable is an
error, never a silently empty string).

A published version is never edited in place: a change is a new version, so the version
recorded with every answer identifies the exact text the model saw; :attr:`PromptTemplate.sha256`
(:func:`ragops_schemas.ids.prompt_hash` of the body) lets the caller detect an edit in place anyway.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from jinja2 import StrictUndefined, Template, TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment

from ragops_schemas import PromptBody
from ragops_schemas.ids import prompt_hash
from ragops_schemas.registry import Registry

#: The seed prompts packaged with this module (package data ``prompts/*/*.toml``).
DEFAULT_PROMPTS_DIR = Path(__file__).with_name("prompts")

# A name is one folder name: this also keeps "../x" from escaping the prompts directory.
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_FILE_RE = re.compile(r"v([1-9][0-9]*)\.toml")

# Prompts are plain text sent to a model, not HTML: autoescaping would corrupt quotes
# and ampersands in passages.
_ENV = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)


# What check_renders renders a template on: a question and two passages with every key a
# template may use.
_SAMPLE_QUESTION = "How long is the Loire?"
_SAMPLE_CONTEXTS = (
    {"text": "The Loire is the longest river in France.", "title": "Loire", "chunk_id": "loire-p000"},
    {"text": "Nantes lies on the Loire estuary.", "title": "Nantes", "chunk_id": "nantes-p003"},
)


class PromptNotFoundError(LookupError):
    """No registered body and no seed file exist for the requested name (and version)."""


@lru_cache(maxsize=64)
def _compile(source: str) -> Template:
    # Cached by source text: rendering runs once per request, parsing only once per template.
    return _ENV.from_string(source)


@dataclass(frozen=True)
class PromptTemplate:
    """One version of a prompt: a seed file ``<name>/v<version>.toml`` or a registered body."""

    name: str
    version: int
    description: str
    system: str
    user: str
    sha256: str
    """:func:`ragops_schemas.ids.prompt_hash` of (description, system, user): 12 hex digits."""

    @classmethod
    def from_body(cls, name: str, version: int, body: PromptBody) -> PromptTemplate:
        """The template of a registered version.

        Raises:
            ValueError: ``body.sha256`` is not the hash of its text (an edit in place), or a
                template does not compile.
        """
        template = _template(name, version, body.description, body.system, body.user)
        if template.sha256 != body.sha256:
            raise ValueError(f"prompt {name!r} version {version}: sha256 {body.sha256} is not that of its text")
        return template

    def body(self) -> PromptBody:
        """The text to register for this version (``VersionRegistered.prompt``)."""
        return PromptBody(description=self.description, system=self.system, user=self.user, sha256=self.sha256)

    def render(self, question: str, contexts: Sequence[Mapping[str, str]]) -> list[dict[str, str]]:
        """Render the chat messages for one request.

        Args:
            question: the user's question.
            contexts: retrieved passages, best first, each with ``text``, ``title`` and
                ``chunk_id``.

        Returns:
            ``[{"role": "system", "content": ...}, {"role": "user", "content": ...}]``, each
            content stripped of surrounding whitespace.

        Raises:
            jinja2.UndefinedError: the template uses a variable or key that is not given.
            jinja2.exceptions.SecurityError: the template reaches for an unsafe attribute.
        """
        variables = {"question": question, "contexts": list(contexts)}
        return [
            {"role": "system", "content": _compile(self.system).render(variables).strip()},
            {"role": "user", "content": _compile(self.user).render(variables).strip()},
        ]


def _read(path: Path) -> PromptTemplate:
    """Parse and check one prompt file.

    Raises:
        ValueError: a field is missing or has the wrong type, ``name``/``version`` disagree
            with the file's path, or a template does not compile.
    """
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    fields = {"name": str, "version": int, "description": str, "system": str, "user": str}
    for key, kind in fields.items():
        # bool is an int subclass; "version = true" is still a mistake.
        if not isinstance(data.get(key), kind) or isinstance(data.get(key), bool):
            raise ValueError(f"{path}: field {key!r} must be a {kind.__name__}")
    match = _FILE_RE.fullmatch(path.name)
    if data["name"] != path.parent.name or match is None or data["version"] != int(match[1]):
        raise ValueError(f"{path}: name {data['name']!r} / version {data['version']} disagree with the file's path")
    try:
        return _template(data["name"], data["version"], data["description"], data["system"], data["user"])
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc


def _template(name: str, version: int, description: str, system: str, user: str) -> PromptTemplate:
    """A template whose two messages compile (ValueError with the reason otherwise)."""
    for key, source in (("system", system), ("user", user)):
        try:
            _compile(source)
        except TemplateSyntaxError as exc:
            raise ValueError(f"template {key!r} does not compile: {exc}") from exc
    return PromptTemplate(name, version, description, system, user, prompt_hash(description, system, user))


def check_renders(template: PromptTemplate) -> None:
    """Render ``template`` on a sample question and two passages.

    Raises:
        ValueError: a message fails to render (an undefined variable or key, an unsafe
            attribute, an error the template raises) or renders empty, with the reason.
    """
    try:
        messages = template.render(_SAMPLE_QUESTION, _SAMPLE_CONTEXTS)
    except Exception as exc:  # any failure of an untrusted template is a refusal, with its reason
        raise ValueError(f"the template does not render: {type(exc).__name__}: {exc}") from exc
    for message in messages:
        if not message["content"]:
            raise ValueError(f"the {message['role']} message renders empty")


def prompt_body(description: str, system: str, user: str) -> PromptBody:
    """Check a pushed prompt and return its body (with its hash) to register.

    Raises:
        ValueError: a field is out of :class:`~ragops_schemas.PromptBody`'s bounds, a template
            does not compile, or it does not render (:func:`check_renders`); the message says why.
    """
    # The bounds first (pydantic's ValidationError is a ValueError), then the templates.
    body = PromptBody(description=description, system=system, user=user, sha256=prompt_hash(description, system, user))
    check_renders(_template("pushed", 1, description, system, user))
    return body


def _versions(folder: Path) -> dict[int, Path]:
    """Map each version number to its file in one prompt's folder (empty if none)."""
    if not folder.is_dir():
        return {}
    return {int(match[1]): path for path in folder.iterdir() if (match := _FILE_RE.fullmatch(path.name)) is not None}


def load_prompt(name: str, version: int | None = None, directory: Path | None = None) -> PromptTemplate:
    """Load one version of a seed prompt from its file.

    Args:
        name: the prompt's folder name, e.g. ``"rag-answer"``.
        version: the version to load; ``None`` loads the highest one.
        directory: where the prompt folders are; defaults to :data:`DEFAULT_PROMPTS_DIR`.

    Raises:
        PromptNotFoundError: no such prompt, or no such version of it.
        ValueError: the name is not a plain folder name, or the file is malformed.
    """
    if _NAME_RE.fullmatch(name) is None:
        raise ValueError(f"invalid prompt name {name!r}")
    versions = _versions((directory or DEFAULT_PROMPTS_DIR) / name)
    if not versions:
        raise PromptNotFoundError(f"no prompt named {name!r}")
    chosen = max(versions) if version is None else version
    if chosen not in versions:
        raise PromptNotFoundError(f"prompt {name!r} has no version {chosen} (available: {sorted(versions)})")
    return _read(versions[chosen])


def seed_prompts(directory: Path | None = None) -> list[PromptTemplate]:
    """Every version of every seed prompt in ``directory``, sorted by (name, version).

    Raises:
        ValueError: a prompt file is malformed.
    """
    root = directory or DEFAULT_PROMPTS_DIR
    folders = sorted(p for p in root.iterdir() if p.is_dir() and _NAME_RE.fullmatch(p.name))
    return [_read(path) for folder in folders for _, path in sorted(_versions(folder).items())]


def resolve_prompt(registry: Registry, name: str, version: int | None, directory: Path | None = None) -> PromptTemplate:
    """The template of one version of a prompt, as the registry knows it.

    ``version`` ``None`` means the version the registry's ``production`` alias points at, else
    the highest seed version. A retired version takes no new traffic: asked for one, this
    resolves ``None`` instead. A version registered with a body renders that body; one without
    (or not registered at all) is read from its seed file.

    Raises:
        PromptNotFoundError: neither the registry nor the seed files have that version.
        ValueError: the name is not a plain folder name, the seed file is malformed, or a
            registered body does not match its hash.
    """
    if version is not None and registry.is_retired("prompt", name, str(version)):
        version = None
    if version is None:
        production = registry.alias("prompt", name)
        version = int(production.ref.version) if production else None
    state = registry.get("prompt", name, str(version)) if version is not None else None
    if version is not None and state and state.registered and state.registered.prompt:
        return PromptTemplate.from_body(name, version, state.registered.prompt)
    return load_prompt(name, version, directory)
