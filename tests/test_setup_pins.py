"""constraints.txt pins every package that installing the project with its dev extras brings (on Python 3.11, the
locked Python), so that a new release of any of them changes nothing under an unchanged repo. Read off the installed
environment: each distribution reached from coseg-metric[dev] through its requirements."""
import importlib.metadata as metadata
import re
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import Specifier

CONSTRAINTS = Path(__file__).resolve().parents[1] / "constraints.txt"
PROJECT = "coseg-metric"


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins() -> dict[str, Specifier]:
    """Package → the pin (``==version``) that constraints.txt gives for this interpreter."""
    pinned = {}
    for line in CONSTRAINTS.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate():
            (spec,) = requirement.specifier
            assert spec.operator == "==", f"constraints.txt: {line!r} is not a pin"
            pinned[canonical(requirement.name)] = spec
    return pinned


def installed_dependencies(root: str, extras: set[str]) -> dict[str, str]:
    """Package → installed version of every distribution that ``root[extras]`` requires, directly or not."""
    found: dict[str, str] = {}
    visited: set[tuple[str, str]] = set()
    todo = [(root, extra) for extra in extras | {""}]
    while todo:
        name, extra = todo.pop()
        if (canonical(name), extra) in visited:
            continue
        visited.add((canonical(name), extra))
        for text in metadata.requires(name) or []:
            requirement = Requirement(text)
            if requirement.marker is not None and not requirement.marker.evaluate({"extra": extra}):
                continue
            found[canonical(requirement.name)] = metadata.version(requirement.name)
            todo += [(requirement.name, wanted) for wanted in requirement.extras | {""}]
    return found


@pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="constraints.txt locks Python 3.11 only")
def test_every_installed_dependency_is_pinned_at_its_installed_version():
    try:
        metadata.version(PROJECT)
    except metadata.PackageNotFoundError:
        pytest.skip(f"{PROJECT} is not installed (make setup installs it)")
    installed = installed_dependencies(PROJECT, {"dev"})
    if "faiss-gpu-cu12" in installed:
        pytest.skip("faiss's GPU build and its CUDA 12 libraries are not locked")
    pinned = pins()
    unpinned = sorted(f"{name}=={version}" for name, version in installed.items() if name not in pinned)
    moved = sorted(f"{name}: {installed[name]} installed, {pinned[name]} pinned"
                   for name in installed.keys() & pinned.keys()
                   if not pinned[name].contains(installed[name], prereleases=True))
    assert not unpinned, f"installed but not pinned in constraints.txt: {unpinned}"
    assert not moved, f"installed at another version than constraints.txt pins: {moved}"
