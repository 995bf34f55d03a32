"""Audit (s12) of the engine: loss terms logged to significant digits, the images/s of an epoch after its first step,
a resume whose best model file is lost or damaged, and a log.csv edited by hand."""
from __future__ import annotations

import csv
from dataclasses import dataclass

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import coseg.engine.trainer as trainer
from coseg.engine import RESUMABLE, CheckpointError, DistInfo, Engine, RunFolder, save_config
from tests.engine.test_audit_s11_engine import Clock
from tests.engine.toy import ToyModel, ToyTask


def engine(run, epochs: int, **options) -> tuple[Engine, ToyModel]:
    torch.manual_seed(0)
    model = ToyModel()
    return Engine(model, torch.optim.SGD(model.parameters(), lr=0.1), run, dist=DistInfo(), epochs=epochs,
                  select_metric="acc", quiet=True, **options), model


def rows(run) -> list[dict[str, str]]:
    with open(run / "log.csv", newline="") as f:
        return list(csv.DictReader(f))


class TinyTermTask(ToyTask):
    """A loss term far below 1e-6 (a regulariser's weight times its small value)."""

    def train_step(self, model, batch, device):
        terms = super().train_step(model, batch, device)
        return {**terms, "tiny": terms["loss"].detach() * 1e-9}


def test_a_tiny_loss_term_is_logged_to_six_significant_digits_and_resumes(tmp_path):
    """Was: train_* rounded to 6 decimals, so a term below 5e-7 was logged as 0."""
    task = TinyTermTask()
    first, _ = engine(tmp_path, epochs=1)
    first.fit(task, task.loader())
    resumed, _ = engine(tmp_path, epochs=2)
    resumed.fit(task, task.loader(), resume=True)
    logged = rows(tmp_path)
    assert len(logged) == 2
    for row in logged:
        tiny, loss = float(row["train_tiny"]), float(row["train_loss"])
        assert tiny > 0 and tiny == pytest.approx(loss * 1e-9, rel=1e-5)
        assert len(row["train_tiny"].split("e")[0].replace(".", "").lstrip("0")) <= 6


def test_an_old_log_with_rounded_columns_resumes(tmp_path):
    task = ToyTask()
    first, _ = engine(tmp_path, epochs=1)
    first.fit(task, task.loader())
    log = tmp_path / "log.csv"
    header, values = log.read_text().splitlines()
    log.write_text(f"{header}\n{values.replace(values.split(',')[2], '0.5')}\n")  # as an older version wrote it
    resumed, _ = engine(tmp_path, epochs=2)
    resumed.fit(task, task.loader(), resume=True)
    assert [r["epoch"] for r in rows(tmp_path)] == ["1", "2"] and rows(tmp_path)[0][header.split(",")[2]] == "0.5"


class SlowStartTask(ToyTask):
    """4 steps an epoch of 16 images: the first takes 10 s (compilation, the loader's start), the others 1 s."""

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock

    def train_step(self, model, batch, device):
        self.clock.now += 10.0 if self.steps % 4 == 0 else 1.0
        return super().train_step(model, batch, device)


def test_images_per_s_leaves_out_the_epochs_first_step(tmp_path, monkeypatch):
    """Was: 64 images / 13 s = 4.92 images/s, the first step's warm-up taken for the training speed."""
    clock = Clock()
    monkeypatch.setattr(trainer.time, "perf_counter", clock)
    task = SlowStartTask(clock)
    run, _ = engine(tmp_path, epochs=2)
    run.fit(task, task.loader())
    for row in rows(tmp_path):
        assert (float(row["seconds"]), float(row["images_per_s"])) == (13.0, 16.0)  # 48 images in 3 s


def fall_then_resume(run) -> None:
    """A run of 3 epochs whose best (by a validation that only falls) is epoch 1."""
    task = ToyTask()
    scores = iter([0.9, 0.5, 0.4])
    task.validate = lambda model: {"acc": next(scores)}
    first, _ = engine(run, epochs=3)
    assert first.fit(task, task.loader()).best_epoch == 1


