"""The hints of a data folder given one level too high: `coseg split` gives the "did you mean X/SBCoseg?" line as
train and evaluate do (it said only "0 group(s) with masks"), and a `--masks` folder given to a layout that keeps its
masks beside the images is refused without that hint when the data folder is right (it said "did you mean
internet/Data?" of a correct Internet folder)."""
from __future__ import annotations

import shutil

import pytest
from click.testing import CliRunner

from apps.cli import main
from coseg.data import LayoutError, find_samples, make_synthetic_coseg


def test_split_of_a_folder_one_level_too_high_says_which_folder_was_meant(tmp_path):
    sbcoseg = make_synthetic_coseg(tmp_path / "sb", num_groups=3, images_per_group=2, size=32, layout="sbcoseg")
    shutil.copytree(sbcoseg, tmp_path / "wrap" / "SBCoseg")
    result = CliRunner().invoke(main, ["split", "--data", str(tmp_path / "wrap"), "--output", str(tmp_path / "s.json")])
    assert result.exit_code == 1
    assert ("image(s) has a mask (folders layout; a mask is paired with the image of its stem), so there is nothing "
            "to split") in result.output
    assert f"did you mean {tmp_path / 'wrap' / 'SBCoseg'}? (it holds a data set in the sbcoseg layout)" in result.output
    assert not (tmp_path / "s.json").exists()


@pytest.mark.parametrize("layout", ["auto", "internet"])
def test_masks_given_to_a_right_internet_folder_are_refused_without_a_folder_hint(tmp_path, layout):
    root = make_synthetic_coseg(tmp_path / "internet", num_groups=2, images_per_group=2, size=32, layout="internet")
    (tmp_path / "masks").mkdir()
    with pytest.raises(LayoutError) as refused:
        find_samples(root, layout, tmp_path / "masks")
    assert str(refused.value) == ("layout 'internet' keeps masks beside the images: a separate mask folder (--masks, "
                                  "masks_root) does not apply")
