"""An ensemble killed while writing its own model files (OUTPUT/best.safetensors, after its members), then
resumed: the half-written temporary file the kill left goes, even with nothing left to train."""
from __future__ import annotations

from dataclasses import replace

import pytest
from safetensors import safe_open

from coseg.config import CosegTrainConfig
from coseg.train import train
from tests.coseg.pipeline_fixtures import synthetic_set

KILLED_WRITE = ".best.safetensors.tmp-k1ll3d.safetensors"  # what a kill -9 while writing the ensemble leaves


@pytest.mark.slow  # two ensembles of two members, one epoch each
def test_resume_removes_the_temporary_file_of_a_killed_write_of_the_ensemble(tmp_path):
    data = synthetic_set(tmp_path / "data", groups=3, images=2)
    run = tmp_path / "run"
    cfg = CosegTrainConfig(data=str(data), output=str(run), members=2, epochs=2, weights="none", image_size=32,
                           groups_per_batch=2, images_per_group=2, triplet_pixels=8, val_fraction=0.34,
                           device="cpu", quiet=True)
    train(cfg)
    (run / KILLED_WRITE).write_bytes(b"half an ensemble")
    config = (run / "config.yaml").stat().st_ino
    result = train(replace(cfg, epochs=1), resume=True)  # fewer epochs: nothing left to train
    assert [m.epochs_run for m in result.members] == [1, 1] and not any(m.history for m in result.members)
    assert (run / "config.yaml").stat().st_ino == config  # its config.yaml (2 epochs, as trained) not written again
    with safe_open(str(run / "last.safetensors"), "pt") as f:
        assert f.metadata()["finished"] == "epochs"
    assert not (run / KILLED_WRITE).exists()
    assert sorted(p.name for p in run.iterdir()) == ["best.safetensors", "config.yaml", "last.safetensors",
                                                     "member0", "member1"]
