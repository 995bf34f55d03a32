"""coseg.engine.RunFolder on a config class of its own: the sub-runs it looks into, the options it lets --resume
change and the options it compares as paths."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from coseg.engine import RESUMABLE, CheckpointError, RunFolder, save_config, save_training_state


@dataclass
class Toy:
    data: str = "d"
    output: str = "run"
    overwrite: bool = False
    epochs: int = 1
    lr: float = 0.1
    threads: int = 1


FOLDER = RunFolder(subruns="stage*", paths=frozenset({"data"}), resumable=RESUMABLE | {"threads"})


def test_subruns_resumable_options_and_paths(tmp_path):
    run = tmp_path / "run"
    cfg = Toy(data=str(tmp_path / "d"), output=str(run))
    FOLDER.check(cfg, resume=False)  # no folder yet
    (run / "stage2").mkdir(parents=True)
    (run / "stage2" / "log.csv").write_text("epoch\n")
    assert FOLDER.files(run) == [run / "stage2" / "log.csv"]
    with pytest.raises(ValueError, match=r"already holds a run \(stage2/log.csv\)"):
        FOLDER.check(cfg, resume=False)
    FOLDER.check(Toy(data=cfg.data, output=str(run), overwrite=True), resume=False)

    save_config(cfg, run / "config.yaml")
    FOLDER.check(Toy(data=f"{tmp_path}/./d/", output=str(run), epochs=5, threads=4), resume=True)
    with pytest.raises(ValueError, match=r"data '.*d' → '.*e'; lr 0.1 → 0.2\. Resume with its own options"):
        FOLDER.check(Toy(data=str(tmp_path / "e"), output=str(run), lr=0.2, threads=4), resume=True)


def test_a_path_option_given_relative_or_absolute_is_one_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d").mkdir()
    run = tmp_path / "run"
    run.mkdir()
    save_config(Toy(data="d", output=str(run)), run / "config.yaml")  # trained with a relative path
    FOLDER.check(Toy(data=str(tmp_path / "d"), output=str(run)), resume=True)  # resumed with the absolute one


def test_clear_removes_what_killed_writes_left(tmp_path):
    run = tmp_path / "run"
    (run / "stage2").mkdir(parents=True)
    left = [run / ".best.safetensors.tmp-k1ll3d.safetensors", run / "stage2" / ".last.pt.tmp-k1ll3d.pt"]
    for path in left + [run / "last.pt", run / "notes.txt"]:
        path.write_bytes(b"x")
    FOLDER.clear(run)
    assert sorted(p.relative_to(run).as_posix() for p in run.rglob("*")) == ["notes.txt"]  # not a run's file: kept


def test_resume_refuses_a_damaged_training_state_of_a_subrun_before_anything_is_written(tmp_path):
    run = tmp_path / "run"
    (run / "stage2").mkdir(parents=True)
    cfg = Toy(output=str(run))
    save_config(cfg, run / "config.yaml")
    state = {"epoch": 1, "model": {}, "optimizer": {}, "scaler": {}, "best": None, "best_epoch": 1, "rng": {}}
    save_training_state(run / "last.pt", state)
    save_training_state(run / "stage2" / "last.pt", state)
    FOLDER.check(cfg, resume=True)
    (run / "stage2" / "last.pt").write_bytes((run / "stage2" / "last.pt").read_bytes()[:100])
    with pytest.raises(CheckpointError, match=r"stage2/last.pt: refused to load"):
        FOLDER.check(cfg, resume=True)
