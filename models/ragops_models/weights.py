"""Stable ids of model weights on disk, recorded as model versions on events and in the
version registry (torch-free)."""

import hashlib
from pathlib import Path

_WEIGHT_SUFFIXES = (".safetensors", ".bin")
_BLOCK_BYTES = 1 << 20


def weights_version(path: Path, *, read_weights: bool = True) -> str:
    """12 hex digits (a SHA-256 prefix) that identify the weights at ``path``.

    - A file (a GGUF): the SHA-256 of its bytes.
    - A model directory with ``read_weights``: the SHA-256 of the bytes of ``config.json``
      and of every weight file (``*.safetensors``, ``*.bin``), in name order. The embedding
      model's version: a fine-tuned copy gets a new one, an identical copy the same.
    - A model directory without ``read_weights``: the SHA-256 of ``config.json``'s bytes
      plus the name and size of every weight file, so a multi-GB language model is
      identified without reading it; a same-size rewrite of a weight file in place is not
      detected.

    Files are read in 1 MiB blocks.

    Raises:
        OSError: ``path`` (or, without ``read_weights``, its ``config.json``) cannot be read.
    """
    if path.is_dir() and not read_weights:
        digest = hashlib.sha256((path / "config.json").read_bytes())
        for entry in sorted(path.iterdir()):
            if entry.suffix in _WEIGHT_SUFFIXES:
                digest.update(f"\0{entry.name}\0{entry.stat().st_size}".encode())
        return digest.hexdigest()[:12]
    files = (
        [path]
        if path.is_file()
        else [
            entry for entry in sorted(path.iterdir()) if entry.name == "config.json" or entry.suffix in _WEIGHT_SUFFIXES
        ]
    )
    digest = hashlib.sha256()
    for file in files:
        with file.open("rb") as handle:
            while block := handle.read(_BLOCK_BYTES):
                digest.update(block)
    return digest.hexdigest()[:12]
