"""faiss plumbing shared by the retrieval metrics and the smart miner: a lazy import with a clear error, conversion
of torch tensors / numpy arrays to the float32 host arrays faiss reads, and the CPU/GPU choice."""
from __future__ import annotations

import math
from types import ModuleType
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch

from metric._checks import as_class_ids, check_finite, check_shape, wrappable

ArrayLike = Union[torch.Tensor, np.ndarray]
# Class ids: also a list or tuple of integers.
LabelsLike = Union[torch.Tensor, np.ndarray, Sequence[int]]

# faiss's GPU brute-force search selects at most this many neighbours per query (GPU_MAX_SELECTION_K).
GPU_MAX_K = 2048
# Rows of norm below it keep every squared distance ‖x − y‖² ≤ (‖x‖ + ‖y‖)² and inner product
# finite in float32.
MAX_NORM = math.sqrt(float(np.finfo(np.float32).max)) / 2


def import_faiss() -> ModuleType:
    """Import faiss, or raise an ``ImportError`` that says how to install it."""
    try:
        import faiss
    except ImportError as error:
        raise ImportError(
            "faiss is required for k-nearest-neighbour search, k-means and smart mining: "
            "`pip install faiss-cpu` (or `pip install faiss-gpu-cu12` to search CUDA embeddings on the GPU)"
        ) from error
    return faiss


def as_tensor(x: ArrayLike, name: str) -> torch.Tensor:
    """A torch view of ``x`` (numpy arrays are wrapped without copying, unless negative strides (``a[::-1]``) need
    a copy)."""
    if isinstance(x, np.ndarray):
        return torch.from_numpy(wrappable(x))
    if isinstance(x, torch.Tensor):
        return x
    raise TypeError(f"{name} must be a torch.Tensor or a numpy array, got {type(x).__name__}")


def as_float32_rows(x: ArrayLike, name: str) -> np.ndarray:
    """(N, D) embeddings → C-contiguous float32 host array (no copy when ``x`` already is one).

    Raises ``ValueError`` for a wrong shape (D = 0 included), NaN/Inf values, or values so large that float32
    distances could overflow (|x|·√D ≥ :data:`MAX_NORM`)."""
    t = as_tensor(x, name).detach()
    d = check_shape(t, ["N", "D"], name)["D"]
    if d == 0:
        raise ValueError(f"{name} must have at least one dimension (D >= 1), got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        raise TypeError(f"{name} must hold floating-point values, got {t.dtype}")
    check_finite(t, name)
    largest = max(float(t.max()), -float(t.min())) if t.numel() else 0.0
    if largest * math.sqrt(d) >= MAX_NORM:
        raise ValueError(
            f"{name} hold values up to {largest:.3g} in magnitude: with D = {d} their float32 distances may overflow "
            f"(keep |x|·√D below {MAX_NORM:.3g}); rescale or L2-normalise them"
        )
    return np.ascontiguousarray(t.to("cpu", torch.float32).numpy())


def as_int64_labels(labels: LabelsLike, n: int, name: str = "labels") -> np.ndarray:
    """(N,) integer labels (a tensor, numpy array or sequence, as the samplers take them) → int64 host array; checks
    the length against the ``n`` embeddings. Bool labels are two classes, as the losses, miners and samplers take
    them; a ``TypeError`` naming ``name`` for anything else (floats, class names)."""
    t = as_class_ids(labels, name)
    check_shape(t, ["N"], name)
    if t.numel() and (t.is_floating_point() or t.is_complex()):  # torch.as_tensor([]) is float
        raise TypeError(f"{name} must hold integers, got {t.dtype}")
    if t.shape[0] != n:
        raise ValueError(f"embeddings and {name} must have the same length, got {n} and {t.shape[0]}")
    return t.detach().to("cpu", torch.int64).numpy()


def l2_normalized(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (a new array; zero rows stay zero)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, np.float32(1e-12))).astype(np.float32, copy=False)


def centred(x: np.ndarray) -> np.ndarray:
    """(N, D) float32 rows minus their mean row when it outweighs their spread (N·‖mean‖² > Σ‖x − mean‖²), else
    ``x`` itself: for Euclidean searches and k-means, which translation does not change, but whose float32
    expansion ‖q‖² + ‖x‖² − 2q·x (faiss's, and the block search's scores) rounds off about eps·(‖q‖² + ‖x‖²).
    Rows offset by 10⁴ × their spread lost their distances to it: MAP@R 0.015 for the exact 0.119, k-means NMI
    0.01 for 0.97. Integer-valued rows are moved by the rounded mean: they stay integers, their ties exact."""
    if not x.shape[0]:  # the mean of no row is NaN, with a warning
        return x
    mean = x.mean(axis=0, dtype=np.float64)
    offset = x.shape[0] * float(mean @ mean)  # N·‖mean‖²; Σ‖x‖² = Σ‖x − mean‖² + N·‖mean‖²
    if 2 * offset <= float(np.einsum("ij,ij->i", x, x).sum(dtype=np.float64)):
        return x
    if np.array_equal(x, np.round(x)):
        mean = np.round(mean)
    return x - mean.astype(np.float32)


def gpu_index(index: Any, device: int) -> Any:
    """A copy of the faiss CPU ``index`` on CUDA device ``device`` alone (faiss built with GPU support), holding on
    to its GPU resources."""
    faiss = import_faiss()
    resources = faiss.StandardGpuResources()
    copy = faiss.index_cpu_to_gpu(resources, device, index)
    # faiss's Python wrapper does not keep the resources alive for the copy.
    copy.referenced_objects = [resources]
    return copy


def gpu_device(x: ArrayLike) -> Optional[int]:
    """The CUDA device index of ``x`` when it is a CUDA tensor and the installed faiss can use that GPU, else None."""
    if not (isinstance(x, torch.Tensor) and x.is_cuda):
        return None
    faiss = import_faiss()
    device = x.device.index if x.device.index is not None else torch.cuda.current_device()
    return device if hasattr(faiss, "StandardGpuResources") and device < faiss.get_num_gpus() else None
