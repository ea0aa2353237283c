"""Device and dtype resolution for the embedder and the transformers generator. Whether CUDA
is present is outside the tests' control, so ``torch.cuda`` is monkeypatched; nothing is
loaded or moved to a GPU."""

from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from ragops_embedding.settings import EmbeddingSettings
from ragops_generation.settings import GenerationSettings
from ragops_models import device as device_module
from ragops_models.device import compute_spec, resolve_device, resolve_dtype
from ragops_models.embedder import Embedder
from ragops_models.transformers_generator import TransformersGenerator
from ragops_shared.hardware import native_compute_dtype
from ragops_shared.tracing import ComputeSpec


@pytest.fixture
def gpus(monkeypatch: pytest.MonkeyPatch):
    """Set how many CUDA GPUs torch sees (0 = CUDA unavailable)."""

    def see(count: int) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: count)

    return see


def test_auto_is_cuda_only_where_torch_sees_a_gpu(gpus) -> None:
    gpus(0)
    assert resolve_device("auto") == torch.device("cpu")
    gpus(1)
    assert resolve_device("auto") == torch.device("cuda")


def test_explicit_devices_are_kept(gpus) -> None:
    gpus(2)
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("cuda") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)


@pytest.mark.parametrize(("count", "device"), [(0, "cuda"), (0, "cuda:0"), (1, "cuda:1")])
def test_a_cuda_device_torch_cannot_use_is_refused(gpus, count: int, device: str) -> None:
    gpus(count)
    with pytest.raises(ValueError, match="CUDA"):
        resolve_device(device)


@pytest.mark.parametrize("device", ["gpu", "CUDA", "cuda:", "cuda:x", "cpu:0", "mps", "cuda\n"])
def test_malformed_devices_are_refused(gpus, device: str) -> None:
    gpus(1)
    with pytest.raises(ValueError, match="expected auto, cpu, cuda or cuda:N"):
        resolve_device(device)


@pytest.mark.parametrize("native", ["float32", "bfloat16"])
def test_auto_dtype_is_bf16_on_a_gpu_and_the_native_choice_on_the_cpu(
    monkeypatch: pytest.MonkeyPatch, native: str
) -> None:
    monkeypatch.setattr(device_module, "native_compute_dtype", lambda: native)
    assert resolve_dtype("auto", torch.device("cpu")) == native
    assert resolve_dtype("auto", torch.device("cuda")) == "bfloat16"
    assert resolve_dtype("auto", torch.device("cuda", 1)) == "bfloat16"


def test_an_explicit_dtype_is_kept_on_any_device() -> None:
    for device in (torch.device("cpu"), torch.device("cuda")):
        assert resolve_dtype("float32", device) == "float32"
        assert resolve_dtype("bfloat16", device) == "bfloat16"


def test_models_on_a_machine_without_gpu_stay_on_the_cpu_with_the_native_dtype(gpus, tmp_path: Path) -> None:
    gpus(0)
    embedder = Embedder(tmp_path)
    generator = TransformersGenerator(tmp_path, cache_dir=tmp_path)
    for model in (embedder, generator):
        assert model.device == torch.device("cpu") and model.dtype == native_compute_dtype()


def test_models_go_to_the_gpu_in_bf16_where_torch_sees_one(gpus, tmp_path: Path) -> None:
    gpus(1)
    embedder = Embedder(tmp_path)
    generator = TransformersGenerator(tmp_path, cache_dir=tmp_path, device="auto", dtype="float32")
    assert (embedder.device, embedder.dtype) == (torch.device("cuda"), "bfloat16")
    assert (generator.device, generator.dtype) == (torch.device("cuda"), "float32")
    assert Embedder(tmp_path, device="cpu").device == torch.device("cpu")


def test_the_services_read_the_device_setting(gpus, monkeypatch: pytest.MonkeyPatch) -> None:
    gpus(1)
    assert EmbeddingSettings().embedder().device == torch.device("cuda")
    monkeypatch.setenv("RAGOPS_EMBEDDING_DEVICE", "cpu")
    assert EmbeddingSettings().embedder().device == torch.device("cpu")
    monkeypatch.setenv("RAGOPS_GENERATION_DEVICE", "cuda:0")
    assert GenerationSettings().generator().device == torch.device("cuda", 0)
    with pytest.raises(ValidationError, match="device"):
        GenerationSettings(device="gpu")


def test_a_model_service_declares_one_gpu_on_cuda_and_its_torch_threads_on_the_cpu() -> None:
    assert compute_spec(torch.device("cuda", 0), 4) == ComputeSpec("cuda", 1)
    assert compute_spec(torch.device("cpu"), 4) == ComputeSpec("cpu", 4)
