"""Untrusted files: pickles disguised as checkpoints, model files, pretrained weights and cache entries are refused
(or ignored and rebuilt) without running anything; config files go through a safe YAML loader; outputs never
land outside the output folder.

Every malicious file here creates a marker file when unpickled (``tests/coseg/malicious.py``): the marker must not
appear. Library-level cases already covered: ``tests/engine/test_engine.py::test_resume_refuses_pickled_payload``,
``tests/coseg/test_model.py::test_pickle_disguised_as_a_model_file_is_refused_without_running_it``,
``tests/apps/test_retrieval_model.py::test_pickle_disguised_as_model_file_is_refused_without_running``,
``tests/coseg/test_cli.py::test_config_errors_are_one_clear_line`` (coseg train's YAML) and
``tests/coseg/test_predict.py::test_output_paths_cannot_escape``; here each command is tried as a user runs it."""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import apps.retrieval.export as export_module
from apps.retrieval.evaluate import evaluate_checkpoint
from apps.retrieval.export import SHARD_DIR, export_folder
from apps.retrieval.model import create_retrieval_model
from coseg.data import CosegDataset, ImageCache, find_samples
from coseg.config import CosegTrainConfig
from coseg.engine import load_config
from coseg.models import create_model
from tests.apps.retrieval_runs import BACKBONE, tiny_set
from tests.coseg.files import write_rgb
from tests.coseg.malicious import MarkerPayload, malicious_pickle
from tests.coseg.pipeline_fixtures import synthetic_set
from tests.reliability.test_bad_inputs import TINY_COSEG, TINY_RETRIEVAL, fails, invoke


@pytest.fixture
def marker(tmp_path) -> Path:
    path = tmp_path / "pwned"
    yield path
    assert not path.exists(), "a malicious file was unpickled"


def torch_pickle(marker: Path, **extra) -> bytes:
    """A ``torch.save`` file (zip + pickle) of a training state whose model entry runs code when unpickled."""
    buffer = io.BytesIO()
    torch.save({"epoch": 1, "model": MarkerPayload(marker), **extra}, buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    coseg = folder / "coseg.safetensors"
    create_model("unet", encoder="tu-tf_efficientnet_lite0", weights=None, embedding_dim=8,
                 group_levels=1).save(coseg, metadata={"image_size": "64"})
    retrieval = folder / "retrieval.safetensors"
    create_retrieval_model(BACKBONE, weights=None, embedding_dim=8).save(retrieval, metadata={"image_size": "32"})
    return {"coseg": coseg, "retrieval": retrieval}


@pytest.fixture(scope="module")
def coseg_data(tmp_path_factory) -> Path:
    return synthetic_set(tmp_path_factory.mktemp("coseg") / "data", groups=3, images=2)


@pytest.fixture(scope="module")
def retrieval_data(tmp_path_factory) -> Path:
    return tiny_set(tmp_path_factory.mktemp("retrieval") / "data", per_class=2)


# --- checkpoints and model files ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["raw pickle", "torch.save"])
@pytest.mark.parametrize("trainer", ["coseg", "retrieval"])
def test_resume_refuses_a_malicious_training_state(tmp_path, marker, coseg_data, retrieval_data, trainer, kind):
    run = tmp_path / "run"
    if trainer == "coseg":
        args = ["train", "--data", coseg_data, "--output", run, "--val-fraction", 0, *TINY_COSEG]
    else:
        args = ["retrieval", "train", "--data", retrieval_data, "--output", run, *TINY_RETRIEVAL]
    invoke(*args, "--epochs", 1)  # a real run (--resume refuses a folder without one), whose state is then swapped
    (run / "last.pt").write_bytes(malicious_pickle(marker) if kind == "raw pickle" else torch_pickle(marker))
    config = (run / "config.yaml").read_bytes()
    output = fails(*args, "--epochs", 2, "--resume")
    assert "last.pt: refused to load: not a safe training checkpoint" in output
    assert (run / "config.yaml").read_bytes() == config  # refused before the run's saved options were rewritten


@pytest.mark.parametrize("name", ["best.safetensors", "model.pt"])
def test_every_command_refuses_a_pickle_given_as_model(tmp_path, marker, coseg_data, retrieval_data, name):
    evil = tmp_path / name
    evil.write_bytes(torch_pickle(marker) if name.endswith(".pt") else malicious_pickle(marker))
    outputs = [
        fails("evaluate", "--checkpoint", evil, "--data", coseg_data, "--output", tmp_path / "e", "--device", "cpu"),
        fails("predict", "--checkpoint", evil, "--input", coseg_data / "images", "--output", tmp_path / "p",
              "--device", "cpu"),
        fails("retrieval", "evaluate", "--checkpoint", evil, "--data", retrieval_data, "--output", tmp_path / "re",
              "--device", "cpu"),
        fails("retrieval", "export", "--checkpoint", evil, "--input", retrieval_data, "--output", tmp_path / "x",
              "--device", "cpu"),
    ]
    for output in outputs:
        assert name in output and "Error:" in output
    assert not any((tmp_path / d).exists() for d in ("e", "p", "re", "x"))


def test_pretrained_weights_file_that_is_a_pickle_is_refused(tmp_path, marker, coseg_data):
    evil = tmp_path / "encoder.pth"
    evil.write_bytes(torch_pickle(marker))
    args = [a if a != "none" else evil for a in TINY_COSEG]
    output = fails("train", "--data", coseg_data, "--output", tmp_path / "run", "--epochs", 1, *args)
    assert "encoder.pth" in output


# --- cache entries ----------------------------------------------------------------------------------------------


def _malicious_npz(marker: Path) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, image=np.array([MarkerPayload(marker)], dtype=object), size=np.array([1, 1]))
    return buffer.getvalue()


