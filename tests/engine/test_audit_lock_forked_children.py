"""A training killed with SIGKILL releases its folder's training lock at once, also while processes forked from it
(DataLoader workers, which outlive it by seconds, or for good when one hangs) are still alive: a ``--resume`` right
after the kill is not refused naming the dead process."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from coseg.engine import training_lock

REPO = Path(__file__).resolve().parents[2]
HOLD_AND_FORK = ("import multiprocessing, sys, time\n"
                 "from coseg.engine import training_lock\n"
                 "with training_lock(sys.argv[1]):\n"
                 "    worker = multiprocessing.get_context('fork').Process(target=time.sleep, args=(600,))\n"
                 "    worker.start()\n"
                 "    print(worker.pid, flush=True)\n"
                 "    time.sleep(600)\n")


def test_a_killed_trainings_lock_is_not_held_by_its_forked_workers(tmp_path):
    folder = tmp_path / "run"
    trainer = subprocess.Popen([sys.executable, "-c", HOLD_AND_FORK, str(folder)], cwd=REPO,
                               stdout=subprocess.PIPE, text=True)
    worker = int(trainer.stdout.readline())
    try:
        trainer.kill()
        trainer.wait()
        with training_lock(folder):  # was: refused, "another training is running into this folder (pid ...)"
            pass
    finally:
        os.kill(worker, signal.SIGKILL)
        trainer.stdout.close()
