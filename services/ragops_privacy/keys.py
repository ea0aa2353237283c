"""The secret key of the per-tenant pseudonyms: ``RAGOPS_PRIVACY_PSEUDONYM_KEY_FILE``, else
(outside production) the embedded one, ``<data_dir>/keys/pseudonym.key``, created once
(:mod:`ragops_shared.pseudonyms`, which the gateway reads too)."""

import sys
from pathlib import Path

from ragops_privacy.settings import PrivacySettings
from ragops_shared import pseudonyms


def pseudonym_key(settings: PrivacySettings) -> bytes:
    """The key's bytes (see :func:`ragops_shared.pseudonyms.pseudonym_key`).

    Raises:
        ValueError: the key file holds fewer than :data:`~ragops_shared.pseudonyms.KEY_BYTES` bytes.
        OSError: it cannot be read (or the embedded one created)."""
    return pseudonyms.pseudonym_key(settings.pseudonym_key_file, settings.platform.data_dir)


def main() -> None:
    """``python -m ragops_privacy.keys PATH``: create the key file ``PATH`` once (mode 0600);
    an existing one is kept (a new key would change every pseudonym). Compose creates the
    embedding service's experiment key with it too (named after the file: ``experiment.key``)."""
    path = Path(sys.argv[1])
    pseudonyms.created_once(path, path.stem)


if __name__ == "__main__":
    main()
