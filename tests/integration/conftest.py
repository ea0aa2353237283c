"""Fixtures shared by the integration tests that drive the pipeline's plain functions
(ingestion's chunker, the embedder, the indexer) without Kafka."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from ragops_embedding.settings import EmbeddingSettings
from ragops_ingestion.chunking import TokenChunker
from ragops_models.defaults import default_embedding_model_dir
from ragops_models.embedder import Embedder
from ragops_retrieval.app import Index
from ragops_retrieval.settings import RetrievalSettings
from ragops_shared.settings import PlatformSettings
from tests.helpers import PRODUCER


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    """The embedding service's model, loaded once per module."""
    embedder = EmbeddingSettings().embedder()
    embedder.warm_up()
    return embedder


@pytest.fixture(scope="module")
def chunker() -> TokenChunker:
    """Ingestion's chunker at the shipped defaults (200 tokens, 32 overlap)."""
    chunker = TokenChunker(default_embedding_model_dir(), 200, 32)
    chunker.warm_up()
    return chunker


@pytest.fixture
def index(tmp_path: Path) -> Iterator[Index]:
    """The indexer/retriever on a Qdrant Edge store in the test's folder."""
    index = Index(RetrievalSettings(platform=PlatformSettings(data_dir=tmp_path)), PRODUCER)
    index.open()
    yield index
    index.close()
