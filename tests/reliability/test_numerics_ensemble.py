"""A non-finite loss in an ensemble member after the first, before that member's first checkpoint: the advice names
what the run folder accepts (``--resume`` keeps the finished members and trains this one anew, or ``--overwrite``
with a lower learning rate), not "train again", which the folder, holding the earlier members, refuses."""
from __future__ import annotations

from pathlib import Path

import coseg.train as coseg_train
from tests.coseg.pipeline_fixtures import synthetic_set
from tests.reliability.test_bad_inputs import TINY_COSEG, fails, invoke


def test_a_later_members_first_epoch_failure_advises_resume_or_overwrite(tmp_path, monkeypatch):
    data, run = synthetic_set(tmp_path / "data", groups=2, images=2), tmp_path / "run"
    step = coseg_train.CosegTask.train_step

    def poisoned(self, model, batch, device):
        terms = step(self, model, batch, device)
        if (run / "member1").is_dir() and not (run / "member1" / "last.pt").is_file():
            terms = {**terms, "loss": terms["loss"] * float("nan")}
        return terms

    monkeypatch.setattr(coseg_train.CosegTask, "train_step", poisoned)
    args = ["train", "--data", data, "--output", run, "--epochs", 2, "--val-fraction", 0, *TINY_COSEG[2:]]
    output = " ".join(fails(*args, "--members", 2).split())
    assert "non-finite loss at epoch 1, step 1" in output
    assert (f"ensemble member 1 ({Path(run) / 'member1'}) stopped before its first checkpoint; member 0 is kept: check "
            "the data, then --resume (which trains member 1 anew, with the run's learning rate), or train anew with a "
            "lower one (--overwrite)") in output
    assert "train again" not in output
    assert (run / "member0" / "last.safetensors").is_file() and not (run / "last.safetensors").exists()

    monkeypatch.undo()  # the fault is gone: the advised resume finishes the ensemble
    invoke(*args, "--members", 2, "--resume")
    assert (run / "member1" / "last.safetensors").is_file() and (run / "last.safetensors").is_file()
