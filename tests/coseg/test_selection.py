"""coseg.selection and `coseg evaluate`'s choices: the problems a run on some groups lists, the splits file,
where a report may go."""
from pathlib import Path

from click.testing import CliRunner, Result

from apps.cli import main
from coseg.data import find_samples, make_synthetic_coseg
from coseg.selection import problems_of
from tests.coseg.test_evaluate_partial import network


def unpaired_set(tmp_path: Path) -> Path:
    """Three groups; an image without mask in 00-star, a mask without image in 01-ellipse, a file outside any
    group at the top of images/."""
    root = make_synthetic_coseg(tmp_path, num_groups=3, images_per_group=3, size=32)
    (root / "ground_truth" / "00-star" / "img001.png").unlink()
    (root / "images" / "01-ellipse" / "img002.jpg").unlink()
    (root / "images" / "loose.jpg").write_bytes((root / "images" / "00-star" / "img000.jpg").read_bytes())
    return root


def names(problems) -> list[str]:
    return sorted(p.path.name for p in problems)


def test_problems_of_other_groups_are_left_out_the_rest_kept(tmp_path):
    scan = find_samples(unpaired_set(tmp_path), "icoseg")
    assert names(scan.problems) == ["img001.jpg", "img002.png", "loose.jpg"]
    assert names(problems_of(scan, ["00-star"])) == ["img001.jpg", "loose.jpg"]
    assert names(problems_of(scan, ["01-ellipse"])) == ["img002.png", "loose.jpg"]
    assert names(problems_of(scan, ["02-polygon"])) == ["loose.jpg"]  # not in a group's folder: may concern any
    assert names(problems_of(scan, scan.groups)) == names(scan.problems)


def test_evaluate_lists_the_unpaired_files_of_the_groups_it_scores_only(tmp_path):
    root = unpaired_set(tmp_path / "data")
    model = tmp_path / "model.safetensors"
    network(2.0).save(model, metadata={"image_size": "64"})
    result = CliRunner().invoke(main, [str(a) for a in ["evaluate", "--checkpoint", model, "--data", root,
                                                         "--groups", "01-ellipse", "--output", tmp_path / "ev",
                                                         "--device", "cpu", "--quiet"]], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "img002.png" in result.output and "loose.jpg" in result.output
    assert "img001.jpg" not in result.output  # 00-star's, not evaluated


def test_train_lists_the_unpaired_files_of_its_training_and_validation_groups_only(tmp_path):
    root = unpaired_set(tmp_path / "data")
    result = CliRunner().invoke(main, [str(a) for a in [
        "train", "--data", root, "--output", tmp_path / "run", "--train-groups", "00-star",
        "--val-groups", "02-polygon", "--epochs", 1, "--members", 1, "--weights", "none", "--image-size", 64,
        "--groups-per-batch", 1, "--images-per-group", 2, "--triplet-pixels", 8, "--device", "cpu", "--quiet"]],
        catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "img001.jpg" in result.output and "loose.jpg" in result.output
    assert "img002.png" not in result.output  # 01-ellipse's, not used


def evaluate(tmp_path: Path, root: Path, *options) -> Result:
    """``coseg evaluate`` of a small model on ``root`` with ``options``; its click result."""
    model = tmp_path / "model.safetensors"
    network(2.0).save(model, metadata={"image_size": "64"})
    return CliRunner().invoke(main, [str(a) for a in ["evaluate", "--checkpoint", model, "--data", root, "--device",
                                                         "cpu", "--quiet", *options]])


def test_evaluate_names_the_splits_file_of_a_group_not_found(tmp_path):
    root = unpaired_set(tmp_path / "data")
    (root / "splits.json").write_text('{"test": ["00-star", "99-zebra"]}')
    result = evaluate(tmp_path, root, "--split", "test", "--output", tmp_path / "ev")
    assert result.exit_code != 0
    assert f"split 'test' of {root / 'splits.json'}: cannot resolve 1 group name(s)" in result.output


def test_a_split_without_a_splits_file_names_the_file_looked_for(tmp_path):
    root = unpaired_set(tmp_path / "data")
    result = evaluate(tmp_path, root, "--split", "test", "--output", tmp_path / "ev")
    assert result.exit_code != 0
    assert f"{root / 'splits.json'} does not exist (give --splits FILE)" in result.output
    assert not (tmp_path / "ev").exists()


def test_evaluate_refuses_a_report_inside_the_data_folder_before_anything_is_written(tmp_path):
    root = unpaired_set(tmp_path / "data")
    before = sorted(p for p in root.rglob("*"))
    result = evaluate(tmp_path, root, "--output", root / "images" / "eval", "--report")
    assert result.exit_code != 0
    assert f"which is inside the data folder {root}" in result.output
    assert sorted(p for p in root.rglob("*")) == before
    assert evaluate(tmp_path, root, "--output", root / "images" / "eval").exit_code == 0  # scores alone: no image
