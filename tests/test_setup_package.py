"""A non-editable install (`pip install .`) ships every file the packages hold: package_data names only files that
exist, and every non-Python file tracked in metric/, coseg/ and apps/ is named by it."""
import subprocess
from pathlib import Path

import pytest

from tests.test_setup import SETUP, setup_arguments

ROOT = SETUP.parent


def test_package_data_names_only_existing_files(monkeypatch):
    for package, patterns in setup_arguments(monkeypatch).get("package_data", {}).items():
        for pattern in patterns:
            assert list((ROOT / package.replace(".", "/")).glob(pattern)), \
                f"setup.py package_data {package}: {pattern!r} matches no file"


def test_every_non_python_package_file_is_package_data(monkeypatch):
    try:
        listed = subprocess.run(["git", "ls-files", "metric", "coseg", "apps"], cwd=ROOT, capture_output=True,
                                text=True, check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    package_data = setup_arguments(monkeypatch).get("package_data", {})
    shipped = {path.relative_to(ROOT) for package, patterns in package_data.items() for pattern in patterns
               for path in (ROOT / package.replace(".", "/")).glob(pattern)}
    missing = [name for name in listed if not name.endswith(".py") and Path(name) not in shipped]
    assert not missing, f"not in setup.py's package_data, so `pip install .` leaves them out: {missing}"
