"""coseg.data.splits: split files, name resolution, held-out groups, subset-stratified splits."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from coseg.data import (
    find_samples, groups_sharing_images, holdout_groups, load_split, make_synthetic_coseg, resolve_groups,
    resolve_split, stratified_holdout, train_test_split,
)
from coseg.selection import choose_groups

FOLDERS = ["002 Alaskan Brown Bear-Eukaryote", "025 Airshows-helicopter", "025 Airshows-planes",
           "015 Ferrari 599 GTB Fiorano-599-auTomoTiVe FreAk !", "028 Cheetah-National Zoo, Washington DC",
           "brown_bear", os.fsdecode(b"odd \xff group")]


def write_splits(tmp_path: Path, content: object) -> Path:
    path = tmp_path / "splits.json"
    path.write_text(json.dumps(content), encoding="utf-8")
    return path


def test_load_split_list_and_mapping(tmp_path):
    path = write_splits(tmp_path, {"train": ["a", "b"], "test": {"long name": "short"}})
    assert load_split(path, "train") == {"a": "a", "b": "b"}
    assert load_split(path, "test") == {"long name": "short"}
    with pytest.raises(KeyError, match="split 'val' not in .*splits.json; splits there: test, train"):
        load_split(path, "val")


@pytest.mark.parametrize("content", [{"train": [1, 2]}, {"train": "a"}, {"train": {"a": 3}}])
def test_load_split_rejects_malformed_entries(tmp_path, content):
    with pytest.raises(ValueError, match="must be a list of names or a mapping"):
        load_split(write_splits(tmp_path, content), "train")


def test_load_split_rejects_bad_json(tmp_path):
    path = tmp_path / "splits.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="cannot read splits file .*splits.json"):
        load_split(path, "train")
    with pytest.raises(ValueError, match=r"cannot read splits file .*missing.json: No such file or directory$"):
        load_split(tmp_path / "missing.json", "train")  # named once, no quoted repeat for the CLI to cut


def test_load_split_accepts_a_byte_order_mark(tmp_path):
    """Windows Notepad saves UTF-8 with a byte order mark."""
    path = tmp_path / "splits.json"
    path.write_text(json.dumps({"test": ["Airplane100"]}), encoding="utf-8-sig")
    assert load_split(path, "test") == {"Airplane100": "Airplane100"}


def test_a_split_name_not_found_is_named_with_its_file_and_split(tmp_path):
    path = write_splits(tmp_path, {"test8": {"025 Airshows-helicopter": "helicopter", "Pandas 2": "panda2"},
                                   "ok": {"025 Airshows-helicopter": "helicopter"}})
    assert resolve_split(path, "ok", FOLDERS[:3]) == {"025 Airshows-helicopter": "helicopter"}
    with pytest.raises(ValueError, match=r"^split 'test8' of .*splits\.json: cannot resolve 1 class name\(s\) among "
                                         r"3 classes: 'Pandas 2' not found"):
        resolve_split(path, "test8", FOLDERS[:3], "class")

def test_resolve_exact_loose_short_and_contained_names():
    wanted = {
        "025 Airshows-helicopter": "helicopter",  # exact
        "015 FERRARI 599 GTB Fiorano - 599 - automotive freak!": "ferrari",  # case, spaces, punctuation
        "renamed folder": "brown_bear",  # folder name not found: the short name is
        "Cheetah": "cheetah",  # contained in exactly one folder name
        os.fsdecode(b"odd \xff group"): "odd",
    }
    assert resolve_groups(wanted, FOLDERS) == {
        "025 Airshows-helicopter": "helicopter", "015 Ferrari 599 GTB Fiorano-599-auTomoTiVe FreAk !": "ferrari",
        "brown_bear": "brown_bear", "028 Cheetah-National Zoo, Washington DC": "cheetah",
        os.fsdecode(b"odd \xff group"): "odd"}
    assert resolve_groups(["brown_bear"], FOLDERS) == {"brown_bear": "brown_bear"}  # exact beats contained


def test_resolve_prefers_the_folder_a_name_begins():
    folders = ["002 Alaskan Brown Bear-Milwaukee Zoo 2006", "006 Red Sox Players", "036 Gymnastics-1",
               "036 Gymnastics-2"]
    assert resolve_groups(["006"], folders) == {"006 Red Sox Players": "006"}  # not also the bear's "2006"
    assert resolve_groups(["zoo 2006"], folders) == {"002 Alaskan Brown Bear-Milwaukee Zoo 2006": "zoo 2006"}
    with pytest.raises(ValueError, match=r"'036' matches 2 groups: '036 Gymnastics-1', '036 Gymnastics-2'"):
        resolve_groups(["036"], folders)


def test_a_name_inside_a_folders_word_does_not_match_it(tmp_path):
    """A split naming "dog", whose folder has no readable image (or is gone), matched "hotdog" (a part of its name):
    the run chose another group without a word. Names inside a folder's name match as whole words only."""
    assert resolve_groups(["eukaryote", "national zoo", "gymnastics-2"], FOLDERS + ["036 Gymnastics-2"]) == {
        "002 Alaskan Brown Bear-Eukaryote": "eukaryote", "028 Cheetah-National Zoo, Washington DC": "national zoo",
        "036 Gymnastics-2": "gymnastics-2"}
    for name in ("dog", "otdo", "og"):
        with pytest.raises(ValueError, match=rf"'{name}' not found"):
            resolve_groups([name], ["hotdog", "cat"])
    make_synthetic_coseg(tmp_path, 2, 1, size=32, group_names=["hotdog", "cat"])
    (tmp_path / "images" / "dog").mkdir()
    (tmp_path / "images" / "dog" / "a.heic").write_bytes(b"not read here")
    path = write_splits(tmp_path, {"test": ["dog", "cat"]})
    with pytest.raises(ValueError, match=r"split 'test' of .*'dog' not found \(closest: 'hotdog'\)"):
        choose_groups(find_samples(tmp_path), path, "test", [])


