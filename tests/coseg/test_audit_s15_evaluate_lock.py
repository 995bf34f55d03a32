"""One writer per evaluation folder: `coseg evaluate` into a folder another evaluate or a `coseg predict` is writing
is refused at once, before the model is loaded, naming the folder and that process; a predict into a folder an
evaluate writes is refused likewise. Was: both ran, the second removed the first's staged masks as a killed run's
leftovers, and the first failed or their summary, per_image.csv and masks mixed."""
from __future__ import annotations

import hashlib
import socket
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
import torch

import apps.cli as cli_module
import coseg.evaluate as evaluate_module
from coseg.models import create_model
from coseg.predict import predict_folder
from tests.coseg.pipeline_fixtures import ConstantModel, odd_sized_set
from tests.engine.test_run_lock import REPO, invoke

HOLD = ("import sys, time\n"
        "from coseg.engine.run_lock import folder_lock\n"
        "with folder_lock(sys.argv[1], sys.argv[2], 'held'):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(600)\n")
FAST = ("--no-colour-cut", "--edge-radius", 0, "--device", "cpu", "--quiet")


@contextmanager
def held(folder: Path, lock_file: str) -> Iterator[subprocess.Popen]:
    """Another process holding the lock ``folder/lock_file`` for the block, then killed."""
    with subprocess.Popen([sys.executable, "-c", HOLD, str(folder), lock_file], cwd=REPO, stdout=subprocess.PIPE,
                          text=True) as child:  # on leaving: its pipe closed, the killed child waited for
        try:
            assert child.stdout.readline().strip() == "held"
            yield child
        finally:
            child.kill()


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder``, hidden ones too: its content's digest."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(data set, model file, output folder not made yet)."""
    data, model, out = odd_sized_set(tmp_path / "data"), tmp_path / "model.safetensors", tmp_path / "out"
    create_model("unet", weights=None, embedding_dim=8, group_levels=0).save(model, {"image_size": "64"})
    return data, model, out


def evaluate(data: Path, model: Path, out: Path, *extra: object) -> tuple[int, str]:
    return invoke("evaluate", "--checkpoint", model, "--data", data, "--output", out, *FAST, *extra)


@pytest.mark.parametrize("lock_file, busy", [(".evaluate.lock", "another `coseg evaluate` is writing there"),
                                             (".predict.lock", "`coseg predict` is writing there")])
def test_an_evaluate_into_a_folder_another_run_writes_is_refused_before_loading_the_model(setup, monkeypatch,
                                                                                          lock_file, busy):
    data, model, out = setup
    assert evaluate(data, model, out, "--report")[0] == 0
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no lock file left, none in the report
    assert ".lock" not in (out / "report.html").read_text()
    loaded = []
    real_model = cli_module._model
    monkeypatch.setattr(cli_module, "_model", lambda *args: loaded.append(args) or real_model(*args))
    with held(out, lock_file) as child:
        before = snapshot(out)  # the holder's lock file too
        for extra in ([], ["--report"]):
            code, output = evaluate(data, model, out, *extra)
            assert code == 1 and output.strip() == (
                f"Error: {out}: {busy} (pid {child.pid} on host {socket.gethostname()}); wait until it ends, or "
                "choose another --output"), output
            assert snapshot(out) == before and not loaded
    code, output = evaluate(data, model, out, "--report")  # the killed holder's lock file blocks nothing
    assert code == 0, output
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


def test_a_second_evaluate_while_the_first_predicts_is_refused_and_the_first_comes_out_whole(setup, monkeypatch):
    data, model, out = setup
    second = []
    real = evaluate_module.write_png_atomic

    def write(path, mask):  # the first's masks are staged: a second evaluate into its folder starts now
        if not second:
            second.append(None)
            second[0] = evaluate(data, model, out, "--report")
        return real(path, mask)

    monkeypatch.setattr(evaluate_module, "write_png_atomic", write)
    code, output = evaluate(data, model, out, "--report")
    assert code == 0, output
    assert second[0][0] == 1 and "another `coseg evaluate` is writing there" in second[0][1]
    masks = sorted(p.relative_to(out).as_posix() for p in (out / "predictions").rglob("*.png"))
    assert masks == ["predictions/g0/im0.png", "predictions/g0/im1.png", "predictions/g1/im0.png"]
    assert sorted(p.name for p in out.iterdir()) == ["per_image.csv", "predictions", "report.html", "report_files",
                                                     "summary.json"]


def test_a_predict_into_a_folder_an_evaluate_writes_is_refused(setup, monkeypatch, tmp_path):
    data, model, out = setup
    refused = []
    real = evaluate_module.write_evaluation

    def write(*args):  # a predict into the folder while the evaluation writes its results
        with pytest.raises(ValueError) as error:
            predict_folder(ConstantModel(0.9), 16, data / "images", out, torch.device("cpu"), progress=False)
        refused.append(str(error.value))
        return real(*args)

    monkeypatch.setattr(evaluate_module, "write_evaluation", write)
    code, output = evaluate(data, model, out)
    assert code == 0, output
    assert refused and refused[0].startswith(f"{out}: another `coseg predict` or a `coseg evaluate` is writing there "
                                             "(pid ")
    assert sorted(p.name for p in out.iterdir()) == ["per_image.csv", "summary.json"]  # no mask of the predict


def test_a_refused_evaluate_into_a_new_folder_leaves_no_folder(setup, tmp_path):
    data, model, _ = setup
    out = tmp_path / "new" / "out"
    code, output = evaluate(data, model, out, "--groups", "nosuchgroup")
    assert code != 0 and "nosuchgroup" in output
    assert not out.exists()


def test_an_output_that_is_a_link_to_a_missing_folder_is_refused_at_once(setup, monkeypatch, tmp_path):
    """Was: the whole evaluation ran, then "Error: File exists: OUT" (predict: at once, with the same words)."""
    data, model, _ = setup
    out = tmp_path / "out"
    out.symlink_to(tmp_path / "elsewhere")
    monkeypatch.setattr(cli_module, "_model", lambda *args: pytest.fail("the model was loaded"))
    code, output = evaluate(data, model, out)
    assert code == 1 and output.strip() == f"Error: a file or a link to a missing folder is where a folder goes: {out}"
    with pytest.raises(FileExistsError, match="a link to a missing folder") as refused:
        predict_folder(ConstantModel(0.9), 16, data / "images", out / "masks", torch.device("cpu"), progress=False)
    assert refused.value.filename == str(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "model.safetensors", "out"]
