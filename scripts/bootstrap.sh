#!/usr/bin/env bash
# Create (or reuse) .venv and install the package with its dev extras, every dependency pinned by constraints.txt.
# Idempotent: re-installs only when setup.py or constraints.txt changed since the last successful install.
# A .venv that is unusable (an interrupted creation, another Python, a moved folder) is made anew.
# PYTHON=/path/to/python picks the interpreter; by default python3.11, whose torch wheels lie on this machine's disk.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd -P)
say() { echo "bootstrap: $*" >&2; }

# One set-up at a time (make demo and make test started together would install into one .venv at once).
if command -v flock >/dev/null; then
  exec 9<"scripts/bootstrap.sh"
  flock 9
fi

if [ -n "${PYTHON:-}" ]; then
  PY=$PYTHON
elif python3.11 -c "" 2>/dev/null; then
  PY=python3.11
else
  PY=python3
fi
if ! ver=$("$PY" -c 'import sys; assert sys.version_info >= (3, 10); print("%d.%d" % sys.version_info[:2])' 2>/dev/null); then
  say "$PY is missing or older than Python 3.10; set PYTHON=/path/to/python3.11 (or 3.10+)"
  exit 1
fi
if [ "$ver" != 3.11 ]; then
  say "warning: Python $ver; torch==2.14.1 and torchvision==0.29.1 lie on this machine's disk for Python 3.11 only," \
      "so pip downloads them (several GB)"
fi

# The venv is usable when it was created in full (.created, written after the creation, or a stamp of a full
# install), in this folder (its scripts start with this folder's path), and its Python is the chosen version, with pip.
venv_ok() {
  { [ -e .venv/.created ] || compgen -G ".venv/.installed-*" >/dev/null; } || return 1
  # pip's launcher names its Python on line 1, or on line 2 under a /bin/sh shebang when the path is long
  head -n2 .venv/bin/pip 2>/dev/null | grep -qF "$root/.venv/bin/python" || return 1
  .venv/bin/python -c 'import sys, pip; assert "%d.%d" % sys.version_info[:2] == sys.argv[1]' "$ver" 2>/dev/null
}
fresh=
make_venv() {
  rm -rf .venv
  fresh=1
  say "creating .venv with $PY (Python $ver)"
  "$PY" -m venv .venv
  touch .venv/.created
}
if [ -e .venv ] && ! venv_ok; then
  say ".venv is unusable (interrupted creation, another Python than $ver, or created in another folder): making it anew"
  make_venv
elif [ ! -e .venv ]; then
  make_venv
fi

# faiss's GPU build where there is a GPU (setup.py reads COSEG_FAISS; a user's own setting wins).
if [ -z "${COSEG_FAISS:-}" ]; then
  if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then COSEG_FAISS=gpu; else COSEG_FAISS=cpu; fi
fi
export COSEG_FAISS

# Third-party imports that a broken install (interrupted mid-wheel) would fail; the project's own code is not imported
# here, so a bug in it shows in the tests, not as a set-up failure.
check_imports() {
  .venv/bin/python -c 'import torch, torchvision, timm, segmentation_models_pytorch, kornia, faiss, cv2, pytest' \
    >/dev/null
}
stamp=.venv/.installed-$( (cat setup.py constraints.txt; echo "$COSEG_FAISS") | sha1sum | cut -c1-12)
if [ ! -f "$stamp" ]; then
  say "installing into .venv (COSEG_FAISS=$COSEG_FAISS pip install -c constraints.txt -e .[dev])"
  rm -f .venv/.installed-*
  # Both faiss builds ship the module `faiss`, and pip keeps a build no longer asked for: when the other one is there
  # (COSEG_FAISS changed), both go, so that the chosen build installs whole rather than over or under the other's files.
  other_faiss=$([ "$COSEG_FAISS" = gpu ] && echo faiss-cpu || echo faiss-gpu-cu12)
  if .venv/bin/python -m pip show --quiet "$other_faiss" 2>/dev/null; then
    say "removing $other_faiss (COSEG_FAISS=$COSEG_FAISS installs the other faiss build)"
    .venv/bin/python -m pip uninstall --quiet --yes faiss-cpu faiss-gpu-cu12
  fi
  .venv/bin/python -m pip install --quiet -c constraints.txt -e ".[dev]"
  if ! check_imports 2>/dev/null; then
    # pip counts a package whose files an interrupted install left half-written as installed: start again once.
    if [ -n "$fresh" ]; then check_imports || true; say "the installed packages do not import (see above)"; exit 1; fi
    say "the installed packages do not import (an interrupted install?): making .venv anew"
    make_venv
    .venv/bin/python -m pip install --quiet -c constraints.txt -e ".[dev]"
    check_imports
  fi
  touch "$stamp"
fi
