"""One training per run folder: while another live process trains into a folder, ``coseg train`` and ``coseg
retrieval train`` into it (``--resume``, ``--overwrite`` or a new run) are refused at once, naming the folder and
that process, and change nothing there; a killed holder blocks nothing; readers (report) are not blocked."""
from __future__ import annotations

import hashlib
import shutil
import socket
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
from click.testing import CliRunner

from apps.cli import main
from coseg.engine import DistInfo, training_lock
from coseg.engine.run_lock import LOCK_FILE
from tests.coseg.pipeline_fixtures import synthetic_set
from tests.coseg.test_train_run import TINY
from tests.reliability.test_bad_inputs import TINY_RETRIEVAL

REPO = Path(__file__).resolve().parents[2]
HOLD = ("import sys, time\n"
        "from coseg.engine import training_lock\n"
        "with training_lock(sys.argv[1]):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(600)\n")


@contextmanager
def held(folder: Path) -> Iterator[subprocess.Popen]:
    """Another process holding ``folder``'s training lock for the block, then killed with SIGKILL."""
    child = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "held"
        yield child
    finally:
        child.kill()
        child.wait()
        child.stdout.close()


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file under ``folder``: its content's digest and its modification time."""
    return {p.relative_to(folder).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def invoke(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def refusal(folder: Path, child: subprocess.Popen) -> str:
    return (f"Error: {folder}: another training is running into this folder (pid {child.pid} on host "
            f"{socket.gethostname()}); wait until it ends, or choose another --output")


def test_a_second_coseg_training_into_a_live_run_folder_is_refused(tmp_path: Path) -> None:
    data = synthetic_set(tmp_path / "data", groups=3, images=2)
    run, started = tmp_path / "run", tmp_path / "k3"
    train = ["train", "--data", data, *TINY]
    assert invoke(*train, "--epochs", 1, "--output", run)[0] == 0
    assert not (run / LOCK_FILE).exists()  # a finished training leaves no lock file
    started.mkdir()
    shutil.copy(run / "config.yaml", started)  # a run in its first epoch: no last.pt yet
    for folder in (started, run):
        with held(folder) as child:
            before = snapshot(folder)
            for extra in (["--resume"], ["--overwrite"], []):
                code, output = invoke(*train, "--epochs", 1, "--output", folder, *extra)
                assert code == 1 and output.strip() == refusal(folder, child), (extra, output)
                assert snapshot(folder) == before
        assert (folder / LOCK_FILE).is_file()  # the killed holder left it, unlocked
    with training_lock(started):  # free again
        pass
    # the killed holder's stale lock file does not block --resume; a second --resume and a report accept the run
    assert invoke(*train, "--epochs", 2, "--output", run, "--resume")[0] == 0
    assert len((run / "log.csv").read_text().splitlines()) == 3 and not (run / LOCK_FILE).exists()
    assert invoke(*train, "--epochs", 2, "--output", run, "--resume")[0] == 0
    assert invoke("report", run)[0] == 0


def test_reading_a_run_folder_while_it_trains_is_not_blocked(tmp_path: Path) -> None:
    data = synthetic_set(tmp_path / "data", groups=3, images=2)
    run = tmp_path / "run"
    assert invoke("train", "--data", data, "--epochs", 1, *TINY, "--output", run)[0] == 0
    with held(run):
        assert invoke("report", run)[0] == 0 and (run / "report.html").is_file()
        code, output = invoke("evaluate", "--checkpoint", run / "best.safetensors", "--data", data, "--output",
                              tmp_path / "eval", "--image-size", 64, "--device", "cpu", "--quiet")
        assert code == 0, output


def test_a_second_retrieval_training_into_a_live_run_folder_is_refused(tmp_path: Path) -> None:
    from tests.apps.retrieval_runs import tiny_set

    data = tiny_set(tmp_path / "data")
    run = tmp_path / "run"
    with held(run) as child:
        before = snapshot(run)
        for extra in (["--resume"], ["--overwrite"], []):
            code, output = invoke("retrieval", "train", "--data", data, "--output", run, "--epochs", 1,
                                  *TINY_RETRIEVAL, *extra)
            assert code == 1 and output.strip() == refusal(run, child), (extra, output)
            assert snapshot(run) == before


def test_only_the_main_process_takes_the_lock(tmp_path: Path, monkeypatch) -> None:
    """Under torchrun rank 0 holds the lock for the run; the other ranks neither wait nor are refused."""
    with held(tmp_path / "run"):
        with training_lock(tmp_path / "run", DistInfo(rank=1, world_size=2)):
            pass
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("RANK", "1")
        with training_lock(tmp_path / "run"):
            pass
        monkeypatch.setenv("RANK", "0")
        with pytest.raises(ValueError, match="another training is running into this folder"):
            with training_lock(tmp_path / "run"):
                pass


@pytest.mark.parametrize("world_size", [None, "1"])
def test_a_single_process_takes_the_lock_whatever_rank_its_environment_holds(tmp_path: Path, monkeypatch,
                                                                             world_size) -> None:
    """A ``RANK`` left in the environment of a single process (no torchrun) does not make it skip the lock."""
    if world_size is None:
        monkeypatch.delenv("WORLD_SIZE", raising=False)
    else:
        monkeypatch.setenv("WORLD_SIZE", world_size)
    monkeypatch.setenv("RANK", "1")
    with held(tmp_path / "run"):
        with pytest.raises(ValueError, match="another training is running into this folder"):
            with training_lock(tmp_path / "run"):
                pass


def test_a_folder_the_lock_made_goes_when_the_training_fails(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        with training_lock(tmp_path / "new" / "run"):
            raise RuntimeError("refused option")
    assert (tmp_path / "new").is_dir() and not (tmp_path / "new" / "run").exists()
