"""Versioned prompt templates, kept as files next to the code.

Layout: ``<directory>/<name>/v<N>.toml``, one file per version. Each file holds

* ``name`` (str): equal to its folder name,
* ``version`` (int): equal to the ``N`` of its file name,
* ``description`` (str): what the version changes and why,
* ``system`` and ``user`` (str): Jinja2 templates of the two chat messages.

Templates see two variables: ``question`` (str) and ``contexts``, a list of mappings with
the keys ``text``, ``title`` and ``chunk_id``. They render in a
:class:`~jinja2.sandbox.SandboxedEnvironment` (a template cannot reach Python internals such
as ``''.__class__``) with :class:`~jinja2.StrictUndefined` (a misspelt variable is an
error, never a silently empty string).

A published version is never edited in place: a change is a new ``v<N+1>.toml``, so the
version recorded with every answer identifies the exact text the model saw;
:attr:`PromptTemplate.sha256` lets the caller detect an edit in place anyway.
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

from ragops_schemas.ids import prompt_hash

#: The prompts packaged with this service (package data ``prompts/*/*.toml``).
DEFAULT_PROMPTS_DIR = Path(__file__).with_name("prompts")

# A name is one folder name: this also keeps "../x" from escaping the prompts directory.
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_FILE_RE = re.compile(r"v([1-9][0-9]*)\.toml")

# Prompts are plain text sent to a model, not HTML: autoescaping would corrupt quotes
# and ampersands in passages.
_ENV = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)


class PromptNotFoundError(LookupError):
    """No prompt file exists for the requested name (and version)."""


@lru_cache(maxsize=64)
def _compile(source: str) -> Template:
    # Cached by source text: rendering runs once per request, parsing only once per template.
    return _ENV.from_string(source)


@dataclass(frozen=True)
class PromptTemplate:
    """One version of a prompt, as read from ``<name>/v<version>.toml``."""

    name: str
    version: int
    description: str
    system: str
    user: str
    sha256: str
    """First 12 hex characters of the SHA-256 of the file's bytes."""

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
    content = path.read_bytes()
    data = tomllib.loads(content.decode("utf-8"))
    fields = {"name": str, "version": int, "description": str, "system": str, "user": str}
    for key, kind in fields.items():
        # bool is an int subclass; "version = true" is still a mistake.
        if not isinstance(data.get(key), kind) or isinstance(data.get(key), bool):
            raise ValueError(f"{path}: field {key!r} must be a {kind.__name__}")
    match = _FILE_RE.fullmatch(path.name)
    if data["name"] != path.parent.name or match is None or data["version"] != int(match[1]):
        raise ValueError(f"{path}: name {data['name']!r} / version {data['version']} disagree with the file's path")
    for key in ("system", "user"):
        try:
            _compile(data[key])
        except TemplateSyntaxError as exc:
            raise ValueError(f"{path}: template {key!r} does not compile: {exc}") from exc
    return PromptTemplate(
        name=data["name"],
        version=data["version"],
        description=data["description"],
        system=data["system"],
        user=data["user"],
        sha256=prompt_hash(content),
    )


def _versions(folder: Path) -> dict[int, Path]:
    """Map each version number to its file in one prompt's folder (empty if none)."""
    if not folder.is_dir():
        return {}
    return {int(match[1]): path for path in folder.iterdir() if (match := _FILE_RE.fullmatch(path.name)) is not None}


def load_prompt(name: str, version: int | None = None, directory: Path | None = None) -> PromptTemplate:
    """Load one version of a prompt.

    Args:
        name: the prompt's folder name, e.g. ``"rag-answer"``.
        version: the version to load; ``None`` loads the highest one, which is the default
            served by the generation service.
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


def list_prompts(directory: Path | None = None) -> list[PromptTemplate]:
    """Every version of every prompt in ``directory``, sorted by (name, version).

    Raises:
        ValueError: a prompt file is malformed.
    """
    root = directory or DEFAULT_PROMPTS_DIR
    folders = sorted(p for p in root.iterdir() if p.is_dir() and _NAME_RE.fullmatch(p.name))
    return [_read(path) for folder in folders for _, path in sorted(_versions(folder).items())]