@pytest.mark.parametrize("damage, problem", [
    (lambda best: best.write_bytes(best.read_bytes()[:-10]), r"cannot be read \(.*\)"),
    (lambda best: best.unlink(), "not found"),
])
def test_resume_refuses_a_best_model_file_it_cannot_write_again(tmp_path, damage, problem):
    """Was: a damaged (or lost) best.safetensors of an earlier epoch than last.pt's was kept as it was, silently, as the
    run's best model after the resume too (an ensemble failed at its end, after training every member)."""
    fall_then_resume(tmp_path)
    damage(tmp_path / "best.safetensors")
    files = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    resumed, _ = engine(tmp_path, epochs=4)
    task = ToyTask()
    written = []
    with pytest.raises(CheckpointError, match=rf"best.safetensors: {problem}; it is the model of the run's best epoch "
                                              r"\(1\), which last.pt \(epoch 3\) does not hold, so --resume cannot "
                                              r"write it again: put back a copy of it"):
        resumed.fit(task, task.loader(), resume=True, before_write=lambda: written.append(1))
    assert not written and {p.name: p.read_bytes() for p in tmp_path.iterdir()} == files


@dataclass
class Toy:
    output: str = "run"
    overwrite: bool = False
    epochs: int = 1


def test_the_run_folder_refuses_a_members_lost_best_model_before_anything_is_written(tmp_path):
    run = tmp_path / "run"
    fall_then_resume(run / "member1")
    save_config(Toy(output=str(run)), run / "config.yaml")
    folder = RunFolder(subruns="member*", paths=frozenset(), resumable=RESUMABLE)
    folder.check(Toy(output=str(run), epochs=4), resume=True)
    (run / "member1" / "best.safetensors").write_bytes(b"not a model")
    with pytest.raises(CheckpointError, match=r"member1/best.safetensors: cannot be read"):
        folder.check(Toy(output=str(run), epochs=4), resume=True)


def test_a_damaged_last_model_file_is_written_again_from_last_pt(tmp_path):
    """last.safetensors (and best.safetensors of the last epoch) are last.pt's model: a resume rewrites them, also
    with nothing left to train."""
    task = ToyTask()
    first, model = engine(tmp_path, epochs=2)
    first.fit(task, task.loader())
    last = tmp_path / "last.safetensors"
    with safe_open(str(last), "pt") as f:
        metadata = f.metadata()
    last.write_bytes(last.read_bytes()[:100])
    resumed, _ = engine(tmp_path, epochs=2)
    assert not resumed.fit(task, task.loader(), resume=True).history
    with safe_open(str(last), "pt") as f:
        assert f.metadata() == metadata and metadata["finished"] == "epochs"
    for name, tensor in load_file(str(last)).items():
        torch.testing.assert_close(tensor, model.state_dict()[name], rtol=0, atol=0)


@pytest.mark.parametrize("epoch", ["1.0", "\u00b2", "", "one"])
def test_a_hand_edited_row_whose_epoch_is_no_whole_number_is_refused_not_dropped(tmp_path, epoch):
    """Was: the row was dropped and the log rewritten without it (a superscript digit: int()'s ValueError naming no
    file)."""
    task = ToyTask()
    first, _ = engine(tmp_path, epochs=2)
    first.fit(task, task.loader())
    log = tmp_path / "log.csv"
    text = log.read_text().replace("\n1,", f"\n{epoch},", 1)
    log.write_text(text)
    resumed, _ = engine(tmp_path, epochs=3)
    with pytest.raises(ValueError, match=rf"log.csv: a row's epoch '{epoch}' is not a whole number \(edited by hand"):
        resumed.fit(task, task.loader(), resume=True)
    assert log.read_text() == text


def test_rows_of_empty_cells_a_spreadsheet_left_are_no_rows(tmp_path):
    task = ToyTask()
    first, _ = engine(tmp_path, epochs=2)
    first.fit(task, task.loader())
    log = tmp_path / "log.csv"
    log.write_text(log.read_text() + ",,,,\n,,,,\n")
    resumed, _ = engine(tmp_path, epochs=3)
    resumed.fit(task, task.loader(), resume=True)
    assert [r["epoch"] for r in rows(tmp_path)] == ["1", "2", "3"]
