"""benchmarks/retrieval_flowers.py in its smallest configurations on a generated class-folder set (timm's tiny test
backbone, 32 px, one epoch): the frozen row and trained rows (ours and PML's) scored on the test classes, the
--validation run with a fine-tuning stage, and --export-speed's side-by-side ratio, each printing its table and
writing its JSON atomically; and the one-line refusals of what cannot serve (the scores and timings themselves
are the benchmark's business, not a test's)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.apps.retrieval_files import write_class_folders
from tests.benchmarks.scripts import assert_one_line_error, run_script

CLASSES = [f"{i:02d}_flower" for i in range(10)]
TINY = [f"--set={kv}" for kv in ("backbone=test_efficientnet", "weights=none", "image_size=32", "epochs=1",
                                  "head_passes=1", "classes_per_batch=2", "samples_per_class=4", "batch_size=16",
                                  "device=cpu")]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_class_folders(tmp_path_factory.mktemp("flowers") / "flowers17", CLASSES, per_class=8,
                               splits={"train": CLASSES[:8], "test": CLASSES[8:]})


@pytest.fixture(scope="module")
def scored(data, tmp_path_factory) -> tuple[Path, str]:
    """(JSON, stdout) of the smallest run on the test classes, over a JSON file that was there before."""
    out = tmp_path_factory.mktemp("bench") / "retrieval_flowers.json"
    out.write_text("an earlier run's\n")
    os.link(out, out.with_name("earlier.json"))  # another name of the earlier file: rewritten in place, it changes
    done = run_script("retrieval_flowers.py", "--data", data, "--minutes", 0.05, *TINY,
                      "--methods", "frozen,triplet_upper_bound,pml_soft_triple", "--out", out)
    assert done.returncode == 0, done.stderr
    assert out.with_name("earlier.json").read_text() == "an earlier run's\n", "the JSON was rewritten in place"
    return out, done.stdout


@pytest.mark.slow
def test_smallest_run_prints_the_table_and_writes_the_json(scored):
    out, stdout = scored
    result = json.loads(out.read_text())
    assert result["scored_on"] == "test classes" and list(result["rows"]) == ["frozen", "triplet_upper_bound",
                                                                             "pml_soft_triple"]
    for name, row in result["rows"].items():
        assert {"R@1", "R@2", "R@4", "R@8", "MAP@R", "NMI"} <= set(row), name
        if name != "frozen":
            assert {"seconds_per_epoch", "loss_seconds_per_epoch", "epochs", "val_MAP@R"} <= set(row), name
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".")] == []  # no temporary file left
    table = [line.split()[0] for line in stdout.splitlines() if line.split()]
    assert {"method", "frozen", "triplet_upper_bound", "pml_soft_triple"} <= set(table)


@pytest.mark.slow
def test_validation_run_reports_the_kept_stage(data, tmp_path):
    out = tmp_path / "val.json"
    done = run_script("retrieval_flowers.py", "--data", data, "--minutes", 0.05, *TINY, "--set", "finetune_epochs=1",
                      "--methods", "frozen,soft_triple", "--validation", "--out", out)
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["scored_on"] == "validation classes"
    row = result["rows"]["soft_triple"]
    assert {"R@1", "MAP@R", "finetune_seconds_per_epoch", "finetune_epochs"} <= set(row)
    assert row["kept_stage"] in ("head", "finetune") and "NMI" not in row


@pytest.mark.slow
def test_export_speed_is_a_side_by_side_ratio(data, scored, tmp_path):
    out, _ = scored
    model = out.with_suffix("").with_name(out.stem + "_runs") / "triplet_upper_bound" / "best.safetensors"
    speed_out = tmp_path / "export.json"
    done = run_script("retrieval_flowers.py", "--data", data, "--minutes", 0.05, "--export-speed", model,
                      "--out", speed_out)
    assert done.returncode == 0, done.stderr
    speed = json.loads(speed_out.read_text())
    assert speed["images"] == 16 and len(speed["export_vs_forward_pairs"]) == 7 and speed["export_vs_forward"] > 0
    assert f"export_vs_forward: {speed['export_vs_forward']:.3f}" in done.stdout


@pytest.mark.slow
def test_what_cannot_serve_is_one_line(data, tmp_path):
    (tmp_path / "file").write_text("x")
    out = tmp_path / "out.json"
    done = run_script("retrieval_flowers.py", "--data", tmp_path / "missing", "--minutes", 0.05, "--out", out)
    assert_one_line_error(done, "data folder not found", str(tmp_path / "missing"))
    (tmp_path / "other" / "images").mkdir(parents=True)
    (tmp_path / "other" / "splits.json").write_text(json.dumps({"train30": [], "test8": []}))  # iCoseg's splits
    done = run_script("retrieval_flowers.py", "--data", tmp_path / "other", "--minutes", 0.05, "--loss-times",
                      "--out", out)
    assert_one_line_error(done, str(tmp_path / "other"))
    done = run_script("retrieval_flowers.py", "--data", data, "--minutes", 0.05, "--export-speed",
                      tmp_path / "missing.safetensors", "--out", out)
    assert_one_line_error(done, "no model file", str(tmp_path / "missing.safetensors"))
    done = run_script("retrieval_flowers.py", "--data", data, "--minutes", 0.05, "--loss-times",
                      "--out", tmp_path / "file" / "out.json")
    assert_one_line_error(done, "cannot write --out")
    done = run_script("retrieval_flowers.py", "--data", data, "--minutes", 0.05, "--methods", "frozen",
                      "--out", out, "--work", tmp_path / "file" / "runs")
    assert_one_line_error(done, "cannot write --work")
    assert not out.exists()
