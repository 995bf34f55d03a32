"""An under-trained model (``coseg demo --minutes 0.1``) or a wrong model file predicts empty masks everywhere: the
demo reported J 0.00 and predict wrote blank masks without a word of why. Both now warn, naming how many masks (or
which groups) are empty and the likely cause."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import torch
from click.testing import CliRunner

from apps.cli import main
from coseg import demo
from coseg.models import create_model
from coseg.predict import predict_folder
from tests.coseg.pipeline_fixtures import ConstantModel, odd_sized_set, synthetic_set

CPU = torch.device("cpu")


def blank_model(path: Path, image_size: int = 64) -> Path:
    """A model file whose masks are empty everywhere (its mask head's bias far below 0), as an under-trained one's."""
    model = create_model("unet", weights=None, embedding_dim=8)
    with torch.no_grad():
        model.mask_head.bias.fill_(-30.0)
    model.save(path, metadata={"image_size": str(image_size)})
    return path


class BrightnessModel(ConstantModel):
    """Foreground 0.8 everywhere in images brighter than mid-grey, 0.2 in the others."""

    def __init__(self) -> None:
        super().__init__(0.0)

    def predict(self, images: torch.Tensor, groups=None, flip: bool = False, edges=None) -> torch.Tensor:
        bright = images.mean(dim=(1, 2, 3)) > 0.5
        return torch.where(bright, 0.8, 0.2)[:, None, None, None].expand(-1, 1, *images.shape[-2:]).contiguous()


def test_predict_warns_when_every_mask_is_empty(tmp_path, capsys):
    root = odd_sized_set(tmp_path / "data") / "images"
    report = predict_folder(ConstantModel(0.2), 64, root, tmp_path / "out", CPU, progress=False)
    assert report.written == 3 and report.predicted == report.empty == {"g0": 2, "g1": 1}
    err = capsys.readouterr().err
    assert "warning: all 3 mask(s) predicted are empty (no foreground pixel)" in err and "under-trained" in err
    predict_folder(ConstantModel(0.8), 64, root, tmp_path / "full", CPU, progress=False)
    assert "warning" not in capsys.readouterr().err


def test_predict_names_the_groups_whose_masks_are_all_empty(tmp_path, capsys):
    from coseg.predict import empty_masks_warning

    for group, value in (("dark", 40), ("light", 220), ("mixed", 40), ("mixed", 220)):
        (tmp_path / "in" / group).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / "in" / group / f"im{value}.png"), np.full((20, 30, 3), value, np.uint8))
    report = predict_folder(BrightnessModel(), 32, tmp_path / "in", tmp_path / "out", CPU, progress=False)
    assert report.empty == {"dark": 1, "light": 0, "mixed": 1}
    err = capsys.readouterr().err
    assert "warning: every mask of 1 of the 3 groups is empty (dark; 1 mask(s))" in err, err
    assert err.strip() == empty_masks_warning(report.predicted, report.empty)
    assert empty_masks_warning(report.predicted, report.empty, "a cause").endswith(
        ": their images may share no object, or a cause")
    # the demo's generated groups always share an object: only the cause it gives
    assert empty_masks_warning(report.predicted, report.empty, "a cause", objects_shared=True) == (
        "warning: every mask of 1 of the 3 groups is empty (dark; 1 mask(s)): a cause")


def test_coseg_predict_warns_on_a_model_that_finds_nothing(tmp_path):
    data = synthetic_set(tmp_path / "data", groups=1, images=2, size=32)
    model = blank_model(tmp_path / "model.safetensors")
    r = CliRunner().invoke(main, ["predict", "--checkpoint", str(model), "--input", str(data / "images"), "--output",
                                  str(tmp_path / "out"), "--device", "cpu", "--quiet"])
    assert r.exit_code == 0, r.output
    assert "warning: all 2 mask(s) predicted are empty (no foreground pixel): the model is likely under-trained" \
        in r.output, r.output
    assert len(list((tmp_path / "out").rglob("*.png"))) == 2


def test_the_demo_warns_once_when_its_unseen_groups_masks_are_empty(tmp_path, monkeypatch, capsys):
    def stand_in(cfg: object) -> SimpleNamespace:  # the training of an under-trained model
        run = Path(cfg.output)
        run.mkdir(parents=True)
        blank_model(run / "best.safetensors", image_size=64)
        return SimpleNamespace(output=run)

    monkeypatch.setattr(demo, "train", stand_in)
    result = demo.run_demo(tmp_path / "demo", minutes=0.1, device="cpu", quiet=True)
    assert result["summary"]["J"] == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning")]
    assert warnings == [f"warning: all {demo.DEMO_TEST_GROUPS * demo.DEMO_IMAGES_PER_GROUP} mask(s) predicted are "
                        "empty (no foreground pixel): the model, trained for 0.1 minute(s), is likely under-trained "
                        "(J 0 there): give the demo more --minutes (3 by default)"]