def test_resolve_reports_missing_ambiguous_and_duplicate_names():
    with pytest.raises(ValueError, match=r"'airshows' matches 2 groups.*'panda' not found") as info:
        resolve_groups(["airshows", "panda"], FOLDERS)
    assert "cannot resolve 2 group name(s) among 7 groups" in str(info.value)
    with pytest.raises(ValueError, match=r"closest: '025 Airshows-planes'"):
        resolve_groups(["026 Airshows-planes"], FOLDERS[:3])
    with pytest.raises(ValueError, match="both resolve to 'brown_bear'"):
        resolve_groups(["brown_bear", "BROWN BEAR"], FOLDERS)


def test_a_name_split_at_its_comma_is_told_how_to_write_it():
    cheetah = "028 Cheetah-National Zoo, Washington DC"
    with pytest.raises(ValueError, match="both resolve to .*Washington DC' .a name holding a comma "
                                         ".*leave the comma out"):
        resolve_groups("Cheetah-National Zoo, Washington DC".split(", "), FOLDERS)
    assert resolve_groups(["Cheetah-National Zoo Washington DC"], FOLDERS) == {
        cheetah: "Cheetah-National Zoo Washington DC"}


def test_holdout_groups_disjoint_deterministic_and_sized():
    groups = [f"g{i:02d}" for i in range(20)]
    kept, held = holdout_groups(groups, fraction=0.2, seed=3)
    assert len(held) == 4 and sorted(kept + held) == groups and not set(kept) & set(held)
    assert holdout_groups(reversed(groups), fraction=0.2, seed=3) == (kept, held)
    assert holdout_groups(groups, fraction=0.2, seed=4)[1] != held
    assert len(holdout_groups(groups, number=7)[1]) == 7
    assert holdout_groups(groups[:3], fraction=0.01)[1] != []  # a positive fraction holds out at least one
    assert holdout_groups(groups, fraction=0.0) == (groups, [])


@pytest.mark.parametrize("kwargs, message", [
    ({}, "exactly one of"), ({"fraction": 0.5, "number": 2}, "exactly one of"), ({"fraction": 1.0}, r"\[0, 1\)"),
    ({"number": -1}, ">= 0"), ({"number": 3}, "keep one"),
])
def test_holdout_groups_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        holdout_groups(["a", "b", "c"], **kwargs)


def test_stratified_holdout_keeps_subset_proportions():
    subsets = {f"{s}/g{i}": s for s, n in [("ECFB", 10), ("TR", 20), ("MH", 5)] for i in range(n)}
    subsets["lonely"] = "SD"
    kept, held = stratified_holdout(subsets, fraction=0.2, seed=1)
    count = {s: sum(g.startswith(s) for g in held) for s in ("ECFB", "TR", "MH")}
    assert count == {"ECFB": 2, "TR": 4, "MH": 1}
    assert "lonely" in kept and sorted(kept + held) == sorted(subsets)
    assert stratified_holdout(dict(reversed(list(subsets.items()))), fraction=0.2, seed=1) == (kept, held)
    assert stratified_holdout(subsets, fraction=0.2, seed=2) != (kept, held)


