"""Test helpers: dtype-aware closeness, a float64 gradient check and a model file's checked config fields."""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

TOLERANCES = {torch.float64: (1e-9, 1e-7), torch.float32: (1e-5, 1e-4), torch.float16: (1e-3, 1e-2),
              torch.bfloat16: (1e-2, 5e-2)}


def assert_close(actual, expected, rtol: float | None = None, atol: float | None = None, msg: str = "") -> None:
    """``torch.testing.assert_close`` with tolerances chosen by the lower-precision dtype of the two."""
    actual = torch.as_tensor(actual)
    expected = torch.as_tensor(expected, dtype=actual.dtype if actual.is_floating_point() else None).to(actual.device)
    if rtol is None or atol is None:
        dt = actual.dtype if actual.is_floating_point() else torch.float64
        r, a = TOLERANCES.get(dt, TOLERANCES[torch.float32])
        rtol = r if rtol is None else rtol
        atol = a if atol is None else atol
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol, check_dtype=False, msg=msg or None)


def gradcheck(fn: Callable[..., torch.Tensor], inputs: Sequence[torch.Tensor], **kwargs) -> bool:
    """Finite-difference gradient check of ``fn`` in float64 (inputs are cast and require grad)."""
    args = tuple(t.detach().to(torch.float64).requires_grad_(True) if t.is_floating_point() else t for t in inputs)
    return torch.autograd.gradcheck(fn, args, eps=1e-6, atol=1e-5, rtol=1e-3, **kwargs)


def assert_fields_are_the_builders(fields: Mapping[str, Any], build: Callable, model: Any, load: Callable,
                                   path: Path) -> None:
    """The fields a model file's config is checked against (``fields``) are exactly the arguments of ``build`` but
    ``weights``, and ``model``'s config; ``model`` saved to ``path`` and ``load``-ed back has its config and weights
    (a field the builder gains must be listed, or files holding it would be refused as unknown)."""
    arguments = set(inspect.signature(build).parameters) - {"weights"}
    assert set(fields) == arguments == set(model.config)
    model.save(path)
    loaded = load(path)
    assert loaded.config == model.config
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in loaded.state_dict().items())
