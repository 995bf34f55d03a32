"""Model files are the same bytes for the same content (safetensors writes its metadata in hash order), and a file
that holds them already is left as it is: a resumed run with nothing left to train writes nothing, and an export
still knows its model afterwards."""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load

from apps.retrieval.export import export_folder
from apps.retrieval.train import train
from coseg.models.checkpoint import read_checkpoint, update_metadata, write_checkpoint
from tests.apps.retrieval_runs import tiny_config, tiny_set

METADATA = {f"key{i}": f"value {i} é" for i in range(12)}


def stamp(path: Path) -> tuple[int, int, bytes]:
    info = path.stat()
    return info.st_ino, info.st_mtime_ns, path.read_bytes()


def test_one_content_gives_one_file_and_is_not_written_twice(tmp_path):
    tensors = {"b.weight": torch.randn(3, 2), "a.bias": torch.arange(5, dtype=torch.float64), "empty": torch.ones(0)}
    files = []
    for name in ("first", "second"):
        write_checkpoint(tmp_path / f"{name}.safetensors", tensors, {"size": 7}, dict(reversed(METADATA.items())))
        files.append((tmp_path / f"{name}.safetensors").read_bytes())
    assert files[0] == files[1]  # was: the metadata in another order each time
    assert all(torch.equal(load(files[0])[k], v) for k, v in tensors.items())
    state, config, extra = read_checkpoint(tmp_path / "first.safetensors")
    assert config == {"size": 7} and {k: extra[k] for k in METADATA} == METADATA and set(state) == set(tensors)

    before = stamp(tmp_path / "first.safetensors")
    write_checkpoint(tmp_path / "first.safetensors", tensors, {"size": 7}, METADATA)
    update_metadata(tmp_path / "first.safetensors", {"key0": METADATA["key0"]})
    assert stamp(tmp_path / "first.safetensors") == before  # the same bytes: not written again
    update_metadata(tmp_path / "first.safetensors", {"key0": "changed"})
    assert read_checkpoint(tmp_path / "first.safetensors")[2]["key0"] == "changed"


def test_an_export_knows_its_model_after_a_resume_with_nothing_left(tmp_path):
    data = tiny_set(tmp_path / "data")
    run = tmp_path / "run"
    cfg = tiny_config(data, run, epochs=1)
    train(cfg)
    model = run / "best.safetensors"
    export_folder(model, data, tmp_path / "export", image_size=32)
    before = {name: stamp(run / name) for name in ("best.safetensors", "last.safetensors")}
    train(cfg, resume=True)  # nothing left to train
    assert {name: stamp(run / name) for name in before} == before
    export_folder(model, data, tmp_path / "export", image_size=32)  # was: refused, "an export ... by another model"
