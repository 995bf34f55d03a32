"""``coseg retrieval --help`` took 12-15 s: the ``apps.retrieval`` package imported its model (timm, torchvision)
and data sets (kornia) as soon as the retrieval commands were loaded. Its names are now imported when first used."""
import subprocess
import sys
from pathlib import Path

import pytest

import apps.retrieval
from apps.retrieval import model as model_module


@pytest.mark.parametrize("args", [["retrieval", "--help"], ["retrieval", "train", "--help"],
                                  ["retrieval", "search", "--help"]])
def test_the_retrieval_help_imports_no_model_library(args: list[str]) -> None:
    code = ("import sys\nfrom apps.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "print('loaded:', sorted(m for m in ('torch', 'timm', 'torchvision', 'kornia') if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).parents[2])
    assert "Usage: " in run.stdout and run.stdout.rstrip().endswith("loaded: []"), run.stdout + run.stderr


def test_the_package_still_gives_its_names() -> None:
    assert apps.retrieval.create_retrieval_model is model_module.create_retrieval_model
    assert set(apps.retrieval.__all__) <= set(dir(apps.retrieval))
    assert all(getattr(apps.retrieval, name) is not None for name in apps.retrieval.__all__)
    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        apps.retrieval.nothing  # noqa: B018