def test_poisoned_decoded_image_cache_is_decoded_again(tmp_path, marker, coseg_data):
    samples = find_samples(coseg_data).labelled
    cache_dir = tmp_path / "cache"
    first = CosegDataset(samples, 64, ImageCache(64, cache_dir=cache_dir, progress=False))
    entries = sorted(cache_dir.glob("*.npz"))
    assert len(entries) == len(samples)
    for entry in entries:
        entry.write_bytes(_malicious_npz(marker))
    cache = ImageCache(64, cache_dir=cache_dir, progress=False)
    second = CosegDataset(samples, 64, cache)
    assert cache.decoded == len(samples) and cache.from_disk == 0
    assert torch.equal(second[0]["image"], first[0]["image"])


def test_poisoned_export_shards_are_embedded_again(tmp_path, marker, models, retrieval_data, monkeypatch):
    names = []
    save = export_module._save_npz

    def recording(path: Path, **arrays: np.ndarray) -> None:
        names.append(Path(path).name)
        save(path, **arrays)

    monkeypatch.setattr(export_module, "_save_npz", recording)
    whole = export_folder(models["retrieval"], retrieval_data, tmp_path / "whole", shard_size=4)
    shards, left = tmp_path / "out" / SHARD_DIR, list(names)
    shards.mkdir(parents=True)
    for name in left:  # the shards an interrupted run would have left, poisoned
        (shards / name).write_bytes(_malicious_npz(marker))
    report = export_folder(models["retrieval"], retrieval_data, tmp_path / "out", shard_size=4)
    assert report.shards == len(left) == 4 and report.shards_reused == 0 and report.images == whole.images
    assert np.array_equal(np.load(tmp_path / "out" / "embeddings.npy"), np.load(tmp_path / "whole" / "embeddings.npy"))


def test_poisoned_feature_cache_is_computed_again(tmp_path, marker, models, retrieval_data):
    cache = tmp_path / "cache"
    first = evaluate_checkpoint(models["retrieval"], retrieval_data, cache_dir=cache).summary
    poisoned = sorted(cache.rglob("*.np[yz]"))
    assert any(p.suffix == ".npy" for p in poisoned) and any(p.suffix == ".npz" for p in poisoned)
    for path in poisoned:
        path.write_bytes(_malicious_npz(marker))
    second = evaluate_checkpoint(models["retrieval"], retrieval_data, cache_dir=cache).summary
    assert second["MAP@R"] == first["MAP@R"] and second["images"] == first["images"] == 4


# --- config files -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("trainer", ["train", "retrieval train"])
def test_config_file_with_python_tags_runs_nothing(tmp_path, trainer, coseg_data):
    config = tmp_path / "evil.yaml"
    config.write_text(f"epochs: !!python/object/apply:os.system ['touch {tmp_path / 'pwned'}']\n")
    output = fails(*trainer.split(), "--config", config, "--data", coseg_data, "--output", tmp_path / "run")
    assert "evil.yaml: not valid YAML" in output
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "run").exists()


def test_list_options_from_flags_and_yaml(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"train_groups": ["a", "b c"], "val_groups": "d"}))
    cfg = load_config(CosegTrainConfig, config, {"val_groups": "e, f"})
    assert cfg.train_groups == ["a", "b c"] and cfg.val_groups == ["e", "f"]


# --- outputs stay in the output folder ------------------------------------------------------------------------------


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def test_outputs_stay_inside_the_output_folder(tmp_path, models):
    """Odd names (a group folder ``g..h``, a file ``x..y.jpg``, a symlink to a folder outside the input)
    are written below the output folder; nothing appears anywhere else."""
    top = tmp_path / "top"
    rgb = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    for relative in ("photos/g..h/a.jpg", "photos/g/x..y.jpg", "photos/g/b.jpg", "outside/c.jpg", "outside/d.jpg"):
        write_rgb(top / relative, rgb)
    (top / "photos" / "linked").symlink_to(top / "outside", target_is_directory=True)
    before = _files(top)
    invoke("predict", "--checkpoint", models["coseg"], "--input", top / "photos", "--output", top / "masks",
           "--device", "cpu", "--quiet")
    invoke("retrieval", "export", "--checkpoint", models["retrieval"], "--input", top / "photos", "--output",
           top / "export", "--device", "cpu", "--quiet")
    created = _files(top) - before
    assert all(p.split(os.sep)[0] in ("masks", "export") for p in created), created
    assert {p for p in created if p.startswith("masks")} >= {"masks/g..h/a.png", "masks/g/x..y.png",
                                                             "masks/linked/c.png"}
    with open(top / "export" / "manifest.csv", newline="", encoding="utf-8") as f:
        paths = [row["path"] for row in csv.DictReader(f)]
    assert sorted(paths) == ["g..h/a.jpg", "g/b.jpg", "g/x..y.jpg", "linked/c.jpg", "linked/d.jpg"]
