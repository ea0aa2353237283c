"""Model code of RAGOps, below the services: the sentence embedder, the generation backends
(in-process transformers, OpenAI-compatible HTTP), where the default models live, weights
versions and device/dtype selection.

Importing this package imports nothing heavy: ``defaults``, ``weights`` and ``generation``
are torch-free (the light ingestion service reads the default tokenizer's directory);
``embedder``, ``transformers_generator`` and ``device`` import torch.
"""
