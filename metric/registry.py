"""A tiny name → constructor registry, so components are built from names in configs."""
from __future__ import annotations

import inspect
import types
import typing
from typing import Any, Callable, Generic, Mapping, Optional, TypeVar, Union

import numpy as np

T = TypeVar("T")


def _fits(value: Any, hint: Any) -> bool:
    """Whether ``value`` fits the annotation ``hint``: classes, ``float`` (a Python int or float) and ``int`` (a
    Python int; not a bool for either), ``Optional`` and unions of them. Other hints (``Literal``, whose values the
    constructors check, ``Sequence[int]``, ``Callable``, ...) pass."""
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        return any(_fits(value, option) for option in typing.get_args(hint))
    if hint is float or hint is int:
        return isinstance(value, (int, float) if hint is float else int) and not isinstance(value, bool)
    if hint is type(None):
        return value is None
    return origin is not None or not isinstance(hint, type) or isinstance(value, hint)


def _describe(hint: Any) -> str:
    """``hint`` for a message: ``float``, ``BaseDistance or None``."""
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(option) for option in typing.get_args(hint))
    return "None" if hint is type(None) else getattr(hint, "__name__", str(hint))


def check_arguments(factory: Callable[..., Any], kwargs: Mapping[str, Any], what: str) -> None:
    """Raise ``TypeError`` naming ``what`` and the argument if ``factory(**kwargs)`` would get an argument it does
    not take, miss a required one, or get a value that does not fit the parameter's annotation (:func:`_fits`;
    annotations that cannot be resolved are not checked)."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # no signature to read (some builtins)
        return
    try:
        signature.bind(**kwargs)
    except TypeError as error:
        takes = ", ".join(signature.parameters) or "none"
        raise TypeError(f"{what}: {error} (its arguments: {takes})") from None
    try:
        hints = typing.get_type_hints(factory.__init__ if inspect.isclass(factory) else factory)
    except (NameError, TypeError):  # e.g. a name imported only for type checkers
        return
    for key, value in kwargs.items():
        if key in hints and not _fits(value, hints[key]):
            raise TypeError(f"{what}: argument '{key}' must be {_describe(hints[key])}, "
                            f"got {value!r} ({type(value).__name__})")


class Registry(Generic[T]):
    """Maps names to classes/factories of one family (losses, miners, distances, ...)."""

    def __init__(self, family: str, package: Optional[str] = None) -> None:
        """``package``: the module whose import registers the family's components; while none is registered, the
        error of an unknown name says to import it."""
        self.family = family
        self.package = package
        self._entries: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator: ``@LOSSES.register("triplet_margin")``."""

        def add(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries:
                raise ValueError(f"{self.family} '{name}' is registered twice")
            self._entries[name] = factory
            return factory

        return add

    def get(self, name: str) -> Callable[..., T]:
        """The class/factory registered as ``name``; ``KeyError`` listing the valid names for an unknown one."""
        try:
            return self._entries[name]
        except KeyError:
            none = f"(none yet: `import {self.package}` registers them)" if self.package else "(none)"
            valid = ", ".join(sorted(self._entries)) or none
            raise KeyError(f"unknown {self.family} '{name}'; valid names: {valid}") from None

    def create(self, name: str, **kwargs: Any) -> T:
        """Build the component registered as ``name`` with keyword arguments, after :func:`check_arguments`; a numpy
        scalar (``np.float32(0.2)``, ``np.int64(4)``, e.g. read from an array of settings) is passed as the Python
        value it holds."""
        factory = self.get(name)
        kwargs = {key: value.item() if isinstance(value, np.generic) else value for key, value in kwargs.items()}
        check_arguments(factory, kwargs, f"{self.family} '{name}'")
        return factory(**kwargs)

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries


# One registry per family; components register themselves where they are defined.
DISTANCES: Registry = Registry("distance", "metric.distances")
LOSSES: Registry = Registry("loss", "metric.losses")
MINERS: Registry = Registry("miner", "metric.miners")
BATCH_SAMPLERS: Registry = Registry("batch sampler", "metric.samplers")
