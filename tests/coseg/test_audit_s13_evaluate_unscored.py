"""`coseg evaluate` on chosen groups none of which has a ground-truth mask: one line naming them."""
from __future__ import annotations

import shutil
from pathlib import Path

from coseg.data import make_synthetic_coseg
from tests.coseg.test_selection import evaluate


def test_chosen_groups_without_masks_are_named(tmp_path: Path) -> None:
    data = make_synthetic_coseg(tmp_path / "data", num_groups=3, images_per_group=2, size=32)
    shutil.rmtree(data / "ground_truth" / "02-polygon")
    (data / "splits.json").write_text('{"test": ["02-polygon"]}')
    for choice in (["--groups", "02-polygon"], ["--split", "test"]):
        result = evaluate(tmp_path, data, *choice, "--output", tmp_path / "ev")
        assert result.exit_code == 1, result.output
        assert result.output.strip() == ("Error: none of the 1 chosen group(s) has a ground-truth mask (02-polygon; "
                                         "icoseg layout), so there is nothing to evaluate")
        assert not (tmp_path / "ev").exists()
