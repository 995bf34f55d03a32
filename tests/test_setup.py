"""setup.py installs one faiss build: the CPU one by default, the CUDA one with COSEG_FAISS=gpu (both at once would
overwrite each other's `faiss` module)."""
import runpy
from pathlib import Path

import pytest
import setuptools

SETUP = Path(__file__).resolve().parents[1] / "setup.py"


def setup_arguments(monkeypatch: pytest.MonkeyPatch) -> dict:
    """The keyword arguments setup.py passes to setuptools.setup, as run now."""
    seen: dict = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kwargs: seen.update(kwargs))
    runpy.run_path(str(SETUP))
    return seen


def requirements(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every requirement setup.py declares, extras included, as run now."""
    seen = setup_arguments(monkeypatch)
    return seen["install_requires"] + [r for extra in seen["extras_require"].values() for r in extra]


@pytest.mark.parametrize("build, package", [(None, "faiss-cpu"), ("cpu", "faiss-cpu"), ("gpu", "faiss-gpu-cu12")])
def test_one_faiss_build_is_installed(monkeypatch, build, package):
    if build is None:
        monkeypatch.delenv("COSEG_FAISS", raising=False)
    else:
        monkeypatch.setenv("COSEG_FAISS", build)
    faiss = [r for r in requirements(monkeypatch) if r.startswith("faiss")]
    assert len(faiss) == 1 and faiss[0].startswith(package + ">="), faiss


def test_an_unknown_faiss_build_is_named(monkeypatch):
    monkeypatch.setenv("COSEG_FAISS", "cuda")
    with pytest.raises(SystemExit, match="COSEG_FAISS must be one of cpu, gpu, got 'cuda'"):
        requirements(monkeypatch)
