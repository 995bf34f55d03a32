"""``coseg demo`` into the folder of an earlier demo: the earlier scores and report go before training starts, so an
interrupted second demo leaves none that describe the checkpoint it replaced; its generated data stay for the next."""
from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from apps.cli import DEMO_MARK, main
from coseg import demo
from coseg.report.build import MADE_BY
from coseg.report.files import PREDICTION_INDEX_COLUMNS


def interrupted(*args: object, **kwargs: object) -> None:
    raise KeyboardInterrupt


def earlier_demo(output: Path) -> None:
    """The files a finished demo leaves: its data split, scores, report and saved evaluation masks."""
    (output / "data").mkdir(parents=True)
    (output / "data" / "splits.json").write_text(json.dumps({"train": ["00-star"], "test": ["20-star"]}))
    (output / DEMO_MARK).touch()
    (output / "summary.json").write_text(json.dumps({"P": 90.0, "J": 55.0, "checkpoint": "run/best.safetensors"}))
    (output / "per_image.csv").write_text("group,image,P,J,empty_gt\n20-star,img000.jpg,90.0,55.0,0\n")
    (output / "report.html").write_text(f"<html><p>{MADE_BY} demo</p></html>")
    (output / "report_files").mkdir()
    (output / "report_files" / "s1_loss.png").write_bytes(b"png")
    (output / "predictions" / "20-star").mkdir(parents=True)
    (output / "predictions" / "20-star" / "img000.png").write_bytes(b"png")
    (output / "predictions" / "index.csv").write_text(",".join(PREDICTION_INDEX_COLUMNS) + "\n"
                                                      + "20-star,img000.jpg,,,,,1,20-star/img000.png\n")


def test_an_interrupted_second_demo_leaves_no_scores_or_report_of_the_replaced_checkpoint(tmp_path, monkeypatch):
    output = tmp_path / "demo_out"
    earlier_demo(output)
    monkeypatch.setattr(demo, "train", interrupted)
    r = CliRunner().invoke(main, ["demo", "--output", str(output), "--minutes", "0.01", "--quiet"])
    assert r.exit_code == 130 and "interrupted" in r.output, r.output
    assert sorted(p.name for p in output.iterdir()) == sorted([DEMO_MARK, "data"])
    assert (output / "data" / "splits.json").is_file()


def test_the_demo_trains_on_the_first_groups_and_keeps_the_last_unseen_the_same_each_time(tmp_path, monkeypatch):
    trained = []

    def stand_in(cfg: object) -> None:
        trained.append(cfg)
        raise ValueError("stand-in training")

    monkeypatch.setattr(demo, "train", stand_in)
    splits = []
    for name in ("a", "b"):
        r = CliRunner().invoke(main, ["demo", "--output", str(tmp_path / name), "--minutes", "0.01", "--quiet"])
        assert r.exit_code == 1 and "stand-in training" in r.output, r.output
        splits.append((tmp_path / name / "data" / "splits.json").read_bytes())
    split = json.loads(splits[0])
    groups = sorted(p.name for p in (tmp_path / "a" / "data" / "images").iterdir())
    assert len(groups) == demo.DEMO_GROUPS and split["train"] + split["test"] == groups
    assert len(split["test"]) == demo.DEMO_TEST_GROUPS and not set(split["test"]) & set(split["train"])
    assert all(cfg.train_split == "train" and Path(cfg.data) == tmp_path / n / "data" for cfg, n in zip(trained, "ab"))
    assert splits[0] == splits[1]
    for image in sorted((tmp_path / "a" / "data").rglob("*.*")):  # the same seed: the same images and masks
        assert image.read_bytes() == (tmp_path / "b" / image.relative_to(tmp_path / "a")).read_bytes(), image
