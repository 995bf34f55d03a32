"""The README's Python API example runs as written (on a small generated data set instead of ../shared)."""
from __future__ import annotations

import os
import re
import runpy
from pathlib import Path

import pytest

from coseg.data import make_synthetic_coseg

README = Path(__file__).resolve().parents[1] / "README.md"
SHARED_ICOSEG = '"../shared/data/icoseg"'


def python_api_block() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Python API", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, flags=re.S)
    assert match, "README has no ```python block under '## Python API'"
    return match.group(1)


@pytest.mark.slow
def test_python_api_example_runs(tmp_path: Path) -> None:
    code = python_api_block()
    assert code.count(SHARED_ICOSEG) == 1, "the example should read iCoseg from ../shared once"
    data = make_synthetic_coseg(tmp_path / "icoseg", num_groups=2, images_per_group=3, size=64, seed=0)
    script = tmp_path / "api.py"
    script.write_text(code.replace(SHARED_ICOSEG, repr(str(data))), encoding="utf-8")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        namespace = runpy.run_path(str(script))
    finally:
        os.chdir(cwd)
    assert namespace["probs"].shape == (40, 1, 224, 224)
    assert namespace["masks"].shape == (40, 1, 336, 336)
    assert len(namespace["ensemble"].members) == 2
    assert len(namespace["scan"].samples) == 6
    assert (tmp_path / "model.safetensors").is_file() and (tmp_path / "other.safetensors").is_file()
