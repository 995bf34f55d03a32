"""A tiny name → constructor registry, so components are built from names in configs."""
from __future__ import annotations

from typing import Any, Callable, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to classes/factories of one family (losses, miners, distances, ...)."""

    def __init__(self, family: str) -> None:
        self.family = family
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
        try:
            return self._entries[name]
        except KeyError:
            valid = ", ".join(sorted(self._entries)) or "(none)"
            raise KeyError(f"unknown {self.family} '{name}'; valid names: {valid}") from None

    def create(self, name: str, **kwargs: Any) -> T:
        """Build the component registered as ``name`` with keyword arguments."""
        return self.get(name)(**kwargs)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries


# One registry per family; components register themselves where they are defined.
DISTANCES: Registry = Registry("distance")
LOSSES: Registry = Registry("loss")
MINERS: Registry = Registry("miner")
BATCH_SAMPLERS: Registry = Registry("batch sampler")
