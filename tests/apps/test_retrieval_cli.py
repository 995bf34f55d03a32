"""``coseg retrieval train | evaluate | export | search`` end to end on a tiny class-folder set, config file and
flags, and errors shown as one line."""
from __future__ import annotations

import json
import shutil

import numpy as np
import yaml
from click.testing import CliRunner

from apps.cli import main
from tests.apps.retrieval_runs import BACKBONE, tiny_set


def invoke(*args):
    return CliRunner().invoke(main, ["retrieval", *map(str, args)], catch_exceptions=False)


def test_train_evaluate_export_search(tmp_path):
    data = tiny_set(tmp_path / "data")
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"backbone": BACKBONE, "weights": "none", "image_size": 32, "embedding_dim": 8,
                                      "classes_per_batch": 2, "samples_per_class": 2, "val_fraction": 0.34,
                                      "epochs": 5, "loss": "soft_triple"}))
    run = tmp_path / "run"
    r = invoke("train", "--config", config, "--data", data, "--output", run, "--epochs", 2, "--la", 10, "--quiet")
    assert r.exit_code == 0, r.output
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["epochs"] == 2 and saved["la"] == 10.0 and saved["loss"] == "soft_triple"  # flags beat the file
    for name in ("best.safetensors", "last.safetensors", "last.pt", "log.csv"):
        assert (run / name).is_file()
    assert "best validation MAP@R" in r.output and "outputs:" in r.output

    r = invoke("evaluate", "--checkpoint", run / "best.safetensors", "--data", data, "--output", tmp_path / "eval",
               "--quiet")
    assert r.exit_code == 0, r.output
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert {"R@1", "R@2", "R@4", "R@8", "MAP@R", "NMI"} <= set(summary) and summary["images"] == 8
    assert summary["classes"] == 2 and summary["image_size"] == 32 and 0 <= summary["MAP@R"] <= 100
    assert f"{summary['MAP@R']:6.2f}" in r.output

    r = invoke("export", "--checkpoint", run / "best.safetensors", "--input", data, "--output", tmp_path / "export",
               "--shard-size", 5, "--quiet")
    assert r.exit_code == 0, r.output
    assert np.load(tmp_path / "export" / "embeddings.npy").shape == (32, 8) and "exported 32 image(s)" in r.output
    r = invoke("export", "--checkpoint", run / "best.safetensors", "--input", data, "--output", tmp_path / "export")
    assert "up to date" in r.output

    r = invoke("search", "--index", tmp_path / "export", "--query", data / "class2" / "img001.jpg", "--k", 3,
               "--output", tmp_path / "hits.csv")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()  # the embedding progress bar goes to stderr
    assert lines[1].split() == ["rank", "path", "distance"] and lines[2].split()[:2] == ["1", "class2/img001.jpg"]
    assert len([line for line in lines if line.strip()[:1].isdigit()]) == 3 and (tmp_path / "hits.csv").is_file()

    queries = tmp_path / "queries"
    queries.mkdir()
    shutil.copyfile(data / "class2" / "img001.jpg", queries / "good.jpg")
    (queries / "bad.jpg").write_bytes(b"not an image")
    r = invoke("search", "--index", tmp_path / "export", "--query", queries, "--k", 2, "--quiet")
    assert r.exit_code == 0, r.output
    assert f"query: {queries / 'good.jpg'}" in r.output and "skipped 1 query file(s) or folder(s):" in r.output
    assert f"  {queries / 'bad.jpg'}: not a decodable image" in r.output


def test_errors_are_one_line(tmp_path):
    data = tiny_set(tmp_path / "data")
    r = invoke("train", "--data", data, "--output", tmp_path / "run", "--weights", "none", "--gamma", 0.2,
               "--classes-per-batch", 2)
    assert r.exit_code != 0 and "Error: --gamma set but not used by loss 'triplet_margin'" in r.output
    assert "decoding" not in r.output  # rejected before any image is read
    r = invoke("train", "--data", data, "--output", tmp_path / "run", "--weights", "none")
    assert r.exit_code != 0 and "--classes-per-batch 8, but training has 4 class(es)" in r.output
    r = invoke("train", "--data", data, "--output", tmp_path / "run", "--weights", "none", "--loss", "nope")
    assert r.exit_code == 2 and "loss 'nope' is unknown; valid: global, " in r.output
    r = invoke("search", "--index", tmp_path, "--query", data / "class0" / "img000.jpg")
    assert r.exit_code != 0 and "no finished export" in r.output and "Traceback" not in r.output


def test_fine_tuning_without_validation_says_why_its_model_is_kept(tmp_path):
    data = tiny_set(tmp_path / "data")
    r = invoke("train", "--data", data, "--output", tmp_path / "run", "--backbone", BACKBONE, "--weights", "none",
               "--image-size", 32, "--embedding-dim", 8, "--classes-per-batch", 2, "--samples-per-class", 2,
               "--val-fraction", 0, "--epochs", 1, "--finetune-epochs", 1, "--quiet")
    assert r.exit_code == 0, r.output
    assert "fine-tuned model (no validation classes: the later stage)" in r.output
    assert "better validation MAP@R" not in r.output and "head: trained 1 epoch(s)" in r.output
    config = (tmp_path / "run" / "config.yaml").stat().st_ino
    r = invoke("train", "--data", data, "--output", tmp_path / "run", "--backbone", BACKBONE, "--weights", "none",
               "--image-size", 32, "--embedding-dim", 8, "--classes-per-batch", 2, "--samples-per-class", 2,
               "--val-fraction", 0, "--epochs", 1, "--finetune-epochs", 1, "--quiet", "--resume")
    assert r.exit_code == 0, r.output
    assert "finetune: nothing left to train: the run had reached epoch 1 (a larger --finetune-epochs trains on)" \
        in r.output and "trained" not in r.output
    assert (tmp_path / "run" / "config.yaml").stat().st_ino == config  # nothing trained: not written again
