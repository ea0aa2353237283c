"""Where a model runs and in which dtype: the ``device`` and ``dtype`` settings of the
embedding and generation services, resolved against the machine."""

import re
from typing import Annotated, Literal

import torch
from pydantic import StringConstraints

from ragops_shared.hardware import ComputeDtype, native_compute_dtype
from ragops_shared.tracing import ComputeSpec

_DEVICE_PATTERN = r"^(auto|cpu|cuda(:\d+)?)$"
DeviceName = Annotated[str, StringConstraints(pattern=_DEVICE_PATTERN)]
"""A device setting: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``."""
DtypeName = Literal["auto", "float32", "bfloat16"]
"""A dtype setting: ``auto`` or an explicit compute dtype."""


def resolve_device(device: str) -> torch.device:
    """The torch device of a device setting: ``auto`` is ``cuda`` (the current CUDA device)
    when ``torch.cuda.is_available()``, else ``cpu``; ``cpu``, ``cuda`` and ``cuda:N`` are
    taken as given.

    Raises:
        ValueError: not one of those forms, or a CUDA device that torch cannot use (no
            usable GPU, or ``N`` not below ``torch.cuda.device_count()``).
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not re.fullmatch(_DEVICE_PATTERN, device):
        raise ValueError(f"device {device!r}: expected auto, cpu, cuda or cuda:N")
    resolved = torch.device(device)
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r}: torch sees no usable CUDA GPU")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: torch sees {torch.cuda.device_count()} CUDA GPU(s)")
    return resolved


def resolve_dtype(dtype: DtypeName, device: torch.device) -> ComputeDtype:
    """The compute dtype of a dtype setting on ``device``: an explicit choice is kept;
    ``auto`` is ``bfloat16`` on a GPU (native there, half the memory of float32) and
    :func:`ragops_shared.hardware.native_compute_dtype` on the CPU (bf16 only where the CPU
    computes it natively: emulated bf16 is much slower than float32)."""
    if dtype != "auto":
        return dtype
    return "bfloat16" if device.type == "cuda" else native_compute_dtype()


def compute_spec(device: torch.device, torch_threads: int) -> ComputeSpec:
    """What a model on ``device`` holds while it computes (its events' ``compute``): one GPU
    on CUDA, else the ``torch_threads`` CPU cores its intra-op pool runs on."""
    return ComputeSpec("cuda", 1) if device.type == "cuda" else ComputeSpec("cpu", torch_threads)
