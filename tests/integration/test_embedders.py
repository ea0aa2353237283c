"""Which embedding model version embeds what: a replayed build names a version the service
must load, and a version it cannot find or whose files hold another version is refused
(``EventRejected``, which the subscriber dead-letters as ``rejected``), never embedded with
the wrong model."""

import pytest

from ragops_embedding.app import Embedders
from ragops_embedding.settings import EmbeddingSettings
from ragops_models.defaults import default_embedding_model_dir
from ragops_schemas.registry import Registry
from ragops_shared.broker import EventRejected

pytestmark = pytest.mark.model


def test_unknown_or_mismatched_versions_are_refused_and_known_ones_load_once() -> None:
    embedders = Embedders(EmbeddingSettings(), Registry())
    embedders.warm_up()
    live = embedders.default.info
    assert live is not None and embedders.production is embedders.default
    assert embedders.version(live.version) is embedders.default, "a loaded version is not loaded again"
    with pytest.raises(EventRejected, match="unknown embedding model version 'nope'"):
        embedders.version("nope")
    with pytest.raises(EventRejected, match=f"holds embedding model version {live.version}, not other"):
        embedders.version("other", str(default_embedding_model_dir()))
