"""The benchmarks' lists of names read as the commands' (`apps.options.name_list`): group_statistics_chunks.py's
--groups names a group holding a comma in a file (`--groups @FILE`, one name a line, as `coseg evaluate --groups`);
a list naming none (`--methods "$METHODS"` with the variable unset) is refused, not taken for every method."""
from __future__ import annotations

import json
import sys

import pytest

from coseg.data import make_synthetic_coseg
from coseg.models import create_model
from tests.benchmarks.scripts import BENCHMARKS, load_script


@pytest.fixture
def load(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the scripts import their sibling checks.py
    return load_script


def test_a_group_holding_a_comma_is_named_in_a_file(load, tmp_path, monkeypatch):
    # was: "@groups.txt" taken for a group name, and "00-star, big" split into two names neither of which is a group
    checkpoint = tmp_path / "model.safetensors"
    create_model("unet", weights=None, embedding_dim=8, group_levels=1).save(checkpoint, metadata={"image_size": "64"})
    data = make_synthetic_coseg(tmp_path / "data", num_groups=2, images_per_group=2, size=64)
    for top in ("images", "ground_truth"):
        (data / top / "00-star").rename(data / top / "00-star, big")
    names = tmp_path / "groups.txt"
    names.write_text("00-star, big\n\n01-ellipse\n", encoding="utf-8")
    out = tmp_path / "chunks.json"
    monkeypatch.setattr(sys, "argv", ["group_statistics_chunks.py", "--checkpoint", str(checkpoint), "--data",
                                      str(data), "--layout", "icoseg", "--groups", f"@{names}", "--size", "64",
                                      "--out", str(out)])
    load("group_statistics_chunks.py").main()
    assert set(json.loads(out.read_text())["groups"]) == {"00-star, big", "01-ellipse"}


@pytest.mark.parametrize("groups, message", [(" , ", "--groups: names none"),
                                             ("@missing.txt", "--groups: cannot read the names file 'missing.txt'")])
def test_a_group_list_naming_none_is_refused(load, monkeypatch, capsys, groups, message):
    bench = load("group_statistics_chunks.py")
    monkeypatch.setattr(sys, "argv", ["group_statistics_chunks.py", "--checkpoint", "m", "--data", "d", "--groups",
                                      groups])
    with pytest.raises(SystemExit):
        bench.main()
    assert message in capsys.readouterr().err


def test_a_method_list_naming_none_is_refused(load, tmp_path, capsys):
    # was: --methods "" trained every method (each for --minutes)
    with pytest.raises(SystemExit) as stopped:
        load("retrieval_flowers.py").main(["--data", str(tmp_path), "--minutes", "1", "--out",
                                           str(tmp_path / "out.json"), "--methods", ""])
    assert stopped.value.code == 2 and "error: --methods: unknown method(s) ''" in capsys.readouterr().err
