"""Both trainers write ``best.safetensors``: a model file records which kind of model it holds, and the other kind's
loader names it instead of calling its config fields unknown ("written by another version?")."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from safetensors import safe_open

from apps.cli import main
from apps.retrieval.model import create_retrieval_model, load_retrieval_model
from coseg.models import create_model, load_ensemble, load_model
from coseg.models.checkpoint import CONFIG_KEY, KIND_KEY, checkpoint_metadata, write_checkpoint
from tests.coseg.pipeline_fixtures import synthetic_set


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("kinds")
    coseg, retrieval = folder / "coseg.safetensors", folder / "retrieval.safetensors"
    create_model("unet", weights=None, embedding_dim=8).save(coseg, metadata={"epoch": "3"})
    create_retrieval_model(weights=None, embedding_dim=8).save(retrieval)
    return coseg, retrieval


def test_each_loader_names_the_other_kind(files):
    coseg, retrieval = files
    for load in (load_model, lambda p: load_ensemble([p])):
        with pytest.raises(ValueError, match=f"^{retrieval} holds a retrieval model, not a co-segmentation model: "
                                             "give the model file of a co-segmentation run$"):
            load(retrieval)
    with pytest.raises(ValueError, match=f"^{coseg} holds a co-segmentation model, not a retrieval model: give the "
                                         "model file of a retrieval run$"):
        load_retrieval_model(coseg)
    assert load_model(coseg) is not None and load_retrieval_model(retrieval) is not None


def test_the_kind_is_the_files_own_entry(files, tmp_path):
    coseg, _ = files
    with safe_open(str(coseg), "pt") as f:
        assert f.metadata()[KIND_KEY] == "co-segmentation"
    assert checkpoint_metadata(coseg) == {"epoch": "3"}  # the extra metadata, as before
    model = create_model("unet", weights=None, embedding_dim=8)
    for key in (CONFIG_KEY, KIND_KEY):
        with pytest.raises(ValueError, match=f"metadata key '{key}' is reserved"):
            model.save(tmp_path / "m.safetensors", metadata={key: "x"})


def test_a_file_of_a_version_that_did_not_record_its_kind_loads(tmp_path):
    model = create_model("unet", weights=None, embedding_dim=8)
    old = tmp_path / "old.safetensors"
    write_checkpoint(old, model.state_dict(), model.config)
    with safe_open(str(old), "pt") as f:
        assert KIND_KEY not in f.metadata() and json.loads(f.metadata()[CONFIG_KEY]) == model.config
    assert load_model(old).config == model.config


def test_the_commands_name_the_other_kind(files, tmp_path):
    coseg, retrieval = files
    data = synthetic_set(tmp_path / "data", groups=1, images=2, size=32)
    r = CliRunner().invoke(main, ["predict", "--checkpoint", str(retrieval), "--input", str(data / "images"),
                                  "--output", str(tmp_path / "masks"), "--device", "cpu", "--quiet"])
    assert r.exit_code == 1 and "holds a retrieval model, not a co-segmentation model" in r.output, r.output
    assert not (tmp_path / "masks").exists()
    r = CliRunner().invoke(main, ["retrieval", "export", "--checkpoint", str(coseg), "--input", str(data / "images"),
                                  "--output", str(tmp_path / "export"), "--device", "cpu", "--quiet"])
    assert r.exit_code == 1 and "holds a co-segmentation model, not a retrieval model" in r.output, r.output
    assert not (tmp_path / "export").exists()


def test_update_metadata_keeps_weights_config_and_kind(files, tmp_path):
    from coseg.models.checkpoint import update_metadata

    for source in files:
        path = tmp_path / source.name
        path.write_bytes(source.read_bytes())
        update_metadata(path, {"finished": "no"})
        with safe_open(source, "pt") as old, safe_open(path, "pt") as new:
            assert new.metadata() == {**old.metadata(), "finished": "no"}  # config and kind too
            assert sorted(new.keys()) == sorted(old.keys())
            assert all(new.get_tensor(k).equal(old.get_tensor(k)) for k in old.keys())
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(files[0].read_bytes()[:-10])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        update_metadata(damaged, {"finished": "no"})
    assert damaged.read_bytes() == files[0].read_bytes()[:-10]
