"""``coseg predict`` on folders whose names collide with the files predict writes beside the masks."""
import cv2
import numpy as np
import pytest
import torch

from coseg.predict import predict_folder
from tests.coseg.pipeline_fixtures import ConstantModel

CPU = torch.device("cpu")


@pytest.mark.parametrize("folder, where", [("predict.json", "out"), ("Predict.JSON", "out"),
                                           ("overlays.json", "overlays")])
def test_a_group_named_like_the_record_is_skipped_and_named_the_others_predicted(tmp_path, folder, where):
    """Its masks (or overlays) would go in a folder where the record file is: the run stopped on "File exists"
    with the other groups' masks half written."""
    root = tmp_path / "in"
    for group in (folder, "other"):
        (root / group).mkdir(parents=True)
        cv2.imwrite(str(root / group / "x.jpg"), np.full((40, 30, 3), 90, np.uint8))
    checkpoint = tmp_path / "model.safetensors"
    checkpoint.write_bytes(b"weights")
    report = predict_folder(ConstantModel(0.8), 64, root, tmp_path / "out", CPU, progress=False,
                            overlays=tmp_path / "overlays", checkpoint=checkpoint)
    assert [path for path, _ in report.skipped] == [str(root / folder / "x.jpg")]
    assert f"{tmp_path / where / folder.lower()}, the file where predict records" in report.skipped[0][1]
    assert f"rename the folder {root / folder}" in report.skipped[0][1]
    assert report.written == 1 and (tmp_path / "out" / "other" / "x.png").is_file()
    assert (tmp_path / "out" / "predict.json").is_file() and (tmp_path / "overlays" / "overlays.json").is_file()
    again = predict_folder(ConstantModel(0.8), 64, root, tmp_path / "out", CPU, progress=False,
                           overlays=tmp_path / "overlays", checkpoint=checkpoint)
    assert again.already_done == 1 and not again.written and len(again.skipped) == 1


def test_an_overlay_that_would_be_another_images_mask_is_not_written_over_it(tmp_path):
    """``--overlays out/ov`` and a group ``ov/g`` beside ``g``: the overlay of ``g/x.jpg`` and the mask of
    ``ov/g/x.jpg`` are one file, which silently held whichever was written last (an RGB overlay as a mask)."""
    root = tmp_path / "in"
    for group in ("g", "ov/g"):
        (root / group).mkdir(parents=True)
        cv2.imwrite(str(root / group / "x.jpg"), np.full((40, 30, 3), 90, np.uint8))
    (root / "h").mkdir()
    cv2.imwrite(str(root / "h" / "y.jpg"), np.full((20, 30, 3), 90, np.uint8))
    out = tmp_path / "out"
    report = predict_folder(ConstantModel(0.8), 64, root, out, CPU, progress=False, overlays=out / "ov")
    shared = out / "ov" / "g" / "x.png"
    assert {path for path, _ in report.skipped} == {str(root / "g" / "x.jpg"), str(root / "ov" / "g" / "x.jpg")}
    assert all(f"{shared} (names compared ignoring case)" in reason for _, reason in report.skipped)
    assert not shared.exists()
    assert report.written == 2 and cv2.imread(str(out / "g" / "x.png"), cv2.IMREAD_UNCHANGED).shape == (40, 30)
    assert (out / "h" / "y.png").is_file() and (out / "ov" / "h" / "y.png").is_file()
    again = predict_folder(ConstantModel(0.8), 64, root, out, CPU, progress=False, overlays=out / "ov")
    assert (again.written, again.already_done, len(again.skipped)) == (0, 2, 2) and not shared.exists()
