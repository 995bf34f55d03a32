"""The public packages' export lists: every name in ``__all__`` imports, is documented, and is what the package
offers (its public attributes, no submodule); every component a registry builds by name is exported too."""
from __future__ import annotations

import importlib
import inspect

import pytest

PACKAGES = ["metric.distances", "metric.losses", "metric.miners", "metric.samplers", "metric.retrieval",
            "coseg.models", "coseg.data", "coseg.engine", "apps.retrieval"]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_lists_exactly_the_public_names(name: str) -> None:
    """metric.losses & co. had no ``__all__``: ``from metric.losses import *`` also brought their submodules
    (``base_loss``, ``triplet_upper_bound``, ...) and the package had no docstring for ``help()``."""
    package = importlib.import_module(name)
    assert (package.__doc__ or "").strip(), f"{name} has no docstring"
    exported = package.__all__
    assert len(set(exported)) == len(exported), f"{name}.__all__ names something twice"
    public = {key for key in dir(package)  # dir: also the names a package imports when first used (apps.retrieval)
              if not key.startswith("_") and not inspect.ismodule(getattr(package, key))}
    assert set(exported) == public
    namespace: dict = {}
    exec(f"from {name} import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(exported)


@pytest.mark.parametrize("name", PACKAGES)
def test_every_exported_class_and_function_is_documented(name: str) -> None:
    package = importlib.import_module(name)
    undocumented = [key for key in package.__all__ if (inspect.isclass(getattr(package, key))
                                                       or inspect.isfunction(getattr(package, key)))
                    and not (getattr(package, key).__doc__ or "").strip()]
    assert not undocumented, f"{name}: no docstring for {undocumented}"


@pytest.mark.parametrize("registry_name, package_name", [
    ("LOSSES", "metric.losses"), ("MINERS", "metric.miners"), ("DISTANCES", "metric.distances"),
    ("BATCH_SAMPLERS", "metric.samplers"),
])
def test_every_registered_component_is_exported_by_its_package(registry_name: str, package_name: str) -> None:
    """``DISTANCES.create("squared_euclidean")`` worked but ``metric.distances`` did not export its factory. Entries
    that others register (a benchmark's PML loss, a user's extension) are theirs to export."""
    package = importlib.import_module(package_name)
    registry = getattr(importlib.import_module("metric.registry"), registry_name)
    assert registry.package == package_name
    own = [key for key in registry.names() if registry.get(key).__module__.startswith(package_name + ".")]
    assert own
    for key in own:
        factory = registry.get(key)
        assert factory.__name__ in package.__all__ and getattr(package, factory.__name__) is factory, key