def test_stratified_holdout_on_a_scanned_sbcoseg_tree(tmp_path):
    root = make_synthetic_coseg(tmp_path, num_groups=10, images_per_group=1, size=16, layout="sbcoseg")
    kept, held = stratified_holdout(find_samples(root).group_subsets(), fraction=0.5, seed=0)
    assert len(held) == 5 and len({g.split("/")[0] for g in held}) == 5  # one of each subset's two groups


def test_train_test_split_stratifies_by_subset_else_draws_from_all():
    subsets = {f"{s}/g{i}": s for s, n in [("ECFB", 10), ("TR", 5)] for i in range(n)}
    split = train_test_split(subsets, 0.2, seed=3)
    assert split["test"] == stratified_holdout(subsets, 0.2, seed=3)[1]
    assert sorted(g.split("/")[0] for g in split["test"]) == ["ECFB", "ECFB", "TR"]
    assert sorted(split["train"] + split["test"]) == sorted(subsets) and not set(split["train"]) & set(split["test"])
    plain = {f"g{i}": None for i in range(10)}
    assert train_test_split(plain, 0.3, seed=3) == dict(zip(("train", "test"), holdout_groups(plain, 0.3, seed=3)))
    one_each = {"ECFB/a": "ECFB", "TR/b": "TR", "MH/c": "MH"}  # subsets too small to give a group: drawn from all
    assert len(train_test_split(one_each, 0.2)["test"]) == 1
    for bad in (0.0, 1.0):
        with pytest.raises(ValueError, match="test_fraction must be in"):
            train_test_split(plain, bad)


@pytest.mark.data
def test_real_icoseg_splits_resolve_to_folders(shared_data):
    root = shared_data / "icoseg"
    if not (root / "splits.json").is_file():
        pytest.skip("iCoseg not in shared data")
    groups = find_samples(root, "icoseg").groups
    train = resolve_groups(load_split(root / "splits.json", "train30"), groups)
    test = resolve_groups(load_split(root / "splits.json", "test8"), groups)
    assert len(groups) == 38 and len(train) == 30 and len(test) == 8
    assert set(train) | set(test) == set(groups) and not set(train) & set(test)
    assert sorted(test.values()) == ["bear2", "brown_bear", "cheetah", "elephant", "helicopter", "hotballoon",
                                     "panda1", "panda2"]


def test_explicit_validation_groups_are_carved_out_of_the_training_split(tmp_path):
    from coseg.config import CosegTrainConfig
    from coseg.train import split_train_val

    names = ["010 Kite-a", "011 Kite-b", "020 Goose-c, d", "030 Monks-e", "040 Bear-f"]
    root = make_synthetic_coseg(tmp_path, num_groups=5, images_per_group=1, size=16, group_names=names)
    write_splits(root, {"train": names[:4], "test": names[4:]})
    scan = find_samples(root, "icoseg")
    cfg = CosegTrainConfig(data=str(root), train_split="train", val_groups=["Goose", "Monks"])
    assert split_train_val(cfg, scan) == (["010 Kite-a", "011 Kite-b"], ["020 Goose-c, d", "030 Monks-e"])
    everything = CosegTrainConfig(data=str(root), val_groups=["Monks"])  # no split: all groups with masks
    assert split_train_val(everything, scan) == (["010 Kite-a", "011 Kite-b", "020 Goose-c, d", "040 Bear-f"],
                                                 ["030 Monks-e"])
    listed_twice = CosegTrainConfig(data=str(root), train_groups=names[:3], val_groups=["Goose"])
    with pytest.raises(ValueError, match="groups both in training and validation: 020 Goose-c, d"):
        split_train_val(listed_twice, scan)


def test_validation_groups_without_masks_are_named(tmp_path):
    from coseg.config import CosegTrainConfig
    from coseg.train import split_train_val

    root = make_synthetic_coseg(tmp_path, num_groups=3, images_per_group=2, size=16, layout="folders")
    for mask in (root / "masks" / "02-polygon").iterdir():
        mask.unlink()
    scan = find_samples(root, "folders")
    for cfg in (CosegTrainConfig(data=str(root), val_groups=["02-polygon"]),
                CosegTrainConfig(data=str(root), train_groups=["00-star", "02-polygon"], val_groups=["01-ellipse"])):
        with pytest.raises(ValueError, match="group.s. without any mask, so nothing to train or validate on: "
                                             "02-polygon"):
            split_train_val(cfg, scan)
    with pytest.raises(ValueError, match=r"val_fraction 0.9: cannot hold out 2 of 2 groups"):  # the option named
        split_train_val(CosegTrainConfig(data=str(root), val_fraction=0.9), scan)


