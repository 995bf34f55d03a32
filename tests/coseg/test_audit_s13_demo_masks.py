"""`coseg demo` into the folder of an earlier demo: the earlier demo's masks and overlays go before training, as its
scores do, so that an interrupted second demo leaves none of them mixed with its own; files it did not write stay."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from click.testing import CliRunner

from apps.cli import DEMO_MARK, main
from coseg import demo
from tests.coseg.test_audit_s11_demo_rerun import earlier_demo as earlier_scores
from tests.coseg.test_audit_s11_demo_rerun import interrupted


def earlier_demo(output: Path) -> None:
    """A finished demo's files, with its unseen group's two images and the masks and overlays it predicted for them."""
    earlier_scores(output)
    for name in ("img000", "img001"):
        (output / "data" / "images" / "20-star").mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(output / "data" / "images" / "20-star" / f"{name}.jpg"), np.zeros((8, 8, 3), np.uint8))
        for folder in ("masks", "overlays"):
            (output / folder / "20-star").mkdir(parents=True, exist_ok=True)
            (output / folder / "20-star" / f"{name}.png").write_bytes(b"earlier png")
    (output / "masks" / "20-star" / "predict.json").write_text("{}")
    (output / "masks" / "20-star" / ".img001.png.tmp-x1y2.png").write_bytes(b"killed write")
    (output / "overlays" / "20-star" / "overlays.json").write_text("{}")


def interrupt_a_second_demo(output: Path, monkeypatch) -> None:
    monkeypatch.setattr(demo, "train", interrupted)
    r = CliRunner().invoke(main, ["demo", "--output", str(output), "--minutes", "0.01", "--quiet"])
    assert r.exit_code == 130 and "interrupted" in r.output, r.output


def test_an_interrupted_second_demo_leaves_no_masks_or_overlays_of_the_first(tmp_path, monkeypatch):
    earlier_demo(tmp_path)
    interrupt_a_second_demo(tmp_path, monkeypatch)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([DEMO_MARK, "data"])
    assert len(list((tmp_path / "data" / "images" / "20-star").iterdir())) == 2


def test_files_the_demo_did_not_write_stay(tmp_path, monkeypatch):
    earlier_demo(tmp_path)
    (tmp_path / "masks" / "20-star" / "notes.txt").write_text("mine")
    (tmp_path / "masks" / "20-star" / "img001.png").unlink()
    (tmp_path / "masks" / "20-star" / "img001.png").mkdir()  # not a file the demo wrote
    (tmp_path / "overlays" / "other").mkdir()
    interrupt_a_second_demo(tmp_path, monkeypatch)
    assert sorted(p.name for p in (tmp_path / "masks" / "20-star").iterdir()) == ["img001.png", "notes.txt"]
    assert sorted(p.name for p in (tmp_path / "overlays").iterdir()) == ["other"]
