"""scripts/bootstrap.sh's pip commands, run against a stand-in .venv whose python records its arguments (nothing is
installed): a set-up that switches the faiss build removes the other build first, since both ship the module `faiss`."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Answers venv_ok's and check_imports' `-c` checks, and `pip show --quiet NAME` for the names in $INSTALLED.
FAKE_PYTHON = """#!/usr/bin/env bash
echo "$*" >> "$PIP_LOG"
if [ "$1 $2 $3 $4" = "-m pip show --quiet" ]; then
  case " $INSTALLED " in *" $5 "*) exit 0 ;; *) exit 1 ;; esac
fi
"""


def run_bootstrap(tmp_path: Path, build: str, installed: str) -> list[str]:
    """Run bootstrap.sh with COSEG_FAISS=``build`` where the stand-in .venv holds ``installed`` (space-separated
    names); returns the stand-in python's invocations, one string each."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    for name in ("scripts/bootstrap.sh", "setup.py", "constraints.txt"):
        shutil.copy(ROOT / name, repo / name)
    bin_dir = repo / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (repo / ".venv" / ".created").touch()
    (bin_dir / "python").write_text(FAKE_PYTHON)
    (bin_dir / "python").chmod(0o755)
    (bin_dir / "pip").write_text(f"#!{repo.resolve()}/.venv/bin/python\n")
    log = tmp_path / "pip.log"
    env = {**os.environ, "PYTHON": sys.executable, "COSEG_FAISS": build, "INSTALLED": installed, "PIP_LOG": str(log)}
    subprocess.run(["bash", str(repo / "scripts" / "bootstrap.sh")], env=env, check=True, capture_output=True,
                   text=True)
    return [line for line in log.read_text().splitlines() if line.startswith("-m pip")]


@pytest.mark.parametrize("build, other", [("cpu", "faiss-gpu-cu12"), ("gpu", "faiss-cpu")])
def test_switching_the_faiss_build_removes_the_other_build_before_installing(tmp_path, build, other):
    calls = run_bootstrap(tmp_path, build, installed=other)
    uninstall = "-m pip uninstall --quiet --yes faiss-cpu faiss-gpu-cu12"
    assert uninstall in calls, calls
    install = next(i for i, call in enumerate(calls) if call.startswith("-m pip install"))
    assert calls.index(uninstall) < install, calls


def test_the_same_faiss_build_is_not_removed(tmp_path):
    calls = run_bootstrap(tmp_path, "cpu", installed="faiss-cpu")
    assert not [call for call in calls if "uninstall" in call], calls
    assert any(call.startswith("-m pip install") for call in calls), calls
