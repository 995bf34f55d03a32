"""A run resumed with another number of processes than trained it (a torchrun run resumed in one process, or the
other way round) is refused before anything is written: both trainers leave ``config.yaml`` as it was, so it
still describes the checkpoints, and the retrieval trainer computes no features first."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

import apps.retrieval.train as retrieval_train
import coseg.train as coseg_train
from coseg.config import CosegTrainConfig
from coseg.engine import CheckpointError, RunFolder, save_config, save_training_state
from tests.apps.retrieval_runs import tiny_config, tiny_set
from tests.coseg.pipeline_fixtures import synthetic_set


def ddp_state(path: Path, world_size: int = 2) -> None:
    """A ``last.pt`` as a torchrun run of ``world_size`` processes leaves it (what resuming reads first)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    save_training_state(path, {"epoch": 1, "model": {}, "optimizer": {}, "scaler": {}, "best": None, "best_epoch": 1,
                               "rng": {}, "world_size": world_size, "rng_ranks": [{}] * world_size})


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def coseg_run(tmp_path: Path) -> tuple[CosegTrainConfig, RunFolder]:
    data = synthetic_set(tmp_path / "data", groups=3, images=2)
    cfg = CosegTrainConfig(data=str(data), output=str(tmp_path / "run"), epochs=1, members=1, weights="none",
                           image_size=64, groups_per_batch=2, images_per_group=2, triplet_pixels=8, val_fraction=0.34,
                           device="cpu", quiet=True)
    return cfg, coseg_train.RUN_FOLDER


def retrieval_run(tmp_path: Path):
    return tiny_config(tiny_set(tmp_path / "data"), tmp_path / "run"), retrieval_train.RUN_FOLDER


@pytest.mark.parametrize("trainer", ["coseg", "retrieval"])
def test_resuming_a_torchrun_run_in_one_process_is_refused_before_config_yaml_is_rewritten(tmp_path, trainer,
                                                                                        monkeypatch):
    cfg, folder = (coseg_run if trainer == "coseg" else retrieval_run)(tmp_path)
    module = coseg_train if trainer == "coseg" else retrieval_train
    run = Path(cfg.output)
    run.mkdir()
    folder.save_config(cfg, run / "config.yaml")
    ddp_state(run / "last.pt")
    before = digest(run / "config.yaml")
    if trainer == "retrieval":  # refused before the features are computed (minutes on a large set)
        monkeypatch.setattr(retrieval_train, "cached_features", lambda *a, **k: pytest.fail("features computed"))
    longer = type(cfg)(**{**vars(cfg), "epochs": cfg.epochs + 2})
    with pytest.raises(CheckpointError, match=r"last.pt: saved by a run with 2 process\(es\); resume it with the "
                                              r"same number \(now 1\)"):
        module.train(longer, resume=True)
    assert digest(run / "config.yaml") == before  # still the run's own epochs


def test_run_folder_refuses_a_sub_run_of_another_process_count(tmp_path):
    folder = RunFolder(subruns="stage*", paths=frozenset())
    cfg, _ = coseg_run(tmp_path)
    run = Path(cfg.output)
    run.mkdir()
    save_config(cfg, run / "config.yaml")
    ddp_state(run / "last.pt", world_size=1)
    ddp_state(run / "stage2" / "last.pt", world_size=2)
    with pytest.raises(CheckpointError, match=r"stage2/last.pt: saved by a run with 2 process\(es\).*\(now 1\)"):
        folder.check(cfg, resume=True)
    with pytest.raises(CheckpointError, match=r"run/last.pt: saved by a run with 1 process\(es\).*\(now 2\)"):
        folder.check(cfg, resume=True, world_size=2)
