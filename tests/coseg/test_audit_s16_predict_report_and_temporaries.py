"""`coseg predict` removes an earlier report (which would show other masks) inside its lock, before it writes
anything: while a `coseg report` writes that page, predict stops with the earlier masks, record and report whole.
Was: the report was removed after every mask was written, so predict wrote the masks and then failed. And predict
removes only its own files' leftovers of a killed run: an evaluation writing into a sub-folder of its output keeps
its temporary files. Was: every temporary file under the output folder was removed."""
from __future__ import annotations

from pathlib import Path

import torch

from coseg.atomic import TEMPORARY_MARK
from coseg.predict import predict_folder
from tests.coseg.pipeline_fixtures import ConstantModel, odd_sized_set
from tests.coseg.test_audit_s15_evaluate_lock import FAST, held, setup, snapshot  # noqa: F401 - setup: a fixture
from tests.engine.test_run_lock import invoke


def predict(model: Path, images: Path, out: Path, *extra: object) -> tuple[int, str]:
    return invoke("predict", "--checkpoint", model, "--input", images, "--output", out, *FAST, *extra)


def test_predict_stops_before_writing_while_a_report_of_its_folder_is_written(setup):  # noqa: F811
    data, model, out = setup
    code, output = predict(model, data / "images", out, "--report")
    assert code == 0 and (out / "report.html").is_file(), output
    with held(out, ".report.html.lock"):
        before = snapshot(out)
        code, output = predict(model, data / "images", out, "--overwrite", "--flip")
        assert code == 1 and "`coseg report` is writing report.html there" in output, output
        assert snapshot(out) == before  # the masks, predict.json and the report as they were
        code, output = predict(model, data / "images", out)  # nothing to write: the report stays, nothing removed
        assert code == 0 and "kept 3 already done" in output, output
        assert snapshot(out) == before
    code, output = predict(model, data / "images", out, "--overwrite", "--flip")
    assert code == 0 and "wrote 3 mask(s)" in output, output
    assert not (out / "report.html").exists() and not (out / "report_files").exists()


def test_predict_removes_its_own_leftovers_only(tmp_path):
    data = odd_sized_set(tmp_path / "data")
    out = tmp_path / "out"
    ours = [out / "g0" / f".im0.png{TEMPORARY_MARK}killed", out / f".predict.json{TEMPORARY_MARK}killed"]
    others = [out / "g0" / f".notes.txt{TEMPORARY_MARK}abc",  # a file predict does not write
              out / "eval" / "predictions" / "g0" / f".im0.png{TEMPORARY_MARK}def",  # an evaluation writing
              out / "eval" / f".summary.json{TEMPORARY_MARK}ghi"]
    for path in ours + others:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"partial")
    checkpoint = tmp_path / "model.safetensors"
    checkpoint.write_bytes(b"stands for a model")
    report = predict_folder(ConstantModel(0.9), 16, data / "images", out, torch.device("cpu"), progress=False,
                            checkpoint=checkpoint)
    assert report.written == 3
    assert [path.exists() for path in ours] == [False, False]
    assert [path.exists() for path in others] == [True, True, True]
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == ["g0/im0.png", "g0/im1.png",
                                                                                 "g1/im0.png"]
