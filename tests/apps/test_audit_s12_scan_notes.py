"""A scan's notes on how it read the files (masks paired by a suffix) are told as ``note:`` lines, not counted among
the files a command skipped."""
import shutil
from pathlib import Path

from click.testing import CliRunner
from PIL import Image

from apps.cli import main
from tests.apps.test_cli_user_mistakes import own_set


def test_masks_paired_by_a_suffix_are_a_note_not_a_skipped_file(tmp_path: Path) -> None:
    data = own_set(tmp_path / "data", "{stem}_mask.png")
    for kind in ("images", "masks"):
        shutil.copytree(data / kind / "grüne Kreise", data / kind / "blaue Kreise")
    for image in (data / "images" / "blaue Kreise").iterdir():  # another group: not copies of the first's images
        Image.open(image).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(image)
    result = CliRunner().invoke(main, ["split", "--data", str(data), "--test-fraction", "0.5"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[-1] == (f"note: paired by suffix: {data} (6 mask(s) named after their image plus the suffix "
                         "'_mask' (as img0_mask.png for img0.jpg) were paired with it)"), lines
    assert not any(line.startswith("skipped") for line in lines), lines
