"""``coseg predict`` on folders a user changes between runs (images replaced by files that keep an older time), and
a second run started into the folder a run is writing."""
import os
import shutil

import numpy as np
import pytest
import torch

from coseg.data import read_image
from coseg.predict import predict_folder
from tests.coseg.files import write_rgb
from tests.coseg.pipeline_fixtures import ConstantModel

CPU = torch.device("cpu")


@pytest.mark.parametrize("group_mode", [True, False], ids=["groups", "single"])
@pytest.mark.parametrize("how", ["copy keeping its time", "link pointed elsewhere"])
def test_an_image_replaced_by_an_older_file_is_predicted_again(tmp_path, how, group_mode):
    # was: the former image's mask was kept (8 x 12, not the new image's 20 x 30) without a word: only modification
    # times were compared, and the file put in place (cp -p, rsync -t, unzip; a link pointed elsewhere) is older
    old = write_rgb(tmp_path / "elsewhere" / "old.png", np.full((20, 30, 3), 90, np.uint8))
    new = write_rgb(tmp_path / "elsewhere" / "new.png", np.full((8, 12, 3), 200, np.uint8))
    for path in (old, new):
        os.utime(path, (1e9, 1e9))  # 2001
    image = tmp_path / "in" / "g" / "a.png"
    image.parent.mkdir(parents=True)
    if how == "copy keeping its time":
        shutil.copyfile(new, image)
    else:
        image.symlink_to(new)
    out = tmp_path / "out"

    def run():
        return predict_folder(ConstantModel(0.9), 16, tmp_path / "in", out, CPU, progress=False, group_mode=group_mode)

    assert run().written == 1 and read_image(out / "g" / "a.png").shape[:2] == (8, 12)
    if how == "copy keeping its time":
        shutil.copy2(old, image)  # cp -p
    else:
        image.unlink()
        image.symlink_to(old)
    second = run()
    assert (second.written, second.already_done) == (1, 0)
    assert read_image(out / "g" / "a.png").shape[:2] == (20, 30)
    third = run()
    assert (third.written, third.already_done) == (0, 1)  # up to date now: not predicted again


class SecondRunModel(ConstantModel):
    """Starts a second ``predict_folder`` run (``second``: its keyword arguments) while predicting the first group,
    and keeps the error it is refused with."""

    def __init__(self, **second) -> None:
        super().__init__(0.9)
        self.second, self.error = second, ""

    def predict_group(self, images, *args, **kwargs):
        if self.second:
            second, self.second = self.second, {}
            with pytest.raises(ValueError) as refused:
                predict_folder(ConstantModel(0.1), 16, device=CPU, progress=False, **second)
            self.error = str(refused.value)
        return super().predict_group(images, *args, **kwargs)


@pytest.mark.parametrize("shared", ["masks", "overlays"])
def test_a_second_run_into_a_folder_a_run_writes_is_refused(tmp_path, shared):
    # was: the second run went on: it removed the temporary files the first was writing (whose rename then failed)
    # and, started before the first wrote its record, wrote masks of its settings among the first's
    for group in ("g", "h"):
        write_rgb(tmp_path / "in" / group / "a.png", np.full((8, 12, 3), 200, np.uint8))
    out, overlays, elsewhere = tmp_path / "out", tmp_path / "ov", tmp_path / "elsewhere"
    second = {"output_dir": out, "overlays": elsewhere} if shared == "masks" else {"output_dir": elsewhere,
                                                                                  "overlays": overlays}
    model = SecondRunModel(input_dir=tmp_path / "in", **second)
    first = predict_folder(model, 16, tmp_path / "in", out, CPU, overlays=overlays, progress=False)
    assert first.written == 2
    shared_folder = out if shared == "masks" else overlays
    assert model.error == f"{shared_folder}: another `coseg predict` or a `coseg evaluate` is writing there " \
                          f"(pid {os.getpid()} on host {os.uname().nodename}); wait until it ends, or choose another " \
                          + ("--output" if shared == "masks" else "--overlays")
    assert not elsewhere.exists()  # the refused run wrote nothing, not even its folder
    for folder in (out, overlays):  # the first run's masks, of its settings; the locks went with it
        assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) == ["g", "g/a.png", "h", "h/a.png"]
        assert read_image(folder / "g" / "a.png").max() > 100