def test_subsets_too_small_to_share_still_hold_out_a_validation_group(tmp_path):
    from coseg.config import CosegTrainConfig
    from coseg.train import split_train_val

    root = make_synthetic_coseg(tmp_path, num_groups=6, images_per_group=1, size=16, layout="sbcoseg")
    scan = find_samples(root, "sbcoseg")  # 5 subsets: four of one group, one of two
    train, val = split_train_val(CosegTrainConfig(data=str(root), val_fraction=0.15), scan)
    assert len(val) == 1 and sorted(train + val) == scan.groups
    assert split_train_val(CosegTrainConfig(data=str(root), val_fraction=0.0), scan) == (scan.groups, [])


def _internet_with_subsets(tmp_path: Path) -> Path:
    """An Internet tree where "Airplane100" holds copies of two of "Airplane"'s images and "Car100" one of "Car"'s
    (renamed); "Horse" and "Bird" share none."""
    root = make_synthetic_coseg(tmp_path / "Internet", num_groups=4, images_per_group=3, size=16, layout="internet",
                                group_names=["Airplane", "Car", "Horse", "Bird"])
    data = root / "Data"
    for full, subset, stems in (("Airplane", "Airplane100", ["img000", "img002"]), ("Car", "Car100", ["img001"])):
        (data / subset / "GroundTruth").mkdir(parents=True)
        for i, stem in enumerate(stems):
            (data / subset / f"x{i}.jpg").write_bytes((data / full / f"{stem}.jpg").read_bytes())
            (data / subset / "GroundTruth" / f"x{i}.png").write_bytes(
                (data / full / "GroundTruth" / f"{stem}.png").read_bytes())
    return root


def test_groups_sharing_images_against_a_pairwise_comparison(tmp_path):
    root = _internet_with_subsets(tmp_path)
    samples = find_samples(root, "internet").samples
    shared = {(a.group, b.group) for a in samples for b in samples
              if a.group < b.group and a.image.read_bytes() == b.image.read_bytes()}
    assert shared == {("Airplane", "Airplane100"), ("Car", "Car100")}
    assert groups_sharing_images(samples) == {"Airplane": "Airplane", "Airplane100": "Airplane",
                                              "Car": "Car", "Car100": "Car"}
    copy = root / "Data" / "Car100" / "x0.jpg"
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 1
    copy.write_bytes(bytes(data))  # the same size, one bit changed: read, and not the same image
    assert groups_sharing_images(find_samples(root, "internet").samples) == {"Airplane": "Airplane",
                                                                             "Airplane100": "Airplane"}


def test_groups_sharing_images_are_never_split_by_a_draw(tmp_path):
    root = _internet_with_subsets(tmp_path)
    scan = find_samples(root, "internet")
    together = groups_sharing_images(scan.samples)
    groups = scan.groups
    for seed in range(20):
        for kept, held in (holdout_groups(groups, fraction=0.3, seed=seed, together=together),
                           stratified_holdout({g: "A" if g < "C" else "B" for g in groups}, 0.5, seed, together),
                           tuple(train_test_split(dict.fromkeys(groups), 0.3, seed, together).values())):
            assert sorted(kept + held) == groups and held
            for group, key in together.items():
                assert (group in held) == (key in held), (seed, held)
    lone = {g: g for g in groups}  # nothing shared: the draw of plain names
    assert all(holdout_groups(groups, number=2, seed=s, together=lone) == holdout_groups(groups, number=2, seed=s)
               for s in range(5))
    with pytest.raises(ValueError, match=r"cannot hold out 3 of 3 groups \(groups sharing images count once\)"):
        holdout_groups(["Airplane", "Airplane100", "Car", "Car100", "Horse"], number=3, together=together)


def test_training_keeps_groups_sharing_images_on_one_side_of_validation(tmp_path):
    from coseg.config import CosegTrainConfig
    from coseg.train import split_train_val

    root = _internet_with_subsets(tmp_path)
    scan = find_samples(root, "internet")
    for seed in range(10):
        train, val = split_train_val(CosegTrainConfig(data=str(root), val_fraction=0.4, seed=seed), scan)
        assert {"Airplane", "Airplane100"} <= set(train) or {"Airplane", "Airplane100"} <= set(val)
        assert {"Car", "Car100"} <= set(train) or {"Car", "Car100"} <= set(val)
    with pytest.raises(ValueError, match="validation groups share images with training groups: 'Airplane100' with "
                                         "'Airplane'; validate on other groups"):
        split_train_val(CosegTrainConfig(data=str(root), val_groups=["Airplane100", "Horse"]), scan)
    assert split_train_val(CosegTrainConfig(data=str(root), train_groups=["Car", "Horse"],
                                            val_groups=["Airplane100"]), scan) == (["Car", "Horse"], ["Airplane100"])
